"""The daemon: scheduled target cycles and feed builds, the feed server, signals, systemd notify.

Jobs (APScheduler 3.x ``BackgroundScheduler``, in-memory job store, rebuilt
from the config at start and on reload): ``target:<name>`` per target at its
``interval`` (default ``sync.interval``) and ``feed:<name>`` per feed at its
``interval`` (default ``sync.interval``), each with ``sync.jitter``,
``max_instances=1`` (a slow cycle never overlaps itself), ``coalesce=True``
(missed runs collapse into one) and a misfire grace of one interval.  At
start one pull fills the mirror, then every job runs once, spread over
``sync.jitter``.  See :mod:`apexcal.daemon.jobs` for what a job does and
:mod:`apexcal.daemon.backoff` for how a failing job backs off.

Signals are turned into bytes on a socket pair (``signal.set_wakeup_fd``) and
handled by :meth:`Daemon.serve` in the main thread, never inside a handler:

* SIGTERM / SIGINT: ``STOPPING=1``, no new runs, in-flight cycles are asked to
  stop (the engine checks between objects and records what it wrote), then
  the feed server stops and the process exits 0 — within
  ``sync.shutdown_timeout``; a cycle still running then is abandoned (every
  write is recorded as it is accepted, so the next start converges).
* SIGHUP: ``RELOADING=1``, the config file is read again with its secrets; a
  bad one is logged (``config.reload_failed`` with every problem) and the old
  config keeps running; a good one replaces the jobs.  ``state.url`` and
  ``[server]`` need a restart (logged).  Then ``READY=1``.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Gauge

from apexcal.clock import utcnow
from apexcal.config import Config, load_config
from apexcal.daemon.backoff import JobHealth
from apexcal.daemon.jobs import JobOutcome, JobSpec, job_specs, run_feed, run_target
from apexcal.daemon.process import (
    InFlight,
    exit_now,
    ignore_signal,
    muted,
    quiet_overlap_warnings,
)
from apexcal.errors import ConfigError, SecretError
from apexcal.metrics import Metrics
from apexcal.notify import Notifier
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# Time kept back from the shutdown bound for stopping the server and closing the store.
_SHUTDOWN_RESERVE_S = 2.0
# The API retry budget of the access check at start.
_ACCESS_CHECK_S = 5.0
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def setup_logging(config: Config, level: str | None = None) -> None:
    """Configure logging from ``[log]`` (``level`` from the command line wins)."""
    from apexcal.log import configure

    fmt = config.log.format
    configure(level or config.log.level, json=None if fmt == "auto" else fmt == "json")


class Daemon:
    """The long-running process of ``apexcal run`` (and of ``apexcal demo``).

    Use :meth:`start` (operator errors surface here, before ``READY=1``), then
    :meth:`serve` from the main thread until a signal or :meth:`request_stop`
    ends it.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        log_level: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._config = config
        self._config_path = config_path
        self._log_level = log_level
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self._failures = Gauge(
            "apexcal_job_consecutive_failures",
            "Consecutive failed runs of a daemon job (target:<name> or feed:<name>); 0 when healthy.",
            ["job"],
            registry=self.metrics.registry,
        )
        self.server_url: str | None = None
        self.clean_exit = True
        self._store: Store | None = None
        self._scheduler: Any = None
        self._stack = ExitStack()
        self._stopping = threading.Event()
        self._primed = threading.Event()
        self._inflight = InFlight()
        self._lock = threading.Lock()
        self._health: dict[str, JobHealth] = {}
        self._last: str = ""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # --- properties -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force."""
        return self._config

    @property
    def store(self) -> Store:
        """The open state store."""
        if self._store is None:
            raise RuntimeError("the daemon is not started")
        return self._store

    def should_stop(self) -> bool:
        """Whether shutdown has begun (the engine polls this between objects)."""
        return self._stopping.is_set()

    # --- start ------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, start the feed server and the scheduler, then send ``READY=1``."""
        config = self._config
        try:
            self._store = self._stack.enter_context(Store.open(config.state.url))
            self._check_access(config)
            if config.server is not None:
                self._start_server(config)
            self._warn_about(config)
            self._start_scheduler(config)
        except BaseException:
            self._stack.close()
            for sock in (self._wake_r, self._wake_w):
                sock.close()
            raise
        log.info(
            "daemon.ready",
            targets=[t.name for t in config.targets],
            feeds=[f.name for f in config.feeds],
            server=self.server_url,
            pid=os.getpid(),
        )
        self.notifier.ready(status=self._status_line())

    def _check_access(self, config: Config) -> None:
        """One API request at start: a refused token is an operator error; an absent API is not.

        401/403 propagate (the CLI prints one line, exit 2).  Anything else —
        the API down, slow or failing — is logged and left to the jobs, which
        back off and recover on their own.
        """
        from apexcal.daemon.jobs import api_client
        from apexcal.errors import ApexcalError, Forbidden, NotAuthenticated

        if not job_specs(config):
            return
        try:
            with api_client(config, self.metrics, _ACCESS_CHECK_S) as client:
                next(iter(client.list_activity_types()), None)
        except (NotAuthenticated, Forbidden):
            raise
        except ApexcalError as exc:
            log.warning("daemon.api_unavailable_at_start", kind=type(exc).__name__, error=str(exc))

    def _start_server(self, config: Config) -> None:
        from apexcal.serve import StoreHealth, create_app, feeds_source, serve_in_thread

        server = config.server
        assert server is not None
        store = self.store
        health = StoreHealth(
            store,
            feeds=lambda: [f.name for f in self._config.feeds],
            targets=lambda: [t.name for t in self._config.targets],
            per_user_feeds=lambda: [f.name for f in self._config.feeds if f.per_user],
            stale_after=server.stale_after,
            started_at=utcnow(),
            clock=utcnow,
        )
        app = create_app(
            feeds=feeds_source(lambda: self._config.feeds),
            tokens=store,
            health=health,
            metrics_registry=self.metrics.registry,
            metrics=self.metrics,
        )
        # A port in use is an operator error reported as one line by the CLI;
        # uvicorn's own error line about it would be a second one.
        with muted("uvicorn.error"):
            self.server_url = self._stack.enter_context(
                serve_in_thread(app, host=server.host, port=server.port)
            )
        log.info("server.listening", url=self.server_url)

    def _warn_about(self, config: Config) -> None:
        server = config.server
        if server is None:
            return
        for spec in job_specs(config):
            if spec.interval >= server.stale_after:
                log.warning(
                    "config.interval_exceeds_stale_after",
                    job=spec.id,
                    interval_seconds=spec.interval.total_seconds(),
                    stale_after_seconds=server.stale_after.total_seconds(),
                )

    def _start_scheduler(self, config: Config) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        workers = max(2, min(16, len(config.targets) + len(config.feeds)))
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._scheduler.add_listener(self._overlap_skipped, EVENT_JOB_MAX_INSTANCES)
        quiet_overlap_warnings()
        specs = job_specs(config)
        if specs:
            threading.Thread(
                target=self._prime, args=(config,), name="apexcal-initial-pull", daemon=True
            ).start()
        else:
            self._primed.set()
        self._schedule(config, first=True)
        self._scheduler.start()
        self._stack.callback(self._shutdown_scheduler)

    def _overlap_skipped(self, event: Any) -> None:
        """A firing found the job's previous run still going (max_instances=1): expected, not a warning."""
        log.debug("job.still_running", job=event.job_id)

    def _shutdown_scheduler(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _trigger(self, config: Config, interval: timedelta) -> Any:
        from apscheduler.triggers.interval import IntervalTrigger

        seconds = interval.total_seconds()
        # Jitter spreads jobs; more than half an interval would reorder them.
        jitter = min(config.sync.jitter.total_seconds(), seconds / 2)
        return IntervalTrigger(seconds=seconds, jitter=jitter or None, timezone=UTC)

    def _schedule(self, config: Config, *, first: bool) -> None:
        """Make the scheduler's jobs those of ``config``.

        New jobs run at once — spread over ``sync.jitter`` so that many
        targets do not start together; jobs whose interval or jitter changed
        get the new trigger; others keep their place in the schedule.
        """
        wanted = {spec.id: spec for spec in job_specs(config)}
        scheduler = self._scheduler
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
                log.info("job.removed", job=job.id)
        now = datetime.now(UTC)
        for spec in wanted.values():
            trigger = self._trigger(config, spec.interval)
            timing = (spec.interval, config.sync.jitter)
            existing = scheduler.get_job(spec.id)
            grace = max(1, int(spec.interval.total_seconds()))
            if existing is not None:
                if existing.kwargs.get("timing") != timing:
                    scheduler.modify_job(spec.id, kwargs={"spec": spec, "timing": timing},
                                         misfire_grace_time=grace)
                    scheduler.reschedule_job(spec.id, trigger=trigger)
                    log.info("job.rescheduled", job=spec.id,
                             interval_seconds=spec.interval.total_seconds())
                continue
            spread = min(config.sync.jitter.total_seconds(), spec.interval.total_seconds() / 2)
            scheduler.add_job(
                self._run_job,
                trigger=trigger,
                kwargs={"spec": spec, "timing": timing},
                id=spec.id,
                name=spec.id,
                next_run_time=now + timedelta(seconds=random.uniform(0, spread)),
                misfire_grace_time=grace,
                replace_existing=True,
            )
            if not first:
                log.info("job.added", job=spec.id, interval_seconds=spec.interval.total_seconds())

    def _prime(self, config: Config) -> None:
        """Pull the CRM once before the first cycles, so they do not all pull everything at once."""
        from apexcal.daemon.jobs import api_client
        from apexcal.errors import ApexcalError
        from apexcal.sync.pull import pull

        try:
            with self._inflight.track(), structlog.contextvars.bound_contextvars(
                job="initial-pull", organization_id=config.source.organization_id
            ):
                seconds = min(s.interval for s in job_specs(config)).total_seconds()
                with api_client(config, self.metrics, seconds) as client:
                    result = pull(config, self.store, client, now=utcnow())
                log.info("daemon.initial_pull", changed=result.changed, listed=result.listed)
        except ApexcalError as exc:
            # The jobs pull for themselves, and back off if the API stays away.
            log.warning("daemon.initial_pull_failed", kind=type(exc).__name__, error=str(exc))
        except Exception:
            log.exception("daemon.initial_pull_crashed")
        finally:
            self._primed.set()

    # --- jobs -------------------------------------------------------------------

    def _run_job(self, spec: JobSpec, timing: tuple[timedelta, timedelta]) -> None:
        """Run one firing of a job (in a scheduler thread): backoff, run, remember, report."""
        interval = timing[0]
        while not self._primed.wait(0.2):
            if self._stopping.is_set():
                return
        if self._stopping.is_set():
            return
        with self._inflight.track(), structlog.contextvars.bound_contextvars(
            job=spec.id, organization_id=self._config.source.organization_id
        ):
            config = self._config  # a reload during the run does not change this run
            now = utcnow()
            with self._lock:
                health = self._health.get(spec.id, JobHealth())
            if not health.due(now):
                log.debug("job.backing_off", job=spec.id, failures=health.failures,
                          not_before=health.not_before.isoformat() if health.not_before else None)
                return
            seconds = interval.total_seconds()
            try:
                if spec.kind == "target":
                    outcome = run_target(config, spec.name, self.store, self.metrics,
                                         interval_seconds=seconds, should_stop=self.should_stop)
                else:
                    outcome = run_feed(config, spec.name, self.store, self.metrics,
                                       interval_seconds=seconds)
            except KeyError:
                return  # removed by a reload between scheduling and running
            self._remember(spec, outcome, health, config)

    def _remember(self, spec: JobSpec, outcome: JobOutcome, before: JobHealth, config: Config) -> None:
        now = utcnow()
        if outcome.failed:
            after = before.failed(now, outcome.error or outcome.summary, interval=spec.interval,
                                  ceiling=config.sync.backoff_max)
            assert after.not_before is not None
            log.warning(
                f"{spec.kind}.backoff",
                **{spec.kind: spec.name},
                failures=after.failures,
                retry_in_seconds=round((after.not_before - now).total_seconds(), 1),
            )
        elif outcome.result == "ok":
            after = before.succeeded(now)
            if before.failures:
                assert before.failing_since is not None
                log.info(
                    f"{spec.kind}.recovered",
                    **{spec.kind: spec.name},
                    failures=before.failures,
                    down_seconds=round((now - before.failing_since).total_seconds(), 1),
                )
        else:
            after = before
        with self._lock:
            self._health[spec.id] = after
            self._last = outcome.summary
        self._failures.labels(job=spec.id).set(after.failures)
        if not self._stopping.is_set():
            self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        """The one-line STATUS= summary: jobs ok or failing, and the last outcome."""
        specs = job_specs(self._config)
        with self._lock:
            failing = [s.id for s in specs if self._health.get(s.id, JobHealth()).failures]
            last = self._last
        targets = sum(1 for s in specs if s.kind == "target")
        feeds = len(specs) - targets
        line = f"{targets} targets, {feeds} feeds"
        line += f"; failing: {', '.join(failing)}" if failing else "; all ok"
        return f"{line}; last: {last}" if last else line

    # --- the main loop ------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`serve` to shut down (from any thread)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(bytes([signal.SIGTERM]))

    def serve(self) -> int:
        """Handle signals and the watchdog until asked to stop; shut down; return the exit code.

        Must run in the main thread (it installs the signal handlers).
        """
        previous = {sig: signal.signal(sig, ignore_signal) for sig in _HANDLED_SIGNALS}
        old_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            received = self._loop()
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._shutdown(received)

    def _loop(self) -> int:
        interval = self.notifier.watchdog_interval
        next_ping = time.monotonic()
        while True:
            timeout = None if interval is None else max(0.0, next_ping - time.monotonic())
            readable, _, _ = select.select([self._wake_r], [], [], timeout)
            if readable:
                for number in self._drain():
                    if number in (signal.SIGTERM, signal.SIGINT):
                        return number
                    if number == signal.SIGHUP:
                        self.reload()
            if interval is not None and time.monotonic() >= next_ping:
                if self._alive():
                    self.notifier.watchdog()
                next_ping = time.monotonic() + interval

    def _drain(self) -> list[int]:
        numbers: list[int] = []
        while True:
            try:
                chunk = self._wake_r.recv(64)
            except BlockingIOError:
                return numbers
            if not chunk:
                return numbers
            numbers.extend(chunk)

    def _alive(self) -> bool:
        """Whether the scheduler is running (what the watchdog vouches for)."""
        from apscheduler.schedulers.base import STATE_RUNNING

        scheduler = self._scheduler
        thread = getattr(scheduler, "_thread", None)
        return (
            scheduler is not None
            and scheduler.state == STATE_RUNNING
            and (thread is None or thread.is_alive())
        )

    # --- reload -------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file (validated, secrets resolved); keep the old one if it is bad."""
        self.notifier.reloading()
        if self._config_path is None:
            log.info("config.reload_skipped", reason="the config was not read from a file")
            self.notifier.ready(status=self._status_line())
            return False
        log.info("config.reloading", file=str(self._config_path))
        try:
            new = load_config(self._config_path, resolve_secrets=True)
        except (ConfigError, SecretError) as exc:
            problems = [str(p) for p in getattr(exc, "problems", ())] or [str(exc)]
            log.error("config.reload_failed", file=str(self._config_path), problems=problems)
            self.notifier.ready(status="config reload failed; old config still running; "
                                + self._status_line())
            return False
        old = self._config
        kept = []
        if new.state != old.state:
            kept.append("state")
        if new.server != old.server:
            kept.append("server")
        if kept:
            log.warning("config.reload_needs_restart", keys=kept)
            new = new.model_copy(update={"state": old.state, "server": old.server})
        if new.log != old.log:
            setup_logging(new, self._log_level)
        self._config = new
        self._schedule(new, first=False)
        log.info("config.reloaded", targets=[t.name for t in new.targets],
                 feeds=[f.name for f in new.feeds])
        self.notifier.ready(status=self._status_line())
        return True

    # --- shutdown -------------------------------------------------------------------

    def _shutdown(self, signum: int) -> int:
        started = time.monotonic()
        bound = self._config.sync.shutdown_timeout.total_seconds()
        self.notifier.stopping()
        log.info("daemon.stopping", signal=signal.Signals(signum).name,
                 running_jobs=self._inflight.count, timeout_seconds=bound)
        self._stopping.set()
        self._shutdown_scheduler()
        idle = self._inflight.wait_idle(bound - _SHUTDOWN_RESERVE_S)
        if not idle:
            log.warning("daemon.shutdown_timeout", running_jobs=self._inflight.count)
        # Stopping the server waits for responses in flight (a slow client
        # downloading a feed): bound that by what is left of the shutdown time.
        closer = threading.Thread(target=self._stack.close, name="apexcal-close", daemon=True)
        closer.start()
        closer.join(max(bound - (time.monotonic() - started), 0.5))
        if closer.is_alive():
            log.warning("daemon.close_timeout")
            idle = False
        log.info("daemon.stopped", seconds=round(time.monotonic() - started, 2))
        self.notifier.close()
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        # Worker threads still inside a cycle would hold interpreter exit; what
        # they wrote is recorded, so the caller leaves with exit_now().
        self.clean_exit = idle
        return 0


def run(config_path: Path, *, log_level: str | None = None,
        on_ready: Callable[[Daemon], None] | None = None) -> int:
    """``apexcal run``: read the config (secrets included), start the daemon, serve until a signal.

    Operator errors at start (bad config, unreadable secret, unusable state
    store, a token the API refuses, a port in use) are raised before anything
    is logged, for the CLI to print as one line with exit code 2.
    """
    from apexcal.errors import Forbidden, NotAuthenticated, UserError
    from apexcal.log import held_back

    config = load_config(config_path, resolve_secrets=True)
    setup_logging(config, log_level)
    daemon = Daemon(config, config_path=config_path, log_level=log_level)
    with held_back(drop_on=(UserError, NotAuthenticated, Forbidden)):
        daemon.start()
    if on_ready is not None:
        on_ready(daemon)
    code = daemon.serve()
    if not daemon.clean_exit:
        exit_now(code)
    return code
