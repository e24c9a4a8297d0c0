"""One request to the AchieveApex API: retries, timing, metrics, and errors of apexcal.errors.

:class:`ApiSession` holds the HTTP connection pool (httpx) of one client.  A
request is retried per its :class:`~apexcal.apex.retry.RetryPolicy` (stamina)
and every failure becomes one exception of :mod:`apexcal.errors` naming the
method and the URL path and query — never the token: httpx errors do not
travel past this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

import httpx
import stamina
import structlog

from apexcal.apex.models import format_timestamp
from apexcal.apex.query import encode_query
from apexcal.apex.retry import RetryPolicy, may_have_applied, parse_retry_after, retry_delay
from apexcal.clock import utcnow
from apexcal.errors import (
    ApiError,
    ApiHTTPError,
    ApiProtocolError,
    ApiTransportError,
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
)

log = structlog.get_logger("apexcal.apex.client")

_ERRORS_BY_STATUS: dict[int, type[ApiHTTPError]] = {
    400: BadRequest,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
}


class ApiSession:
    """Sends API requests over ``http`` (bearer token set) and decodes the JSON answers.

    ``on_request(route, status)`` is called after every HTTP attempt (retries
    included), ``0`` as the status when no answer came.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str,
        retry: RetryPolicy,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        self._http = http
        self._token = token
        self.retry = retry
        self._on_request = on_request

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        route: str | None = None,
    ) -> Any:
        """Send one API request (retrying per the policy) and return the decoded JSON.

        The error raised when every attempt failed says in ``maybe_applied``
        whether any of them may have taken effect (a write's lost answer).
        """
        target = f"{path}?{encode_query(query)}" if query else path
        content = (
            json.dumps(_jsonable(body), ensure_ascii=False).encode() if body is not None else None
        )
        label = f"{method} {route or path}"
        policy = self.retry
        started = time.monotonic()
        failures = 0
        applied = False

        def backoff(exc: Exception) -> bool | float:
            nonlocal failures, applied
            failures += 1
            applied = applied or may_have_applied(exc)
            delay = retry_delay(
                exc,
                method=method,
                attempt=failures,
                policy=policy,
                remaining=policy.timeout - (time.monotonic() - started),
            )
            return False if delay is None else delay

        try:
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
        except ApiError as exc:
            exc.maybe_applied = applied or may_have_applied(exc)
            raise
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
