"""Detect: what changed on a target's calendar since the last cycle (DESIGN §5, "Remote changes").

The sync-collection REPORT with the stored token names the hrefs created,
changed or deleted since; an invalid token (or none) gives a full listing,
diffed against the records.  Hrefs whose etag equals the recorded one are our
own writes echoed back and are not read; the rest are read with
calendar-multiget.  Only objects whose UID is one of ours (this organization,
this UID domain) reach the planner; an unreadable object at a recorded href
(or one whose UID a client changed to one not ours) reaches it without a UID,
so the planner judges it by its record: it is reported, left as it is, and
replaced only when the CRM changes the activity.  Unreadable objects are
listed in :attr:`Detected.unreadable` for the cycle's summary.  Objects the
server lists but does not return (:class:`~apexcal.errors.ObjectsUnread`) are
neither gone nor read: listed in :attr:`Detected.unread`, taken as unchanged,
and the cycle keeps its sync token so they are read again.

The recorded hrefs are loaded only when the server forces a full listing, so
a cycle with no remote change reads no records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import structlog

from apexcal.config import Config
from apexcal.errors import ContentLineError, ObjectsUnread, RemoteParseError
from apexcal.ical.mapping import parse_uid
from apexcal.ical.ownership import owned_hash
from apexcal.ical.remote import read_remote
from apexcal.state import ObjectRecord, Store
from apexcal.sync.plan import RemoteSeen, RemoteState
from apexcal.sync.sink import FetchedObject, RemoteChanges, Sink

log = structlog.get_logger(__name__)


class _RecordedHrefs(Collection[str]):
    """The target's recorded hrefs, read from the store on first use only."""

    def __init__(self, load: Callable[[], set[str]]) -> None:
        self._load = load
        self._hrefs: set[str] | None = None

    def _get(self) -> set[str]:
        if self._hrefs is None:
            self._hrefs = self._load()
        return self._hrefs

    def __contains__(self, href: object) -> bool:
        return href in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


@dataclass(frozen=True, kw_only=True)
class Detected:
    """The remote state for the planner, the server's new token, and the records consulted."""

    remote: RemoteState
    token: str | None
    records: dict[str, ObjectRecord]
    """Records of the hrefs the server reported (changed or deleted), by UID."""
    foreign: int = 0
    """Objects read whose UID is not ours (never touched)."""
    reconciled: bool = False
    """Whether a full listing of the calendar was compared with the records."""
    unreadable: tuple[tuple[str, str], ...] = ()
    """``(href, what is wrong)`` of each object read that is not a calendar object apexcal can read."""
    unread: tuple[tuple[str, str], ...] = ()
    """``(href, what went wrong)`` of each changed object the server did not return
    (:class:`~apexcal.errors.ObjectsUnread`): taken as unchanged this cycle, so the
    sync token must not move past it."""


def is_our_uid(uid: str, *, organization_id: int, domain: str) -> bool:
    """Whether ``uid`` is a UID this organization and UID domain write."""
    ids = parse_uid(uid)
    return ids is not None and ids[0] == organization_id and uid.strip().endswith("@" + domain)


def ownership(config: Config) -> Callable[[str], bool]:
    """A test of whether a UID is ours: this organization and UID domain."""
    org = config.source.organization_id
    domain = config.source.effective_uid_domain
    return lambda uid: is_our_uid(uid, organization_id=org, domain=domain)


_FOLD = re.compile(rb"\r?\n[ \t]")


def semantic_hash(data: bytes) -> str:
    """The content hash that decides "nothing to do": :func:`~apexcal.ical.ownership.owned_hash`.

    Servers store our bytes rewritten: Radicale re-serializes every object
    (property order, line folding, parameter quoting) and cuts an
    ``X-APPLE-STRUCTURED-LOCATION`` value at its comma; Cyrus re-folds,
    re-quotes parameters and keeps ``GEO`` at 6 decimals.  The hash covers
    only what apexcal owns, normalised against all of that, so an object we
    wrote compares equal to what the server returns — which lets a
    crash-interrupted write, or a calendar that already holds our objects, be
    adopted without rewriting it.  Any change of the CRM's content still
    changes the hash (it changes ``LAST-MODIFIED`` and ``SEQUENCE`` at least).
    """
    # Unfolded as bytes first: a server folding inside a UTF-8 sequence must not matter.
    return owned_hash(_FOLD.sub(b"", data))


