"""The worker's tasks on a procrastinate :class:`~procrastinate.App` (see the package docstring).

Locks: a ``pull`` holds ``pull:<org>``, a ``sync_target`` ``target:<org>/<name>``
and a ``build_feed`` ``feed:<org>/<name>``, each also as its queueing lock, so
at most one job of an item runs and one waits.  The store's advisory lock per
target stays the last guard.  No task is retried by procrastinate: a retry
(or procrastinate's documented stalled-job retry) collides with the queueing
lock (procrastinate #1543, #1446); a failed or reaped job is simply run again
by the next tick.  ``tick`` and ``reaper`` take no lock at all (a periodic job
with a queueing lock can crash the deferrer, #1432; a reaper holding a lock
can stall itself, #1408).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from procrastinate import App, JobContext, exceptions, jobs

from apexcal.clock import utcnow
from apexcal.config import Config
from apexcal.config.directory import ConfigDir
from apexcal.daemon.jobs import api_client, store_failure
from apexcal.errors import ApexcalError
from apexcal.metrics import Metrics
from apexcal.state import Store, TargetBusy
from apexcal.state.records import TargetState
from apexcal.worker.metrics import OrganizationMetrics, WorkerMetrics
from apexcal.worker.schedule import is_due, phase, slot

log = structlog.get_logger("apexcal.worker")

TICK = "apexcal.tick"
PULL = "apexcal.pull"
SYNC_TARGET = "apexcal.sync_target"
BUILD_FEED = "apexcal.build_feed"
REAPER = "apexcal.reaper"
PULL_LABEL = "@pull"
"""The state row of an organization's pull (``@`` keeps it apart from target and feed names)."""

_BUSY_LOCKS = """
SELECT DISTINCT lock FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND lock IS NOT NULL
"""
_OVERDUE = """
SELECT job.id, job.task_name,
       EXTRACT(EPOCH FROM (now() - started.at))::float AS age
  FROM procrastinate_jobs job
  JOIN LATERAL (SELECT max(at) AS at FROM procrastinate_events
                 WHERE job_id = job.id AND type = 'started') started ON true
 WHERE job.status = 'doing' AND started.at < now() - make_interval(secs => %(seconds)s)
"""


def pull_lock(org: str) -> str:
    """The lock (and queueing lock) of an organization's pull."""
    return f"pull:{org}"


def target_lock(org: str, target: str) -> str:
    """The lock (and queueing lock) of one target's cycles."""
    return f"target:{org}/{target}"


def feed_lock(org: str, feed: str) -> str:
    """The lock (and queueing lock) of one feed's builds."""
    return f"feed:{org}/{feed}"


def trigger_lock(org: str) -> str:
    """The queueing lock of a requested pull (it may wait beside a scheduled one)."""
    return f"trigger:{org}"


def cron(every: timedelta) -> str:
    """procrastinate's cron line for a period dividing a minute (seconds field) or an hour."""
    seconds = int(every.total_seconds())
    if seconds < 60:
        return f"* * * * * */{seconds}"
    minutes = seconds // 60
    return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"


@dataclass(kw_only=True)
class WorkerContext:
    """What the tasks of one worker process share: configs (with secrets), store, metrics."""

    configs: ConfigDir
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    stopping: threading.Event = field(default_factory=threading.Event)
    worker_metrics: WorkerMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.worker_metrics = WorkerMetrics(self.metrics)

    @property
    def settings(self) -> Any:
        """The ``[worker]`` section."""
        return self.configs.shared.worker


@dataclass(frozen=True, kw_only=True)
class DueWork:
    """What one organization has due now: target and feed names."""

    targets: tuple[str, ...]
    feeds: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.targets or self.feeds)


def due_work(
    org: str, config: Config, states: dict[str, TargetState], busy: set[str], now: datetime
) -> DueWork:
    """The targets and feeds of ``org`` due at ``now`` with no job queued or running."""

    def due(label: str, interval: timedelta) -> bool:
        state = states.get(label)
        last = None
        if state is not None:
            stamps = [s for s in (state.last_success_at, state.last_error_at) if s is not None]
            last = max(stamps) if stamps else None
        return is_due(
            now,
            interval=interval,
            offset=phase(org, interval),
            last_run=last,
            failures=state.consecutive_failures if state is not None else 0,
            last_failure=state.last_error_at if state is not None else None,
            backoff_max=config.sync.backoff_max,
        )

    targets = tuple(
        t.name
        for t in config.targets
        if target_lock(org, t.name) not in busy and due(t.name, t.interval or config.sync.interval)
    )
    feeds = tuple(
        f.name
        for f in config.feeds
        if feed_lock(org, f.name) not in busy
        and due(f"feed:{f.name}", f.interval or config.sync.interval)
    )
    return DueWork(targets=targets, feeds=feeds)


