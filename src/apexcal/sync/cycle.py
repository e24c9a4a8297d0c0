"""The working state of one target cycle and the planning rounds it runs.

:class:`CycleContext` holds what one cycle of one target knows (config,
store, client, sink, mapping options, types) and turns mirror activities into
the planner's :class:`~apexcal.sync.plan.Desired` objects.  The helpers pick
the scope of a plan (what changed since the target's last mirror position,
plus what changed remotely), read what a plan needs to see before writing
(:func:`refresh`), and adopt objects a create found already there
(:func:`adopt_existing`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity, ActivityType
from apexcal.config import Config, TargetConfig
from apexcal.errors import CycleCancelled, Unmappable
from apexcal.filters import matches
from apexcal.geocode.policy import Geocoding
from apexcal.ical.mapping import MappingOptions, object_for, parse_uid
from apexcal.state import ObjectRecord, Store
from apexcal.sync.apply import (
    TOMBSTONE_KIND,
    ApplyResult,
    ObjectError,
    apply_records,
    apply_writes,
)
from apexcal.sync.detect import Detected, is_our_uid, seen_from, semantic_hash
from apexcal.sync.plan import (
    ConflictPolicy,
    DeleteGuard,
    Desired,
    Plan,
    Recorded,
    RemoteSeen,
    RemoteState,
    plan,
)
from apexcal.sync.sink import Sink

log = structlog.get_logger(__name__)

# Plan → read what must be read → plan again: at most this many rounds per cycle.
_MAX_ROUNDS = 3


def recorded_of(rec: ObjectRecord) -> Recorded:
    """The planner's view of a stored record (a tombstone is a record of kind ``GONE``)."""
    return Recorded(
        uid=rec.uid,
        activity_id=rec.activity_id,
        href=rec.href,
        etag=rec.etag,
        pushed_hash=rec.pushed_hash,
        done_seen=rec.done_seen,
        pushed_done=rec.pushed_done,
        remote_deleted=rec.kind == TOMBSTONE_KIND,
    )


@dataclass(kw_only=True)
class CycleContext:
    """The working state of one cycle (internal)."""

    config: Config
    target: TargetConfig
    store: Store
    client: ApexClient
    sink: Sink
    now: datetime
    force: bool
    options: MappingOptions
    should_stop: Callable[[], bool] | None
    types: Mapping[str, ActivityType] = field(default_factory=dict)
    geocoding: Geocoding | None = None
    skipped_unmappable: int = 0

    @property
    def org(self) -> int:
        """The organization being synced."""
        return self.config.source.organization_id

    def check_stop(self) -> None:
        """Raise :class:`CycleCancelled` when a stop was requested."""
        if self.should_stop is not None and self.should_stop():
            raise CycleCancelled("stop requested")

    def desired(self, activities: Iterable[Activity]) -> list[Desired]:
        """The objects the target wants for ``activities`` (filtered, geocoded, mapped)."""
        out: list[Desired] = []
        for activity in activities:
            if activity.deleted_at is not None or not matches(activity, self.target.filter):
                continue
            geocode = self.geocoding.point(activity) if self.geocoding else None
            try:
                obj = object_for(activity, self.types, self.options, geocode=geocode)
            except Unmappable as exc:
                self.skipped_unmappable += 1
                log.info("sync.unmappable", activity_id=activity.id, reason=str(exc))
                continue
            out.append(
                Desired(
                    uid=obj.uid,
                    activity_id=activity.id,
                    href_name=obj.href_name,
                    content_hash=semantic_hash(obj.data),
                    data=obj.data,
                    kind="VTODO" if obj.component_kind == "todo" else "VEVENT",
                    done=activity.done,
                    updated_at=activity.updated_at,
                )
            )
        return out

    def plan(
        self,
        desired: list[Desired],
        records: Mapping[str, ObjectRecord],
        remote: RemoteState,
        total: int,
    ) -> Plan:
        """Plan one round with the target's policy, guard and ownership test."""
        sync = self.config.sync
        return plan(
            target=self.target.name,
            desired=desired,
            recorded=[recorded_of(r) for r in records.values()],
            remote=remote,
            policy=ConflictPolicy(sync.conflict_policy),
            writeback=self.target.writeback,
            recreate_deleted=sync.recreate_deleted,
            guard=DeleteGuard(max_share=sync.max_delete_share, force=self.force),
            total_records=total,
            owns=ownership(self.config),
        )



def ownership(config: Config) -> Callable[[str], bool]:
    """A test of whether a UID is ours: this organization and UID domain."""
    org = config.source.organization_id
    domain = config.source.effective_uid_domain
    return lambda uid: is_our_uid(uid, organization_id=org, domain=domain)


