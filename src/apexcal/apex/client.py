"""The AchieveApex API client: auth, paging, the change feed, bulk patch, retries, errors.

One synchronous :class:`ApexClient` per organization and token.  Every
request carries the bearer token, ``User-Agent: apexcal/<version>`` and
timeouts; answers are checked for shape and turned into models, and every
failure becomes one exception of :mod:`apexcal.errors`, whose text names the
method and the URL path and query — never the token.

Listing follows the ``{total, limit, skip, data}`` envelope with ``$skip``,
honouring the ``limit`` the server reports (servers cap ``$limit``).  The
change feed and the id sweep page by key instead (``(updated_at, id)`` and
``id``), because ``$skip`` paging misses or repeats records that move while
the pages are read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import stamina
import structlog

from apexcal import USER_AGENT
from apexcal.apex.models import (
    Activity,
    ActivityType,
    format_timestamp,
    parse_activity,
    parse_activity_type,
    parse_timestamp,
)
from apexcal.apex.query import encode_query, normalize_filters, split_in
from apexcal.apex.retry import RetryPolicy, parse_retry_after, retry_delay
from apexcal.clock import utcnow
from apexcal.errors import (
    ApiHTTPError,
    ApiProtocolError,
    ApiTransportError,
    BadRequest,
    Forbidden,
    InvalidRecord,
    NotAuthenticated,
    NotFound,
    QueryError,
    RateLimited,
    ServerError,
)
from apexcal.log import redactor

if TYPE_CHECKING:
    from apexcal.config import SourceConfig

log = structlog.get_logger(__name__)

#: Ids per bulk PATCH request (they travel in the JSON body, which qs does not parse).
BULK_CHUNK = 100

_ERRORS_BY_STATUS: dict[int, type[ApiHTTPError]] = {
    400: BadRequest,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
}
# The client owns paging; these cannot come in as filters.
_RESERVED = frozenset({"organization_id", "$limit", "$skip"})

R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class BulkResult:
    """The answer of bulk PATCH requests: how many rows changed, and which."""

    updated: int
    ids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class _Page:
    total: int
    limit: int
    skip: int
    data: list[Any]


class ApexClient:
    """A synchronous client of the AchieveApex API for one organization.

    ``on_request(route, status)`` is called after every HTTP attempt (retries
    included) with a low-cardinality route such as ``"GET /activities/:id"``
    and the status code, ``0`` when no answer came; metrics count requests
    with it.  ``skipped_records`` counts malformed records that were logged
    and skipped instead of stopping a listing.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        organization_id: int,
        *,
        page_size: int = 100,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.organization_id = organization_id
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.skipped_records = 0
        self._token = token
        self._on_request = on_request
        self._keyset_refused = False
        redactor.add(token)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    # --- life cycle -------------------------------------------------------------

    @classmethod
    def for_source(
        cls,
        source: SourceConfig,
        *,
        retry: RetryPolicy | None = None,
        on_request: Callable[[str, int], None] | None = None,
    ) -> ApexClient:
        """A client for the ``[source]`` of a loaded config (its secrets resolved)."""
        return cls(
            source.base_url,
            source.require_token(),
            source.organization_id,
            page_size=source.page_size,
            timeout=source.timeout.total_seconds(),
            retry=retry,
            on_request=on_request,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ApexClient({str(self._http.base_url)!r}, organization_id={self.organization_id})"

    # --- activities -------------------------------------------------------------

    def list_activities(self, **filters: Any) -> Iterator[Activity]:
        """Every activity matching ``filters`` (the API's query parameters), all pages.

        A list value means "any of" (``activity_type=["call", "task"]``);
        ``start_date={"$gte": date(...), "$lte": date(...)}`` is a range;
        ``fastJoinForActivityList=True`` asks for the joined objects.  Long
        ``$in`` lists are split into several requests (ordered within each).
        Pages are ordered by ``$sort`` if given, always ending with ``id`` so
        that ``$skip`` paging is exact.
        """
        query = self._find_query(filters)
        query["$sort"] = _with_id_tiebreak(query.get("$sort"))
        for raw in self._skip_pages("/activities", query):
            activity = self._parse(parse_activity, raw)
            if activity is not None:
                yield activity

    def get_activity(self, activity_id: int) -> Activity:
        """One activity by id (``NotFound`` when absent or deleted)."""
        raw = self._request("GET", f"/activities/{int(activity_id)}", route="/activities/:id")
        return self._parse_one(parse_activity, raw)

    def create_activity(self, data: Mapping[str, Any]) -> Activity:
        """Create an activity in the client's organization; the server's record comes back."""
        body = {"organization_id": self.organization_id, **data}
        raw = self._request("POST", "/activities", body=body)
        return self._parse_one(parse_activity, raw)

    def patch_activity(self, activity_id: int, data: Mapping[str, Any]) -> Activity:
        """Set fields of one activity to the given (absolute) values."""
        raw = self._request(
            "PATCH", f"/activities/{int(activity_id)}", body=dict(data), route="/activities/:id"
        )
        return self._parse_one(parse_activity, raw)

    def delete_activity(self, activity_id: int) -> Activity:
        """Soft-delete an activity; the deleted record (with ``deleted_at``) comes back."""
        raw = self._request("DELETE", f"/activities/{int(activity_id)}", route="/activities/:id")
        return self._parse_one(parse_activity, raw)

    def bulk_patch_activities(self, ids: Iterable[int], data: Mapping[str, Any]) -> BulkResult:
        """Set the same absolute values on many activities (``PATCH /activities`` with ``ids``).

        Ids are deduplicated and sent :data:`BULK_CHUNK` at a time; the result
        sums the answers.  The server stamps one ``updated_at`` per request.
        """
        unique = list(dict.fromkeys(int(i) for i in ids))
        updated = 0
        done: list[int] = []
        for start in range(0, len(unique), BULK_CHUNK):
            chunk = unique[start : start + BULK_CHUNK]
            raw = self._request("PATCH", "/activities", body={**data, "ids": chunk})
            count, changed = self._bulk_answer(raw, "PATCH", "/activities")
            updated += count
            done.extend(changed)
        return BulkResult(updated=updated, ids=tuple(done))

    def changes_since(
        self, watermark: datetime | None, *, overlap: timedelta, **filters: Any
    ) -> Iterator[Activity]:
        """Every activity with ``updated_at ≥ watermark − overlap``, ordered by ``(updated_at, id)``.

        Pages by key: after each page the next asks for records after the
        last one seen (``updated_at > t``, or ``= t`` with a greater id), so a
        record that changes while the pages are read moves behind the cursor
        and is seen again later in the pass — never missed, and never
        repeated otherwise.  The id tie-break keeps paging exact through a
        bulk patch, which stamps many rows with one ``updated_at``.  ``None``
        means everything.  Long ``$in`` filters are split into several passes,
        each in that order.  If the server refuses the query (400), the feed
        falls back, for the life of the client, to a full listing (logged once).
        """
        query = self._find_query(filters)
        for key in ("updated_at", "$or", "$sort"):
            if key in query:
                raise QueryError(f"the change feed sets {key} itself")
        if watermark is not None:
            query["updated_at"] = {"$gte": watermark - overlap}
        refusal: BadRequest | None = None
        if not self._keyset_refused:
            try:
                for chunk in split_in(query):
                    yield from self._keyset_pages(chunk)
                return
            except BadRequest as exc:
                refusal = exc
        listing = self.list_activities(**filters)
        # The first page of the listing is fetched before the fallback is recorded:
        # if the plain filters are refused too, the fault is theirs, not the feed's.
        head = next(listing, None)
        if refusal is not None and not self._keyset_refused:
            self._keyset_refused = True
            log.warning("apex.change_feed_fallback", reason=refusal.server_message)
        if head is not None:
            yield head
            yield from listing

    def all_activity_ids(self, **filters: Any) -> set[int]:
        """The ids of every activity matching ``filters``, asking for ids only (``$select``).

        Pages by id (``id > last``) so that creations and deletions during the
        sweep cannot make an existing activity look absent.
        """
        query = self._find_query(filters)
        query["$select"] = ["id"]
        ids: set[int] = set()
        if "id" in query:
            raws: Iterable[Any] = self._skip_pages("/activities", {**query, "$sort": {"id": 1}})
        else:
            raws = self._id_pages("/activities", query)
        for raw in raws:
            record_id = _valid_id(raw)
            if record_id is None:
                self._skip("activity", raw, "no valid id")
            else:
                ids.add(record_id)
        return ids

    # --- activity types ---------------------------------------------------------

    def list_activity_types(self, **filters: Any) -> Iterator[ActivityType]:
        """Every activity type matching ``filters`` (e.g. ``name``, partial), all pages."""
        query = self._find_query(filters)
        query["$sort"] = _with_id_tiebreak(query.get("$sort"))
        for raw in self._skip_pages("/activity-types", query):
            activity_type = self._parse(parse_activity_type, raw)
            if activity_type is not None:
                yield activity_type

    def get_activity_type(self, type_id: int) -> ActivityType:
        """One activity type by id, with ``activities_count``."""
        raw = self._request("GET", f"/activity-types/{int(type_id)}", route="/activity-types/:id")
        return self._parse_one(parse_activity_type, raw)

    def create_activity_type(self, data: Mapping[str, Any]) -> ActivityType:
        """Create an activity type in the client's organization."""
        body = {"organization_id": self.organization_id, **data}
        raw = self._request("POST", "/activity-types", body=body)
        return self._parse_one(parse_activity_type, raw)

    def patch_activity_type(self, type_id: int, data: Mapping[str, Any]) -> ActivityType:
        """Set fields of an activity type to the given values."""
        raw = self._request(
            "PATCH", f"/activity-types/{int(type_id)}", body=dict(data), route="/activity-types/:id"
        )
        return self._parse_one(parse_activity_type, raw)

    def delete_activity_type(self, type_id: int) -> ActivityType:
        """Soft-delete an activity type."""
        raw = self._request(
            "DELETE", f"/activity-types/{int(type_id)}", route="/activity-types/:id"
        )
        return self._parse_one(parse_activity_type, raw)

    # --- paging -----------------------------------------------------------------

    def _find_query(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        reserved = _RESERVED.intersection(filters)
        if reserved:
            raise QueryError(f"the client sets {', '.join(sorted(reserved))} itself")
        return {"organization_id": self.organization_id, **normalize_filters(filters)}

    def _skip_pages(self, path: str, query: Mapping[str, Any]) -> Iterator[Any]:
        """Raw records of every page of every ``$in`` chunk of ``query``, by ``$skip``."""
        for chunk in split_in(query):
            skip = 0
            limit = self.page_size
            while True:
                page = self._get_page(path, {**chunk, "$limit": limit, "$skip": skip})
                yield from page.data
                skip += len(page.data)
                if not page.data or skip >= page.total:
                    break
                # Ask for no more than the server said it gives.
                limit = min(limit, page.limit) if page.limit > 0 else limit

    def _id_pages(self, path: str, query: Mapping[str, Any]) -> Iterator[Any]:
        """Raw records of every page of ``query``, keyset-paged on ``id``."""
        for chunk in split_in(query):
            last_id: int | None = None
            limit = self.page_size
            while True:
                paged = {**chunk, "$sort": {"id": 1}, "$limit": limit}
                if last_id is not None:
                    paged["id"] = {"$gt": last_id}
                page = self._get_page(path, paged)
                yield from page.data
                if not page.data or len(page.data) >= page.total:
                    break
                next_id = max((i for i in map(_valid_id, page.data) if i is not None), default=None)
                if next_id is None or (last_id is not None and next_id <= last_id):
                    raise self._stuck(path, paged)
                last_id = next_id
                limit = min(limit, page.limit) if page.limit > 0 else limit

    def _keyset_pages(self, query: Mapping[str, Any]) -> Iterator[Activity]:
        """Activities of ``query`` in ``(updated_at, id)`` order, keyset-paged."""
        cursor: tuple[str, int] | None = None
        limit = self.page_size
        while True:
            paged = {**query, "$sort": {"updated_at": 1, "id": 1}, "$limit": limit}
            if cursor is not None:
                stamp, last_id = cursor
                paged["$or"] = [
                    {"updated_at": {"$gt": stamp}},
                    {"updated_at": stamp, "id": {"$gt": last_id}},
                ]
            page = self._get_page("/activities", paged)
            for raw in page.data:
                activity = self._parse(parse_activity, raw)
                if activity is not None:
                    yield activity
            if not page.data or len(page.data) >= page.total:
                return
            next_cursor = _keyset_cursor(page.data)
            if next_cursor is None or next_cursor == cursor:
                raise self._stuck("/activities", paged)
            cursor = next_cursor
            limit = min(limit, page.limit) if page.limit > 0 else limit

    def _stuck(self, path: str, query: Mapping[str, Any]) -> ApiProtocolError:
        return ApiProtocolError(
            "cannot page past records without a valid id and updated_at",
            method="GET",
            url=f"{path}?{encode_query(query)}",
        )

    def _get_page(self, path: str, query: Mapping[str, Any]) -> _Page:
        raw = self._request("GET", path, query=query)
        url = f"{path}?{encode_query(query)}"
        if not isinstance(raw, dict):
            raise ApiProtocolError("the answer is not a page object", method="GET", url=url)
        total, limit, skip, data = (raw.get(k) for k in ("total", "limit", "skip", "data"))
        if not (_is_int(total) and _is_int(limit) and _is_int(skip) and isinstance(data, list)):
            raise ApiProtocolError(
                "the page lacks integer total/limit/skip or a data list", method="GET", url=url
            )
        return _Page(total=total, limit=limit, skip=skip, data=data)  # type: ignore[arg-type]

    # --- records ----------------------------------------------------------------

    def _skip(self, kind: str, raw: object, reason: str) -> None:
        self.skipped_records += 1
        record_id = raw.get("id") if isinstance(raw, Mapping) else None
        log.warning("apex.invalid_record", kind=kind, id=record_id, reason=reason)

    def _parse(self, parser: Callable[[object], R], raw: object) -> R | None:
        try:
            return parser(raw)
        except InvalidRecord as exc:
            self.skipped_records += 1
            log.warning("apex.invalid_record", kind=exc.kind, id=exc.record_id, reason=exc.reason)
            return None

    def _parse_one(self, parser: Callable[[object], R], raw: object) -> R:
        try:
            return parser(raw)
        except InvalidRecord as exc:
            log.warning("apex.invalid_record", kind=exc.kind, id=exc.record_id, reason=exc.reason)
            raise

    def _bulk_answer(self, raw: object, method: str, url: str) -> tuple[int, list[int]]:
        if isinstance(raw, dict):
            updated, ids = raw.get("updated"), raw.get("ids")
            if _is_int(updated) and isinstance(ids, list) and all(_is_int(i) for i in ids):
                return updated, ids  # type: ignore[return-value]
        raise ApiProtocolError("the bulk answer lacks updated/ids", method=method, url=url)

    # --- one request, with retries ------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        route: str | None = None,
    ) -> Any:
        """Send one API request (retrying per the policy) and return the decoded JSON."""
        target = f"{path}?{encode_query(query)}" if query else path
        content = (
            json.dumps(_jsonable(body), ensure_ascii=False).encode() if body is not None else None
        )
        label = f"{method} {route or path}"
        policy = self.retry
        started = time.monotonic()
        failures = 0

        def backoff(exc: Exception) -> bool | float:
            nonlocal failures
            failures += 1
            delay = retry_delay(
                exc,
                method=method,
                attempt=failures,
                policy=policy,
                remaining=policy.timeout - (time.monotonic() - started),
            )
            return False if delay is None else delay

        for attempt in stamina.retry_context(
            on=backoff,
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                return self._send_once(method, target, content, label)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    def _send_once(self, method: str, target: str, content: bytes | None, label: str) -> Any:
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self._http.build_request(method, target, content=content, headers=headers)
        url = request.url.raw_path.decode("ascii")
        path = request.url.path
        started = time.perf_counter()
        try:
            response = self._http.send(request)
        except httpx.RequestError as exc:
            ms = round((time.perf_counter() - started) * 1000, 1)
            log.debug(
                "apex.request", method=method, path=path, status=0, ms=ms, error=type(exc).__name__
            )
            self._notify(label, 0)
            reason = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
            if isinstance(exc, httpx.TransportError):
                raise ApiTransportError(reason, method=method, url=url) from exc
            # An answer arrived but could not be decoded (e.g. a broken gzip body).
            raise ApiProtocolError(reason, method=method, url=url) from exc
        ms = round((time.perf_counter() - started) * 1000, 1)
        log.debug("apex.request", method=method, path=path, status=response.status_code, ms=ms)
        self._notify(label, response.status_code)
        if response.status_code >= 400:
            raise self._http_error(response, method, url)
        if response.status_code >= 300:
            raise ApiProtocolError(
                f"unexpected redirect ({response.status_code})",
                method=method,
                url=url,
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise ApiProtocolError(
                "the answer is not valid JSON", method=method, url=url, status=response.status_code
            ) from None

    def _notify(self, label: str, status: int) -> None:
        if self._on_request is not None:
            self._on_request(label, status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _http_error(self, response: httpx.Response, method: str, url: str) -> ApiHTTPError:
        status = response.status_code
        name: str | None = None
        class_name: str | None = None
        message = response.reason_phrase or "error"
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("message"), str):
                message = body["message"]
            name = body["name"] if isinstance(body.get("name"), str) else None
            class_name = body["className"] if isinstance(body.get("className"), str) else None
        message = self._scrub(message)
        kw: dict[str, Any] = {
            "method": method,
            "url": url,
            "status": status,
            "name": name,
            "class_name": class_name,
        }
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=utcnow())
            return RateLimited(message, retry_after=retry_after, **kw)
        if status >= 500:
            return ServerError(message, **kw)
        return _ERRORS_BY_STATUS.get(status, ApiHTTPError)(message, **kw)


# --- helpers ----------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_id(raw: object) -> int | None:
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return value if _is_int(value) and value > 0 else None  # type: ignore[operator]


def _with_id_tiebreak(sort: object) -> dict[str, Any]:
    """``sort`` ending with ``id``, so ``$skip`` pages cut a total order (no repeats, no gaps)."""
    if sort is None:
        return {"id": 1}
    if not isinstance(sort, Mapping):
        raise QueryError("$sort must map field names to 1 or -1")
    return {**sort, "id": sort.get("id", 1)}


def _keyset_cursor(data: list[Any]) -> tuple[str, int] | None:
    """``(updated_at as the server wrote it, id)`` of the last record that has both valid."""
    for raw in reversed(data):
        record_id = _valid_id(raw)
        stamp = raw.get("updated_at") if isinstance(raw, Mapping) else None
        if record_id is None or not isinstance(stamp, str):
            continue
        try:
            parse_timestamp(stamp)
        except ValueError:
            continue
        return stamp, record_id
    return None


def _jsonable(value: Any) -> Any:
    """``value`` with dates, times and datetimes as the API writes them."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date | dtime):
        return value.isoformat()
    return value
