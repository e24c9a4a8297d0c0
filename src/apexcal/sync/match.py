"""Matching what was recorded with what was read: one :class:`Case` per UID (pure).

Both the planner (:func:`apexcal.sync.plan.plan`) and the completion step
(:func:`apexcal.sync.completions.completions`) judge UIDs from the same match,
so they always agree on which object at which href is "ours".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from apexcal.sync.plan_model import ObjectRecord, RemoteSeen, RemoteState


@dataclass(frozen=True, kw_only=True)
class Case:
    """One UID as the planner sees it: its record, the objects read for it, and how to judge it."""

    uid: str
    record: ObjectRecord | None
    own: RemoteSeen | None
    """The object read at the record's href this cycle (None: not read, or gone)."""
    gone: bool
    objs: list[RemoteSeen]
    """Every object read this cycle that carries this UID."""
    by_record: bool
    """Judged by its live record (else as an unrecorded UID: new, tombstoned, or moved)."""


def cases(
    uids: Iterable[str],
    records: Mapping[str, ObjectRecord],
    remote: RemoteState,
    owns: Callable[[str], bool] | None,
) -> Iterator[Case]:
    """Every UID wanted, recorded or seen, in order, matched with what was read of it."""
    seen_by_href = {s.href: s for s in remote.seen}
    seen_by_uid: dict[str, list[RemoteSeen]] = {}
    for s in sorted(remote.seen, key=lambda s: s.href):
        uid = s.uid
        if uid is None:
            rec_at = next((r for r in records.values() if r.href == s.href), None)
            uid = rec_at.uid if rec_at is not None else None
        if uid is not None and (owns is None or owns(uid)):
            seen_by_uid.setdefault(uid, []).append(s)
    present = {s.href for s in remote.seen} | remote.listed
    for uid in sorted(set(uids) | records.keys() | seen_by_uid.keys()):
        r = records.get(uid)
        objs = seen_by_uid.get(uid, [])
        if r is not None and not r.remote_deleted:
            gone = r.href in remote.deleted or (remote.full and r.href not in present)
            own = seen_by_href.get(r.href) if not gone else None
            if own is not None and own.uid not in (None, uid):
                own = None  # our href now holds another UID: treat ours as gone
                gone = True
            if own is not None or not (gone and objs):
                yield Case(uid=uid, record=r, own=own, gone=gone, objs=objs, by_record=True)
                continue
            # Our object moved to another href: adopt it there.
        yield Case(uid=uid, record=r, own=None, gone=False, objs=objs, by_record=False)
