"""The sorted spool: serialized components collected in any order, written sorted by UID.

Exports and feed files write calendars whose components are sorted by UID,
so that the same data always gives the same bytes.  Activities arrive in id
order, which is not UID order (``apexcal-27-10@…`` sorts *before*
``apexcal-27-1@…``: ``0`` < ``@``), and an export may hold 100,000 of them,
so sorting in memory is not an option.  :class:`ComponentSpool` is an
external merge sort: serialized components are buffered up to a byte budget,
each full buffer is sorted and spilled to an anonymous temporary file, and
the runs are merged lazily on the way out.  Memory stays bounded by the
budget (plus one record per run) whatever the count.

Records carry a *group* beside the UID: a split export (one file per user
or type) and the per-user files of a feed are one sorted stream, written
group after group.  :func:`spool_activities` maps activities into a spool;
:func:`write_spooled` and :func:`write_file` write one group as a calendar.
"""

from __future__ import annotations

import heapq
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import IO, BinaryIO

import structlog

from apexcal.apex.models import Activity, ActivityType, GeoPoint
from apexcal.errors import Unmappable
from apexcal.feeds.atomic import WriteResult, write_atomic
from apexcal.ical.feed import CalendarProps, write_calendar
from apexcal.ical.mapping import MappingOptions, is_hidden, map_activity, uid_for

log = structlog.get_logger(__name__)

#: Serialized bytes a spool holds in memory before it spills a sorted run to disk.
DEFAULT_SPOOL_BUDGET = 8 * 1024 * 1024
# Per-record bookkeeping counted against the budget (tuple, strings, list slot).
_RECORD_OVERHEAD = 200
_HEADER = struct.Struct(">III")
_RUN_BUFFER = 64 * 1024
_TZID_MARK = b";TZID="

Record = tuple[str, str, bytes]


def _read_run(run: IO[bytes]) -> Iterator[Record]:
    run.seek(0)
    while header := run.read(_HEADER.size):
        group_len, uid_len, data_len = _HEADER.unpack(header)
        group = run.read(group_len).decode("utf-8")
        uid = run.read(uid_len).decode("utf-8")
        yield group, uid, run.read(data_len)


def _record_key(record: Record) -> tuple[str, str]:
    return record[0], record[1]


