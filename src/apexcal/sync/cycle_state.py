"""What one cycle of one target knows while it runs: :class:`CycleState`, the base of :class:`~apexcal.sync.cycle.Cycle`.

The cycle's steps live by concept in :mod:`apexcal.sync.cycle` (read, map,
record), :mod:`apexcal.sync.cycle_writeback` (completions sent to the CRM) and
:mod:`apexcal.sync.cycle_apply` (plan, merge, apply); this holds what they
share: the cycle's inputs, what it has found so far, and the helpers that
record errors, warnings and conflicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.config import Config, TargetConfig
from apexcal.errors import CycleCancelled
from apexcal.state import Store
from apexcal.sync import held
from apexcal.sync.apply import ObjectError
from apexcal.sync.desired import DesiredObjects
from apexcal.sync.detect import ownership
from apexcal.sync.fieldwriteback import FieldEdit, FieldEdits, FieldOutcome
from apexcal.sync.plan import Conflict, ConflictPolicy
from apexcal.sync.plan_merge import Copy
from apexcal.sync.pull import PullResult
from apexcal.sync.sink import Sink
from apexcal.sync.writeback import WritebackResult

log = structlog.get_logger("apexcal.sync.cycle")


class CycleState:
    """The state of one cycle of one target over an open sink (see :class:`~apexcal.sync.cycle.Cycle`)."""

    def __init__(
        self,
        config: Config,
        target: TargetConfig,
        store: Store,
        client: ApexClient,
        sink: Sink,
        *,
        now: datetime,
        force: bool = False,
        should_stop: Callable[[], bool] | None = None,
        cycle_id: str = "",
        pulled: PullResult | None = None,
    ) -> None:
        self.config, self.target, self.store, self.client, self.sink = (
            config, target, store, client, sink,
        )
        self.now, self.force, self.should_stop, self.cycle_id = now, force, should_stop, cycle_id
        self.pulled = pulled
        self.org = config.source.organization_id
        self.state = store.target_state(target.name)
        self.owns = ownership(config)
        self.policy = ConflictPolicy(config.sync.conflict_policy)
        self.errors: list[ObjectError] = []
        self.warnings: list[str] = []
        self.retry = False
        self.unread = False
        """Changed objects the server did not return: the sync token stays where it is."""
        self.written_back = 0
        self.conflicts_logged: set[str] = set()
        self.full = False
        self.settings = ""
        self.desired: DesiredObjects
        self.copies: dict[str, Copy] = {}
        """The server's copies of objects read this cycle, by href: what updates merge into."""
        self.held = held.Held()
        self.fields = FieldEdits(config, target, store, client, now=now)
        """Two-way edits of start/end, subject and location (``writeback_fields``)."""
        self.field_outcome = FieldOutcome()
        self.field_previews: list[FieldEdit] = []
        """For a dry run: the field writebacks pending and decided (:meth:`Cycle.preview`)."""
        self.completion_writeback = target.writeback and "done" in target.writeback_fields
        """Completions go back to the CRM (``writeback`` on, ``done`` among ``writeback_fields``)."""

    def calendar_reconcile_due(self) -> bool:
        """Whether ``[sync] caldav_reconcile_interval`` has passed since the last calendar reconcile."""
        last = self.state.last_caldav_reconcile_at
        return last is None or self.now - last >= self.config.sync.caldav_reconcile_interval

    def check_stop(self) -> None:
        """Raise :class:`CycleCancelled` when a stop was requested."""
        if self.should_stop is not None and self.should_stop():
            raise CycleCancelled("stop requested")

    def _failed(self, result: WritebackResult) -> None:
        if result.error is not None:
            self.retry = True
            self.errors.append(
                ObjectError(uid="", href="", activity_id=None, kind="writeback", reason=str(result.error))
            )

    def _log_conflicts(self, conflicts: Iterable[Conflict]) -> None:
        for c in conflicts:
            if c.uid not in self.conflicts_logged:
                self.conflicts_logged.add(c.uid)
                log.info(
                    "sync.completion_conflict", activity_id=c.activity_id, crm_done=c.crm_done,
                    calendar_done=c.calendar_done, policy=str(c.policy), winner=c.winner,
                )

    def _not_read(self, unread: Mapping[str, tuple[str, str | None]]) -> None:
        """Objects the server did not return: reported; the sync token stays, so they are read again."""
        if unread:
            self.unread = True
            self.warnings.extend(f"{href}: not read, read again next cycle: {why}" for href, (why, _) in unread.items())
