"""Apply: carry out a plan on one CalDAV collection, recording each object as soon as it is written.

Record-only actions (tombstones, forgets, adoptions, etag/completion updates)
are committed first.  Then the writes run with bounded concurrency —
deletes, updates, creates — each conditional (``If-Match`` /
``If-None-Match: *``), and each accepted write is recorded at once from the
calling thread, so a crash loses at most the writes in flight, which the next
cycle adopts (a create meets 412) or re-reads.  Each record carries the etag
the server gave in its answer to the PUT when that is a strong one
(:func:`answered_etag`); the etags of the others are read back with
calendar-multiget once the writes end (:func:`record_etags`).

Why an answer's strong ETag is recorded: HTTP allows a validator in a
successful PUT's answer only when it names the new representation, stored
without transformation (RFC 9110 §9.3.4, formerly RFC 7231 §4.3.4; RFC 4791
§5.3.4 repeats it for calendar objects), so it is what later listings report
and what ``If-Match`` must name.  Radicale and Xandikos re-serialize what they
store yet send one anyway: the etag of what they stored, equal to the one they
list after (``tests/contract/test_sink_contract.py`` holds every server of the
suite to this).  Either way the record stays safe: an etag that did not match
what the server lists would only make the next cycle read that object (its
content hash then shows it unchanged, and the listed etag is recorded), and an
``If-Match`` on it would meet a 412 and a re-read, never overwrite anything
blind.  Unlike a read after the write, it cannot take a change another client
made in between for ours.  A weak etag (``W/``) or none is read back.

Outcomes per object:

* accepted → recorded;
* ``412`` on a create → the object exists: returned in ``exists`` for the
  engine to read and adopt, or, when it is one of ours broken by a client
  (unreadable, or its UID rewritten), to overwrite with ``If-Match``
  (:func:`read_refused_creates`, :func:`replace_broken`);
* ``412`` on an update or delete → someone changed or deleted it after our
  read: returned in ``conflicted`` for the engine to re-read (gone →
  re-created or forgotten at once; changed → skipped and re-read next cycle,
  ``retry``), never overwritten blind;
* a duplicate UID refused on a create → returned in ``uid_taken`` for the
  engine to judge (another calendar of the account may hold it, see
  :mod:`apexcal.sync.held`);
* anything else (server errors, no answer, …) → an
  :class:`ObjectError` with its reason; the object is retried next cycle and
  the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain

import structlog

from apexcal.errors import (
    CalDAVError,
    CalDAVTransportError,
    CycleCancelled,
    ObjectsUnread,
    PreconditionFailed,
    UidConflict,
)
from apexcal.state import ObjectRecord, Store
from apexcal.sync.detect import read_objects
from apexcal.sync.plan import Create, Delete, Plan, RemoteSeen, Update, Write
from apexcal.sync.plan_model import TOMBSTONE_KIND
from apexcal.sync.sink import Outcome, Sink, WriteResult

log = structlog.get_logger(__name__)

@dataclass(frozen=True, kw_only=True)
class ObjectError:
    """One object that could not be written this cycle, and why (it is retried next cycle)."""

    uid: str
    href: str
    activity_id: int | None
    kind: str
    reason: str


@dataclass(kw_only=True)
class ApplyResult:
    """Counts and outcomes of applying one plan."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    adopted: int = 0
    recorded: int = 0
    skipped: int = 0
    retry: bool = False
    errors: list[ObjectError] = field(default_factory=list)
    exists: list[Create] = field(default_factory=list)
    """Creates refused with 412: an object is already at the href (read it and adopt)."""
    conflicted: list[Update | Delete] = field(default_factory=list)
    """Updates and deletes refused with 412: re-read the href and plan again."""
    uid_taken: list[tuple[Create, UidConflict]] = field(default_factory=list)
    """Creates refused because another href holds their UID (on Cyrus, maybe in another calendar)."""
    written: dict[str, ObjectRecord] = field(default_factory=dict)
    """Records of objects written, by href (those whose etag is None are read back)."""
    broken: list[tuple[Update, str]] = field(default_factory=list)
    """Our objects found broken where creates met 412, to overwrite (``If-Match``), and what is wrong."""
    warnings: list[str] = field(default_factory=list)
    """Lines for the cycle's summary (objects reported once)."""


def _kind_of(kind: str) -> str:
    return "VTODO" if kind == "VTODO" else "VEVENT"


def answered_etag(outcome: WriteResult) -> str | None:
    """The strong ETag of a write's answer, to record as the object's etag; None when weak or absent."""
    etag = outcome.etag
    if not etag or etag.startswith("W/"):
        return None
    return etag


def _written(target: str, action: Create | Update, href: str, etag: str | None) -> ObjectRecord:
    return ObjectRecord(
        target=target,
        uid=action.uid,
        activity_id=action.activity_id,
        href=href,
        etag=etag,
        pushed_hash=action.content_hash,
        pushed_done=action.done,
        done_seen=action.done if action.kind == "VTODO" else None,
        kind=_kind_of(action.kind),
    )