def legacy_hash(data: bytes) -> str:
    """The content hash records written by earlier versions hold (sorted unfolded lines, quotes dropped).

    A record whose ``pushed_hash`` has this form and equals it for the desired
    bytes means "unchanged" too, so changing the hash rewrites nothing.
    """
    lines = []
    for line in _FOLD.sub(b"", data).replace(b"\r\n", b"\n").split(b"\n"):
        line = line.strip()
        if not line:
            continue
        if line.upper().startswith(b"X-APPLE-STRUCTURED-LOCATION"):
            head, _, value = line.rpartition(b":")
            line = head + b":" + value.split(b",")[0]
        name_params, sep, value = line.partition(b":")
        lines.append(name_params.replace(b'"', b"") + sep + value)
    return hashlib.sha256(b"\n".join(sorted(lines))).hexdigest()


def seen_from(
    obj: FetchedObject,
    uid_filter: Callable[[str], bool],
    unreadable: dict[str, str] | None = None,
) -> RemoteSeen | None:
    """The planner's view of one object read from the server; None when it is not ours.

    An object apexcal cannot read is logged (``sync.remote_unreadable`` with
    href and reason), noted in ``unreadable`` and seen without a UID, so the
    planner judges it by the record at its href, if any.
    """
    try:
        remote = read_remote(obj.href, obj.data)
        if not uid_filter(remote.uid):
            return None
        # Our own objects are read line by line too (hash, merge): a structure
        # icalendar tolerates but those cannot read makes the object unreadable.
        content_hash = semantic_hash(obj.data)
    except (RemoteParseError, ContentLineError) as exc:
        log.warning("sync.remote_unreadable", href=obj.href, reason=_reason(exc))
        if unreadable is not None:
            unreadable[obj.href] = _reason(exc)
        return RemoteSeen(href=obj.href, etag=obj.etag or None, uid=None, done=None, data=obj.data)
    return RemoteSeen(
        href=obj.href,
        etag=obj.etag or None,
        uid=remote.uid.strip(),
        done=remote.done if remote.kind == "VTODO" else None,
        status=remote.status,
        modified=remote.completed or remote.last_modified,
        content_hash=content_hash,
        data=obj.data,
    )


def _reason(exc: RemoteParseError | ContentLineError) -> str:
    return exc.reason if isinstance(exc, RemoteParseError) else str(exc)


def detect(
    sink: Sink,
    store: Store,
    target: str,
    token: str | None,
    *,
    uid_filter: Callable[[str], bool],
    reconcile: bool = False,
) -> Detected:
    """Ask the server what changed since ``token`` and read the changed objects we may own.

    ``reconcile``: compare a full href/etag listing (:meth:`Sink.listing`)
    with the records even when the token is accepted, so deletions and
    changes the token's answers missed are found (``caldav.reconciled``).
    """
    known = _RecordedHrefs(lambda: {r.href for r in store.records(target).values()})
    changes = sink.changes(token, known_hrefs=known)
    if reconcile and not changes.full:
        members = sink.listing()
        changes = RemoteChanges(
            token=changes.token,
            changed=members,
            deleted=frozenset(h for h in known if h not in members),
            full=True,
        )
    by_href = store.records_for_hrefs(target, [*changes.changed, *changes.deleted])
    if changes.full:
        _log_reconciled(target, changes, by_href)
    to_read: list[str] = []
    listed: set[str] = set()
    for href, etag in changes.changed.items():
        rec = by_href.get(href)
        if rec is not None and etag and rec.etag == etag:
            listed.add(href)  # our own write echoed back, or unchanged in a full listing
        else:
            to_read.append(href)
    unreadable: dict[str, str] = {}
    unread: dict[str, tuple[str, str | None]] = {}
    read, foreign_hrefs = read_objects(sink, to_read, uid_filter, unreadable, unread)
    seen: list[RemoteSeen] = []
    deleted = set(changes.deleted)
    listed.update(unread)  # present, not read: neither gone nor changed this cycle
    for href in to_read:
        if href in unread:
            continue
        item = read.get(href)
        if item is None and href in by_href and href in foreign_hrefs:
            item = _rewritten(href, foreign_hrefs[href], unreadable)
        if item is None:
            if href in by_href:
                deleted.add(href)  # gone by the time we read it
            continue
        if item.uid is None and href not in by_href:
            continue  # unreadable and not ours as far as we know
        seen.append(item)
    if changes.full:
        log.info("sync.full_listing", target=target, objects=len(changes.changed))
    records = {r.uid: r for r in by_href.values()}
    return Detected(
        remote=RemoteState(
            seen=tuple(seen),
            deleted=frozenset(deleted),
            full=changes.full,
            listed=frozenset(listed),
        ),
        token=changes.token,
        records=records,
        foreign=len(foreign_hrefs),
        unreadable=tuple(sorted(unreadable.items())),
        unread=tuple(sorted((h, why) for h, (why, _) in unread.items())),
    )


