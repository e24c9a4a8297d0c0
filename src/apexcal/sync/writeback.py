"""Writeback: completion changes seen on a calendar, on their way to the CRM (DESIGN §5, "Writeback").

Each change is journaled (committed) first, then every pending entry of the
target is sent with the API's bulk endpoint — one ``PATCH /activities`` per
value of ``done`` and per :data:`~apexcal.apex.client.BULK_CHUNK` ids — and
marked sent once the API accepted it, in the same transaction the object
records take the sent value as what both sides hold, so once the API's
acceptance is known nothing re-sends it over a later CRM change.

The start of each attempt is committed before the request goes out.  When
its answer never arrives — lost on the way back, or the process killed while
waiting — the API may have applied it, and the CRM user may have changed the
activity since: such an entry is *in doubt*, and :func:`settle` reads the
CRM (one listing by id) before anything is sent again.  The CRM holding the
value means delivered (nothing sent); the CRM holding the other value and
changed after the attempt means the CRM's later change wins (the entry is
dropped and the calendar follows the CRM); otherwise the entry is sent as
any pending one.  An attempt refused by an answer (4xx, 429, 503) or whose
connection never opened is not in doubt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from apexcal.apex.client import BULK_CHUNK, ApexClient
from apexcal.apex.models import Activity
from apexcal.clock import utcnow
from apexcal.config import Config
from apexcal.errors import ApiError
from apexcal.state import Store
from apexcal.state.records import WritebackEntry
from apexcal.sync.completions import settle_in_doubt
from apexcal.sync.pull import refetch
from apexcal.sync.scope import Scope

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class WritebackResult:
    """What a writeback step did: activities sent per value, and the error that stopped it."""

    sent: tuple[int, ...]
    error: ApiError | None = None


def journal(store: Store, target: str, changes: Iterable[tuple[int, bool]], now: datetime) -> int:
    """Journal ``(activity_id, done)`` changes as pending; return how many."""
    entries = list(changes)
    if entries:
        store.journal_writebacks(target, entries, now)
    return len(entries)


def settle(
    config: Config, store: Store, client: ApexClient, target: str, now: datetime, scope: Scope
) -> WritebackResult:
    """Settle the entries in doubt of ``target`` from the CRM's current state (module docstring).

    The activities read go into the mirror and ``scope``, so this cycle plans
    with what the CRM holds now.  A failed read is returned, not raised; the
    entries stay in doubt and are not sent.
    """
    doubtful = [e for e in store.pending_writebacks(target) if e.in_doubt]
    if not doubtful:
        return WritebackResult(sent=())
    org = config.source.organization_id
    ids = sorted({e.activity_id for e in doubtful})
    try:
        listed = {a.id: a for a in client.list_activities(id=ids, fastJoinForActivityList=True)}
    except ApiError as exc:
        log.warning("sync.writeback_unsettled", count=len(doubtful), error=str(exc))
        return WritebackResult(sent=(), error=exc)
    if listed:
        store.upsert_activities(org, list(listed.values()), watermark=None)
        into_scope(store, target, scope, store.activities(org, listed))
    outcome: dict[str, list[WritebackEntry]] = {"delivered": [], "overridden": [], "unsent": []}
    for e in doubtful:
        crm = listed.get(e.activity_id)
        assert e.sent_at is not None
        outcome[
            settle_in_doubt(
                e.done,
                e.sent_at,
                crm.done if crm is not None else None,
                crm.updated_at if crm is not None else None,
            )
        ].append(e)
    if outcome["delivered"]:
        store.mark_writebacks_sent([e.id for e in outcome["delivered"]], now)
        log.info("sync.writeback_delivered", activity_ids=[e.activity_id for e in outcome["delivered"]])
    if outcome["overridden"]:
        store.mark_writebacks_overridden([e.id for e in outcome["overridden"]])
        log.info("sync.writeback_overridden", activity_ids=[e.activity_id for e in outcome["overridden"]])
    if outcome["unsent"]:
        store.set_writeback_attempt([e.id for e in outcome["unsent"]], None)
    settled = {e.activity_id for e in outcome["delivered"] + outcome["overridden"]}
    if settled:
        # Their records now say what both sides held: plan from that.
        scope.records.update((r.uid, r) for r in store.records_for_activities(target, settled))
    return WritebackResult(sent=())


def send_pending(store: Store, client: ApexClient, target: str, now: datetime) -> WritebackResult:
    """Send every pending writeback of ``target`` not in doubt with the bulk endpoint; mark them sent.

    Entries in doubt are left to :func:`settle`: never sent again blind.  An
    API failure leaves the entries pending (their attempt counted, in doubt
    when it may have been applied) and is returned, not raised: the cycle
    reports it and retries next time.
    """
    pending = [e for e in store.pending_writebacks(target) if not e.in_doubt]
    sent: list[int] = []
    for done in (True, False):
        entries = [e for e in pending if e.done is done]
        for start in range(0, len(entries), BULK_CHUNK):
            chunk = entries[start : start + BULK_CHUNK]
            ids, entry_ids = [e.activity_id for e in chunk], [e.id for e in chunk]
            store.set_writeback_attempt(entry_ids, utcnow())
            try:
                client.bulk_patch_activities(ids, {"done": done})
            except ApiError as exc:
                store.mark_writeback_failed(entry_ids, str(exc), in_doubt=exc.maybe_applied)
                log.warning(
                    "sync.writeback_failed", done=done, count=len(ids), error=str(exc),
                    in_doubt=exc.maybe_applied,
                )
                return WritebackResult(sent=tuple(sent), error=exc)
            store.mark_writebacks_sent(entry_ids, now)
            log.info("sync.writeback", done=done, activity_ids=ids)
            sent.extend(ids)
    return WritebackResult(sent=tuple(sent))


def send_and_refetch(
    config: Config, store: Store, client: ApexClient, target: str, now: datetime, scope: Scope
) -> WritebackResult:
    """Send the pending writebacks, then re-read the activities sent into the mirror and ``scope``.

    The cycle then plans with the CRM's new state (DESIGN §5 "Writeback"), so
    the next pull brings an object equal to the remote one: no ping-pong.
    """
    sent = send_pending(store, client, target, now)
    if sent.sent:
        into_scope(store, target, scope, refetch(config, store, client, sent.sent))
    return sent


def into_scope(store: Store, target: str, scope: Scope, fresh: Iterable[Activity]) -> None:
    """Put re-read activities (and the records of those new to the scope) into ``scope``."""
    activities = list(fresh)
    if not activities:
        return
    scope.activities.update((a.id, a) for a in activities)
    new = {a.id for a in activities} - {r.activity_id for r in scope.records.values()}
    if new:
        scope.records.update((r.uid, r) for r in store.records_for_activities(target, new))
