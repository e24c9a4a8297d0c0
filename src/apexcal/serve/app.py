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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
from apexcal.serve.conditional import http_date, none_match, not_modified_since, wants_gzip
from apexcal.serve.files import FeedFileCache, FeedVersion
from apexcal.serve.health import HealthSource, health_report

log = structlog.get_logger("apexcal.serve")

MAX_PATH_BYTES = 512
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
class Grant:
    """What a token opens: the feed it was issued for, in which scope, and whether revoked.

    ``scope`` is the organization key with a config directory, ``''`` for the
    daemon's single organization.
    """

    scope: str
    feed: str
    revoked: bool


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


class FileFeeds:
    """A :class:`FeedLibrary` over feed files on disk and tokens in the state store (``apexcal run``)."""

    def __init__(self, *, feeds: FeedsSource, tokens: FeedTokenLookup) -> None:
        self._feeds = feeds
        self._tokens = tokens
        self._cache = FeedFileCache()

    def grant(self, token_hash: str) -> Grant | None:
        """The store's record of the token."""
        state = self._tokens.feed_token_state(token_hash)
        return None if state is None else Grant(scope="", feed=state[0], revoked=state[1])

    def servable(self, scope: str, name: str) -> Servable | None:
        """The configured file of ``name``, read once per version."""
        entry = self._feeds().get(name)
        if entry is None:
            return None
        served = entry if isinstance(entry, ServedFeed) else ServedFeed(path=entry)
        return Servable(version=self._cache.load(served.path), max_age=served.max_age)


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})


def _gone() -> Response:
    return PlainTextResponse(
        "Gone: this feed URL was revoked", status_code=410, headers={"Cache-Control": "no-store"}
    )


def _unavailable() -> Response:
    return PlainTextResponse(
        "Service Unavailable: the state store cannot be read", status_code=503,
        headers={"Retry-After": "30", "Cache-Control": "no-store"},
    )


def _method_not_allowed() -> Response:
    return PlainTextResponse(
        "Method Not Allowed", status_code=405, headers={"Allow": ALLOWED_METHODS}
    )


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
    """The ASGI endpoint under ``/feeds/``."""

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        feed, response = await self._respond(request)
        if self._metrics is not None:
            self._metrics.feed_request(feed, response.status_code)
        log.debug("feed.request", feed=feed, method=request.method, status=response.status_code)
        await response(scope, receive, send)

    def _resolve(self, token: str, name: str) -> _Found | int:
        """The feed for ``token``/``name``, else the status to answer (404, 410); blocking (store, disk).

        410 only for a revoked token asking for the very feed it was issued
        for: a revoked token with another name is as unknown as any other.
        """
        grant = self._library.grant(hash_token(token))
        bound, revoked = (grant.feed, grant.revoked) if grant is not None else (_NO_FEED, False)
        same = hmac.compare_digest(bound.encode(), name.encode())
        if grant is None or not same:
            return _MISSING
        if revoked:
            return _REVOKED
        found = self._library.servable(grant.scope, name)
        if found is None:
            return _MISSING
        label = f"{grant.scope}/{name}" if grant.scope else name
        return _Found(name=name, label=label, version=found.version, max_age=found.max_age)

    async def _respond(self, request: Request) -> tuple[str, Response]:
        raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
        if len(raw) > MAX_PATH_BYTES:
            return "-", _not_found()
        match = _FEED_PATH.fullmatch(raw.decode("latin-1"))
        if match is None or ".." in match["name"] or request.scope["path"] != match[0]:
            return "-", _not_found()
        if request.method not in ("GET", "HEAD"):
            return "-", _method_not_allowed()
        try:
            found = await run_in_threadpool(self._resolve, match["token"], match["name"])
        except StoreFailure as exc:
            log.warning("feed.store_unavailable", operation=exc.operation)
            return "-", _unavailable()
        if found == _REVOKED:
            return match["name"], _gone()
        if not isinstance(found, _Found):
            return "-", _not_found()
        if found.version is None:
            return found.label, PlainTextResponse(
                "feed not built yet", status_code=503, headers={"Retry-After": "60"}
            )
        source = f"{self._public_url}{match[0]}" if self._public_url else None
        return found.label, await run_in_threadpool(
            _feed_response, request, found.name, found.version, found.max_age, source
        )


def _feed_response(
    request: Request, name: str, version: FeedVersion, max_age: int, source: str | None
) -> Response:
    """The 200 or 304 answer for one feed version (may compress: run in a thread)."""
    served = version.for_source(source)
    use_gzip = wants_gzip(request.headers.get("accept-encoding"))
    etag = served.gzip_etag if use_gzip else served.etag
    headers = {
        "Cache-Control": f"private, max-age={max_age}",
        "Last-Modified": http_date(version.last_modified),
        "Vary": "Accept-Encoding",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # Either variant's tag proves the client holds this content; answer
        # with the tag it holds so its cache freshens the right entry.
        matched = none_match(if_none_match, (etag, served.etag, served.gzip_etag))
        if matched is not None:
            return Response(status_code=304, headers={**headers, "ETag": matched})
    else:
        if_modified_since = request.headers.get("if-modified-since")
        if if_modified_since is not None and not_modified_since(
            if_modified_since, version.last_modified
        ):
            return Response(status_code=304, headers={**headers, "ETag": etag})
    body = served.gzip_body() if use_gzip else served.body
    headers.update(
        {
            "ETag": etag,
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": f'inline; filename="{name}.ics"',
            "Content-Length": str(len(body)),
            "X-Content-Type-Options": "nosniff",
        }
    )
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        return Response(content=b"", status_code=200, headers=headers)
    return Response(content=body, status_code=200, headers=headers)


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
) -> Starlette:
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
    very URL (and so the very token) the subscriber used.
    """
    if library is None:
        if feeds is None or tokens is None:
            raise TypeError("create_app needs library, or feeds and tokens")
        library = FileFeeds(feeds=feeds, tokens=tokens)

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
            Route(
                "/feeds/{rest:path}",
                FeedEndpoint(library=library, metrics=metrics, public_url=public_url),
            ),
            *([Route("/hooks/{rest:path}", hooks)] if hooks is not None else []),
        ],
        exception_handlers={404: http_error, 405: http_error},
    )
    # "/healthz/" is another path, not a redirect to one.
    app.router.redirect_slashes = False
    return app
