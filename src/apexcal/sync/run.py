"""Run one target cycle: the target's lock, its sink, its log context, its failure record.

:func:`run_target_cycle` is what the daemon, the workers and ``apexcal sync``
call; the cycle itself, step by step, is :class:`apexcal.sync.cycle.Cycle`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.clock import utcnow
from apexcal.config import Config, TargetConfig
from apexcal.errors import ApexcalError, CycleCancelled, TargetBusy
from apexcal.metrics import Metrics
from apexcal.state import Store
from apexcal.sync.caldav import default_sink_factory
from apexcal.sync.cycle import Cycle
from apexcal.sync.pull import PullResult
from apexcal.sync.sink import SinkFactory
from apexcal.sync.summary import CycleSummary

# The cycle's lines keep the logger name they always had.
log = structlog.get_logger("apexcal.sync.cycle")


def run_target_cycle(
    config: Config,
    target: TargetConfig,
    store: Store,
    *,
    client: ApexClient,
    sink_factory: SinkFactory = default_sink_factory,
    force: bool = False,
    now: datetime | None = None,
    metrics: Metrics | None = None,
    should_stop: Callable[[], bool] | None = None,
    pulled: PullResult | None = None,
) -> CycleSummary:
    """Run one :class:`Cycle` of ``target`` under its lock and return its summary.

    Objects that fail are skipped, reported in ``errors`` and retried next
    cycle.  A failure of the cycle itself (API or CalDAV unreachable, the
    mass-delete guard, the target busy in another process) is recorded in the
    store and the metrics, logged, and raised as an :class:`ApexcalError`.
    ``should_stop`` is polled between steps and objects; when it answers
    true the cycle stops with :class:`CycleCancelled` after recording what
    was written.  ``pulled``: the pull already done for this cycle (workers
    pull once per organization and interval, then sync its targets); ``None``
    pulls first.  The cycle logs ``sync.cycle_started`` once it holds the
    target's lock and ``sync.cycle`` or ``sync.cycle_failed`` when it ends,
    each with ``organization``, ``target`` and ``cycle_id``.
    """
    started = time.monotonic()
    cycle_id = uuid.uuid4().hex[:12]
    requests = [0]

    def on_request(method: str, status: int) -> None:
        requests[0] += 1
        if metrics is not None:
            metrics.caldav_request(target.name, method, status)

    with structlog.contextvars.bound_contextvars(
        organization=store.organization,
        target=target.name,
        organization_id=config.source.organization_id,
        cycle_id=cycle_id,
    ):
        try:
            with store.target_lock(target.name), sink_factory(
                target,
                concurrency=config.sync.concurrency,
                timeout=config.source.timeout.total_seconds(),
                on_request=on_request,
            ) as sink:
                log.info("sync.cycle_started")
                summary = Cycle(
                    config, target, store, client, sink, now=now or utcnow(), force=force,
                    should_stop=should_stop, cycle_id=cycle_id, pulled=pulled,
                ).run()
        except TargetBusy:
            log.info("sync.target_busy")
            raise
        except CycleCancelled:
            # What was written is recorded; the next cycle goes on from there.
            log.info("sync.cycle_cancelled", seconds=round(time.monotonic() - started, 3))
            raise
        except ApexcalError as exc:
            seconds = time.monotonic() - started
            kind = type(exc).__name__
            store.record_failure(target.name, utcnow(), kind, str(exc))
            if metrics is not None:
                metrics.cycle_failed(target.name, kind, seconds)
            log.error("sync.cycle_failed", kind=kind, error=str(exc), seconds=round(seconds, 3))
            raise
        summary = dataclasses.replace(
            summary, caldav_requests=requests[0], seconds=time.monotonic() - started
        )
        log.info("sync.cycle", **summary.as_dict(), caldav_requests=summary.caldav_requests)
        if metrics is not None:
            if summary.ok:
                metrics.cycle_finished(target.name, summary, summary.seconds)
            else:
                metrics.cycle_failed(target.name, "object_errors", summary.seconds, summary=summary)
        return summary
