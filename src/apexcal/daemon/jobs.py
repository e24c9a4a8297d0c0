"""The scheduled jobs of the daemon: one cycle of a target, one build of a feed.

Each job is a function of the config in force when it fires, the state store
and the metrics; it never raises (a scheduler thread must survive anything),
and reports how it went as a :class:`JobOutcome`.  A target job runs
:func:`apexcal.sync.run.run_target_cycle` — pull (with the reconcile sweep
when ``sync.reconcile_interval`` is due), detect, write back, plan, apply,
record — with a cooperative ``should_stop`` the engine polls between steps and
objects.  A feed job pulls the CRM's changes itself (so a config with feeds
and no targets stays current, and a change reaches a feed within the feed's
own interval whatever the targets do), then rebuilds that feed from the
mirror; a feed whose pull failed is not rebuilt, so its build time keeps
meaning "current as of".

:class:`JobRunner` is what the scheduler calls for each firing: it waits for
the initial pull, skips a job that is backing off (:mod:`apexcal.daemon.backoff`),
runs it, remembers its health and reports the daemon's ``STATUS=`` line.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Gauge

from apexcal.apex.client import ApexClient
from apexcal.apex.retry import RetryPolicy
from apexcal.clock import utcnow
from apexcal.config import Config
from apexcal.daemon.backoff import JobHealth
from apexcal.daemon.process import InFlight
from apexcal.errors import ApexcalError, TargetBusy
from apexcal.metrics import Metrics
from apexcal.notify import Notifier
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# The API client's retries inside one job never outlast this share of the
# shutdown bound, so SIGTERM is answered in time even during an outage.
_RETRY_SHARE_OF_SHUTDOWN = 1 / 3
_RETRY_MAX_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """How one run of a job went: ``ok``, ``failed`` (back off), ``cancelled`` or ``busy``."""

    kind: str
    name: str
    result: str
    summary: str
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the job should back off."""
        return self.result == "failed"


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One scheduled job: its id, what it runs, how often, and for which organization.

    ``org`` is the organization key whose config and state the job uses
    (``''``: a single config file); ``jitter`` is its config's ``sync.jitter``.
    """

    id: str
    kind: str
    name: str
    interval: timedelta
    org: str = ""
    jitter: timedelta = timedelta(0)


def job_specs(config: Config, org: str = "", *, qualify: bool = False) -> list[JobSpec]:
    """The jobs a config asks for: one per target, one per feed.

    Ids are ``target:<name>`` and ``feed:<name>``; with ``qualify`` (one
    process running several organizations) ``target:<org>/<name>`` and
    ``feed:<org>/<name>``, so that names alike in two organizations stay apart.
    """
    prefix = f"{org}/" if qualify else ""
    jitter = config.sync.jitter
    specs = [
        JobSpec(id=f"target:{prefix}{t.name}", kind="target", name=t.name,
                interval=t.interval or config.sync.interval, org=org, jitter=jitter)
        for t in config.targets
    ]
    specs += [
        JobSpec(id=f"feed:{prefix}{f.name}", kind="feed", name=f.name,
                interval=f.interval or config.sync.interval, org=org, jitter=jitter)
        for f in config.feeds
    ]
    return specs


def retry_policy(config: Config, interval_seconds: float) -> RetryPolicy:
    """API retries for a scheduled job: bounded by the job's interval and the shutdown bound."""
    budget = min(
        interval_seconds,
        config.sync.shutdown_timeout.total_seconds() * _RETRY_SHARE_OF_SHUTDOWN,
        _RETRY_MAX_SECONDS,
    )
    budget = max(budget, 1.0)
    return RetryPolicy(
        attempts=3, timeout=budget, wait_initial=0.2, wait_max=max(0.2, budget / 3), wait_jitter=0.2
    )