def pull_due(org: str, config: Config, state: TargetState | None, now: datetime) -> bool:
    """Whether ``org`` may pull at ``now``: once per slot of its interval, backing off after failures."""
    if state is None:
        return True
    interval = config.sync.interval
    if not state.consecutive_failures or state.last_error_at is None:
        last = state.last_success_at
        offset = phase(org, interval)
        return last is None or slot(now, interval, offset) > slot(last, interval, offset)
    return is_due(
        now,
        interval=config.sync.interval,
        offset=timedelta(0),
        last_run=state.last_error_at,
        failures=state.consecutive_failures,
        last_failure=state.last_error_at,
        backoff_max=config.sync.backoff_max,
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def register_tasks(app: App, ctx: WorkerContext) -> None:
    """Register tick, pull, sync_target, build_feed and the reaper on ``app``."""
    settings = ctx.settings

    def busy_locks() -> set[str]:
        rows = app.connector.get_sync_connector().execute_query_all(query=_BUSY_LOCKS)
        return {row["lock"] for row in rows}

    def defer(task: str, lock: str, queueing_lock: str, **kwargs: Any) -> bool:
        try:
            app.configure_task(task, lock=lock, queueing_lock=queueing_lock).defer(**kwargs)
        except exceptions.AlreadyEnqueued:
            return False
        return True

    def outcome(task: str, result: str) -> None:
        ctx.worker_metrics.jobs.labels(task, result).inc()

    def stop_check(context: JobContext, limit: timedelta) -> Callable[[], bool]:
        deadline = time.monotonic() + limit.total_seconds()

        def should_stop() -> bool:
            return ctx.stopping.is_set() or context.should_abort() or time.monotonic() > deadline

        return should_stop

    @app.periodic(cron=cron(settings.tick), periodic_id="tick")
    @app.task(name=TICK, pass_context=True)
    def tick(context: JobContext, timestamp: int) -> None:
        """Defer one pull per organization with due work."""
        now = utcnow()
        busy = busy_locks()
        deferred = 0
        for org, config in ctx.configs:
            if pull_lock(org) in busy:
                continue
            states = {s.target: s for s in ctx.store.for_organization(org).all_target_states()}
            if not pull_due(org, config, states.get(PULL_LABEL), now):
                continue
            if due_work(org, config, states, busy, now):
                deferred += defer(PULL, pull_lock(org), pull_lock(org), org=org)
        log.debug("worker.tick", job_id=context.job.id, deferred=deferred)
        outcome(TICK, "ok")

    @app.task(name=PULL, pass_context=True)
    def pull(context: JobContext, org: str, force: bool = False, target: str | None = None) -> None:
        """One pull (and reconcile when due) of ``org``, then defer its due targets and feeds."""
        from apexcal.sync.pull import pull as pull_changes

        config = ctx.configs.organizations.get(org)
        if config is None:
            log.warning("worker.unknown_organization", organization=org, job_id=context.job.id)
            return
        store = ctx.store.for_organization(org)
        metrics = OrganizationMetrics(ctx.metrics, org)
        with structlog.contextvars.bound_contextvars(organization=org, job_id=context.job.id):
            now = utcnow()
            interval = config.sync.interval.total_seconds()
            try:
                with api_client(config, metrics, interval) as client:
                    result = pull_changes(config, store, client, now=now)
            except ApexcalError as exc:
                kind = type(exc).__name__
                log.error("worker.pull_failed", kind=kind, error=_error_text(exc))
                store.record_failure(PULL_LABEL, utcnow(), kind, _error_text(exc))
                metrics.error(PULL_LABEL, kind)
                outcome(PULL, "failed")
                return
            store.record_success(
                PULL_LABEL, utcnow(), {"changed": result.changed, "deleted": result.deleted}
            )
            busy = busy_locks()
            if force:
                work = DueWork(
                    targets=tuple(t.name for t in config.targets if target in (None, t.name)),
                    feeds=tuple(f.name for f in config.feeds if target is None),
                )
            else:
                states = {s.target: s for s in store.all_target_states()}
                work = due_work(org, config, states, busy, now)
            queued = 0
            for name in work.targets:
                lock = target_lock(org, name)
                queued += defer(
                    SYNC_TARGET, lock, lock, org=org, target=name,
                    types_changed=result.types_changed,
                )
            for name in work.feeds:
                lock = feed_lock(org, name)
                queued += defer(BUILD_FEED, lock, lock, org=org, feed=name)
            log.info(
                "worker.pulled", changed=result.changed, deleted=result.deleted,
                reconciled=result.reconciled, deferred=queued,
            )
            outcome(PULL, "ok")

    @app.task(name=SYNC_TARGET, pass_context=True)
    def sync_target(
        context: JobContext, org: str, target: str, types_changed: bool = False
    ) -> None:
        """One cycle of ``target`` of ``org`` on the mirror its organization's pull refreshed."""
        from apexcal.errors import CycleCancelled
        from apexcal.sync.pull import PullResult
        from apexcal.sync.run import run_target_cycle

        config = ctx.configs.organizations.get(org)
        names = {t.name for t in config.targets} if config is not None else set()
        if config is None or target not in names:
            log.warning("worker.unknown_target", organization=org, target=target)
            return
        store = ctx.store.for_organization(org)
        metrics = OrganizationMetrics(ctx.metrics, org)
        pulled = PullResult(
            listed=0, changed=0, deleted=0, reconciled=False, types_changed=types_changed,
            seq=store.mirror_seq(config.source.organization_id),
        )
        interval = (config.target(target).interval or config.sync.interval).total_seconds()
        with structlog.contextvars.bound_contextvars(job_id=context.job.id):
            try:
                with api_client(config, metrics, interval) as client:
                    run_target_cycle(
                        config, config.target(target), store, client=client,
                        metrics=metrics,
                        should_stop=stop_check(context, settings.max_job_duration),
                        pulled=pulled,
                    )
            except CycleCancelled:
                log.info("worker.cycle_cancelled", organization=org, target=target)
                outcome(SYNC_TARGET, "cancelled")
            except TargetBusy:
                log.info("worker.target_busy", organization=org, target=target)
                outcome(SYNC_TARGET, "busy")
            except ApexcalError:
                outcome(SYNC_TARGET, "failed")  # recorded and logged by the cycle
            except Exception as exc:  # a bug: logged with its traceback; the worker lives on
                log.exception("worker.cycle_crashed", organization=org, target=target)
                store_failure(store, target, exc)
                outcome(SYNC_TARGET, "crashed")
            else:
                outcome(SYNC_TARGET, "ok")

    @app.task(name=BUILD_FEED, pass_context=True)
    def build_feed(context: JobContext, org: str, feed: str) -> None:
        """Rebuild ``feed`` of ``org`` (and its per-user feeds) from the mirror, into the database."""
        from apexcal.feeds import build_feed as build
        from apexcal.feeds import feed_today
        from apexcal.feeds.output import DatabaseOutput

        config = ctx.configs.organizations.get(org)
        if config is None or feed not in {f.name for f in config.feeds}:
            log.warning("worker.unknown_feed", organization=org, feed=feed)
            return
        store = ctx.store.for_organization(org)
        metrics = OrganizationMetrics(ctx.metrics, org)
        label = f"feed:{feed}"
        with structlog.contextvars.bound_contextvars(
            organization=org, feed=feed, job_id=context.job.id
        ):
            try:
                results = build(
                    config.feed(feed), config, store, today=feed_today(config),
                    output=DatabaseOutput(store),  # served by apexcal serve
                )
            except (ApexcalError, OSError) as exc:
                kind = type(exc).__name__
                log.error("feed.job_failed", kind=kind, error=_error_text(exc))
                metrics.error(label, kind)
                store.record_failure(label, utcnow(), kind, _error_text(exc))
                outcome(BUILD_FEED, "failed")
                return
            changed = 0
            for result in results:
                metrics.feed_built(result.name, utcnow(), changed=result.changed)
                changed += result.changed
            store.record_success(label, utcnow(), {"files": len(results), "changed": changed})
            log.info("feed.built", files=len(results), changed=changed)
            outcome(BUILD_FEED, "ok")

    @app.periodic(cron=cron(settings.reaper_interval), periodic_id="reaper")
    @app.task(name=REAPER, pass_context=True)
    async def reaper(context: JobContext, timestamp: int) -> None:
        """Finish jobs of dead workers and jobs far past the maximum duration as failed."""
        manager = app.job_manager
        own = context.job.id
        stalled = await manager.get_stalled_jobs(
            seconds_since_heartbeat=settings.stalled_after.total_seconds()
        )
        reaped = await _finish_failed(
            app, (j.id for j in stalled if j.id != own), "dead worker", ctx.worker_metrics
        )
        limit = settings.max_job_duration.total_seconds()
        rows = await app.connector.execute_query_all_async(query=_OVERDUE, seconds=limit)
        hung = [r["id"] for r in rows if r["age"] > 2 * limit and r["id"] != own]
        reaped += await _finish_failed(
            app, hung, "past twice the maximum duration", ctx.worker_metrics
        )
        for row in rows:
            if row["age"] <= 2 * limit and row["id"] != own:
                await manager.cancel_job_by_id_async(row["id"], abort=True)
        await manager.prune_stalled_workers(settings.stalled_after.total_seconds())
        await manager.delete_old_jobs(
            nb_hours=1, include_failed=True, include_cancelled=True, include_aborted=True
        )
        log.debug("worker.reaper", job_id=own, reaped=reaped, overdue=len(rows))
        outcome(REAPER, "ok")

    _ = (tick, pull, sync_target, build_feed, reaper)


async def _finish_failed(
    app: App, ids: Iterable[int | None], reason: str, metrics: WorkerMetrics
) -> int:
    count = 0
    for job_id in ids:
        if job_id is None:
            continue
        try:
            await app.job_manager.finish_job_by_id_async(
                job_id, jobs.Status.FAILED, delete_job=False
            )
        except exceptions.ConnectorException:
            continue  # finished meanwhile by its own worker
        count += 1
        metrics.reaped.labels(reason).inc()
        log.warning("worker.job_reaped", job_id=job_id, reason=reason)
    return count
