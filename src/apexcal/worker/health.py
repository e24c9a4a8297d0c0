"""A worker's ``/healthz`` and ``/metrics``, served on ``[worker] metrics_listen`` only.

Healthy means: the procrastinate worker is running (not stopping, not
starting again after losing the database) and the queue answered within
:data:`DATABASE_STALE_S` (the worker reads it every 15 s for the queue
gauges).  ``/healthz`` answers 200 with a small JSON document, or 503 with
the same document saying what is wrong, so a load balancer or systemd
watchdog script can restart a worker that is stuck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from apexcal.errors import ServerStartError, UsageError

DATABASE_STALE_S = 60.0
"""The queue not answering for this long makes the worker unhealthy."""


@dataclass(frozen=True, kw_only=True)
class WorkerHealthSnapshot:
    """A worker's state at one instant (monotonic seconds)."""

    now: float
    started: float
    state: str  # "starting", "running", "restarting", "stopping"
    last_database_ok: float | None
    last_database_error: str | None


def worker_health_report(snap: WorkerHealthSnapshot) -> tuple[bool, dict[str, Any]]:
    """``(healthy, JSON document)`` for ``snap`` (pure)."""
    reference = snap.last_database_ok if snap.last_database_ok is not None else snap.started
    database_age = snap.now - reference
    database_ok = database_age <= DATABASE_STALE_S
    healthy = snap.state in ("starting", "running") and database_ok
    return healthy, {
        "status": "ok" if healthy else "unhealthy",
        "worker": snap.state,
        "database": "ok" if database_ok else "unreachable",
        "seconds_since_database_answered": round(database_age, 1),
        "last_database_error": snap.last_database_error,
    }


class WorkerHealth:
    """What the worker's loop reports about itself; read by ``/healthz`` (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._state = "starting"
        self._db_ok: float | None = None
        self._db_error: str | None = None

    def set_state(self, state: str) -> None:
        """``running``, ``restarting`` or ``stopping``."""
        with self._lock:
            self._state = state

    def database_answered(self) -> None:
        """The queue answered a query just now."""
        with self._lock:
            self._db_ok = self._clock()
            self._db_error = None

    def database_failed(self, kind: str) -> None:
        """A query to the queue failed (``kind``: the error's class name)."""
        with self._lock:
            self._db_error = kind

    def snapshot(self) -> WorkerHealthSnapshot:
        """The state now."""
        with self._lock:
            return WorkerHealthSnapshot(
                now=self._clock(), started=self._started, state=self._state,
                last_database_ok=self._db_ok, last_database_error=self._db_error,
            )


def create_worker_app(health: WorkerHealth, registry: CollectorRegistry) -> Starlette:
    """``/healthz`` and ``/metrics`` of one worker; anything else 404."""

    async def healthz(request: Request) -> Response:
        healthy, document = worker_health_report(health.snapshot())
        return JSONResponse(
            document, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"}
        )

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("Not Found", status_code=404)

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])],
        exception_handlers={404: not_found},
    )
    app.router.redirect_slashes = False
    return app


def serve_worker_endpoints(
    listen: str, health: WorkerHealth, registry: CollectorRegistry
) -> Callable[[], None]:
    """Serve ``/healthz`` and ``/metrics`` on ``listen`` (``HOST:PORT``) in a thread; return the stop function.

    A port in use is an operator error (:class:`UsageError` naming the key).
    """
    from apexcal.daemon.process import muted
    from apexcal.serve.runner import serve_in_thread

    host, _, port = listen.rpartition(":")
    stack = ExitStack()
    try:
        # uvicorn's own line about a port in use would repeat the operator error.
        with muted("uvicorn.error"):
            stack.enter_context(
                serve_in_thread(
                    create_worker_app(health, registry), host=host.strip("[]"), port=int(port)
                )
            )
    except ServerStartError as exc:
        stack.close()
        raise UsageError(f"[worker] metrics_listen {listen}: {exc}") from exc
    return stack.close
