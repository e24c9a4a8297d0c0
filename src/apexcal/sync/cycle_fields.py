"""The cycle's two-way edit steps: calendar edits of start/end, subject and location sent to the CRM.

:class:`FieldEditSteps` is a base of :class:`~apexcal.sync.cycle.Cycle`; the
rules live in :mod:`apexcal.sync.fieldwriteback` (journal, send, settle,
baselines) and :mod:`apexcal.sync.fieldmerge` (the per-field decision).
"""

from __future__ import annotations

from apexcal.apex.models import Activity
from apexcal.sync.apply import ObjectError
from apexcal.sync.cycle_state import CycleState
from apexcal.sync.fieldwriteback import FieldEdit
from apexcal.sync.plan import Desired, RemoteState
from apexcal.sync.scope import Scope
from apexcal.sync.writeback import into_scope


class FieldEditSteps(CycleState):
    """Two-way edits within a cycle (after completions, before mapping)."""

    def write_back_fields(self, scope: Scope, remote: RemoteState) -> None:
        """Send what earlier cycles left, decide this cycle's edits per field, send them, re-read.

        The activities re-read go into the scope, so they are mapped and
        planned as the CRM now holds them: the update written then carries
        both sides' fields (field-level merge).
        """
        name = self.target.name
        if not self.fields.active and not self.store.count_pending_field_writebacks(name):
            return
        outcome = self.field_outcome
        into_scope(self.store, name, scope, self.fields.send_pending(outcome))
        if self.fields.active and not outcome.errors:
            edits = self.fields.decide(
                records=scope.records, activities=scope.activities, remote=remote,
                desired_of=self._desired_one, outcome=outcome,
            )
            if self.fields.journal(edits):
                into_scope(self.store, name, scope, self.fields.send_pending(outcome))
        self.written_back += len(outcome.sent)
        self.warnings.extend(outcome.warnings)
        if outcome.errors:
            self.retry = True
            self.errors.extend(
                ObjectError(uid="", href="", activity_id=None, kind="writeback", reason=reason)
                for reason in outcome.errors
            )

    def preview_fields(self, scope: Scope, remote: RemoteState) -> None:
        """For a dry run: the field writebacks pending and those this cycle would decide (nothing sent)."""
        if not self.fields.active:
            return
        pending = [
            FieldEdit(uid=e.uid, activity_id=e.activity_id, patch=e.patch, agreed=e.agreed, pending=True)
            for e in self.store.pending_field_writebacks(self.target.name)
        ]
        decided = self.fields.decide(
            records=scope.records, activities=scope.activities, remote=remote,
            desired_of=self._desired_one, outcome=self.field_outcome,
        )
        self.field_previews = [*pending, *decided]

    def _desired_one(self, activity: Activity) -> Desired | None:
        found = self.desired.of([activity])
        return found[0] if found else None
