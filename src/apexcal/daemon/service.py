"""The daemon: scheduled target cycles and feed builds, the feed server, signals, systemd notify.

:class:`Daemon` puts the parts together: the state store, the feed server
(:func:`apexcal.daemon.served.feed_app`), the schedule
(:mod:`apexcal.daemon.scheduler`) whose firings
:class:`~apexcal.daemon.jobs.JobRunner` runs, and the signal loop
(:mod:`apexcal.daemon.signals`).  At start the API access is checked and one
pull fills the mirror (:mod:`apexcal.daemon.startup`), then every job runs
once, spread over ``sync.jitter``.  :func:`apexcal.daemon.main.run` is
``apexcal run``: it reads the config and runs a :class:`Daemon`.

* SIGTERM / SIGINT: ``STOPPING=1``, no new runs, in-flight cycles are asked to
  stop (the engine checks between objects and records what it wrote), then
  the feed server stops and the process exits 0 — within
  ``sync.shutdown_timeout``; a cycle still running then is abandoned (every
  write is recorded as it is accepted, so the next start converges).
* SIGHUP: ``RELOADING=1``, the config file is read again with its secrets; a
  bad one is logged (``config.reload_failed`` with every problem) and the old
  config keeps running; a good one replaces the jobs.  ``state.url`` and
  ``[server]`` need a restart (logged).  Then ``READY=1``.

With a config directory and no ``--org``, one process runs every
organization of the directory: one scheduler holding each organization's
jobs (``target:<org>/<name>``, ``feed:<org>/<name>``), each organization's
state keyed by its key in the one store, one feed server for every
organization's feeds and sync webhooks, and metrics labelled
``<org>/<name>``.  SIGHUP re-reads the directory: organizations added or
removed get their jobs added or removed, and one whose file is broken keeps
its previous config while the others take theirs
(:mod:`apexcal.daemon.organizations`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

import structlog

from apexcal.config import Config
from apexcal.daemon.jobs import JobRunner, JobSpec, job_specs
from apexcal.daemon.organizations import Reloaded, reread_file
from apexcal.daemon.process import InFlight, muted
from apexcal.daemon.scheduler import MAX_THREADS, JobScheduler
from apexcal.daemon.signals import Wakeup, wait_for_stop
from apexcal.daemon.startup import check_access, prime, warn_about
from apexcal.log import configure_from
from apexcal.metrics import Metrics
from apexcal.notify import Notifier
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# Time kept back from the shutdown bound for stopping the server and closing the store.
_SHUTDOWN_RESERVE_S = 2.0


class Daemon:
    """The long-running process of ``apexcal run`` (and of ``apexcal demo``).

    One organization (``config``, its state keyed by ``organization``) or,
    with ``organizations``, every organization of a config directory (job
    ids and metrics qualified by the organization's key).  ``reread`` gives
    the organizations to run after a SIGHUP, with the problems found (see
    :func:`~apexcal.daemon.organizations.reload_directory`).

    Use :meth:`start` (operator errors surface here, before ``READY=1``), then
    :meth:`serve` from the main thread until a signal or :meth:`request_stop`
    ends it.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        config_path: Path | None = None,
        log_level: str | None = None,
        notifier: Notifier | None = None,
        organization: str = "",
        organizations: Mapping[str, Config] | None = None,
        reread: Callable[[Mapping[str, Config]], Reloaded] | None = None,
    ) -> None:
        if (config is None) == (organizations is None):
            raise TypeError("Daemon needs config or organizations")
        self._orgs: dict[str, Config] = (
            dict(organizations) if organizations is not None
            else {organization: config}  # type: ignore[dict-item]
        )
        if not self._orgs:
            raise ValueError("Daemon needs at least one organization")
        self._qualify = organizations is not None
        self._config_path = config_path
        self._reread = reread
        self._log_level = log_level
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self._org_metrics: dict[str, Metrics] = {}
        self.server_url: str | None = None
        self.clean_exit = True
        self._root: Store | None = None
        self._scheduler: JobScheduler | None = None
        self._stack = ExitStack()
        self._inflight = InFlight()
        self._jobs = JobRunner(
            config=lambda org: self._orgs[org],
            store=self.store_of,
            metrics=self.metrics_of,
            specs=self.specs,
            notifier=self.notifier,
            inflight=self._inflight,
            registry=self.metrics.registry,
        )
        self._wakeup = Wakeup()

    # --- properties -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force (with several organizations: the first's, for what all share)."""
        return next(iter(self._orgs.values()))

    @property
    def organizations(self) -> Mapping[str, Config]:
        """The organizations in force, by key (``''``: a single config file)."""
        return self._orgs

    @property
    def store(self) -> Store:
        """The open state store, as the first organization sees it."""
        return self.store_of(next(iter(self._orgs)))

    def store_of(self, org: str) -> Store:
        """The state store as organization ``org`` sees it."""
        if self._root is None:
            raise RuntimeError("the daemon is not started")
        return self._root.for_organization(org)

    def metrics_of(self, org: str) -> Metrics:
        """The metrics organization ``org``'s jobs record (names ``<org>/<name>`` when qualified)."""
        if not self._qualify:
            return self.metrics
        found = self._org_metrics.get(org)
        if found is None:
            from apexcal.worker.metrics import OrganizationMetrics

            found = self._org_metrics[org] = OrganizationMetrics(self.metrics, org)
        return found

    def specs(self) -> list[JobSpec]:
        """Every job of every organization in force."""
        return [
            spec for key, config in self._orgs.items()
            for spec in job_specs(config, key, qualify=self._qualify)
        ]

    def should_stop(self) -> bool:
        """Whether shutdown has begun (the engine polls this between objects)."""
        return self._jobs.should_stop()

    # --- start ------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, start the feed server and the scheduler, then send ``READY=1``."""
        config = self.config
        try:
            self._root = self._stack.enter_context(Store.open(config.state.url))
            for key, one in self._orgs.items():
                check_access(key, one, self.metrics, qualify=self._qualify)
            if config.server is not None:
                self._start_server(config)
            warn_about(self.config, self.specs())
            self._start_scheduler()
        except BaseException:
            self._stack.close()
            self._wakeup.close()
            raise
        where = {"organizations": list(self._orgs)} if self._qualify else {}
        log.info(
            "daemon.ready",
            targets=[s.id.partition(":")[2] for s in self.specs() if s.kind == "target"],
            feeds=[s.id.partition(":")[2] for s in self.specs() if s.kind == "feed"],
            server=self.server_url,
            pid=os.getpid(),
            **where,
        )
        self.notifier.ready(status=self._jobs.status_line())

    def _start_server(self, config: Config) -> None:
        from apexcal.daemon.served import feed_app
        from apexcal.serve import serve_in_thread
        from apexcal.serve.hooks import Debouncer, HookEndpoint

        server = config.server
        assert server is not None
        assert self._root is not None
        debouncer = Debouncer(self.sync_now)
        self._stack.callback(debouncer.close)
        hooks = HookEndpoint(
            secrets=self.store, debouncer=debouncer, organizations=lambda: self._orgs.keys(),
            registry=self.metrics.registry,
        )
        app = feed_app(
            server, hooks, root=self._root, store=self.store, config=lambda: self.config,
            organizations=lambda: self._orgs, metrics=self.metrics, qualify=self._qualify,
        )
        # A port in use is an operator error reported as one line by the CLI;
        # uvicorn's own error line about it would be a second one.
        with muted("uvicorn.error"):
            self.server_url = self._stack.enter_context(
                serve_in_thread(app, host=server.host, port=server.port)
            )
        log.info("server.listening", url=self.server_url)

    def _start_scheduler(self) -> None:
        specs = self.specs()
        # A reload may add organizations: a directory gets the largest pool
        # (its threads start only as jobs need them).
        threads = MAX_THREADS if self._qualify else len(specs)
        scheduler = JobScheduler(self._jobs.run_job, jobs=threads)
        if specs:
            threading.Thread(
                target=self._prime, args=(dict(self._orgs),), name="apexcal-initial-pull",
                daemon=True,
            ).start()
        else:
            self._jobs.primed.set()
        scheduler.schedule(specs, first=True)
        scheduler.start()
        self._scheduler = scheduler
        self._stack.callback(scheduler.shutdown)

    def _prime(self, organizations: Mapping[str, Config]) -> None:
        prime(organizations, jobs=self._jobs, inflight=self._inflight, metrics=self.metrics,
              store_of=self.store_of, qualify=self._qualify)

    def sync_now(self, org: str | None = None) -> None:
        """Run every target and feed (of organization ``org``) now; a running one runs again when it ends.

        What the sync webhook does for the organization of its secret.
        """
        scheduler = self._scheduler
        if scheduler is None or self._jobs.stopping.is_set():
            return
        for spec in self.specs():
            if org is not None and spec.org != org:
                continue
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
        """Re-read the config (validated, secrets resolved); keep the old one where it is bad.

        ``True`` when everything read cleanly.  With a config directory, an
        organization whose file is broken keeps its old config while the
        others take their new one (``config.reload_failed`` names each file).
        """
        self.notifier.reloading()
        if self._config_path is None:
            log.info("config.reload_skipped", reason="the config was not read from a file")
            self.notifier.ready(status=self._jobs.status_line())
            return False
        log.info("config.reloading", file=str(self._config_path))
        path = self._config_path
        reread = self._reread or (lambda old: reread_file(path, old))
        reloaded = reread(self._orgs)
        if reloaded.problems:
            log.error(
                "config.reload_failed",
                file=str(self._config_path),
                files=sorted({p.file for p in reloaded.problems}),
                problems=[str(p) for p in reloaded.problems],
                **({"kept": reloaded.kept, "skipped": reloaded.skipped} if self._qualify else {}),
            )
        if reloaded.problems and reloaded.organizations == self._orgs:
            self.notifier.ready(status="config reload failed; old config still running; "
                                + self._jobs.status_line())
            return False
        self._apply(reloaded.organizations)
        self.notifier.ready(status=("config reload failed in part; " if reloaded.problems else "")
                            + self._jobs.status_line())
        return not reloaded.problems

    def _apply(self, organizations: Mapping[str, Config]) -> None:
        """Make ``organizations`` the ones in force: their jobs replace the old ones."""
        old = self.config
        first = next(iter(organizations.values()))
        kept = []
        if first.state != old.state:
            kept.append("state")
        if first.server != old.server:
            kept.append("server")
        if kept:
            log.warning("config.reload_needs_restart", keys=kept)
        update: dict[str, object] = {"state": old.state, "server": old.server}
        new = {key: config.model_copy(update=update) if kept else config
               for key, config in organizations.items()}
        if first.log != old.log:
            configure_from(first.log, self._log_level)
        added = sorted(set(new) - set(self._orgs))
        removed = sorted(set(self._orgs) - set(new))
        self._orgs = new
        if self._scheduler is not None:
            self._scheduler.schedule(self.specs(), first=False)
        where = {"added": added, "removed": removed} if self._qualify else {}
        log.info("config.reloaded",
                 targets=[s.id.partition(":")[2] for s in self.specs() if s.kind == "target"],
                 feeds=[s.id.partition(":")[2] for s in self.specs() if s.kind == "feed"],
                 **where)

    # --- shutdown -------------------------------------------------------------------

    def _shutdown(self, signum: int) -> int:
        started = time.monotonic()
        bound = max(c.sync.shutdown_timeout for c in self._orgs.values()).total_seconds()
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

