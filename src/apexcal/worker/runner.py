"""One ``apexcal worker`` process: connection pools, thread pool, procrastinate worker, signals.

Connection budget of one worker with ``concurrency`` N (PostgreSQL's default
``max_connections`` is 100): the state store's pool holds up to 2N + 2
(a running cycle holds its target's advisory lock on one connection and
queries on another; tick and pull one more), procrastinate's pool up to
N + 3 (fetching, finishing, heartbeats, defers from running jobs) plus one
connection listening for new jobs: about 3N + 6 in all, 18 at the default
N = 4.

With ``[worker] metrics_listen`` (or ``--metrics-listen``) set, the worker
serves ``/metrics`` and ``/healthz`` there (:mod:`apexcal.worker.health`);
otherwise it binds nothing.

Synchronous task functions run in the event loop's default thread pool,
sized above the concurrency (N + 4) so that a job never holds its locks
while waiting for a thread.

SIGTERM or SIGINT: no new job is fetched, running cycles are asked to stop
(they stop between objects and record what they wrote), and the process
exits within ``[sync] shutdown_timeout``; whatever still runs then is
abandoned and, like the jobs of a SIGKILLed worker, finished as failed by
the reaper and run again by the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from procrastinate import App, PsycopgConnector, exceptions
from sqlalchemy.engine import make_url

from apexcal.config.directory import ConfigDir
from apexcal.daemon.process import exit_now
from apexcal.errors import UsageError
from apexcal.metrics import Metrics
from apexcal.state import Store
from apexcal.worker.health import WorkerHealth, serve_worker_endpoints
from apexcal.worker.metrics import QUEUE_QUERY
from apexcal.worker.tasks import (
    BUILD_FEED,
    PULL,
    REAPER,
    SYNC_TARGET,
    TICK,
    WorkerContext,
    register_tasks,
)

log = structlog.get_logger("apexcal.worker")

# Time kept back from the shutdown bound for closing the pools.
_SHUTDOWN_RESERVE_S = 2.0
# How often a worker serving /metrics reads the queue's depth.
_QUEUE_GAUGE_S = 15.0
# The longest pause between attempts to start again after losing the database.
_RESTART_MAX_S = 30.0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


@dataclass(frozen=True, kw_only=True)
class Pools:
    """Connection pool sizes of one worker (module docstring)."""

    store: int
    store_overflow: int
    queue: int

    @classmethod
    def for_concurrency(cls, concurrency: int) -> Pools:
        """The pools a worker running ``concurrency`` jobs at once needs."""
        return cls(store=2 * concurrency, store_overflow=2, queue=concurrency + 3)


def require_postgresql(url: str) -> None:
    """Raise :class:`UsageError` unless ``url`` is a PostgreSQL URL."""
    if make_url(url).get_backend_name() != "postgresql":
        raise UsageError(
            "apexcal worker needs PostgreSQL: set [state] url to postgresql+psycopg://… "
            "(SQLite is for apexcal run)"
        )


def make_app(url: str, queue_schema: str, *, pool_size: int = 4) -> App:
    """A procrastinate app on the queue schema of the database at ``url`` (no tasks registered)."""
    conninfo = make_url(url).set(drivername="postgresql")
    query = dict(conninfo.query)
    query.pop("options", None)  # the state's search_path; the queue has its own
    conninfo = conninfo.set(query=query)
    connector = PsycopgConnector(
        conninfo=conninfo.render_as_string(hide_password=False),
        kwargs={"options": f"-c search_path={queue_schema}", "application_name": "apexcal-worker"},
        min_size=1,
        max_size=max(pool_size, 2),
    )
    return App(connector=connector, periodic_defaults={"max_delay": 60})


def open_store(configs: ConfigDir, concurrency: int) -> Store:
    """The shared state store, migrated, with a pool sized for ``concurrency``."""
    require_postgresql(configs.state_url)
    pools = Pools.for_concurrency(concurrency)
    return Store.open(configs.state_url, pool_size=pools.store, max_overflow=pools.store_overflow)


def serve_metrics(
    listen: str, metrics: Metrics, health: WorkerHealth | None = None
) -> Callable[[], None]:
    """Serve ``/metrics`` and ``/healthz`` on ``http://LISTEN`` in a thread; return the function that stops it."""
    return serve_worker_endpoints(listen, health or WorkerHealth(), metrics.registry)


