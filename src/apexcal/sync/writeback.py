"""Writeback: completion changes seen on a calendar, on their way to the CRM (DESIGN §5, "Writeback").

Each change is journaled (committed) first, then every pending entry of the
target is sent with the API's bulk endpoint — one ``PATCH /activities`` per
value of ``done`` (and per 100 ids) — and marked sent once the API accepted
it — in the same transaction the object records take the sent value as what
both sides hold, so once the API's acceptance is known nothing re-sends it
over a later CRM change.  A crash before the answer arrives re-sends the
entry on the next cycle (setting ``done`` to a value is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.config import Config
from apexcal.errors import ApiError
from apexcal.state import Store
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


def send_pending(store: Store, client: ApexClient, target: str, now: datetime) -> WritebackResult:
    """Send every pending writeback of ``target`` with the bulk endpoint and mark them sent.

    An API failure leaves the entries pending (their attempt counted) and is
    returned, not raised: the cycle reports it and retries next time.
    """
    pending = store.pending_writebacks(target)
    if not pending:
        return WritebackResult(sent=())
    sent: list[int] = []
    for done in (True, False):
        entries = [e for e in pending if e.done is done]
        if not entries:
            continue
        ids = [e.activity_id for e in entries]
        try:
            client.bulk_patch_activities(ids, {"done": done})
        except ApiError as exc:
            store.mark_writeback_failed([e.id for e in entries], str(exc))
            log.warning("sync.writeback_failed", done=done, count=len(ids), error=str(exc))
            return WritebackResult(sent=tuple(sent), error=exc)
        store.mark_writebacks_sent([e.id for e in entries], now)
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
        fresh = refetch(config, store, client, sent.sent)
        scope.activities.update((a.id, a) for a in fresh)
        new = set(sent.sent) - {r.activity_id for r in scope.records.values()}
        if new:
            scope.records.update((r.uid, r) for r in store.records_for_activities(target, new))
    return sent
