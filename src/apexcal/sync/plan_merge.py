"""What an update PUTs: our rendering merged into the server's copy (DESIGN §5, "Ownership").

The planner decides *whether* an object is written, from hashes of what
apexcal owns; this step decides *what* is written.  Each :class:`Update`
carries our full rendering; here it becomes
:func:`apexcal.ical.merge.merge` of that rendering over the copy of the
object read from the server, so the user's alarms, acknowledgements,
attendees and other clients' properties stay as the server holds them.  The
merged object has the rendering's owned hash, so the record's
``pushed_hash`` is unchanged and the next cycle writes nothing.

The copy is the one this cycle read (detection, a refresh, a re-read after a
412) when its etag is the one the update is conditioned on; the cycle reads
the others (one calendar-multiget) before writing.  ``If-Match`` stays the
planned etag: when the object changed after the planner saw it, the server
answers 412 and the cycle's conflict path re-reads it (the next merge starts
from that copy), so a completion ticked in between is never overwritten
unseen.  An object gone in between keeps the full rendering (its PUT meets
412 too).  A copy that is not iCalendar (:class:`~apexcal.errors.ContentLineError`)
gets the full rendering: nothing readable can be kept from it.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from apexcal.errors import ContentLineError
from apexcal.ical.merge import merge
from apexcal.sync.plan_model import Plan, RemoteSeen, Update

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class Copy:
    """The server's copy of one object, as read: its etag and bytes."""

    etag: str | None
    data: bytes


def copies_of(seen: Iterable[RemoteSeen]) -> dict[str, Copy]:
    """The copies among objects read (by href): those whose bytes were kept."""
    return {s.href: Copy(etag=s.etag, data=s.data) for s in seen if s.data is not None}


def to_read(plan: Plan, copies: Mapping[str, Copy]) -> list[str]:
    """The hrefs of the plan's updates with no copy read at the etag they are conditioned on."""
    return [u.href for u in plan.updates if (c := copies.get(u.href)) is None or c.etag != u.etag]


def merged(update: Update, copy: Copy | None) -> Update:
    """``update`` carrying our rendering merged into ``copy`` (unchanged without a readable copy)."""
    if copy is None:
        return update
    try:
        data = merge(copy.data, update.data)
    except ContentLineError as exc:
        log.warning("sync.merge_unreadable", uid=update.uid, href=update.href, line=exc.line, reason=exc.reason)
        return update
    return dataclasses.replace(update, data=data)


def merge_updates(plan: Plan, copies: Mapping[str, Copy]) -> Plan:
    """``plan`` with every update merged into its copy (see :func:`merged`)."""
    if not plan.updates:
        return plan
    return dataclasses.replace(plan, updates=tuple(merged(u, copies.get(u.href)) for u in plan.updates))