def apply_records(
    plan: Plan, store: Store, target: str, records: Mapping[str, ObjectRecord]
) -> ApplyResult:
    """Commit the plan's record-only actions (before any write)."""
    result = ApplyResult()
    for tomb in plan.tombstones:
        old = records.get(tomb.uid)
        if old is not None:
            store.put_record(
                replace(old, etag=None, pushed_hash=None, kind=TOMBSTONE_KIND, pending_done=None)
            )
    for forget in plan.forgets:
        store.delete_record(target, forget.uid)
    for adopt in plan.adopts:
        store.put_record(
            ObjectRecord(
                target=target,
                uid=adopt.uid,
                activity_id=adopt.activity_id,
                href=adopt.href,
                etag=adopt.etag,
                pushed_hash=adopt.content_hash,
                pushed_done=adopt.done,
                done_seen=adopt.done if adopt.kind == "VTODO" else None,
                kind=_kind_of(adopt.kind),
            )
        )
        result.adopted += 1
    for upd in plan.record_updates:
        old = records.get(upd.uid)
        if old is not None and old.href == upd.href:
            pushed = upd.pushed_done if upd.pushed_done is not None else old.pushed_done
            store.put_record(
                replace(
                    old,
                    etag=upd.etag,
                    done_seen=upd.done_seen,
                    pushed_done=pushed,
                    updated_at=None,
                    pending_done=None,
                )
            )
            result.recorded += 1
    return result


def apply_writes(
    plan: Plan,
    sink: Sink,
    store: Store,
    target: str,
    records: Mapping[str, ObjectRecord],
    *,
    result: ApplyResult | None = None,
    should_stop: Callable[[], bool] | None = None,
    more: Iterable[Write] = (),
) -> ApplyResult:
    """Run the plan's writes (bounded concurrency), recording each accepted one at once.

    ``more``: writes to run after the plan's, taken lazily as the writes
    before them are answered (:mod:`apexcal.sync.apply_stream`).
    """
    result = result or ApplyResult()
    writes: Iterable[Write] = plan.writes
    if isinstance(more, Sequence) and not more:
        if not plan.writes:
            return result
    else:
        writes = chain(plan.writes, more)
    # Write-ahead: after a crash between a PUT and its record, the object read
    # next cycle is recognised as our own write (ObjectRecord.pending_done).
    pending = [(u.uid, u.done) for u in plan.updates if u.kind == "VTODO" and u.uid in records]
    if pending:
        store.set_pending_done(target, pending)

    def on_result(_index: int, action: Write, outcome: Outcome) -> None:
        _record_outcome(action, outcome, sink, store, target, records, result)
        if should_stop is not None and should_stop():
            raise CycleCancelled("stop requested")

    sink.apply_many(writes, on_result=on_result, stop=should_stop)
    if should_stop is not None and should_stop():
        raise CycleCancelled("stop requested")
    return result


def _record_outcome(
    action: Create | Update | Delete,
    outcome: Outcome,
    sink: Sink,
    store: Store,
    target: str,
    records: Mapping[str, ObjectRecord],
    result: ApplyResult,
) -> None:
    if isinstance(outcome, CalDAVError):
        if isinstance(action, Update) and not isinstance(outcome, CalDAVTransportError):
            # Definitely not written (no answer means it may have been).
            store.set_pending_done(target, [(action.uid, None)])
        _failed(action, outcome, sink, result)
        return
    if isinstance(action, Delete):
        old = records.get(action.uid)
        if old is not None and old.href == outcome.href:
            store.delete_record(target, action.uid)
        result.deleted += 1
        log.debug("sync.deleted", uid=action.uid, href=outcome.href, status=outcome.status)
        return
    rec = _written(target, action, outcome.href, answered_etag(outcome))
    store.put_record(rec)
    result.written[outcome.href] = rec
    if isinstance(action, Create):
        result.created += 1
    else:
        result.updated += 1


def _failed(
    action: Create | Update | Delete, exc: CalDAVError, sink: Sink, result: ApplyResult
) -> None:
    href = sink.href_for(action.href_name) if isinstance(action, Create) else action.href
    activity_id = None if isinstance(action, Delete) else action.activity_id
    if isinstance(exc, PreconditionFailed):
        if isinstance(action, Create):
            result.exists.append(action)
            return
        result.conflicted.append(action)
        return
    if isinstance(exc, UidConflict) and isinstance(action, Create):
        result.uid_taken.append((action, exc))
        return
    kind = "uid_conflict" if isinstance(exc, UidConflict) else type(exc).__name__
    log.warning("sync.object_failed", uid=action.uid, href=href, kind=kind, error=str(exc))
    result.errors.append(
        ObjectError(uid=action.uid, href=href, activity_id=activity_id, kind=kind, reason=str(exc))
    )


