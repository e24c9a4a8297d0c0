"""UIDs another calendar of the same account holds (Cyrus and Fastmail keep UIDs unique per account).

Cyrus refuses a second object with a UID anywhere in the account, naming the
holder's href (``403 unique-scheduling-object-resource``).  When a create of
ours meets that, and the holder lies in another calendar, the UID is *held*:
its record on this target keeps the holder's href under one of two kinds.

* :data:`SHARED_KIND` — the holder's calendar still wants the object (another
  target whose filter overlaps this one's, or a calendar apexcal does not
  sync): reported once, as an error of the cycle that met it, with a line
  naming the activity and the holder's calendar.
* :data:`MOVING_KIND` — the holder is another target of this config that no
  longer wants the activity (it was reassigned) and its copy could not be
  removed for it (:func:`free_moved`: the copy changed since that target
  last saw it): that target's next cycle deletes it.  Not reported.

The planner never sees these records, and a held UID is not written again
while its holder stands, so the refusal costs no request per cycle.  Each
cycle releases (plans the create again) the held UIDs whose holder is gone
or no longer wants the activity: when the holder is one of our targets, its
records and filter tell (no request); when it is not, the create is tried
again when the calendar reconcile is due.  A
held UID whose activity this target no longer wants is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from apexcal.apex.models import Activity
from apexcal.config import Config, TargetConfig
from apexcal.config.accounts import collection_path
from apexcal.errors import CalDAVError, UidConflict
from apexcal.state import ObjectRecord, Store
from apexcal.sync.apply import ObjectError
from apexcal.sync.desired import DesiredObjects, mapping_options
from apexcal.sync.plan import Create
from apexcal.sync.sink import Sink

log = structlog.get_logger(__name__)

SHARED_KIND = "SHARED"
"""``ObjectRecord.kind``: the UID lives in another calendar of the account that wants it (reported)."""
MOVING_KIND = "MOVING"
"""``ObjectRecord.kind``: the UID lives in another target's calendar that is about to delete it."""
HELD_KINDS = frozenset({SHARED_KIND, MOVING_KIND})
_LIVE_KINDS = frozenset({"VEVENT", "VTODO"})


def is_held(record: ObjectRecord) -> bool:
    """Whether ``record`` stands for a UID held by another calendar (no object of ours)."""
    return record.kind in HELD_KINDS


def shared_line(activity_id: int, holder_href: str) -> str:
    """The one line that reports a shared activity, naming the holder's calendar."""
    return (
        f"activity {activity_id} already lives in {_collection_of(holder_href)} of this account; "
        "two targets of one Cyrus/Fastmail account must not share activities"
    )


def _collection_of(href: str) -> str:
    path = urlsplit(href).path
    return path.rsplit("/", 1)[0] + "/"


def holder_target(config: Config, target: TargetConfig, holder_href: str) -> TargetConfig | None:
    """The target of ``config`` whose calendar holds ``holder_href`` (on ``target``'s server), if any."""
    own = urlsplit(str(target.url))
    collection = collection_path(_collection_of(holder_href))
    for other in config.targets:
        url = urlsplit(str(other.url))
        same_server = (url.scheme, url.hostname, url.port) == (own.scheme, own.hostname, own.port)
        if same_server and collection_path(str(other.url)) == collection:
            return other
    return None


@dataclass(kw_only=True)
class Held:
    """The held UIDs of one target this cycle: those still waiting, and those released."""

    records: dict[str, ObjectRecord] = field(default_factory=dict)
    """Every held record of the target at the start of the cycle, by UID."""
    waiting: set[str] = field(default_factory=set)
    """Held UIDs whose holder stands: not planned, not written."""


def load(
    config: Config, target: TargetConfig, store: Store, *, retry_unknown: bool
) -> Held:
    """The target's held UIDs, each judged: still waiting, or released because its holder is gone.

    ``retry_unknown``: release the UIDs held by a calendar that is not one of
    our targets (the calendar reconcile is due).
    """
    own = collection_path(str(target.url))
    records = {r.uid: r for r in store.records_outside(target.name, own, HELD_KINDS)}
    held = Held(records=records)
    by_holder: dict[str, list[ObjectRecord]] = {}
    for rec in records.values():
        other = holder_target(config, target, rec.href)
        if other is None or other.name == target.name:
            if not retry_unknown:
                held.waiting.add(rec.uid)
            continue
        by_holder.setdefault(other.name, []).append(rec)
    for name, recs in by_holder.items():
        theirs = store.records_for_hrefs(name, [r.href for r in recs])
        for rec in recs:
            there = theirs.get(rec.href)
            if there is not None and there.uid == rec.uid and there.kind in _LIVE_KINDS:
                held.waiting.add(rec.uid)
    released = len(records) - len(held.waiting)
    if released:
        log.info("sync.uid_released", objects=released)
    return held


def forget_unwanted(
    held: Held, store: Store, target: str, activities: Mapping[int, Activity],
    desired: DesiredObjects,
) -> None:
    """Drop the held records whose activity is gone (not among the live ``activities``) or not wanted."""
    for uid, rec in list(held.records.items()):
        activity = activities.get(rec.activity_id)
        if activity is None or not desired.wants(activity):
            store.delete_record(target, uid)
            held.waiting.discard(uid)
            del held.records[uid]


