"""Two-way edits in a cycle: calendar edits of start/end, subject and location, on their way to the CRM.

The step beside completion writeback (:mod:`apexcal.sync.writeback`), for a
target whose ``writeback_fields`` names more than ``done``:

1. **settle and send** what earlier cycles journaled: an entry whose answer
   was lost (*in doubt*) is settled by reading the CRM first — the CRM
   holding the values means delivered (nothing sent), the CRM changed after
   the attempt means its later change wins, otherwise it is sent again; the
   others are sent, one ``PATCH /activities/:id`` each, and closed in the
   same transaction their object record's per-field baseline takes them;
2. **decide** for each object read this cycle, field by field
   (:func:`~apexcal.sync.fieldmerge.decide_fields`), journal what goes back,
   send it, and re-read the activities into the mirror, so the cycle maps
   and plans them as the CRM now holds them: the update written then
   carries the CRM's own changes of other fields (field-level merge) and
   the next cycle finds nothing to write on either side;
3. **learn and record** baselines: after a push, each written object's
   record takes the hashes of what was written; a record without one (from
   before two-way edits) takes them once the CRM's rendering equals what was
   last pushed.  Until then no calendar edit of it is written back.

Timings the activity cannot hold (a recurrence, an unknown TZID, …) are
reported once per object and problem, and the CRM is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity
from apexcal.config import Config, TargetConfig
from apexcal.errors import ApiError, ApiHTTPError
from apexcal.ical.editable import (
    EDITABLE,
    Editable,
    NotWritable,
    crm_patch,
    field_hashes,
    read_editable,
    value_hash,
)
from apexcal.ical.summary import summary_values
from apexcal.state import FieldWritebackEntry, ObjectRecord, Store
from apexcal.sync.completions import settle_in_doubt
from apexcal.sync.fieldmerge import WARNED_KEY, FieldView, decide_fields
from apexcal.sync.plan_model import Desired, RemoteState
from apexcal.sync.pull import refetch
from apexcal.sync.writeback_policy import ConflictPolicy

log = structlog.get_logger(__name__)

_REFUSED = frozenset({400, 404, 409, 422})
"""API answers that say the values will never be taken (bad values, the activity gone)."""


@dataclass(frozen=True, kw_only=True)
class FieldEdit:
    """Calendar edits of one object's fields to send: the activity's API fields and their values."""

    uid: str
    activity_id: int
    patch: Mapping[str, Any]
    agreed: Mapping[str, str]
    pending: bool = False
    """Journaled by an earlier cycle (a dry run lists it as such)."""


@dataclass(kw_only=True)
class FieldOutcome:
    """What the step did this cycle."""

    sent: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    planned: list[FieldEdit] = field(default_factory=list)
    """The edits decided this cycle (for a dry run, which sends nothing)."""


def enabled_fields(target: TargetConfig) -> frozenset[str]:
    """The editable fields a target takes back (none without ``writeback``)."""
    if not target.writeback:
        return frozenset()
    return frozenset(target.writeback_fields) & frozenset(EDITABLE)


def _api_value(value: Any) -> Any:
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def crm_holds(activity: Activity, patch: Mapping[str, Any]) -> bool:
    """Whether the activity already holds every value of ``patch``."""
    for key, wanted in patch.items():
        if key == "location_geocoded":
            if wanted is None and activity.location_geocoded is not None:
                return False
            continue
        if _api_value(getattr(activity, key, None)) != wanted:
            return False
    return True


class FieldEdits:
    """The two-way edit step of one target's cycle (module docstring)."""

    def __init__(
        self, config: Config, target: TargetConfig, store: Store, client: ApexClient, *, now: datetime
    ) -> None:
        self.config, self.target, self.store, self.client, self.now = config, target, store, client, now
        self.fields = enabled_fields(target)
        self.timezone = config.source.timezone
        self.policy = ConflictPolicy(config.sync.conflict_policy)

    @property
    def active(self) -> bool:
        return bool(self.fields)

    # --- 1. settle and send ------------------------------------------------------------------

    def send_pending(self, outcome: FieldOutcome) -> list[Activity]:
        """Settle the entries in doubt, send the others; return the activities re-read after."""
        name = self.target.name
        pending = self.store.pending_field_writebacks(name)
        if not pending:
            return []
        doubtful = [e for e in pending if e.in_doubt]
        touched: set[int] = set()
        if doubtful:
            ids = sorted({e.activity_id for e in doubtful})
            try:
                listed = {a.id: a for a in self.client.list_activities(id=ids, fastJoinForActivityList=True)}
            except ApiError as exc:
                log.warning("sync.field_writeback_unsettled", count=len(doubtful), error=str(exc))
                outcome.errors.append(str(exc))
                return []
            delivered: list[FieldWritebackEntry] = []
            overridden: list[FieldWritebackEntry] = []
            unsent: list[FieldWritebackEntry] = []
            for e in doubtful:
                crm = listed.get(e.activity_id)
                assert e.sent_at is not None
                held = crm is not None and crm_holds(crm, e.patch)
                verdict = settle_in_doubt(
                    True, e.sent_at, True if held else (False if crm is not None else None),
                    crm.updated_at if crm is not None else None,
                )
                {"delivered": delivered, "overridden": overridden, "unsent": unsent}[verdict].append(e)
            if delivered:
                self.store.close_field_writebacks([e.id for e in delivered], self.now)
                log.info("sync.field_writeback_delivered", activity_ids=[e.activity_id for e in delivered])
            if overridden:
                self.store.close_field_writebacks([e.id for e in overridden], self.now, overridden=True)
                log.info("sync.field_writeback_overridden", activity_ids=[e.activity_id for e in overridden])
            if unsent:
                self.store.set_field_writeback_attempt([e.id for e in unsent], None)
            touched.update(e.activity_id for e in delivered + overridden)
        for entry in self.store.pending_field_writebacks(name):
            if entry.in_doubt:
                continue
            self.store.set_field_writeback_attempt([entry.id], self.now)
            try:
                self.client.patch_activity(entry.activity_id, entry.patch)
            except ApiError as exc:
                if isinstance(exc, ApiHTTPError) and exc.status in _REFUSED:
                    # The CRM will never take these values (or the activity is gone): not
                    # retried forever; the calendar follows the CRM's next change.
                    self.store.close_field_writebacks([entry.id], self.now, overridden=True)
                    line = f"activity {entry.activity_id}: the CRM refused {sorted(entry.patch)}: {exc}"
                    outcome.warnings.append(line)
                    log.warning("sync.field_writeback_refused", activity_id=entry.activity_id, error=str(exc))
                    continue
                self.store.mark_field_writeback_failed([entry.id], str(exc), in_doubt=exc.maybe_applied)
                log.warning(
                    "sync.field_writeback_failed", activity_id=entry.activity_id, error=str(exc),
                    in_doubt=exc.maybe_applied,
                )
                outcome.errors.append(f"activity {entry.activity_id}: {exc}")
                break  # the API is failing: the rest waits for the next cycle
            self.store.close_field_writebacks([entry.id], self.now)
            log.info("sync.field_writeback", activity_id=entry.activity_id, fields=sorted(entry.patch))
            outcome.sent.append(entry.activity_id)
            touched.add(entry.activity_id)
        return refetch(self.config, self.store, self.client, touched) if touched else []

    # --- 2. decide ----------------------------------------------------------------------------

    def decide(
        self,
        *,
        records: Mapping[str, ObjectRecord],
        activities: Mapping[int, Activity],
        remote: RemoteState,
        desired_of: Callable[[Activity], Desired | None],
        outcome: FieldOutcome,
    ) -> list[FieldEdit]:
        """The edits to send for the objects read this cycle (agreements and warnings recorded at once).

        ``desired_of`` maps an activity to its :class:`Desired` (our
        rendering of the CRM's state), or None when the target does not want it.
        """
        waiting = {e.activity_id for e in self.store.pending_field_writebacks(self.target.name)}
        edits: list[FieldEdit] = []
        baselines: list[tuple[str, dict[str, str]]] = []
        for seen in remote.seen:
            rec = records.get(seen.uid) if seen.uid is not None else None
            if rec is None or rec.fields is None or seen.data is None or rec.remote_deleted:
                continue
            activity = activities.get(rec.activity_id)
            if activity is None or activity.deleted_at is not None or activity.id in waiting:
                continue
            desired = desired_of(activity)
            if desired is None:
                continue
            try:
                ours = read_editable(desired.data, self.timezone, rec.uid)
                theirs = read_editable(seen.data, self.timezone, rec.uid)
            except Exception as exc:  # the line reader never should; one object must not stop the cycle
                log.warning("sync.field_read_failed", uid=rec.uid, error=str(exc))
                continue
            if ours is None or theirs is None or ours.kind != theirs.kind:
                continue
            remote_h, crm_h = field_hashes(theirs), field_hashes(ours)
            decision = decide_fields(
                FieldView(
                    baseline=rec.fields, remote=remote_h, crm=crm_h, problem=theirs.timing is None,
                    crm_updated_at=activity.updated_at, remote_modified=seen.modified,
                ),
                enabled=self.fields,
                policy=self.policy,
            )
            agreed = {f: remote_h[f] for f in decision.agreed}
            for c in decision.conflicts:
                log.info(
                    "sync.field_conflict", activity_id=activity.id, field=c.field,
                    policy=str(self.policy), winner=c.winner,
                )
            if decision.blocked:
                self._warn_once(rec, theirs, f"{seen.href}: start/end not written back to activity "
                                f"{activity.id}: {theirs.problem}", outcome, agreed)
            send = list(decision.writeback)
            if send:
                try:
                    patch = crm_patch(send, theirs, ours, summary_values(activity, None)["subject"])
                except NotWritable as exc:
                    self._warn_once(rec, theirs, f"{seen.href}: not written back to activity {activity.id}: {exc}",
                                    outcome, agreed)
                    send, patch = [], {}
                if send and crm_holds(activity, patch):
                    agreed.update((f, remote_h[f]) for f in send)  # the CRM already says so
                elif send:
                    edits.append(FieldEdit(
                        uid=rec.uid, activity_id=activity.id, patch=patch,
                        agreed={f: remote_h[f] for f in send},
                    ))
            if agreed:
                baselines.append((rec.uid, agreed))
        if baselines:
            self.store.set_record_fields(self.target.name, baselines)
        outcome.planned.extend(edits)
        return edits

    def _warn_once(
        self, rec: ObjectRecord, theirs: Editable, line: str, outcome: FieldOutcome, agreed: dict[str, str]
    ) -> None:
        mark = value_hash(line + "\n" + theirs.raw_timing)
        if (rec.fields or {}).get(WARNED_KEY) == mark:
            return
        outcome.warnings.append(line)
        log.warning("sync.field_not_written_back", uid=rec.uid, reason=line)
        agreed[WARNED_KEY] = mark

    def journal(self, edits: Iterable[FieldEdit]) -> int:
        entries = [(e.uid, e.activity_id, e.patch, e.agreed) for e in edits]
        if entries:
            self.store.journal_field_writebacks(self.target.name, entries, self.now)
        return len(entries)

    # --- 3. baselines ---------------------------------------------------------------------------

    def learn(self, desired: Iterable[Desired], records: Mapping[str, ObjectRecord]) -> None:
        """Give records whose last push is the CRM's current rendering that rendering's hashes.

        Covers records from before two-way edits, adoptions, and pushes whose
        baseline a crash kept from being recorded.
        """
        found: list[tuple[str, dict[str, str]]] = []
        for d in desired:
            rec = records.get(d.uid)
            if rec is None or rec.remote_deleted or rec.pushed_hash is None:
                continue
            if rec.fields is not None and all(k in rec.fields for k in EDITABLE):
                continue  # known; a stale one (a crash before it was recorded) heals as agreement
            if rec.pushed_hash not in (d.content_hash, d.legacy_hash):
                continue
            hashes = self._hashes(d)
            if hashes is not None:
                found.append((d.uid, hashes))
        if found:
            self.store.set_record_fields(self.target.name, found)

    def record_pushed(self, uids: Iterable[str], desired: Mapping[str, Desired]) -> None:
        """After writes: each written object's record takes the hashes of what was written."""
        found: list[tuple[str, dict[str, str]]] = []
        for uid in uids:
            d = desired.get(uid)
            hashes = self._hashes(d) if d is not None else None
            if hashes is not None:
                found.append((uid, hashes))
        if found:
            self.store.set_record_fields(self.target.name, found)

    def _hashes(self, d: Desired) -> dict[str, str] | None:
        editable = read_editable(d.data, self.timezone, d.uid)
        return field_hashes(editable) if editable is not None else None
