"""The emulator's Starlette application: the two documented services and ``/__admin/``.

Errors are Feathers error JSON, exactly ``{"name", "message", "code", "className"}``.
The outermost ASGI layer counts requests and applies queued faults before the
services see them; ``/__admin/`` answers only clients on a loopback address and
is neither counted nor faulted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apexcal.emulator.faults import make_fault
from apexcal.emulator.qs import parse_query
from apexcal.emulator.query import compile_find
from apexcal.emulator.records import (
    ACTIVITY_SCHEMA,
    TYPE_SCHEMA,
    base_activity,
    base_type,
    validate_activity,
    validate_type,
)
from apexcal.emulator.state import EmulatorState
from apexcal.errors import EmulatorHTTPError

PAGINATE_DEFAULT = 10

log = structlog.get_logger(__name__)

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "bad-request"),
    401: ("NotAuthenticated", "not-authenticated"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "not-found"),
    405: ("MethodNotAllowed", "method-not-allowed"),
    408: ("Timeout", "timeout"),
    409: ("Conflict", "conflict"),
    422: ("Unprocessable", "unprocessable"),
    429: ("TooManyRequests", "too-many-requests"),
    500: ("GeneralError", "general-error"),
    501: ("NotImplemented", "not-implemented"),
    502: ("BadGateway", "bad-gateway"),
    503: ("Unavailable", "unavailable"),
}



def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A compact UTF-8 JSON answer."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A Feathers error answer."""
    name, class_name = _ERRORS.get(status, ("GeneralError", "general-error"))
    return json_response(
        {"name": name, "message": message, "code": status, "className": class_name}, status, headers
    )


def _not_found(raw_id: object) -> EmulatorHTTPError:
    return EmulatorHTTPError(404, f"No record found for id '{raw_id}'")


