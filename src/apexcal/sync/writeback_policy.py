"""Who owns a to-do's completion when the calendar and the CRM disagree.

The calendar owns only completion (DESIGN §5, "Ownership").  For one VTODO we
know three booleans besides the CRM's current ``done``:

* ``pushed_done`` — the completion written in the bytes we last PUT;
* ``done_seen`` — the completion we last read on the server;
* the completion read on the server in this cycle (when the object was seen).

The calendar *changed* completion when this cycle's remote state differs from
``done_seen``; the CRM *changed* it when its ``done`` differs from
``pushed_done``.  Both sides ending on the same value is agreement, whatever
the path; they disagree only when both changed and the values differ (for a
boolean this needs ``done_seen != pushed_done``: a calendar change we had
recorded but the CRM had not taken yet, e.g. a pending writeback, and a new
change on either side).  Such a conflict is settled by the target's policy:

* ``crm-wins`` (default) — the CRM's state is pushed, nothing is written back;
* ``calendar-wins`` — the calendar's state is written back to the CRM;
* ``newest-wins`` — the later of the remote object's LAST-MODIFIED/COMPLETED
  time and the activity's ``updated_at`` wins; a tie or a missing time falls
  back to ``crm-wins``.

When the calendar's state differs from the CRM's and the CRM did not change
since our last push, the calendar's state is written back — also on a later
cycle while the CRM has not taken it yet (a writeback that failed to reach the
API is repeated, never overwritten by the stale CRM state).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ConflictPolicy(StrEnum):
    """How a completion conflict between the CRM and the calendar is settled."""

    CRM_WINS = "crm-wins"
    CALENDAR_WINS = "calendar-wins"
    NEWEST_WINS = "newest-wins"


@dataclass(frozen=True, kw_only=True)
class CompletionView:
    """Everything known about one to-do's completion in this cycle."""

    crm_done: bool
    pushed_done: bool | None
    done_seen: bool | None
    remote_done: bool | None
    """The completion read on the server this cycle; None when not read or unreadable."""
    crm_updated_at: datetime | None = None
    remote_modified: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class CompletionDecision:
    """The outcome for one to-do: write back or not, and the calendar's current state."""

    writeback: bool
    """True: send ``calendar_done`` to the CRM and do not push the stale CRM state."""
    calendar_done: bool
    """The completion the server holds now, as far as we know."""
    conflict: bool
    """Both sides changed completion to different values."""
    winner: str | None = None
    """``"crm"`` or ``"calendar"`` when ``conflict``."""


def decide_completion(
    view: CompletionView, *, policy: ConflictPolicy, writeback_enabled: bool = True
) -> CompletionDecision | None:
    """Settle one to-do's completion; None when there is no calendar-side state to weigh.

    A pure function of the view and the policy, so the same inputs always give
    the same decision (the planner relies on this to be re-run after a
    writeback and find nothing left to write back).
    """
    pushed = view.pushed_done
    seen = view.done_seen
    if seen is None:
        seen = pushed
    if pushed is None:
        pushed = seen
    if seen is None or pushed is None:
        # No record of any completion on the server: the CRM's state is the truth.
        return None
    remote = view.remote_done if view.remote_done is not None else seen
    crm = view.crm_done
    if remote == crm:
        return CompletionDecision(writeback=False, calendar_done=remote, conflict=False)
    if not writeback_enabled:
        # The calendar's completion is then a foreign edit like any other.
        return CompletionDecision(writeback=False, calendar_done=remote, conflict=False)
    calendar_changed = remote != seen
    crm_changed = crm != pushed
    if not crm_changed:
        # Calendar-side change, new or still pending: write it back.
        return CompletionDecision(writeback=True, calendar_done=remote, conflict=False)
    if not calendar_changed and remote == pushed:
        # Only the CRM moved: push it.
        return CompletionDecision(writeback=False, calendar_done=remote, conflict=False)
    winner = conflict_winner(
        policy, crm_updated_at=view.crm_updated_at, remote_modified=view.remote_modified
    )
    return CompletionDecision(
        writeback=winner == "calendar",
        calendar_done=remote,
        conflict=True,
        winner=winner,
    )


def conflict_winner(
    policy: ConflictPolicy, *, crm_updated_at: datetime | None, remote_modified: datetime | None
) -> str:
    """``"calendar"`` or ``"crm"``: who wins a conflict under ``policy``.

    ``newest-wins`` compares the remote object's modification time with the
    activity's ``updated_at``; a tie or a missing time falls back to the CRM.
    """
    if policy is ConflictPolicy.CALENDAR_WINS:
        return "calendar"
    calendar_newer = (
        crm_updated_at is not None and remote_modified is not None and remote_modified > crm_updated_at
    )
    if policy is ConflictPolicy.NEWEST_WINS and calendar_newer:
        return "calendar"
    return "crm"
