"""The scope of a cycle: which activities and records it plans, so its cost follows what changed.

Everything on a target's first cycle, or when the types, the mapping or the
filter changed; otherwise the activities changed in the mirror since the
target's last position plus those whose objects changed on the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from apexcal.apex.models import Activity
from apexcal.ical.mapping import parse_uid
from apexcal.state import ObjectRecord, Store
from apexcal.sync.detect import Detected
from apexcal.sync.plan import RemoteState


@dataclass(kw_only=True)
class Scope:
    """What this cycle plans: the activities and records in play, and the mirror position they reach."""

    seq: int
    activities: dict[int, Activity]
    records: dict[str, ObjectRecord]
    total: int
    """Live records of the whole target (the mass-delete guard weighs against it)."""


def scope_of(store: Store, target: str, org: int, detected: Detected, *, since: int | None) -> Scope:
    """What a cycle plans: everything when ``since`` is None, else what changed after mirror position ``since``.

    Hrefs the server listed with the etag we recorded (our own writes echoed
    back, or unchanged objects of a full listing) need no planning.
    """
    total = store.count_records(target)
    if since is None:
        activities = {a.id: a for a in store.iter_activities(org)}
        return Scope(
            seq=store.mirror_seq(org), activities=activities, records=store.records(target), total=total
        )
    changes = store.activities_changed_since(org, since)
    activities = {a.id: a for a in changes.changed}
    listed = detected.remote.listed
    reported = {u: r for u, r in detected.records.items() if r.href not in listed}
    ids = set(activities) | set(changes.deleted) | {r.activity_id for r in reported.values()}
    ids |= {a for s in detected.remote.seen if s.uid and (a := _activity_of(s.uid))}
    missing = ids - set(activities)
    if missing:
        activities.update((a.id, a) for a in store.activities(org, missing))
    records = {r.uid: r for r in store.records_for_activities(target, ids)}
    records.update(reported)
    return Scope(seq=changes.seq, activities=activities, records=records, total=total)


def _activity_of(uid: str) -> int | None:
    ids = parse_uid(uid)
    return ids[1] if ids else None


def narrow(remote: RemoteState, uids: set[str], records: Mapping[str, ObjectRecord]) -> RemoteState:
    """``remote`` reduced to the objects of ``uids`` (by UID, or at their recorded hrefs)."""
    hrefs = {r.href for u, r in records.items() if u in uids}
    seen = tuple(s for s in remote.seen if s.uid in uids or s.href in hrefs)
    return dataclasses.replace(remote, seen=seen)