def release_moved(
    held: Held, config: Config, target: TargetConfig, store: Store, activities: Mapping[int, Activity]
) -> None:
    """Release the waiting UIDs whose holder is another target that no longer wants the activity.

    Their create is planned again; refused, it goes to :func:`free_moved`,
    which removes that target's copy for it, so the overlap ending converges
    in this cycle instead of after the holder's next one.
    """
    for uid in sorted(held.waiting):
        rec = held.records[uid]
        other = holder_target(config, target, rec.href)
        activity = activities.get(rec.activity_id)
        if (
            other is not None
            and other.name != target.name
            and activity is not None
            and not _wants(config, other, store, activity)
        ):
            held.waiting.discard(uid)


def free_moved(
    taken: list[tuple[Create, UidConflict]],
    *,
    config: Config,
    target: TargetConfig,
    store: Store,
    sink: Sink,
    activities: Mapping[int, Activity],
) -> tuple[list[Create], list[tuple[Create, UidConflict]]]:
    """Delete the copies other targets keep of activities reassigned away from them; (creates to retry, the rest).

    When the holder is another target's calendar whose target no longer wants
    the activity, that target's next cycle would delete its copy; this does it
    now, with ``If-Match`` on the etag that target recorded, so only a copy
    exactly as it last saw it goes (one changed since — a completion ticked
    there — fails the condition and is left to that target, which writes it
    back first).  The create is then tried again at once, so a reassignment
    converges in one cycle whichever target runs first.  That target's record
    is left to it: its next cycle sees the copy gone and forgets it.
    """
    retry: list[Create] = []
    rest: list[tuple[Create, UidConflict]] = []
    own = collection_path(str(target.url))
    for create, exc in taken:
        holder = exc.existing_href
        other = holder_target(config, target, holder) if holder else None
        activity = activities.get(create.activity_id)
        if (
            holder is None
            or other is None
            or collection_path(str(other.url)) == own
            or activity is None
            or _wants(config, other, store, activity)
        ):
            rest.append((create, exc))
            continue
        theirs = store.records_for_hrefs(other.name, [holder]).get(holder)
        if theirs is None or theirs.uid != create.uid or theirs.kind not in _LIVE_KINDS or not theirs.etag:
            rest.append((create, exc))
            continue
        try:
            sink.delete(holder, theirs.etag)
        except CalDAVError as failed:
            log.info("sync.uid_move_waits", activity_id=create.activity_id, holder=holder,
                     holder_target=other.name, reason=str(failed))
            rest.append((create, exc))
            continue
        log.info("sync.uid_moved", activity_id=create.activity_id, holder=holder,
                 holder_target=other.name)
        retry.append(create)
    return retry, rest


def settle(
    taken: Iterable[tuple[Create, UidConflict]],
    *,
    config: Config,
    target: TargetConfig,
    store: Store,
    held: Held,
    activities: Mapping[int, Activity],
) -> tuple[list[ObjectError], int]:
    """Record the creates refused because another calendar holds their UID; (errors, skipped).

    A refusal naming no holder, or a holder in this very calendar, stays an
    error (retried next cycle, where detection finds the object).  Otherwise
    the UID becomes held: reported once when the holder's calendar still
    wants it, silently when it is another target's that no longer does.
    """
    errors: list[ObjectError] = []
    skipped = 0
    own = collection_path(str(target.url))
    for create, exc in taken:
        holder = exc.existing_href
        if not holder or collection_path(_collection_of(holder)) == own:
            log.warning("sync.object_failed", uid=create.uid, href=exc.href, kind="uid_conflict",
                        error=str(exc))
            errors.append(_error(create, exc.href, "uid_conflict", str(exc)))
            continue
        activity = activities.get(create.activity_id)
        other = holder_target(config, target, holder)
        moving = other is not None and activity is not None and not _wants(config, other, store, activity)
        before = held.records.get(create.uid)
        kind = MOVING_KIND if moving else SHARED_KIND
        store.put_record(
            ObjectRecord(
                target=target.name,
                uid=create.uid,
                activity_id=create.activity_id,
                href=holder,
                pushed_hash=create.content_hash,
                kind=kind,
            )
        )
        skipped += 1
        if moving:
            log.info("sync.uid_moving", activity_id=create.activity_id, holder=holder,
                     holder_target=other.name if other else None)
        elif before is None or before.kind != SHARED_KIND:
            line = shared_line(create.activity_id, holder)
            log.warning("sync.uid_shared", activity_id=create.activity_id, holder=holder, error=line)
            errors.append(_error(create, exc.href, "uid_shared", line))
            skipped -= 1
    return errors, skipped


def _wants(config: Config, other: TargetConfig, store: Store, activity: Activity) -> bool:
    desired = DesiredObjects(
        target=other,
        types=store.types(config.source.organization_id),
        options=mapping_options(config, other),
        geocoding=None,
    )
    return desired.wants(activity)


def _error(create: Create, href: str, kind: str, reason: str) -> ObjectError:
    return ObjectError(
        uid=create.uid, href=href, activity_id=create.activity_id, kind=kind, reason=reason
    )


__all__ = [
    "HELD_KINDS",
    "MOVING_KIND",
    "SHARED_KIND",
    "Held",
    "forget_unwanted",
    "free_moved",
    "holder_target",
    "is_held",
    "load",
    "release_moved",
    "settle",
    "shared_line",
]
