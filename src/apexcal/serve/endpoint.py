"""The raw ASGI endpoint under ``/feeds/``: token, name, version and conditions to an answer.

The request path is only ever used to *look up* a name, never to build a
file path.  Anything not well formed, an unknown token, and a token bound to
another feed all get the same 404.  A revoked token asking for the feed it
was issued for gets 410 Gone: subscription clients (Thunderbird) then stop
polling, where on a 404 they keep showing the last copy forever.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from apexcal.errors import StoreFailure
from apexcal.feeds.tokens import hash_token
from apexcal.metrics import Metrics
from apexcal.serve.conditional import none_match, not_modified_since, wants_gzip
from apexcal.serve.files import BodyVariant, FeedVersion, HeaderBlocks
from apexcal.serve.library import FeedLibrary
from apexcal.serve.tokens import Grant, _Miss

__all__ = ["ALLOWED_METHODS", "FeedEndpoint", "answer"]

log = structlog.get_logger("apexcal.serve")

MAX_PATH_BYTES = 512
ALLOWED_METHODS = "GET, HEAD"

# The whole raw path, before any percent-decoding: no '%', no '//', no dots
# outside the name, which may not start with a dot or contain '..'.
_FEED_PATH = re.compile(r"/feeds/(?P<token>[A-Za-z0-9_-]{22,128})/(?P<name>[A-Za-z0-9_-][A-Za-z0-9._-]{0,199})\.ics")


# Compared against when a token is unknown, so that both miss paths do the
# same constant-time comparison.
_NO_FEED = "\x00no-feed"


class _Found(NamedTuple):  # one per request: a named tuple is made fastest
    name: str
    label: str
    version: FeedVersion | None
    max_age: int


# What a lookup that found no servable feed answers.
_MISSING = 404
_REVOKED = 410


class FeedEndpoint:
    """The raw ASGI endpoint under ``/feeds/``: no Request/Response objects, header blocks per version.

    A request whose token grant and feed version are in memory (the token
    cache, the version cache) is answered on the event loop with header
    blocks built once per version; anything else (a cache miss, a changed
    file, a gzip body not compressed yet) is resolved in the thread pool.
    """

    def __init__(
        self,
        *,
        library: FeedLibrary,
        metrics: Metrics | None,
        public_url: str | None = None,
    ) -> None:
        self._library = library
        self._metrics = metrics
        self._public_url = public_url.rstrip("/") if public_url else None
        self._gzip_wanted: dict[bytes, bool] = {}
        # Feed paths seen, parsed and with their token hashed (well-formed ones only).
        self._paths: dict[bytes, _Path] = {}
        # The request counter of each (feed, status) seen: labels() looked up once.
        self._counters: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        feed, status = await self._respond(scope, send)
        self._counted(feed, status, scope["method"])

    def _counted(self, feed: str, status: int, method: str) -> None:
        if self._metrics is not None:
            counter = self._counters.get((feed, status))
            if counter is None:
                counter = self._metrics.feed_requests.labels(feed=feed, status=str(status))
                self._counters[feed, status] = counter
            counter.inc()
        if _debug_enabled():
            log.debug("feed.request", feed=feed, method=method, status=status)

    def not_modified(
        self, raw_path: bytes, method: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        """The headers of a 304 for a revalidation answered from memory alone, else ``None``.

        For the server's protocol (:mod:`apexcal.serve.runner`), before any
        ASGI scope or task exists: ``raw_path`` is an origin-form target
        without its query.  Only a path this endpoint has seen, parsed and
        checked before, with the token's grant, the feed's version and its
        body variant (and gzip form, when asked for) all in memory, and
        conditions that make the answer a 304, gets the header block (as
        written on the wire, one ``name: value\\r\\n`` each); anything
        else — another status, anything to read — is ``None`` and goes the
        ASGI way, which decides exactly as this does.
        """
        parsed = self._paths.get(raw_path)
        if parsed is None or (method != b"GET" and method != b"HEAD"):
            return None
        try:
            found = self._resolve_now(parsed.token_hash, parsed.name)
        except StoreFailure:
            return None
        if not isinstance(found, _Found) or found.version is None:
            return None
        request = _conditions(headers)
        if request.if_none_match is None and request.if_modified_since is None:
            return None
        served = found.version.held_variant(parsed.source)
        if served is None:
            return None
        use_gzip = self._wants_gzip(request.accept_encoding)
        if use_gzip and not served.gzip_ready:
            return None
        blocks = served.blocks(found.name, found.max_age, found.version.last_modified)
        status, block, _ = answer(request, served, blocks, found.version.last_modified, use_gzip)
        if status != 304:
            return None
        self._counted(found.label, 304, method.decode("ascii"))
        return blocks.not_modified_gzip_raw if block is blocks.not_modified_gzip else blocks.not_modified_plain_raw

    def _resolve_now(self, token_hash: str, name: str) -> _Found | int | None:
        """:meth:`_resolve` from memory only; ``None`` when the store or the disk must be read."""
        grant = self._library.grant_now(token_hash)
        if isinstance(grant, _Miss):
            return None
        return self._decide(grant, name, now=True)

    def _resolve(self, token_hash: str, name: str) -> _Found | int:
        """The feed for the token/``name``, else the status to answer (404, 410); blocking (store, disk)."""
        found = self._decide(self._library.grant(token_hash), name, now=False)
        assert found is not None
        return found

    def _decide(self, grant: Grant | None, name: str, *, now: bool) -> _Found | int | None:
        """404 or 410 for ``grant`` asking for ``name``, else the feed (``None``: not in memory).

        410 only for a revoked token asking for the very feed it was issued
        for: a revoked token with another name is as unknown as any other.
        """
        bound, revoked = (grant.feed, grant.revoked) if grant is not None else (_NO_FEED, False)
        same = hmac.compare_digest(bound.encode(), name.encode())
        if grant is None or not same:
            return _MISSING
        if revoked:
            return _REVOKED
        served = grant.output or name  # a filtered token: its view of the feed
        found = (
            self._library.servable_now(grant.scope, served)
            if now
            else self._library.servable(grant.scope, served)
        )
        if isinstance(found, _Miss):
            return None
        if found is None:
            return _MISSING
        label = f"{grant.scope}/{name}" if grant.scope else name
        return _Found(name=name, label=label, version=found.version, max_age=found.max_age)

    async def _respond(self, scope: Scope, send: Send) -> tuple[str, int]:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        parsed = self._paths.get(raw)
        if parsed is None:
            if len(raw) > MAX_PATH_BYTES:
                return "-", await _send(send, _NOT_FOUND)
            match = _FEED_PATH.fullmatch(raw.decode("latin-1"))
            if match is None or ".." in match["name"]:
                return "-", await _send(send, _NOT_FOUND)
            source = f"{self._public_url}{match[0]}" if self._public_url else None
            parsed = _Path(match[0], match["name"], hash_token(match["token"]), source)
            if len(self._paths) >= _MAX_PATHS:
                self._paths.clear()
            self._paths[raw] = parsed
        # The decoded path must be the raw one: no percent-encoding anywhere.
        if scope["path"] != parsed.path:
            return "-", await _send(send, _NOT_FOUND)
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return "-", await _send(send, _METHOD_NOT_ALLOWED)
        name = parsed.name
        try:
            found = self._resolve_now(parsed.token_hash, name)
            if found is None:
                found = await run_in_threadpool(self._resolve, parsed.token_hash, name)
        except StoreFailure as exc:
            log.warning("feed.store_unavailable", operation=exc.operation)
            return "-", await _send(send, _UNAVAILABLE)
        if found == _REVOKED:
            return name, await _send(send, _GONE)
        if not isinstance(found, _Found):
            return "-", await _send(send, _NOT_FOUND)
        if found.version is None:
            return found.label, await _send(send, _NOT_BUILT)
        request = _conditions(scope["headers"])
        use_gzip = self._wants_gzip(request.accept_encoding)
        served = found.version.held_variant(parsed.source)
        if served is None:  # built once per URL and version: a copy and a hash of the body
            served = await run_in_threadpool(found.version.for_source, parsed.source)
        if use_gzip and not served.gzip_ready:
            await run_in_threadpool(served.gzip_body)
        blocks = served.blocks(found.name, found.max_age, found.version.last_modified)
        status, headers, body = answer(request, served, blocks, found.version.last_modified, use_gzip)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if method != "GET" or len(body) <= _CHUNK:
            await send({"type": "http.response.body", "body": body if method == "GET" else b""})
            return found.label, status
        # A large body goes in slices (no copy): each is written as the socket
        # takes it, instead of the whole body copied into the transport's buffer.
        # Between slices the event loop runs once: a write the client's reset
        # made fail has the protocol's connection_lost scheduled, and after it
        # the server drops further sends instead of writing to a closed
        # transport (asyncio logs "socket.send() raised exception." each time).
        view = memoryview(body)
        for start in range(0, len(body), _CHUNK):
            end = start + _CHUNK
            if start:
                await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": view[start:end], "more_body": end < len(body)})
        return found.label, status

    def _wants_gzip(self, accept_encoding: bytes | None) -> bool:
        if accept_encoding is None:
            return False
        known = self._gzip_wanted.get(accept_encoding)
        if known is None:
            known = wants_gzip(accept_encoding.decode("latin-1"))
            if len(self._gzip_wanted) >= _MAX_REMEMBERED:
                self._gzip_wanted.clear()
            self._gzip_wanted[accept_encoding] = known
        return known


_MAX_REMEMBERED = 256
_MAX_PATHS = 16_384


@dataclass(frozen=True, slots=True)
class _Path:
    path: str
    name: str
    token_hash: str
    # The URL named in the body's SOURCE (with a public URL), else None.
    source: str | None


def _debug_enabled() -> bool:
    """Whether structlog's configured level lets debug lines through (without binding a logger)."""
    check = getattr(structlog.get_config()["wrapper_class"], "is_enabled_for", None)
    return True if check is None else bool(check(None, logging.DEBUG))