def api_client(config: Config, metrics: Metrics, interval_seconds: float) -> ApexClient:
    """A fresh API client for one job run (no state shared between jobs or runs)."""
    return ApexClient.for_source(
        config.source,
        retry=retry_policy(config, interval_seconds),
        on_request=metrics.api_request,
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def run_target(
    config: Config,
    name: str,
    store: Store,
    metrics: Metrics,
    *,
    interval_seconds: float,
    should_stop: Callable[[], bool],
) -> JobOutcome:
    """One cycle of target ``name``; the engine logs the cycle's own lines and summary."""
    from apexcal.errors import CycleCancelled
    from apexcal.sync.run import run_target_cycle

    target = config.target(name)
    try:
        with api_client(config, metrics, interval_seconds) as client:
            summary = run_target_cycle(
                config, target, store, client=client, metrics=metrics, should_stop=should_stop
            )
    except CycleCancelled:
        log.info("target.cancelled", target=name)
        return JobOutcome(kind="target", name=name, result="cancelled", summary=f"{name}: stopped")
    except TargetBusy as exc:
        log.info("target.busy", target=name, error=str(exc))
        return JobOutcome(kind="target", name=name, result="busy", summary=f"{name}: busy")
    except ApexcalError as exc:
        # run_target_cycle has recorded and logged the failure (sync.cycle_failed).
        return JobOutcome(
            kind="target", name=name, result="failed",
            summary=f"{name}: failed ({type(exc).__name__})", error=_error_text(exc),
        )
    except Exception as exc:  # a bug: log it with its traceback, keep the daemon alive
        log.exception("target.crashed", target=name)
        metrics.error(name, "crash")
        store_failure(store, name, exc)
        return JobOutcome(
            kind="target", name=name, result="failed",
            summary=f"{name}: crashed ({type(exc).__name__})", error=_error_text(exc),
        )
    return JobOutcome(kind="target", name=name, result="ok", summary=summary.line())


def store_failure(store: Store, name: str, exc: BaseException) -> None:
    """Record an unexpected failure of a target in the store, if the store still answers."""
    try:
        store.record_failure(name, utcnow(), type(exc).__name__, _error_text(exc))
    except ApexcalError:
        log.warning("state.record_failure_failed", target=name)


def run_feed(
    config: Config,
    name: str,
    store: Store,
    metrics: Metrics,
    *,
    interval_seconds: float,
    now: datetime | None = None,
) -> JobOutcome:
    """Pull the CRM's changes, then rebuild feed ``name`` (and its per-user files)."""
    from apexcal.feeds import build_feed, feed_today
    from apexcal.sync.pull import pull

    feed = config.feed(name)
    when = now or utcnow()
    label = f"feed:{name}"
    with structlog.contextvars.bound_contextvars(
        feed=name, organization_id=config.source.organization_id
    ):
        try:
            with api_client(config, metrics, interval_seconds) as client:
                pulled = pull(config, store, client, now=when)
            results = build_feed(feed, config, store, today=feed_today(config))
        except (ApexcalError, OSError) as exc:
            kind = type(exc).__name__
            metrics.error(label, kind)
            log.error("feed.job_failed", kind=kind, error=_error_text(exc))
            # Kept for `apexcal status`; a store that cannot take it is already the error.
            with contextlib.suppress(ApexcalError):
                store.record_feed_failure(name, utcnow(), kind, _error_text(exc))
            return JobOutcome(
                kind="feed", name=name, result="failed",
                summary=f"feed {name}: failed ({kind})", error=_error_text(exc),
            )
        except Exception as exc:  # a bug: log it with its traceback, keep the daemon alive
            log.exception("feed.crashed")
            metrics.error(label, "crash")
            return JobOutcome(
                kind="feed", name=name, result="failed",
                summary=f"feed {name}: crashed ({type(exc).__name__})", error=_error_text(exc),
            )
    changed = 0
    for result in results:
        metrics.feed_built(result.name, utcnow(), changed=result.changed)
        changed += result.changed
    events = sum(r.count for r in results if r.name == name)
    return JobOutcome(
        kind="feed", name=name, result="ok",
        summary=f"feed {name}: ok pulled={pulled.changed} files={len(results)} changed={changed} events={events}",
    )


class JobRunner:
    """Runs the firings of every job: waits for the initial pull, backs off, runs, remembers.

    ``config``, ``store`` and ``metrics`` give an organization's config, state
    store view and metrics (``KeyError``: an organization no longer
    configured); they are read when a job fires (a reload changes the config
    of the next run, never of a running one).  ``specs`` lists every job in
    force, for the status line.
    """

    def __init__(
        self,
        *,
        config: Callable[[str], Config],
        store: Callable[[str], Store],
        metrics: Callable[[str], Metrics],
        specs: Callable[[], list[JobSpec]],
        notifier: Notifier,
        inflight: InFlight,
        registry: CollectorRegistry,
    ) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._specs = specs
        self._notifier = notifier
        self._inflight = inflight
        self.stopping = threading.Event()
        # Set once the initial pull of every organization is done; an
        # organization's jobs may start as soon as its own is (prime()).
        self.primed = threading.Event()
        self._primed_orgs: set[str] = set()
        self._lock = threading.Lock()
        self._health: dict[str, JobHealth] = {}
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._last = ""
        self._failures = Gauge(
            "apexcal_job_consecutive_failures",
            "Consecutive failed runs of a daemon job (target:<name> or feed:<name>); 0 when healthy.",
            ["job"],
            registry=registry,
        )

    def should_stop(self) -> bool:
        """Whether shutdown has begun (the engine polls this between objects)."""
        return self.stopping.is_set()

    def prime(self, org: str) -> None:
        """Organization ``org``'s initial pull is done: its jobs may start."""
        with self._lock:
            self._primed_orgs.add(org)

    def request_run(self, job_id: str) -> bool:
        """Have job ``job_id`` run once more right after its current run; ``False`` when it is not running.

        A sync asked for while a job runs may concern a change its pull has
        already missed: the job runs again instead of the request being lost.
        """
        with self._lock:
            if job_id not in self._running:
                return False
            self._again.add(job_id)
            return True

    def run_job(self, spec: JobSpec, timing: tuple[timedelta, timedelta]) -> None:
        """Run one firing of a job (in a scheduler thread), again while :meth:`request_run` asks."""
        while True:
            with self._lock:
                self._running.add(spec.id)
                self._again.discard(spec.id)
            try:
                self._run_once(spec, timing)
            finally:
                with self._lock:
                    self._running.discard(spec.id)
                    again = spec.id in self._again
                    self._again.discard(spec.id)
            if not again or self.stopping.is_set():
                return

    def _run_once(self, spec: JobSpec, timing: tuple[timedelta, timedelta]) -> None:
        """Backoff, run, remember, report."""
        interval = timing[0]
        while not self.primed.wait(0.2):
            if self.stopping.is_set():
                return
            with self._lock:
                if spec.org in self._primed_orgs:
                    break
        if self.stopping.is_set():
            return
        try:
            # A reload during the run does not change this run.
            config = self._config(spec.org)
            store, metrics = self._store(spec.org), self._metrics(spec.org)
        except KeyError:
            return  # its organization was removed by a reload
        where = {"organization": spec.org} if spec.org else {}
        with self._inflight.track(), structlog.contextvars.bound_contextvars(
            job=spec.id, organization_id=config.source.organization_id, **where
        ):
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
                    outcome = run_target(config, spec.name, store, metrics,
                                         interval_seconds=seconds, should_stop=self.should_stop)
                else:
                    outcome = run_feed(config, spec.name, store, metrics,
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
        if not self.stopping.is_set():
            self._notifier.status(self.status_line())

    def status_line(self) -> str:
        """The one-line STATUS= summary: jobs ok or failing, and the last outcome."""
        specs = self._specs()
        with self._lock:
            failing = [s.id for s in specs if self._health.get(s.id, JobHealth()).failures]
            last = self._last
        targets = sum(1 for s in specs if s.kind == "target")
        feeds = len(specs) - targets
        line = f"{targets} targets, {feeds} feeds"
        line += f"; failing: {', '.join(failing)}" if failing else "; all ok"
        return f"{line}; last: {last}" if last else line
