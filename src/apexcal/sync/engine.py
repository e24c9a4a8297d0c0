"""One sync cycle of one CalDAV target: pull → detect → write back → plan → apply → record.

:func:`run_target_cycle` is a self-contained function of (config, target,
store) — no process-global state — so the daemon's scheduler, ``apexcal
sync`` and a future distributed worker all run it unchanged (DESIGN §7).
It holds the target's lock for the cycle, and every step commits before the
next begins, so a crash anywhere is recovered by running again (DESIGN §1, §5):

1. **pull** the CRM's changes into the mirror, and the reconcile sweep when due
   (:mod:`apexcal.sync.pull`);
2. **detect** remote changes with the stored sync token (:mod:`apexcal.sync.detect`);
3. **plan** the activities that changed since the target's last mirror
   position plus the objects that changed remotely — everything only on the
   first cycle, or when the types, the mapping or the filter changed — so a
   cycle costs in proportion to what changed;
4. **write back** the completions the plan found (journal → bulk PATCH → mark
   sent), re-pull the written-back activities and plan again with the CRM's new
   state (no ping-pong, :mod:`apexcal.sync.writeback`);
5. **apply** with conditional writes and bounded concurrency, recording each
   object as the server accepts it, then read back the etags
   (:mod:`apexcal.sync.apply`); creates refused because the object exists are
   read and adopted in the same cycle;
6. **record** the new sync token and mirror position — only when nothing is
   left to retry, so a skipped or failed object is planned again next cycle —
   and the cycle's success or failure.

A no-change cycle costs two API requests (change feed, types) and two CalDAV
requests (PROPFIND of the collection, sync-collection REPORT).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from apexcal.apex.client import ApexClient
from apexcal.clock import utcnow
from apexcal.config import Config, TargetConfig
from apexcal.errors import ApexcalError, CycleCancelled, TargetBusy
from apexcal.geocode.policy import Geocoding
from apexcal.metrics import Metrics
from apexcal.state import Store
from apexcal.sync.apply import (
    ObjectError,
    apply_records,
    apply_writes,
    record_etags,
)
from apexcal.sync.caldav import CalDAVSink
from apexcal.sync.cycle import CycleContext, adopt_existing, ownership, refresh, scope
from apexcal.sync.desired import mapping_options, settings_hash
from apexcal.sync.detect import detect
from apexcal.sync.pull import PullResult, pull, pull_changes
from apexcal.sync.sink import Sink
from apexcal.sync.writeback import journal, send_pending

__all__ = [
    "CycleCancelled",
    "CycleSummary",
    "ObjectError",
    "PullResult",
    "SinkFactory",
    "default_sink_factory",
    "mapping_options",
    "pull",
    "run_target_cycle",
]

log = structlog.get_logger(__name__)


class SinkFactory(Protocol):
    """Builds the CalDAV session of a target (tests wrap it to inject faults)."""

    def __call__(
        self,
        target: TargetConfig,
        *,
        concurrency: int,
        timeout: float,
        on_request: Callable[[str, int], None] | None,
    ) -> Sink: ...


def default_sink_factory(
    target: TargetConfig,
    *,
    concurrency: int,
    timeout: float,
    on_request: Callable[[str, int], None] | None,
) -> CalDAVSink:
    """A :class:`CalDAVSink` for the target's URL and credentials."""
    password = target.password.get_secret_value() if target.password is not None else None
    return CalDAVSink(
        target.url,
        username=target.username,
        password=password,
        timeout=timeout,
        concurrency=concurrency,
        on_request=on_request,
    )


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """What one cycle of one target did."""

    target: str
    pulled: int
    created: int
    updated: int
    deleted: int
    adopted: int
    written_back: int
    skipped: int
    errors: tuple[ObjectError, ...]
    seconds: float
    cycle_id: str = ""
    caldav_requests: int = 0
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every object was written or is merely waiting for a re-read."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The counts as a plain mapping (the stored last summary, log fields)."""
        return {
            "pulled": self.pulled,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "adopted": self.adopted,
            "written_back": self.written_back,
            "skipped": self.skipped,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """One line for a terminal: ``name: ok created=… …``."""
        status = "ok" if self.ok else "failed"
        counts = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        first = f" first error: {self.errors[0].href}: {self.errors[0].reason}" if self.errors else ""
        return f"{self.target}: {status} {counts}{first}"


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
) -> CycleSummary:
    """Run one cycle of ``target`` (module docstring) and return its summary.

    Objects that fail are skipped, reported in ``errors`` and retried next
    cycle.  A failure of the cycle itself (API or CalDAV unreachable, the
    mass-delete guard, the target busy in another process) is recorded in the
    store and the metrics, logged, and raised as an :class:`ApexcalError`.
    ``should_stop`` is polled between steps and objects; when it answers
    true the cycle stops with :class:`CycleCancelled` after recording what
    was written.
    """
    started = time.monotonic()
    when = now or utcnow()
    cycle_id = uuid.uuid4().hex[:12]
    caldav_count = [0]

    def on_caldav(method: str, status: int) -> None:
        caldav_count[0] += 1
        if metrics is not None:
            metrics.caldav_request(target.name, method, status)

    with structlog.contextvars.bound_contextvars(
        target=target.name, organization_id=config.source.organization_id, cycle_id=cycle_id
    ):
        try:
            with store.target_lock(target.name):
                sink = sink_factory(
                    target,
                    concurrency=config.sync.concurrency,
                    timeout=config.source.timeout.total_seconds(),
                    on_request=on_caldav,
                )
                with sink:
                    summary = _run(
                        config, target, store, client, sink, when, force, should_stop,
                        cycle_id=cycle_id, started=started,
                    )
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
        summary = dataclasses.replace(summary, caldav_requests=caldav_count[0])
        log.info(
            "sync.cycle",
            **summary.as_dict(),
            caldav_requests=summary.caldav_requests,
        )
        if metrics is not None:
            if summary.ok:
                metrics.cycle_finished(target.name, summary, summary.seconds)
            else:
                metrics.cycle_failed(
                    target.name, "object_errors", summary.seconds, summary=summary
                )
        return summary


