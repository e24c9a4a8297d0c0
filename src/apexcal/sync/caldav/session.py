"""The HTTP session under the CalDAV adapter: one collection URL, counted requests, error mapping.

Kept apart from the protocol logic in :mod:`apexcal.sync.caldav.sink` so that
URL handling, credentials, request counting and the translation of transport
and HTTP failures into :mod:`apexcal.errors` live in one place.  Credentials
never appear in URLs, log events or exception text.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import structlog

from apexcal import USER_AGENT
from apexcal.errors import CalDAVAuthError, CalDAVError, CalDAVTransportError
from apexcal.sync.caldav import davxml
from apexcal.tls import tls_context

log = structlog.get_logger("apexcal.sync.caldav_sink")

# Back-off (seconds, jittered) before each retry of a write refused with 423 Locked.
LOCKED_BACKOFF_S = (0.03, 0.05, 0.05, 0.1, 0.1, 0.2, 0.4, 0.8, 1.6)


class DavSession:
    """HTTP to one WebDAV collection and the server it lives on.

    ``url`` is the collection URL: a trailing ``/`` is added when missing, and
    credentials in it are used when ``username`` is None, then removed from it.
    ``on_request(method, status)`` is called after every request from the
    thread that made it (status 0 when no HTTP answer came).  Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None,
        password: str | None,
        timeout: float,
        max_connections: int,
        on_request: Callable[[str, int], None] | None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            safe = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
            raise CalDAVError("not an http(s) URL", url=safe)
        if username is None and parts.username:
            username = unquote(parts.username)
            password = unquote(parts.password or "")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        self.origin = urlunsplit((parts.scheme, netloc, "", "", ""))
        self.path = davxml.normalise_href(path)
        self.url = self.url_for(self.path)
        self.username = username
        self.timeout = timeout
        self._password = password
        self._on_request = on_request
        self._lock = threading.Lock()
        self._request_count = 0
        self._client = httpx.Client(
            auth=httpx.BasicAuth(username, password or "") if username is not None else None,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            verify=tls_context(),
        )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    @property
    def request_count(self) -> int:
        """How many HTTP requests were sent (answered or not)."""
        with self._lock:
            return self._request_count

    def credentials(self) -> tuple[str, str] | None:
        """The Basic credentials in use (for a second client on the same server), or None."""
        return None if self.username is None else (self.username, self._password or "")

    def url_for(self, href: str) -> str:
        """The absolute URL of a canonical href on this server."""
        return self.origin + davxml.quote_href(href)

    def request(
        self,
        method: str,
        href: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request to a canonical href; no HTTP answer → CalDAVTransportError."""
        url = self.url_for(href)
        started = time.perf_counter()
        try:
            resp = self._client.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            self.count(method, 0)
            raise CalDAVTransportError(
                f"{method} timed out ({type(exc).__name__})", url=url
            ) from exc
        except httpx.TransportError as exc:
            self.count(method, 0)
            raise CalDAVTransportError(f"{method} failed: {exc}", url=url) from exc
        self.count(method, resp.status_code)
        log.debug(
            "caldav.request",
            method=method,
            url=url,
            status=resp.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return resp

    def write_request(
        self, method: str, href: str, *, content: bytes | None = None, headers: dict[str, str]
    ) -> httpx.Response:
        """A PUT or DELETE, retried a few times while the server answers 423 Locked.

        Xandikos refuses concurrent writes to one collection with 423 instead
        of queueing them.  Retrying is safe because every write we send is
        conditional or idempotent: had an attempt been applied, the retry would
        meet a 412 (or a 404 for a delete).
        """
        for delay in (*LOCKED_BACKOFF_S, None):
            resp = self.request(method, href, content=content, headers=headers)
            if resp.status_code != 423 or delay is None:
                return resp
            log.debug("caldav.locked_retry", method=method, href=href, delay=delay)
            time.sleep(delay * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def failure(self, resp: httpx.Response, method: str, what: str = "") -> CalDAVError:
        """The error for an answer no caller expected; 401/403 become CalDAVAuthError."""
        url = str(resp.request.url)
        status = resp.status_code
        reason = resp.reason_phrase or ""
        if status in (401, 403):
            who = f" for user {self.username!r}" if self.username else ""
            return CalDAVAuthError(
                f"{method} refused{who}: {status} {reason}".rstrip(), url=url, status=status
            )
        detail = f" ({what})" if what else ""
        return CalDAVError(
            f"{method} answered {status} {reason}{detail}".rstrip(), url=url, status=status
        )

    def count(self, method: str, status: int) -> None:
        """Record one request sent to this server (status 0 when no HTTP answer came).

        Public so that requests made through another client (python-caldav's,
        for the collection itself) are counted alike.
        """
        with self._lock:
            self._request_count += 1
        if self._on_request is not None:
            self._on_request(method, status)
