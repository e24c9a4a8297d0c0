"""The daemon's schedule: APScheduler 3.x jobs made from the config's job specs.

A ``BackgroundScheduler`` with an in-memory job store, rebuilt from the job
specs of the config (or configs: one per organization of a config directory)
at start and on reload: ``target:<name>`` and ``feed:<name>`` (with several
organizations ``target:<org>/<name>`` and ``feed:<org>/<name>``) at their
``interval`` (default ``sync.interval``), each with its ``sync.jitter``,
``max_instances=1`` (a slow cycle never overlaps itself), ``coalesce=True``
(missed runs collapse into one) and a misfire grace of one interval.  New jobs
run at once, spread over ``sync.jitter``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from apexcal.daemon.jobs import JobSpec
from apexcal.daemon.process import quiet_overlap_warnings

log = structlog.get_logger("apexcal.daemon")

MAX_THREADS = 16
"""The most jobs that run at once in one process."""

RunJob = Callable[[JobSpec, tuple[timedelta, timedelta]], None]
"""What a firing calls: ``(spec, (interval, jitter))``."""


class JobScheduler:
    """The scheduler threads running ``run_job`` for every job in force.

    ``jobs`` (the number of jobs at start) sizes the thread pool: one thread
    per job, at least 2 and at most :data:`MAX_THREADS`.
    """

    def __init__(self, run_job: RunJob, *, jobs: int) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        workers = max(2, min(MAX_THREADS, jobs))
        self._run_job = run_job
        self._scheduler: Any = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._scheduler.add_listener(_overlap_skipped, EVENT_JOB_MAX_INSTANCES)
        quiet_overlap_warnings()

    def start(self) -> None:
        """Start the scheduler thread."""
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing jobs; runs in progress are not waited for."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def alive(self) -> bool:
        """Whether the scheduler is running (what the watchdog vouches for)."""
        from apscheduler.schedulers.base import STATE_RUNNING

        thread = getattr(self._scheduler, "_thread", None)
        return self._scheduler.state == STATE_RUNNING and (thread is None or thread.is_alive())

    def run_now(self, job_id: str) -> bool:
        """Fire job ``job_id`` now (its interval then counts from now); ``False`` if there is none.

        A job still running skips the firing (``max_instances=1``): see
        :meth:`JobRunner.request_run <apexcal.daemon.jobs.JobRunner.request_run>`.
        """
        from apscheduler.jobstores.base import JobLookupError

        try:
            self._scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
        except JobLookupError:
            return False
        return True

    def schedule(self, specs: list[JobSpec], *, first: bool) -> None:
        """Make the scheduler's jobs those of ``specs``.

        New jobs run at once — spread over ``sync.jitter`` so that many
        targets do not start together; jobs whose interval or jitter changed
        get the new trigger; others keep their place in the schedule.
        """
        wanted = {spec.id: spec for spec in specs}
        scheduler = self._scheduler
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
                log.info("job.removed", job=job.id)
        now = datetime.now(UTC)
        for spec in wanted.values():
            trigger = _trigger(spec.jitter, spec.interval)
            timing = (spec.interval, spec.jitter)
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
            spread = min(spec.jitter.total_seconds(), spec.interval.total_seconds() / 2)
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


def _overlap_skipped(event: Any) -> None:
    """A firing found the job's previous run still going (max_instances=1): expected, not a warning."""
    log.debug("job.still_running", job=event.job_id)


def _trigger(jitter: timedelta, interval: timedelta) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    seconds = interval.total_seconds()
    # Jitter spreads jobs; more than half an interval would reorder them.
    spread = min(jitter.total_seconds(), seconds / 2)
    return IntervalTrigger(seconds=seconds, jitter=spread or None, timezone=UTC)
