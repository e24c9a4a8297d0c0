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
from apexcal.metrics import Metrics
from apexcal.serve.endpoint import FeedEndpoint
from apexcal.serve.health import HealthSource, health_report
from apexcal.serve.library import (
    DEFAULT_MAX_AGE,
    FEED_MAP_TTL,
    FeedLibrary,
    FeedsSource,
    FeedTokenLookup,
    FileFeeds,
    Servable,
    ServedFeed,
)
from apexcal.serve.tokens import Grant

__all__ = [
    "DEFAULT_MAX_AGE", "FEED_MAP_TTL", "FeedLibrary", "FeedTokenLookup", "Grant", "Servable",
    "ServedFeed", "create_app",
]

log = structlog.get_logger("apexcal.serve")

ROBOTS_TXT = "User-agent: *\nAllow: /feeds/\nDisallow: /\n"


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})



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
        # For the server's protocol: a feed revalidation answered from memory (apexcal.serve.runner).
        self.not_modified = feeds.not_modified

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/feeds/"):
            await self.feeds(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