_CHUNK = 512 * 1024


class _Conditions(NamedTuple):
    accept_encoding: bytes | None
    if_none_match: bytes | None
    if_modified_since: bytes | None


def _conditions(headers: list[tuple[bytes, bytes]]) -> _Conditions:
    """The request headers a feed answer depends on (ASGI header names are lower-case)."""
    accept_encoding = if_none_match = if_modified_since = None
    for key, value in headers:
        if key == b"accept-encoding":
            accept_encoding = value if accept_encoding is None else accept_encoding + b"," + value
        elif key == b"if-none-match":
            if_none_match = value if if_none_match is None else if_none_match + b"," + value
        elif key == b"if-modified-since":
            if_modified_since = value
    return _Conditions(accept_encoding, if_none_match, if_modified_since)


def answer(
    request: _Conditions,
    served: BodyVariant,
    blocks: HeaderBlocks,
    last_modified: datetime,
    use_gzip: bool,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, header block and body for one feed version (RFC 9110 §13.2.2 order).

    If-None-Match is evaluated when present (weak comparison; either variant's
    tag proves the client holds this content, and the 304 carries the tag it
    holds so its cache freshens the right entry); If-Modified-Since only when
    If-None-Match is absent.
    """
    etag = served.gzip_etag if use_gzip else served.etag
    if request.if_none_match is not None:
        header = request.if_none_match
        if header == blocks.etag_bytes:
            return 304, blocks.not_modified_plain, b""
        if header == blocks.gzip_etag_bytes:
            return 304, blocks.not_modified_gzip, b""
        matched = none_match(header.decode("latin-1"), (etag, served.etag, served.gzip_etag))
        if matched is not None:
            block = blocks.not_modified_gzip if matched == served.gzip_etag else blocks.not_modified_plain
            return 304, block, b""
    elif request.if_modified_since is not None and not_modified_since(
        request.if_modified_since.decode("latin-1"), last_modified
    ):
        return 304, blocks.not_modified_gzip if use_gzip else blocks.not_modified_plain, b""
    if use_gzip:
        return 200, blocks.ok_gzip, served.gzip_body()
    return 200, blocks.ok_plain, served.body


async def _send(send: Send, canned: _Canned) -> int:
    await send({"type": "http.response.start", "status": canned.status, "headers": canned.headers})
    await send({"type": "http.response.body", "body": canned.body})
    return canned.status


@dataclass(frozen=True)
class _Canned:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _canned(status: int, text: str, extra: dict[str, str]) -> _Canned:
    body = text.encode()
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
    ]
    return _Canned(status, headers, body)


_NOT_FOUND = _canned(404, "Not Found", {"Cache-Control": "no-store"})
_GONE = _canned(410, "Gone: this feed URL was revoked", {"Cache-Control": "no-store"})
_UNAVAILABLE = _canned(
    503, "Service Unavailable: the state store cannot be read",
    {"Retry-After": "30", "Cache-Control": "no-store"},
)
_METHOD_NOT_ALLOWED = _canned(405, "Method Not Allowed", {"Allow": ALLOWED_METHODS})
_NOT_BUILT = _canned(503, "feed not built yet", {"Retry-After": "60"})