@dataclass(kw_only=True)
class ComponentSpool:
    """Serialized components collected in any order and read back sorted by ``(group, uid)``.

    Use as a context manager (spilled runs are anonymous temporary files,
    removed by the operating system when closed, even after a crash).  The
    spool also remembers, per group, how many components it holds, whether
    any carries a TZID (so the writer knows which VTIMEZONEs are needed
    before the first component) and a display label.
    """

    budget: int = DEFAULT_SPOOL_BUDGET
    directory: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    zoned: set[str] = field(default_factory=set)
    labels: dict[str, str] = field(default_factory=dict)
    _buffer: list[Record] = field(default_factory=list)
    _buffered: int = 0
    _runs: list[IO[bytes]] = field(default_factory=list)

    def __enter__(self) -> ComponentSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the buffer and every spilled run."""
        for run in self._runs:
            run.close()
        self._runs.clear()
        self._buffer.clear()
        self._buffered = 0

    def __len__(self) -> int:
        return sum(self.counts.values())

    @property
    def runs(self) -> int:
        """How many sorted runs have been spilled to disk so far."""
        return len(self._runs)

    def add(self, group: str, uid: str, data: bytes, *, label: str | None = None) -> None:
        """Add one serialized component to ``group``."""
        self._buffer.append((group, uid, data))
        self._buffered += len(data) + len(uid) + len(group) + _RECORD_OVERHEAD
        self.counts[group] = self.counts.get(group, 0) + 1
        if _TZID_MARK in data:
            self.zoned.add(group)
        if label and group not in self.labels:
            self.labels[group] = label
        if self._buffered >= self.budget:
            self._spill()

    def touch(self, group: str, *, label: str | None = None) -> None:
        """Make ``group`` exist even if no component is added to it (an empty calendar)."""
        self.counts.setdefault(group, 0)
        if label and group not in self.labels:
            self.labels[group] = label

    def _spill(self) -> None:
        self._buffer.sort(key=_record_key)
        # Not a with-block: the run lives until close(); unlinked already, so never left behind.
        run = tempfile.TemporaryFile(dir=self.directory, buffering=_RUN_BUFFER)  # noqa: SIM115
        for group, uid, data in self._buffer:
            g, u = group.encode("utf-8"), uid.encode("utf-8")
            run.write(_HEADER.pack(len(g), len(u), len(data)))
            run.write(g)
            run.write(u)
            run.write(data)
        run.flush()
        self._runs.append(run)
        self._buffer = []
        self._buffered = 0

    def sorted_records(self) -> Iterator[Record]:
        """Every record, sorted by ``(group, uid)``; call once, after the last :meth:`add`.

        A UID added twice to a group (a listing paged by offset can repeat a
        record that moved between pages) comes out once, the first one added
        — a calendar must not hold two components with one UID — and the
        group's count drops accordingly.
        """
        self._buffer.sort(key=_record_key)
        merged: Iterable[Record]
        if self._runs:
            streams: list[Iterable[Record]] = [_read_run(run) for run in self._runs]
            streams.append(self._buffer)
            merged = heapq.merge(*streams, key=_record_key)
        else:
            merged = self._buffer
        previous: tuple[str, str] | None = None
        for record in merged:
            key = _record_key(record)
            if key == previous:
                self.counts[record[0]] -= 1
                continue
            previous = key
            yield record

    def groups(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """Each group (sorted, empty ones included) with its components in UID order.

        Consume each group's iterator before advancing to the next group.
        """
        present = groupby(self.sorted_records(), key=lambda record: record[0])
        head = next(present, None)
        for group in sorted(self.counts):
            if head is not None and head[0] == group:
                items = head[1]
                head = None
                yield group, (data for _, _, data in items)
                for _ in items:  # drain what the caller left unread
                    pass
                head = next(present, None)
            else:
                yield group, iter(())


# --- mapping into a spool -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SpoolCounts:
    """How many activities were read, and how many were skipped as unmappable."""

    read: int
    skipped: int


GroupOf = Callable[[Activity], Sequence[tuple[str, str | None]]]


def whole(activity: Activity) -> Sequence[tuple[str, str | None]]:
    """Every activity in the one group ``""`` (an unsplit calendar)."""
    return (("", None),)


def spool_activities(
    activities: Iterable[Activity],
    spool: ComponentSpool,
    *,
    types: Mapping[str, ActivityType],
    options: MappingOptions,
    group_of: GroupOf = whole,
    on_activity: Callable[[], None] | None = None,
    geocode: Callable[[Activity], GeoPoint | None] | None = None,
) -> SpoolCounts:
    """Map each activity once and add it to every group ``group_of`` assigns it to.

    Activities that cannot become the requested component (an event without
    a start date) are skipped and counted.  ``geocode`` supplies a point for
    an activity the API left without one (see :func:`map_activity`).
    """
    read = skipped = 0
    for activity in activities:
        read += 1
        if on_activity is not None:
            on_activity()
        groups = group_of(activity)
        if not groups or is_hidden(activity, options):
            continue
        try:
            point = geocode(activity) if geocode is not None else None
            component = map_activity(activity, types, options, geocode=point)
        except Unmappable as exc:
            skipped += 1
            log.debug("export.skipped", activity_id=activity.id, reason=exc.reason)
            continue
        data: bytes = component.to_ical()
        uid = uid_for(activity.organization_id, activity.id, options.uid_domain)
        for group, label in groups:
            spool.add(group, uid, data, label=label)
    return SpoolCounts(read=read, skipped=skipped)


# --- writing ------------------------------------------------------------------------


def write_spooled(
    out: BinaryIO,
    components: Iterable[bytes],
    props: CalendarProps,
    *,
    zoned: bool,
) -> None:
    """Write one calendar of already-sorted components, with a VTIMEZONE when ``zoned``."""
    write_calendar(out, components, props, [props.timezone] if zoned else [])


def write_file(
    path: Path,
    components: Iterable[bytes],
    props: CalendarProps,
    *,
    zoned: bool,
    only_if_changed: bool = False,
) -> WriteResult:
    """Write one calendar to ``path`` atomically (see :func:`apexcal.feeds.atomic.write_atomic`)."""
    return write_atomic(
        path,
        lambda out: write_spooled(out, components, props, zoned=zoned),
        only_if_changed=only_if_changed,
    )