def scope(
    cyc: CycleContext,
    seq_seen: int,
    detected: Detected,
    full: bool,
    *,
    extra: Mapping[int, Activity] | None = None,
) -> tuple[int, dict[int, Activity], dict[str, ObjectRecord]]:
    """The mirror position, the activities and the records this cycle must plan."""
    store, name, org = cyc.store, cyc.target.name, cyc.org
    records: dict[str, ObjectRecord]
    if full:
        top = store.mirror_seq(org)
        activities = {a.id: a for a in store.iter_activities(org)}
        records = store.records(name)
        return top, activities, records
    changes = store.activities_changed_since(org, seq_seen)
    activities = {a.id: a for a in changes.changed}
    ids = set(activities) | set(changes.deleted)
    remote_ids = {r.activity_id for r in detected.records.values()}
    for seen in detected.remote.seen:
        if seen.uid is not None:
            ids_of = _activity_of(seen.uid)
            if ids_of is not None:
                remote_ids.add(ids_of)
    if extra:
        remote_ids |= set(extra)
    missing = remote_ids - set(activities)
    if missing:
        activities.update((a.id, a) for a in store.activities(org, missing))
    records = {r.uid: r for r in store.records_for_activities(name, ids | remote_ids)}
    records.update(detected.records)
    return changes.seq, activities, records


def _activity_of(uid: str) -> int | None:
    ids = parse_uid(uid)
    return ids[1] if ids else None


def refresh(
    cyc: CycleContext,
    the_plan: Plan,
    activities: Mapping[int, Activity],
    records: Mapping[str, ObjectRecord],
    remote: RemoteState,
    total: int,
) -> tuple[Plan, RemoteState]:
    """Read the objects the plan must see before writing (unknown etags), then plan again."""
    for _ in range(_MAX_ROUNDS):
        if not the_plan.refreshes:
            break
        hrefs = [r.href for r in the_plan.refreshes]
        fetched = cyc.sink.multiget(hrefs)
        uid_filter = ownership(cyc.config)
        seen = {s.href: s for s in remote.seen}
        deleted = set(remote.deleted)
        for href in hrefs:
            obj = fetched.get(href)
            item = seen_from(obj, uid_filter) if obj is not None else None
            if item is None:
                deleted.add(href)
                seen.pop(href, None)
            else:
                seen[href] = item
        remote = RemoteState(
            seen=tuple(seen.values()), deleted=frozenset(deleted), full=remote.full, listed=remote.listed
        )
        the_plan = cyc.plan(cyc.desired(activities.values()), records, remote, total)
    return the_plan, remote


def adopt_existing(
    cyc: CycleContext,
    result: ApplyResult,
    activities: Mapping[int, Activity],
    records: Mapping[str, ObjectRecord],
    total: int,
) -> None:
    """Creates met 412: read what is there and adopt it (or update it) in this cycle."""
    creates = result.exists
    result.exists = []
    hrefs = {cyc.sink.href_for(c.href_name): c for c in creates}
    fetched = cyc.sink.multiget(hrefs)
    uid_filter = ownership(cyc.config)
    seen: list[RemoteSeen] = []
    for href, create in hrefs.items():
        obj = fetched.get(href)
        item = seen_from(obj, uid_filter) if obj is not None else None
        if item is None or item.uid != create.uid:
            result.errors.append(
                ObjectError(
                    uid=create.uid,
                    href=href,
                    activity_id=create.activity_id,
                    kind="href_taken",
                    reason="another object holds this href",
                )
            )
            continue
        seen.append(item)
    if not seen:
        return
    uids = {s.uid for s in seen}
    wanted = [a for a in activities.values() if any(c.activity_id == a.id for c in creates)]
    desired = [d for d in cyc.desired(wanted) if d.uid in uids]
    own = {uid: rec for uid, rec in records.items() if uid in uids}
    again = cyc.plan(desired, own, RemoteState(seen=tuple(seen)), total)
    again = Plan(
        updates=again.updates,
        adopts=again.adopts,
        record_updates=again.record_updates,
    )
    apply_records(again, cyc.store, cyc.target.name, records)
    result.adopted += len(again.adopts)
    apply_writes(again, cyc.sink, cyc.store, cyc.target.name, records, result=result)
    if result.exists:
        for create in result.exists:
            result.errors.append(
                ObjectError(
                    uid=create.uid,
                    href=cyc.sink.href_for(create.href_name),
                    activity_id=create.activity_id,
                    kind="precondition",
                    reason="object exists but could not be adopted",
                )
            )
        result.exists = []

