"""Pull: bring the state store's mirror of the CRM up to date (DESIGN §5, "Pull" and "Deletions").

One pull lists activities changed since the stored watermark minus the
configured overlap (the client's keyset change feed), upserts them by content
hash with the watermark advanced in the same transaction, refreshes the
activity types, and — when ``sync.reconcile_interval`` has passed, or when
forced — sweeps the ids of every live activity to mark the vanished ones
deleted.  A sweep that would delete more than ``sync.max_delete_share`` of the
mirror stops with :class:`~apexcal.errors.MassDeleteRefused` unless forced: an
API answering an empty list must never empty the mirror (and then a calendar).

Only the store's own transactions commit anything, so a crash anywhere in a
pull loses at most the page in flight; the next pull starts again from the
watermark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity
from apexcal.config import Config
from apexcal.errors import MassDeleteRefused
from apexcal.state import Store

log = structlog.get_logger(__name__)

# Activities upserted per transaction while a change feed is read; the
# watermark advances with each batch, so a long first pull survives a crash.
PULL_BATCH = 500
# A reconcile sweep over fewer live activities than this is never refused.
SWEEP_GUARD_MIN = 10


@dataclass(frozen=True, kw_only=True)
class PullResult:
    """What one pull did: activities listed and stored, deletions found, types changed."""

    listed: int
    changed: int
    deleted: int
    reconciled: bool
    types_changed: bool
    seq: int


def pull(
    config: Config,
    store: Store,
    client: ApexClient,
    *,
    now: datetime,
    force_reconcile: bool = False,
    force: bool = False,
    types: bool = True,
) -> PullResult:
    """Pull changes (and types, and the reconcile sweep when due) into the mirror.

    ``force_reconcile`` sweeps whatever the interval; ``force`` lets a sweep
    delete more than the configured share of the mirror.  ``types=False``
    skips the type listing (used for the re-pull right after a writeback).
    """
    org = config.source.organization_id
    listed, changed = pull_changes(config, store, client)
    types_changed = False
    if types:
        types_changed = store.upsert_types(org, client.list_activity_types())
    deleted = 0
    reconciled = False
    if force_reconcile or reconcile_due(config, store, now):
        deleted = reconcile(config, store, client, now=now, force=force)
        reconciled = True
    seq = store.mirror_seq(org)
    log.debug(
        "pull.done",
        listed=listed,
        changed=changed,
        deleted=deleted,
        reconciled=reconciled,
        types_changed=types_changed,
    )
    return PullResult(
        listed=listed,
        changed=changed,
        deleted=deleted,
        reconciled=reconciled,
        types_changed=types_changed,
        seq=seq,
    )


def pull_changes(config: Config, store: Store, client: ApexClient) -> tuple[int, int]:
    """Read the change feed from the watermark and upsert it; return (listed, changed)."""
    org = config.source.organization_id
    watermark = store.watermark(org)
    listed = 0
    changed = 0
    batch: list[Activity] = []
    # Joined names (users, deal, contact, company) feed `full` descriptions
    # and summary templates of every target and feed the mirror serves.
    changes = client.changes_since(
        watermark, overlap=config.source.overlap, fastJoinForActivityList=True
    )
    for activity in changes:
        batch.append(activity)
        if len(batch) >= PULL_BATCH:
            changed += _store_batch(store, org, batch)
            listed += len(batch)
            batch = []
    if batch:
        changed += _store_batch(store, org, batch)
        listed += len(batch)
    return listed, changed


def _store_batch(store: Store, org: int, batch: list[Activity]) -> int:
    # The feed is ordered by updated_at, so the batch's largest stamp covers
    # every record before it: the watermark may advance to it.
    mark = max(a.updated_at for a in batch)
    result = store.upsert_activities(org, batch, watermark=mark)
    return len(result.changed)


def reconcile_due(config: Config, store: Store, now: datetime) -> bool:
    """Whether the reconcile sweep is due (never swept, or the interval has passed)."""
    last = store.last_reconcile(config.source.organization_id)
    return last is None or now - last >= config.sync.reconcile_interval


def reconcile(
    config: Config, store: Store, client: ApexClient, *, now: datetime, force: bool = False
) -> int:
    """Sweep the API's ids and mark vanished activities deleted; return how many.

    Raises :class:`MassDeleteRefused` (target ``"mirror"``) when the sweep
    would delete more than ``sync.max_delete_share`` of the live activities,
    unless ``force``.
    """
    org = config.source.organization_id
    present = client.all_activity_ids()
    live = store.live_activity_ids(org)
    vanished = live - present
    share = config.sync.max_delete_share
    if (
        not force
        and vanished
        and len(live) >= SWEEP_GUARD_MIN
        and (len(vanished) > share * len(live) or not present)
    ):
        raise MassDeleteRefused("mirror", len(vanished), len(live), share)
    count = store.mark_deleted(org, vanished, at=now) if vanished else 0
    store.set_last_reconcile(org, now)
    if count:
        log.info("pull.reconciled", deleted=count)
    return count


def refetch(config: Config, store: Store, client: ApexClient, activity_ids: Iterable[int]) -> list[Activity]:
    """Re-read activities by id into the mirror (after a writeback) and return them as mirrored.

    One listing with ``id[$in]`` (and the joined names the change feed asks
    for, so the mirror's content stays what the next pull brings); activities
    no longer listed are left to the reconcile sweep.
    """
    org = config.source.organization_id
    ids = sorted(set(activity_ids))
    if not ids:
        return []
    found = list(client.list_activities(id=ids, fastJoinForActivityList=True))
    if found:
        store.upsert_activities(org, found, watermark=None)
    return store.activities(org, ids)