def _rewritten(href: str, etag: str, unreadable: dict[str, str]) -> RemoteSeen:
    """An object at an href apexcal wrote whose UID is no longer apexcal's: seen as unreadable.

    The href name is apexcal's own (``apexcal-…``): a client that changed the
    UID there broke our object, and nobody else's object lives there.  Taken
    as gone, the object would be re-created at the same href, which it
    holds, and fail every cycle; taken as unreadable, it is reported and left
    as it is until the CRM changes the activity (see
    docs/reliability.md, "Bad input").
    """
    reason = "holds a UID that is not apexcal's"
    log.warning("sync.remote_unreadable", href=href, reason=reason)
    unreadable[href] = reason
    return RemoteSeen(href=href, etag=etag or None, uid=None, done=None)


def _log_reconciled(target: str, changes: RemoteChanges, by_href: dict[str, ObjectRecord]) -> None:
    missing = sum(1 for h in changes.deleted if (r := by_href.get(h)) is not None and r.etag is not None)
    unknown = sum(1 for h in changes.changed if h not in by_href)
    changed = sum(
        1 for h, e in changes.changed.items() if (r := by_href.get(h)) is not None and r.etag != e
    )
    log.info(
        "caldav.reconciled", target=target, objects=len(changes.changed), missing=missing,
        unknown=unknown, changed=changed,
    )


def read_objects(
    sink: Sink,
    hrefs: Iterable[str],
    owns: Callable[[str], bool],
    unreadable: dict[str, str] | None = None,
    unread: dict[str, tuple[str, str | None]] | None = None,
) -> tuple[dict[str, RemoteSeen], dict[str, str]]:
    """Read ``hrefs`` (calendar-multiget): what the planner sees of each, and the hrefs (→ etags) of foreign UIDs.

    An href in neither is gone from the sink, unless the sink could not
    return it: given ``unread``, those are noted there (href → (what went
    wrong, etag or None)) instead of raising :class:`ObjectsUnread`.
    Unreadable objects are noted in ``unreadable`` (href → what is wrong).
    """
    wanted = list(hrefs)
    try:
        fetched = sink.multiget(wanted) if wanted else {}
    except ObjectsUnread as exc:
        if unread is None:
            raise
        fetched = exc.found
        unread.update(exc.unread)
    seen: dict[str, RemoteSeen] = {}
    foreign: dict[str, str] = {}
    for href in wanted:
        obj = fetched.get(href)
        if obj is None:
            continue
        item = seen_from(obj, owns, unreadable)
        if item is None:
            foreign[href] = obj.etag
        else:
            seen[href] = item
    return seen, foreign


def reread(
    sink: Sink,
    remote: RemoteState,
    hrefs: list[str],
    owns: Callable[[str], bool],
    unread: dict[str, tuple[str, str | None]] | None = None,
) -> RemoteState:
    """``remote`` with ``hrefs`` read again (gone when the sink no longer has them).

    Given ``unread``, the hrefs the sink could not return are noted there and
    left as ``remote`` had them (else :class:`ObjectsUnread` is raised).
    """
    missed: dict[str, tuple[str, str | None]] = {} if unread is None else unread
    read, _ = read_objects(sink, hrefs, owns, unread=None if unread is None else missed)
    seen = {s.href: s for s in remote.seen}
    deleted = set(remote.deleted)
    for href in hrefs:
        if href in missed:
            continue
        item = read.get(href)
        if item is None:
            deleted.add(href)
            seen.pop(href, None)
        else:
            seen[href] = item
            deleted.discard(href)
    return dataclasses.replace(remote, seen=tuple(seen.values()), deleted=frozenset(deleted))
