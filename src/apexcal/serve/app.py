"""The feed server: secret feed URLs with HTTP caching, ``/healthz``, ``/metrics``.

``GET``/``HEAD /feeds/<token>/<name>.ics`` serves a feed its
:class:`FeedLibrary` knows: the daemon's files (:class:`FileFeeds`, the
configured mapping) or, for ``apexcal serve``, the bodies workers keep in the
database (:mod:`apexcal.serve.database`).  The request path is only ever used
to *look up* a name, never to build a file path.  Anything not well formed, an unknown token, and a
token bound to another feed all get the same 404.  A revoked token asking for
the feed it was issued for gets 410 Gone: subscription clients (Thunderbird)
then stop polling, where on a 404 they keep showing the last copy forever.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from apexcal.errors import StoreFailure
from apexcal.feeds.tokens import hash_token
from apexcal.metrics import Metrics
from apexcal.serve.conditional import none_match, not_modified_since, wants_gzip
from apexcal.serve.files import BodyVariant, FeedFileCache, FeedVersion, HeaderBlocks
from apexcal.serve.health import HealthSource, health_report
from apexcal.serve.tokens import MISS, Grant, TokenCache, _Miss

__all__ = ["FeedLibrary", "FeedTokenLookup", "Grant", "Servable", "ServedFeed", "create_app"]

log = structlog.get_logger("apexcal.serve")

MAX_PATH_BYTES = 512
# How long the feed map FileFeeds read last answers requests on the event loop (seconds).
FEED_MAP_TTL = 1.0
DEFAULT_MAX_AGE = 300
ALLOWED_METHODS = "GET, HEAD"

# The whole raw path, before any percent-decoding: no '%', no '//', no dots
# outside the name, which may not start with a dot or contain '..'.
_FEED_PATH = re.compile(r"/feeds/(?P<token>[A-Za-z0-9_-]{22,128})/(?P<name>[A-Za-z0-9_-][A-Za-z0-9._-]{0,199})\.ics")

ROBOTS_TXT = "User-agent: *\nAllow: /feeds/\nDisallow: /\n"

# Compared against when a token is unknown, so that both miss paths do the
# same constant-time comparison.
_NO_FEED = "\x00no-feed"


@dataclass(frozen=True, kw_only=True)
class ServedFeed:
    """A feed file the server may serve, with its client cache lifetime in seconds."""

    path: Path
    max_age: int = DEFAULT_MAX_AGE


class FeedTokenLookup(Protocol):
    """Resolves a token hash to the feed it is bound to (the state store, in the daemon)."""

    def feed_token_state(self, token_hash: str) -> tuple[str, bool] | None:
        """The feed a token with this SHA-256 hex hash was issued for and whether it is revoked.

        ``None`` for a hash never issued.
        """
        ...


FeedsSource = Callable[[], Mapping[str, Path | ServedFeed]]


@dataclass(frozen=True, kw_only=True)
class Servable:
    """A feed the server may serve: its current version (``None``: not built yet) and cache lifetime."""

    version: FeedVersion | None
    max_age: int = DEFAULT_MAX_AGE


class FeedLibrary(Protocol):
    """Tokens and feed versions, wherever they live (files and the store; the database)."""

    def grant(self, token_hash: str) -> Grant | None:
        """What the token with this SHA-256 hex hash opens; ``None`` for a hash never issued."""
        ...

    def servable(self, scope: str, name: str) -> Servable | None:
        """Feed ``name`` of ``scope`` with its current version; ``None`` when there is no such feed."""
        ...

    def grant_now(self, token_hash: str) -> Grant | _Miss:
        """:meth:`grant` from memory only (no store, no blocking): :data:`MISS` when not held."""
        ...

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """:meth:`servable` from memory (and at most a ``stat``): :data:`MISS` when it must read."""
        ...


class FileFeeds:
    """A :class:`FeedLibrary` over feed files on disk and tokens in the state store (``apexcal run``).

    Token grants are held for ``token_ttl`` seconds (:class:`TokenCache`; 0
    reads the store on every request); tokens issued or revoked through the
    same store object drop them at once.
    """

    def __init__(
        self, *, feeds: FeedsSource, tokens: FeedTokenLookup, token_ttl: float = 0.0
    ) -> None:
        self._feeds = feeds
        self._tokens = tokens
        self._cache = FeedFileCache()
        self._held: tuple[float, Mapping[str, Path | ServedFeed]] = (-FEED_MAP_TTL, {})
        # The store's count of tokens issued and revoked through it (test doubles have none).
        counted: Any = tokens
        writes = getattr(type(tokens), "feed_token_writes", None)
        self._grants = TokenCache(
            self._lookup,
            ttl=token_ttl,
            writes=(lambda: counted.feed_token_writes) if writes is not None else None,
        )

    def _lookup(self, token_hash: str) -> Grant | None:
        state = self._tokens.feed_token_state(token_hash)
        return None if state is None else Grant(scope="", feed=state[0], revoked=state[1])

    def grant(self, token_hash: str) -> Grant | None:
        """The store's record of the token (held for the token lifetime)."""
        return self._grants.grant(token_hash)

    def grant_now(self, token_hash: str) -> Grant | _Miss:
        """The held record of the token, if fresh."""
        return self._grants.cached(token_hash)

    @staticmethod
    def _entry(feeds: Mapping[str, Path | ServedFeed], name: str) -> ServedFeed | None:
        entry = feeds.get(name)
        if entry is None or isinstance(entry, ServedFeed):
            return entry
        return ServedFeed(path=entry)

    def servable(self, scope: str, name: str) -> Servable | None:
        """The configured file of ``name``, read once per version (blocking: ``feeds`` may list directories)."""
        feeds = self._feeds()
        self._held = (time.monotonic(), feeds)
        served = self._entry(feeds, name)
        if served is None:
            return None
        return Servable(version=self._cache.load(served.path), max_age=served.max_age)

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """The file of ``name`` if the version read last is still the file's (one ``stat``), else :data:`MISS`.

        The feed map is the one :meth:`servable` read within the last
        ``FEED_MAP_TTL`` seconds (``feeds`` may list directories, which the
        event loop does not wait for): a feed dropped from the config is served
        at most that much longer; a name it does not hold, a missing file or a
        changed one go to :meth:`servable`.
        """
        at, feeds = self._held
        if time.monotonic() - at >= FEED_MAP_TTL:
            return MISS
        served = self._entry(feeds, name)
        if served is None:
            return MISS
        version = self._cache.current(served.path)
        if version is None:
            return MISS
        if isinstance(version, _Miss):
            return MISS
        return Servable(version=version, max_age=served.max_age)


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True, kw_only=True)
class _Found:
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
        if self._metrics is not None:
            counter = self._counters.get((feed, status))
            if counter is None:
                counter = self._metrics.feed_requests.labels(feed=feed, status=str(status))
                self._counters[feed, status] = counter
            counter.inc()
        if _debug_enabled():
            log.debug("feed.request", feed=feed, method=scope["method"], status=status)

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
        found = (
            self._library.servable_now(grant.scope, name)
            if now
            else self._library.servable(grant.scope, name)
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
            parsed = _Path(match[0], match["name"], hash_token(match["token"]))
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
        source = f"{self._public_url}{parsed.path}" if self._public_url else None
        request = _conditions(scope["headers"])
        use_gzip = self._wants_gzip(request.accept_encoding)
        served = found.version.held_variant(source)
        if served is None:  # built once per URL and version: a copy and a hash of the body
            served = await run_in_threadpool(found.version.for_source, source)
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
        view = memoryview(body)
        for start in range(0, len(body), _CHUNK):
            end = start + _CHUNK
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


def _debug_enabled() -> bool:
    """Whether structlog's configured level lets debug lines through (without binding a logger)."""
    check = getattr(structlog.get_config()["wrapper_class"], "is_enabled_for", None)
    return True if check is None else bool(check(None, logging.DEBUG))
_CHUNK = 512 * 1024


@dataclass(frozen=True, slots=True)
class _Conditions:
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


def create_app(
    *,
    feeds: FeedsSource | None = None,
    tokens: FeedTokenLookup | None = None,
    library: FeedLibrary | None = None,
    health: HealthSource,
    metrics_registry: CollectorRegistry,
    metrics: Metrics | None = None,
    public_url: str | None = None,
    hooks: ASGIApp | None = None,
    stale_is_unhealthy: bool = True,
    token_cache: float = 0.0,
) -> ASGIApp:
    """The feed server application (with ``hooks``: the sync webhook under ``/hooks/``).

    Feeds come from ``library``, or from ``feeds`` and ``tokens`` (files,
    :class:`FileFeeds`): ``feeds`` is called on every feed request and maps
    feed names (per-user feeds included, e.g. ``team-46``) to their files,
    optionally with a cache lifetime (:class:`ServedFeed`); ``tokens``
    resolves token hashes.  ``health`` feeds ``/healthz`` (503 when something
    is stale, unless ``stale_is_unhealthy`` is false, and when the store
    cannot be read); ``metrics_registry`` is exposed on ``/metrics``; when
    ``metrics`` is given, feed requests are counted in it.  With
    ``public_url``, each feed is served with a ``SOURCE`` property naming the
    very URL (and so the very token) the subscriber used.  ``token_cache``
    (seconds) is how long :class:`FileFeeds` trusts a token read from
    ``tokens`` (0: read on every request).

    ``/feeds/`` is answered by :class:`FeedEndpoint` directly, before any
    routing; everything else by a Starlette application.
    """
    if library is None:
        if feeds is None or tokens is None:
            raise TypeError("create_app needs library, or feeds and tokens")
        library = FileFeeds(feeds=feeds, tokens=tokens, token_ttl=token_cache)
    endpoint = FeedEndpoint(library=library, metrics=metrics, public_url=public_url)

    async def healthz(request: Request) -> Response:
        try:
            snapshot = await run_in_threadpool(health.snapshot)
        except StoreFailure as exc:
            log.warning("health.store_unavailable", operation=exc.operation)
            return JSONResponse(
                {"status": "unavailable", "error": "the state store cannot be read"},
                status_code=503,
                headers={"Cache-Control": "no-store"},
            )
        healthy, document = health_report(snapshot)
        return JSONResponse(
            document,
            status_code=200 if healthy or not stale_is_unhealthy else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def metrics_endpoint(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, metrics_registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def robots(request: Request) -> Response:
        return PlainTextResponse(ROBOTS_TXT)

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return PlainTextResponse(
                "Method Not Allowed", status_code=405, headers=dict(exc.headers or {})
            )
        return _not_found()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/robots.txt", robots, methods=["GET"]),
            *([Route("/hooks/{rest:path}", hooks)] if hooks is not None else []),
        ],
        exception_handlers={404: http_error, 405: http_error},
    )
    # "/healthz/" is another path, not a redirect to one.
    app.router.redirect_slashes = False
    return FeedServerApp(feeds=endpoint, rest=app)


class FeedServerApp:
    """The feed server's ASGI application: ``/feeds/`` straight to its endpoint, the rest routed."""

    def __init__(self, *, feeds: FeedEndpoint, rest: ASGIApp) -> None:
        self.feeds = feeds
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/feeds/"):
            await self.feeds(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
