"""The daemon: scheduled target cycles and feed builds, the feed server, signals, systemd notify.

:class:`Daemon` puts the parts together: the state store, the feed server,
the schedule (:mod:`apexcal.daemon.scheduler`) whose firings
:class:`~apexcal.daemon.jobs.JobRunner` runs, and the signal loop
(:mod:`apexcal.daemon.signals`).  At start one pull fills the mirror, then
every job runs once, spread over ``sync.jitter``.

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

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import structlog

from apexcal.clock import utcnow
from apexcal.config import Config, load_config
from apexcal.daemon.jobs import JobRunner, job_specs
from apexcal.daemon.process import InFlight, exit_now, muted
from apexcal.daemon.scheduler import JobScheduler
from apexcal.daemon.signals import Wakeup, wait_for_stop
from apexcal.errors import ConfigError, SecretError
from apexcal.log import configure_from
from apexcal.metrics import Metrics
from apexcal.notify import Notifier
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# Time kept back from the shutdown bound for stopping the server and closing the store.
_SHUTDOWN_RESERVE_S = 2.0
# The API retry budget of the access check at start.
_ACCESS_CHECK_S = 5.0


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
        organization: str = "",
        reread: Callable[[], Config] | None = None,
    ) -> None:
        self._config = config
        self._config_path = config_path
        self._organization = organization
        self._reread = reread
        self._log_level = log_level
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.server_url: str | None = None
        self.clean_exit = True
        self._store: Store | None = None
        self._scheduler: JobScheduler | None = None
        self._stack = ExitStack()
        self._inflight = InFlight()
        self._jobs = JobRunner(
            config=lambda: self._config,
            store=lambda: self.store,
            metrics=self.metrics,
            notifier=self.notifier,
            inflight=self._inflight,
        )
        self._wakeup = Wakeup()

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
        return self._jobs.should_stop()

    # --- start ------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, start the feed server and the scheduler, then send ``READY=1``."""
        config = self._config
        try:
            opened = self._stack.enter_context(Store.open(config.state.url))
            self._store = opened.for_organization(self._organization)
            self._check_access(config)
            if config.server is not None:
                self._start_server(config)
            self._warn_about(config)
            self._start_scheduler(config)
        except BaseException:
            self._stack.close()
            self._wakeup.close()
            raise
        log.info(
            "daemon.ready",
            targets=[t.name for t in config.targets],
            feeds=[f.name for f in config.feeds],
            server=self.server_url,
            pid=os.getpid(),
        )
        self.notifier.ready(status=self._jobs.status_line())

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
                client.check_access()
        except (NotAuthenticated, Forbidden):
            raise
        except ApexcalError as exc:
            log.warning("daemon.api_unavailable_at_start", kind=type(exc).__name__, error=str(exc))

    def _start_server(self, config: Config) -> None:
        from apexcal.serve import StoreHealth, create_app, feeds_source, serve_in_thread
        from apexcal.serve.hooks import Debouncer, HookEndpoint

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
        debouncer = Debouncer(lambda _org: self.sync_now())
        self._stack.callback(debouncer.close)
        hooks = HookEndpoint(
            secrets=store, debouncer=debouncer, organizations=lambda: (store.organization,),
            registry=self.metrics.registry,
        )
        app = create_app(
            feeds=feeds_source(lambda: self._config.feeds),
            tokens=store,
            health=health,
            metrics_registry=self.metrics.registry,
            metrics=self.metrics,
            hooks=hooks,
            token_cache=server.token_cache.total_seconds(),
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
        scheduler = JobScheduler(config, self._jobs.run_job)
        if job_specs(config):
            threading.Thread(
                target=self._prime, args=(config,), name="apexcal-initial-pull", daemon=True
            ).start()
        else:
            self._jobs.primed.set()
        scheduler.schedule(config, first=True)
        scheduler.start()
        self._scheduler = scheduler
        self._stack.callback(scheduler.shutdown)

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
            self._jobs.primed.set()

    def sync_now(self) -> None:
        """Run every target and feed now (the sync webhook); a running one runs again when it ends."""
        scheduler = self._scheduler
        if scheduler is None or self._jobs.stopping.is_set():
            return
        for spec in job_specs(self._config):
            if not self._jobs.request_run(spec.id):
                scheduler.run_now(spec.id)

    # --- the main loop ------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`serve` to shut down (from any thread)."""
        self._wakeup.request_stop()

    def serve(self) -> int:
        """Handle signals and the watchdog until asked to stop; shut down; return the exit code.

        Must run in the main thread (it installs the signal handlers).
        """
        scheduler = self._scheduler
        with self._wakeup.installed():
            received = wait_for_stop(
                self._wakeup,
                self.notifier,
                reload=self.reload,
                alive=lambda: scheduler is not None and scheduler.alive(),
            )
        return self._shutdown(received)

    # --- reload -------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file (validated, secrets resolved); keep the old one if it is bad."""
        self.notifier.reloading()
        if self._config_path is None:
            log.info("config.reload_skipped", reason="the config was not read from a file")
            self.notifier.ready(status=self._jobs.status_line())
            return False
        log.info("config.reloading", file=str(self._config_path))
        try:
            if self._reread is not None:
                new = self._reread()
            else:
                new = load_config(self._config_path, resolve_secrets=True)
        except (ConfigError, SecretError) as exc:
            problems = [str(p) for p in getattr(exc, "problems", ())] or [str(exc)]
            log.error("config.reload_failed", file=str(self._config_path), problems=problems)
            self.notifier.ready(status="config reload failed; old config still running; "
                                + self._jobs.status_line())
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
            configure_from(new.log, self._log_level)
        self._config = new
        if self._scheduler is not None:
            self._scheduler.schedule(new, first=False)
        log.info("config.reloaded", targets=[t.name for t in new.targets],
                 feeds=[f.name for f in new.feeds])
        self.notifier.ready(status=self._jobs.status_line())
        return True

    # --- shutdown -------------------------------------------------------------------

    def _shutdown(self, signum: int) -> int:
        started = time.monotonic()
        bound = self._config.sync.shutdown_timeout.total_seconds()
        self.notifier.stopping()
        log.info("daemon.stopping", signal=signal.Signals(signum).name,
                 running_jobs=self._inflight.count, timeout_seconds=bound)
        self._jobs.stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown()
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
        self._wakeup.close()
        # Worker threads still inside a cycle would hold interpreter exit; what
        # they wrote is recorded, so the caller leaves with exit_now().
        self.clean_exit = idle
        return 0


def run(config_path: Path | None, *, log_level: str | None = None,
        on_ready: Callable[[Daemon], None] | None = None,
        config_dir: Path | None = None, org: str | None = None) -> int:
    """``apexcal run``: read the config (secrets included), start the daemon, serve until a signal.

    The config is ``config_path``, or organization ``org`` of the config
    directory ``config_dir`` (its state keyed by ``org``; SIGHUP re-reads the
    directory).  Operator errors at start (bad config, unreadable secret,
    unusable state store, a token the API refuses, a port in use) are raised
    before anything is logged, for the CLI to print as one line with exit
    code 2.
    """
    from apexcal.config.directory import load_one
    from apexcal.errors import is_operator_error
    from apexcal.log import held_back

    config, key = load_one(config_path, config_dir, org, resolve_secrets=True)
    configure_from(config.log, log_level)
    reread = None
    if config_dir is not None:
        def reread() -> Config:
            return load_one(None, config_dir, key, resolve_secrets=True)[0]
    daemon = Daemon(config, config_path=config_path or config.path, log_level=log_level,
                    organization=key, reread=reread)
    with held_back(drop_if=is_operator_error):
        daemon.start()
    if on_ready is not None:
        on_ready(daemon)
    code = daemon.serve()
    if not daemon.clean_exit:
        exit_now(code)
    return code
