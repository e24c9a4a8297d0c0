"""Field-level merge of calendar edits and CRM changes: which edited fields go back to the CRM.

Pure.  For one object a target records, per editable field
(:data:`~apexcal.ical.editable.EDITABLE`), the hash of the value last
pushed or agreed (the *baseline*, kept in the object record).  In a cycle
that reads the object, three hashes per field are known: the baseline,
the server's copy (*remote*) and our rendering of the CRM's current state
(*crm*).  Then, field by field:

* the calendar changed it when remote differs from the baseline; the CRM
  changed it when crm differs from the baseline;
* only the calendar changed it → written back (when the target's
  ``writeback_fields`` has it), else left for the CRM's next change to
  revert, as any edit of an owned property;
* only the CRM changed it → nothing here: the update apexcal writes
  anyway carries it;
* both, to the same value → agreement (nothing sent);
* both, to different values → the conflict policy decides for this field
  alone (``crm-wins``, ``calendar-wins``, ``newest-wins`` by the remote
  LAST-MODIFIED against the activity's ``updated_at``);
* fields changed on different sides are both kept: the CRM takes the
  calendar's fields, and the update written after the CRM's answer carries
  the CRM's (field-level, not object-level).

No baseline (a record from before field writeback, or never pushed since):
no remote change is known and nothing is written back.  A timing the
activity cannot hold (:mod:`apexcal.ical.editable`, "problem") is never
written back; it is reported once per distinct problem.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from apexcal.ical.editable import EDITABLE, TIMING
from apexcal.sync.writeback_policy import ConflictPolicy, conflict_winner

WARNED_KEY = "warned"
"""Key of a baseline mapping holding the hash of the last timing problem reported."""


@dataclass(frozen=True, kw_only=True)
class FieldView:
    """What one cycle knows of one object's editable fields (hashes per field)."""

    baseline: Mapping[str, str] | None
    remote: Mapping[str, str]
    crm: Mapping[str, str]
    problem: bool = False
    """The remote timing cannot be written as an activity (``start``/``end`` never go back)."""
    crm_updated_at: datetime | None = None
    remote_modified: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class FieldConflict:
    """Both sides changed ``field`` to different values; ``winner`` took it."""

    field: str
    winner: str


@dataclass(frozen=True, kw_only=True)
class FieldDecision:
    """The outcome for one object."""

    writeback: tuple[str, ...] = ()
    """Fields whose calendar value goes to the CRM, in :data:`EDITABLE` order."""
    conflicts: tuple[FieldConflict, ...] = ()
    agreed: tuple[str, ...] = ()
    """Fields both sides changed to the same value: the baseline takes it, nothing is sent."""
    blocked: tuple[str, ...] = ()
    """Timing fields changed in the calendar to something the activity cannot hold."""


def decide_fields(
    view: FieldView, *, enabled: Collection[str], policy: ConflictPolicy
) -> FieldDecision:
    """Settle one object's editable fields (rules in the module docstring).

    A pure function of its inputs: after the CRM took the written-back fields
    and the object was written again, the same call finds nothing to send.
    """
    base = view.baseline
    if base is None:
        return FieldDecision()
    writeback: list[str] = []
    conflicts: list[FieldConflict] = []
    agreed: list[str] = []
    blocked: list[str] = []
    for name in EDITABLE:
        if name not in enabled or name not in base:
            continue
        remote, crm, was = view.remote.get(name), view.crm.get(name), base[name]
        if remote is None or crm is None or remote == was:
            continue
        if name in TIMING and view.problem:
            blocked.append(name)
            continue
        if crm == was:
            writeback.append(name)
        elif crm == remote:
            agreed.append(name)
        else:
            winner = conflict_winner(
                policy, crm_updated_at=view.crm_updated_at, remote_modified=view.remote_modified
            )
            conflicts.append(FieldConflict(field=name, winner=winner))
            if winner == "calendar":
                writeback.append(name)
    return FieldDecision(
        writeback=tuple(writeback), conflicts=tuple(conflicts), agreed=tuple(agreed), blocked=tuple(blocked)
    )


def baseline_after(
    baseline: Mapping[str, str] | None, remote: Mapping[str, str], fields: Collection[str]
) -> dict[str, str]:
    """The baseline once ``fields`` are agreed at their remote values (after a writeback or agreement)."""
    out = dict(baseline or {})
    out.update((name, remote[name]) for name in fields if name in remote)
    return out