def _run(
    config: Config,
    target: TargetConfig,
    store: Store,
    client: ApexClient,
    sink: Sink,
    now: datetime,
    force: bool,
    should_stop: Callable[[], bool] | None,
    *,
    cycle_id: str,
    started: float,
) -> CycleSummary:
    org = config.source.organization_id
    state = store.target_state(target.name)

    # 1. Pull.
    pulled = pull(config, store, client, now=now, force=force)

    # The calendar: created when asked; tasks become events when it cannot hold them.
    info = sink.ensure_calendar(create=target.create, display_name=target.name)
    warnings: list[str] = []
    tasks_as = target.tasks_as
    if tasks_as == "todos" and not info.supports_vtodo:
        tasks_as = "events"
        warnings.append("calendar cannot hold VTODO: tasks are written as events")
        log.warning("sync.no_vtodo_support", url=info.url)
    options = mapping_options(config, target, tasks_as=tasks_as)
    settings = settings_hash(options, target)
    previous = (state.last_summary or {}).get("settings")
    cyc = CycleContext(
        config=config,
        target=target,
        store=store,
        client=client,
        sink=sink,
        now=now,
        force=force,
        options=options,
        should_stop=should_stop,
        types=store.types(org),
        geocoding=(
            Geocoding.for_config(config, store, network=True)
            if config.mapping.geocoder != "none"
            else None
        ),
    )
    full_replan = (
        state.mirror_seq_seen == 0
        or pulled.types_changed
        or previous != settings
    )
    cyc.check_stop()

    # 2. Detect remote changes.
    uid_filter = ownership(config)
    detected = detect(sink, store, target.name, state.sync_token, uid_filter=uid_filter)
    cyc.check_stop()

    # 3. Plan what changed (everything when the basis changed).
    mirror_top, activities, records = scope(cyc, state.mirror_seq_seen, detected, full_replan)
    remote = detected.remote
    total = store.count_records(target.name)
    the_plan = cyc.plan(cyc.desired(activities.values()), records, remote, total)
    the_plan, remote = refresh(cyc, the_plan, activities, records, remote, total)

    # 4. Write back completions, then plan again with the CRM's answer.
    written_back = 0
    errors: list[ObjectError] = []
    retry = False
    journal(store, target.name, ((w.activity_id, w.done) for w in the_plan.writebacks), now)
    for conflict in the_plan.conflicts:
        log.info(
            "sync.completion_conflict",
            activity_id=conflict.activity_id,
            crm_done=conflict.crm_done,
            calendar_done=conflict.calendar_done,
            policy=str(conflict.policy),
            winner=conflict.winner,
        )
    if store.count_pending_writebacks(target.name):
        sent = send_pending(store, client, target.name, now)
        written_back = len(sent.sent)
        if sent.error is not None:
            retry = True
            errors.append(
                ObjectError(
                    uid="",
                    href="",
                    activity_id=None,
                    kind="writeback",
                    reason=str(sent.error),
                )
            )
        if sent.sent:
            listed, changed = pull_changes(config, store, client)
            log.debug("sync.repulled", listed=listed, changed=changed)
            mirror_top, activities, records = scope(
                cyc, state.mirror_seq_seen, detected, full_replan, extra=activities
            )
            total = store.count_records(target.name)
            the_plan = cyc.plan(cyc.desired(activities.values()), records, remote, total)
            the_plan, remote = refresh(cyc, the_plan, activities, records, remote, total)
            log.debug("sync.replanned", activities=len(activities), **the_plan.counts())
    cyc.check_stop()

    # 5. Apply.
    result = apply_records(the_plan, store, target.name, records)
    result = apply_writes(the_plan, sink, store, target.name, records, result=result, should_stop=should_stop)
    if result.exists:
        adopt_existing(cyc, result, activities, records, total)
    record_etags(sink, store, result.written)

    # 6. Record.
    errors.extend(result.errors)
    retry = retry or result.retry or bool(result.errors)
    if not retry:
        token = detected.token if detected.token is not None or detected.remote.full else state.sync_token
        if token != state.sync_token:
            store.set_sync_token(target.name, token)
        if max(mirror_top, 1) != state.mirror_seq_seen:
            store.set_mirror_seq_seen(target.name, max(mirror_top, 1))
    seconds = time.monotonic() - started
    summary = CycleSummary(
        target=target.name,
        pulled=pulled.changed,
        created=result.created,
        updated=result.updated,
        deleted=result.deleted,
        adopted=result.adopted,
        written_back=written_back,
        skipped=result.skipped + cyc.skipped_unmappable,
        errors=tuple(errors),
        seconds=seconds,
        cycle_id=cycle_id,
        warnings=tuple(warnings),
    )
    if summary.ok:
        store.record_success(target.name, utcnow(), {**summary.as_dict(), "settings": settings})
    else:
        first = errors[0]
        store.record_failure(
            target.name, utcnow(), "object_errors", f"{len(errors)} object(s) failed; {first.reason}"
        )
    return summary