def run_worker(
    configs: ConfigDir, *, concurrency: int, metrics_listen: str | None = None
) -> int:
    """Run one worker until SIGTERM/SIGINT; return the exit code.

    ``metrics_listen`` (default ``[worker] metrics_listen``): where to serve
    ``/metrics``; nothing is bound when neither is set.
    """
    store = open_store(configs, concurrency)
    settings = configs.shared.worker
    shutdown = max(
        (config.sync.shutdown_timeout.total_seconds() for _, config in configs),
        default=30.0,
    )
    ctx = WorkerContext(configs=configs, store=store, metrics=Metrics())
    health = WorkerHealth()
    listen = metrics_listen or settings.metrics_listen
    stop_metrics = serve_metrics(listen, ctx.metrics, health) if listen else None
    app = make_app(
        configs.state_url, store.queue_schema(),
        pool_size=Pools.for_concurrency(concurrency).queue,
    )
    register_tasks(app, ctx)
    executor = ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="apexcal-job")
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    name = f"apexcal-{socket.gethostname()}-{os.getpid()}"

    def watchdog() -> None:
        # The bound holds even when a cycle ignores the stop request.
        if not finished.wait(shutdown):
            log.warning("worker.shutdown_timeout", seconds=shutdown)
            exit_now(0)

    finished = threading.Event()

    async def run_once() -> None:
        await app.run_worker_async(
            name=name,
            concurrency=concurrency,
            wait=True,
            install_signal_handlers=False,
            shutdown_graceful_timeout=max(shutdown - _SHUTDOWN_RESERVE_S, 1.0),
            update_heartbeat_interval=settings.heartbeat.total_seconds(),
            stalled_worker_timeout=settings.stalled_after.total_seconds(),
            listen_notify=True,
        )

    async def queue_gauges() -> None:
        tasks = [TICK, PULL, SYNC_TARGET, BUILD_FEED, REAPER]
        while not ctx.stopping.is_set():
            try:
                rows = await app.connector.execute_query_all_async(query=QUEUE_QUERY)
            except exceptions.ConnectorException as exc:
                rows = None  # the database is away: keep the last values
                health.database_failed(type(exc).__name__)
            if rows is not None:
                ctx.worker_metrics.queue(rows, tasks)
                health.database_answered()
            await asyncio.sleep(_QUEUE_GAUGE_S)

    async def main() -> None:
        current: list[asyncio.Task[None]] = []
        stop_requested = asyncio.Event()

        async def pause_for(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_requested.wait(), seconds)

        def on_signal(signum: int) -> None:
            if ctx.stopping.is_set():
                return
            log.info("worker.stopping", signal=signal.Signals(signum).name)
            health.set_state("stopping")
            ctx.stopping.set()
            stop_requested.set()
            threading.Thread(target=watchdog, name="apexcal-shutdown", daemon=True).start()
            for task in current:
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        async with app.open_async():
            gauges = asyncio.create_task(queue_gauges()) if stop_metrics is not None else None
            log.info(
                "worker.started", name=name, concurrency=concurrency,
                organizations=len(configs.organizations),
            )
            pause = 1.0
            while not ctx.stopping.is_set():
                current[:] = [asyncio.create_task(run_once())]
                health.set_state("running")
                began = loop.time()
                try:
                    await current[0]
                except asyncio.CancelledError:
                    break
                except exceptions.ConnectorException as exc:
                    if loop.time() - began > _RESTART_MAX_S:
                        pause = 1.0  # a long healthy run: start again quickly
                    # The database went away (restart, failover, a killed session):
                    # procrastinate stopped its worker; start another once it answers.
                    # Jobs it was running are finished by the reaper and run again.
                    if ctx.stopping.is_set():
                        break
                    log.warning("worker.restarting", error=_error_text(exc), pause=pause)
                    health.set_state("restarting")
                    health.database_failed(type(exc).__name__)
                    await pause_for(pause)
                    pause = min(pause * 2, _RESTART_MAX_S)
                    continue
                if not ctx.stopping.is_set():
                    if loop.time() - began > _RESTART_MAX_S:
                        pause = 1.0
                    # procrastinate stops its worker by itself when a side task (heartbeat,
                    # deferrer) fails, e.g. on a dropped connection: start another.
                    log.warning("worker.restarting", error="procrastinate worker stopped", pause=pause)
                    health.set_state("restarting")
                    await pause_for(pause)
                    pause = min(pause * 2, _RESTART_MAX_S)
            if gauges is not None:
                gauges.cancel()
                await asyncio.gather(gauges, return_exceptions=True)

    try:
        loop.run_until_complete(main())
    finally:
        finished.set()
        executor.shutdown(wait=False, cancel_futures=True)
        loop.close()
        store.close()
        if stop_metrics is not None:
            stop_metrics()
    log.info("worker.stopped", name=name)
    return 0