class _Services:
    """The request handlers, bound to one state and one ``paginate_max``."""

    def __init__(self, state: EmulatorState, paginate_max: int) -> None:
        self.state = state
        self.paginate_max = paginate_max

    # --- plumbing ---------------------------------------------------------------

    def user(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise EmulatorHTTPError(401, "Not authenticated")
        if scheme.lower() != "bearer" or not token.strip():
            raise EmulatorHTTPError(401, "Invalid authentication information (expected a Bearer token)")
        user = self.state.user_for_token(token.strip())
        if user is None:
            raise EmulatorHTTPError(401, "Invalid authentication information")
        return user

    @staticmethod
    def member(user: Mapping[str, Any], org_id: int) -> None:
        if org_id not in user["organizations"]:
            raise EmulatorHTTPError(403, f"You are not authorized to access organization {org_id}")

    @staticmethod
    async def body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise EmulatorHTTPError(400, "The request body is not valid JSON") from None

    async def query(self, request: Request) -> dict[str, Any]:
        """The URL query merged over a ``{"query": {...}}`` JSON body (as in the documents' curl)."""
        merged: dict[str, Any] = {}
        body = await self.body(request)
        if body is not None:
            inner = body.get("query") if isinstance(body, dict) else None
            if not isinstance(inner, dict):
                raise EmulatorHTTPError(400, 'A request body on find must be {"query": {...}}')
            merged.update(inner)
        merged.update(parse_query(request.url.query))
        return merged

    @staticmethod
    def record_id(request: Request) -> int:
        raw = request.path_params["id"]
        if not (raw.isascii() and raw.isdigit()):
            raise _not_found(raw)
        return int(raw)

    # --- activities --------------------------------------------------------------

    async def find_activities(self, request: Request) -> Response:
        user = self.user(request)
        find = compile_find(
            ACTIVITY_SCHEMA,
            await self.query(request),
            paginate_default=PAGINATE_DEFAULT,
            paginate_max=self.paginate_max,
        )
        self.member(user, find.organization_id)
        fast = str(find.params.get("fastJoinForActivityList", "false")).lower() == "true"
        total, page = self.state.find_activities(find)
        short = request.scope.get("apexcal.short_page")
        if short is not None:
            page = page[:short]
        with self.state.lock:
            data = [
                self._joined(r, full=False, select=find.select)
                if fast
                else base_activity(r, find.select)
                for r in page
            ]
        return json_response({"total": total, "limit": find.limit, "skip": find.skip, "data": data})

    def _live_activity(self, request: Request, user: Mapping[str, Any]) -> dict[str, Any]:
        activity_id = self.record_id(request)
        record = self.state.activity_record(activity_id)
        if record is None or record["deleted_at"] is not None:
            raise _not_found(activity_id)
        self.member(user, record["organization_id"])
        return record

    async def get_activity(self, request: Request) -> Response:
        user = self.user(request)
        with self.state.lock:
            record = self._live_activity(request, user)
            return json_response(self._joined(record, full=True))

    async def create_activity(self, request: Request) -> Response:
        user = self.user(request)
        fields = validate_activity(await self.body(request), creating=True)
        self.member(user, fields["organization_id"])
        created = self.state.create_activity(fields, user_id=user["id"])
        return json_response(base_activity(created), 201)

    async def patch_activity(self, request: Request) -> Response:
        user = self.user(request)
        body = await self.body(request)
        with self.state.lock:
            record = self._live_activity(request, user)
            fields = validate_activity(body, creating=False)
            return json_response(base_activity(self.state.patch_activity(record["id"], fields)))

    async def bulk_patch(self, request: Request) -> Response:
        user = self.user(request)
        body = await self.body(request)
        if not isinstance(body, dict) or "ids" not in body:
            raise EmulatorHTTPError(400, "A bulk patch needs 'ids': a non-empty array of activity ids")
        ids = body["ids"]
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise EmulatorHTTPError(400, "'ids' must be a non-empty array of integer activity ids")
        fields = validate_activity({k: v for k, v in body.items() if k != "ids"}, creating=False)
        if "organization_id" in fields:
            raise EmulatorHTTPError(400, "organization_id cannot be changed")
        if not fields:
            raise EmulatorHTTPError(400, "A bulk patch needs at least one field to change")
        with self.state.lock:
            # A foreign live record refuses the whole patch (as a single-record patch
            # would); unknown and deleted ids are invisible and simply skipped.
            for activity_id in ids:
                record = self.state.activity_record(activity_id)
                if record is not None and record["deleted_at"] is None:
                    self.member(user, record["organization_id"])
            updated = self.state.bulk_patch(ids, fields, organizations=user["organizations"])
        return json_response({"updated": len(updated), "ids": updated})

    async def delete_activity(self, request: Request) -> Response:
        user = self.user(request)
        with self.state.lock:
            record = self._live_activity(request, user)
            return json_response(base_activity(self.state.delete_activity(record["id"])))

    def _joined(
        self, record: Mapping[str, Any], *, full: bool, select: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        out = base_activity(record, select)
        s = self.state

        def ref(
            table: Mapping[int, Mapping[str, Any]], ref_id: Any, keys: tuple[str, ...]
        ) -> dict[str, Any] | None:
            # A malformed reference (a list, a string) joins as null, as a failed lookup does.
            hashable = isinstance(ref_id, int | str)
            row = table.get(ref_id) if hashable else None
            return None if row is None else {k: row.get(k) for k in keys}

        person = ("id", "full_name", "email") if full else ("id", "full_name")
        out["created_by_user"] = ref(s.users, record["created_by_user_id"], person)
        out["assigned_to_user"] = ref(s.users, record["assigned_to_user_id"], person)
        out["deal"] = ref(
            s.deals, record["deal_id"], ("id", "name", "stage") if full else ("id", "name")
        )
        out["contact"] = ref(s.contacts, record["contact_id"], person)
        out["company"] = ref(
            s.companies, record["company_id"], ("id", "name", "website") if full else ("id", "name")
        )
        return out

    # --- activity types ------------------------------------------------------------

    async def find_types(self, request: Request) -> Response:
        user = self.user(request)
        find = compile_find(
            TYPE_SCHEMA,
            await self.query(request),
            paginate_default=PAGINATE_DEFAULT,
            paginate_max=self.paginate_max,
        )
        self.member(user, find.organization_id)
        total, page = self.state.find_types(find)
        short = request.scope.get("apexcal.short_page")
        if short is not None:
            page = page[:short]
        with self.state.lock:
            data = [base_type(r, find.select) for r in page]
        return json_response({"total": total, "limit": find.limit, "skip": find.skip, "data": data})

    def _live_type(self, request: Request, user: Mapping[str, Any]) -> dict[str, Any]:
        type_id = self.record_id(request)
        record = self.state.type_record(type_id)
        if record is None or record["deleted_at"] is not None:
            raise _not_found(type_id)
        self.member(user, record["organization_id"])
        return record

    async def get_type(self, request: Request) -> Response:
        user = self.user(request)
        with self.state.lock:
            record = self._live_type(request, user)
            return json_response(
                {**base_type(record), "activities_count": self.state.activities_count(record["id"])}
            )

    async def create_type(self, request: Request) -> Response:
        user = self.user(request)
        fields = validate_type(await self.body(request), creating=True)
        self.member(user, fields["organization_id"])
        return json_response(base_type(self.state.create_type(fields)), 201)

    async def patch_type(self, request: Request) -> Response:
        user = self.user(request)
        body = await self.body(request)
        with self.state.lock:
            record = self._live_type(request, user)
            fields = validate_type(body, creating=False)
            return json_response(base_type(self.state.patch_type(record["id"], fields)))

    async def delete_type(self, request: Request) -> Response:
        user = self.user(request)
        with self.state.lock:
            record = self._live_type(request, user)
            return json_response(base_type(self.state.delete_type(record["id"])))

    # --- admin ---------------------------------------------------------------------

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.faults.add(make_fault(await self.body(request)))
            except ValueError as exc:
                raise EmulatorHTTPError(400, str(exc)) from None
        elif request.method == "DELETE":
            self.state.faults.clear()
        return json_response({"pending": self.state.faults.pending()})

    async def admin_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.requests.clear()
        return json_response(self.state.requests.snapshot())

    async def admin_seed(self, request: Request) -> Response:
        body = await self.body(request) or {}
        try:
            org = int(body["organization_id"])
            count = int(body.get("count", 100))
            seed = int(body.get("seed", 0))
            anchor = date.fromisoformat(body["anchor"]) if body.get("anchor") else None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise EmulatorHTTPError(
                400,
                'seed needs {"organization_id": int, "count": int, "seed"?: int, "anchor"?: "YYYY-MM-DD"}',
            ) from None
        ids = self.state.seed(org, count, seed=seed, anchor=anchor)
        return json_response(
            {
                "created": len(ids),
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
        )

    async def admin_reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response({"reset": True})

    async def admin_users(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self.state.set_users(await self.body(request))
            except ValueError as exc:
                raise EmulatorHTTPError(400, f"bad users document: {exc}") from None
        users = [
            {k: (sorted(v) if k == "organizations" else v) for k, v in u.items() if k != "token"}
            for u in self.state.users.values()
        ]
        return json_response(
            {"organizations": list(self.state.organizations.values()), "users": users}
        )


def _handler(func: Callable[[Request], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await func(request)
        except EmulatorHTTPError as exc:
            return error_response(exc.status, exc.message)
        except (ClientDisconnect, ConnectionError):
            # The client went away mid-request (a timeout, a dropped test connection):
            # nothing to answer and nothing wrong with the emulator.
            log.debug("emulator.client_disconnected", method=request.method, path=request.url.path)
            return Response(status_code=499)  # nginx's "client closed request"; never delivered
        except Exception:
            # A bug of the emulator: answered as the service would (GeneralError), logged in full.
            log.exception("emulator.error", method=request.method, path=request.url.path)
            return error_response(500, "Internal server error")
        return response

    return endpoint


def create_app(state: EmulatorState | None = None, *, paginate_max: int = 100) -> Starlette:
    """The emulator as an ASGI app over ``state`` (a fresh demo state when None)."""
    state = state if state is not None else EmulatorState()
    s = _Services(state, paginate_max)
    routes = [
        Route("/activities", _handler(s.find_activities), methods=["GET"]),
        Route("/activities", _handler(s.create_activity), methods=["POST"]),
        Route("/activities", _handler(s.bulk_patch), methods=["PATCH"]),
        Route("/activities/{id}", _handler(s.get_activity), methods=["GET"]),
        Route("/activities/{id}", _handler(s.patch_activity), methods=["PATCH"]),
        Route("/activities/{id}", _handler(s.delete_activity), methods=["DELETE"]),
        Route("/activity-types", _handler(s.find_types), methods=["GET"]),
        Route("/activity-types", _handler(s.create_type), methods=["POST"]),
        Route("/activity-types/{id}", _handler(s.get_type), methods=["GET"]),
        Route("/activity-types/{id}", _handler(s.patch_type), methods=["PATCH"]),
        Route("/activity-types/{id}", _handler(s.delete_type), methods=["DELETE"]),
        Route("/__admin/faults", _handler(s.admin_faults), methods=["GET", "POST", "DELETE"]),
        Route("/__admin/requests", _handler(s.admin_requests), methods=["GET", "DELETE"]),
        Route("/__admin/seed", _handler(s.admin_seed), methods=["POST"]),
        Route("/__admin/reset", _handler(s.admin_reset), methods=["POST"]),
        Route("/__admin/users", _handler(s.admin_users), methods=["GET", "PUT"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "Page not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"Method `{request.method}` is not supported by this endpoint.")

    app = _EmulatorApp(state, routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.state.emulator = state
    return app


class _EmulatorApp(Starlette):
    """Starlette with the fault and counter layer outside everything else.

    Outside Starlette's own middleware, the layer holds the server's ``send``,
    which a dropped-connection fault needs to reach the socket.
    """

    def __init__(self, state: EmulatorState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._layer = _FaultsAndCounters(self._inner, state)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._layer(scope, receive, send)


def _route_of(path: str) -> str:
    parts = path.rstrip("/").split("/")
    if len(parts) == 3 and parts[1] in ("activities", "activity-types"):
        return f"/{parts[1]}/:id"
    return path


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _FaultsAndCounters:
    """Outermost layer: loopback-only admin, request counting, fault injection."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/__admin"):
            client = scope.get("client")
            if not _loopback(client[0] if client else None):
                await error_response(403, "The admin endpoint only answers on loopback")(
                    scope, receive, send
                )
                return
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        self.state.requests.record(
            method=method,
            path=path,
            route=_route_of(path),
            query=scope.get("query_string", b"").decode("latin-1"),
        )
        is_find = method == "GET" and path.rstrip("/") in ("/activities", "/activity-types")
        fault = self.state.faults.take(method, path, find=is_find)
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "status":
            await error_response(fault.status, "Injected fault")(scope, receive, send)
        elif fault.kind == "rate_limit":
            retry = f"{fault.retry_after:g}"
            await error_response(429, "Too many requests", {"Retry-After": retry})(
                scope, receive, send
            )
        elif fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "malformed":
            body = b'{"total": 3, "limit": 10, "skip": 0, "data": [{"id": 1, "subject": "trunc'
            await Response(body, media_type="application/json")(scope, receive, send)
        elif fault.kind == "short_page":
            await self.app({**scope, "apexcal.short_page": fault.size}, receive, send)
        elif fault.kind == "drop_answer":
            await self.app(scope, receive, _discard)
            await _drop(send)
        else:
            await _drop(send)


async def _discard(message: Message) -> None:
    """Swallow an answer (a ``drop_answer`` fault: the request was served, its answer is lost)."""


async def _drop(send: Send) -> None:
    """Close the connection without an answer (uvicorn: abort the request's transport)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected dropped connection")
    transport.abort()
    # Let the protocol see the lost connection, so the server does not try to answer.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