def record_etags(sink: Sink, store: Store, written: Mapping[str, ObjectRecord]) -> int:
    """Read back the etags of written objects whose answer gave none (calendar-multiget, batched) and record them."""
    written = {href: rec for href, rec in written.items() if rec.etag is None}
    if not written:
        return 0
    try:
        fetched = sink.multiget(written)
    except ObjectsUnread as exc:  # those keep no etag: read again next cycle
        fetched = exc.found
    count = 0
    for href, rec in written.items():
        obj = fetched.get(href)
        if obj is None or not obj.etag:
            continue
        store.put_record(replace(rec, etag=obj.etag, updated_at=None))
        count += 1
    return count


def read_refused_creates(
    result: ApplyResult, sink: Sink, owns: Callable[[str], bool]
) -> list[RemoteSeen]:
    """Read what stands where creates met 412: our object there is returned to adopt.

    The href of a create is the one apexcal names for that UID, so nobody
    else's object lives there.  An object there that cannot be read, or whose
    UID a client rewrote to one that is not ours, is one of ours broken while
    its record was lost (e.g. the state database): it is queued in
    ``result.broken`` to be overwritten with ``If-Match`` on the etag just read,
    so a change made meanwhile still wins (412).  So is one the server lists
    but cannot return (:class:`~apexcal.errors.ObjectsUnread`; its etag from
    the listing when the read gave none).  Only another of our UIDs there, an
    object without an etag, or nothing at all, is an error (retried next cycle).
    """
    creates, result.exists = result.exists, []
    by_href = {sink.href_for(c.href_name): c for c in creates}
    unreadable: dict[str, str] = {}
    unread: dict[str, tuple[str, str | None]] = {}
    read, foreign = read_objects(sink, by_href, owns, unreadable, unread)
    if any(etag is None for _, etag in unread.values()):
        # The server failed to read it, so gave no etag: the listing has it.
        listing = sink.listing()
        unread = {h: (why, etag or listing.get(h) or None) for h, (why, etag) in unread.items()}
    seen: list[RemoteSeen] = []
    for href, create in by_href.items():
        item = read.get(href)
        if item is not None and item.uid == create.uid:
            seen.append(item)
            continue
        if item is not None and item.uid is None:
            etag, why = item.etag, unreadable.get(href, "unreadable")
        elif href in foreign:
            etag, why = foreign[href] or None, "holds a UID that is not apexcal's"
        elif href in unread:
            why, etag = unread[href]
        else:
            etag, why = None, ""
        if etag is not None:
            result.broken.append((_over(create, href, etag), why))
            continue
        if why:
            reason = f"an object without an etag holds this href, not overwritten: {why}"
        elif item is not None:
            reason = f"another of apexcal's objects ({item.uid}) holds this href"
        else:
            reason = "the object that refused the create is gone; created next cycle"
        result.errors.append(
            ObjectError(
                uid=create.uid,
                href=href,
                activity_id=create.activity_id,
                kind="href_taken",
                reason=reason,
            )
        )
    return seen


def _over(create: Create, href: str, etag: str) -> Update:
    return Update(
        uid=create.uid,
        activity_id=create.activity_id,
        href=href,
        etag=etag,
        data=create.data,
        content_hash=create.content_hash,
        kind=create.kind,
        done=create.done,
    )


def replace_broken(
    result: ApplyResult,
    sink: Sink,
    store: Store,
    target: str,
    records: Mapping[str, ObjectRecord],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Write the CRM's version over our broken objects found by :func:`read_refused_creates`.

    Each is reported once, with its href and what was wrong (``sync.broken_replaced``
    and a summary warning); a 412 (changed meanwhile) is re-read next cycle.
    """
    broken, result.broken = result.broken, []
    if not broken:
        return
    plan = Plan(updates=tuple(u for u, _ in broken))
    apply_writes(plan, sink, store, target, records, result=result, should_stop=should_stop)
    for update, why in broken:
        if update.href in result.written:  # else a 412 (re-read next cycle) or an error naming it
            log.warning("sync.broken_replaced", uid=update.uid, href=update.href, reason=why)
            result.warnings.append(f"{update.href}: one of apexcal's objects, broken ({why}): replaced")


def adopt(
    again: Plan,
    result: ApplyResult,
    sink: Sink,
    store: Store,
    target: str,
    records: Mapping[str, ObjectRecord],
) -> None:
    """Apply the adoptions and updates of a plan made from what refused creates found."""
    only = Plan(updates=again.updates, adopts=again.adopts, record_updates=again.record_updates)
    apply_records(only, store, target, records)
    result.adopted += len(only.adopts)
    apply_writes(only, sink, store, target, records, result=result)


def unadoptable(result: ApplyResult, sink: Sink) -> None:
    """Creates still refused after an adoption: errors, retried next cycle."""
    for create in result.exists:
        result.errors.append(
            ObjectError(
                uid=create.uid,
                href=sink.href_for(create.href_name),
                activity_id=create.activity_id,
                kind="precondition",
                reason="object exists but could not be adopted",
            )
        )
    result.exists = []


def unresolved_conflicts(result: ApplyResult) -> None:
    """Updates and deletes still refused after a re-read: skipped, re-read next cycle."""
    for action in result.conflicted:
        log.info("sync.conflict_412", uid=action.uid, href=action.href)
        result.skipped += 1
        result.retry = True
    result.conflicted = []
