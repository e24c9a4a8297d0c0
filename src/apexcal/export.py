"""The streaming core of exports and feeds: activities → components sorted by UID → .ics.

Both ``apexcal export`` (activities straight from the API) and the feed
files (activities from the state store's mirror) write calendars whose
components are sorted by UID, so that the same data always gives the same
bytes.  Activities arrive in id order, which is not UID order
(``apexcal-27-10@…`` sorts *before* ``apexcal-27-1@…``: ``0`` < ``@``), and
an export may hold 100,000 of them, so sorting in memory is not an option.
:class:`ComponentSpool` is an external merge sort: serialized components are
buffered up to a byte budget, each full buffer is sorted and spilled to an
anonymous temporary file, and the runs are merged lazily on the way out.
Memory stays bounded by the budget (plus one record per run) whatever the
count.

Records carry a *group* beside the UID: a split export (one file per user
or type) and the per-user files of a feed are one sorted stream, written
group after group.
"""

from __future__ import annotations

import heapq
import re
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import groupby, islice
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, Protocol

import structlog

from apexcal.apex.models import Activity, ActivityType, GeoPoint, type_key
from apexcal.apex.query import normalize_filters, split_in
from apexcal.errors import UsageError
from apexcal.ical.feed import CalendarProps, write_calendar
from apexcal.ical.mapping import MappingOptions, Unmappable, map_activity, uid_for
from apexcal.sync.file_sink import WriteResult, write_atomic

log = structlog.get_logger(__name__)

#: Serialized bytes a spool holds in memory before it spills a sorted run to disk.
DEFAULT_SPOOL_BUDGET = 8 * 1024 * 1024
# Per-record bookkeeping counted against the budget (tuple, strings, list slot).
_RECORD_OVERHEAD = 200
_HEADER = struct.Struct(">III")
_RUN_BUFFER = 64 * 1024
_TZID_MARK = b";TZID="
# Characters kept in file names made from type keys (which come from the CRM).
_FILE_UNSAFE = re.compile(r"[^\w.-]")

Record = tuple[str, str, bytes]
SplitBy = Literal["user", "type"]


class UnknownActivityType(UsageError):
    """``--type`` named no activity type of the organization."""

    def __init__(self, requested: str, known: Sequence[ActivityType]) -> None:
        self.requested = requested
        listing = ", ".join(f"{t.key} ({t.name})" for t in known) or "none"
        super().__init__(f"unknown activity type {requested!r}; known types: {listing}")


# --- the spool ------------------------------------------------------------------


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


# --- what to export ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExportFilters:
    """The selection of an export, pushed into the API query.

    ``start_from``/``start_to`` are inclusive bounds on ``start_date``;
    empty tuples and ``None`` mean "no condition".
    """

    user_ids: tuple[int, ...] = ()
    type_keys: tuple[str, ...] = ()
    start_from: date | None = None
    start_to: date | None = None
    done: bool | None = None

    def api_query(self) -> dict[str, Any]:
        """The API query parameters for :meth:`ApexClient.list_activities`."""
        query: dict[str, Any] = {}
        if self.user_ids:
            ids = sorted(set(self.user_ids))
            query["assigned_to_user_id"] = ids[0] if len(ids) == 1 else ids
        if self.type_keys:
            keys = list(dict.fromkeys(self.type_keys))
            query["activity_type"] = keys[0] if len(keys) == 1 else keys
        bounds: dict[str, date] = {}
        if self.start_from is not None:
            bounds["$gte"] = self.start_from
        if self.start_to is not None:
            bounds["$lte"] = self.start_to
        if bounds:
            query["start_date"] = bounds
        if self.done is not None:
            query["done"] = self.done
        return query


class ActivityLister(Protocol):
    """What a paged listing needs of the API client (:class:`apexcal.apex.client.ApexClient`)."""

    def list_activities(self, **filters: Any) -> Iterator[Activity]:
        """Every activity matching ``filters``, ordered by id."""
        ...


def list_by_id(
    client: ActivityLister, query: Mapping[str, Any], *, page_size: int
) -> Iterator[Activity]:
    """Every activity matching ``query``, read in rounds of ``page_size`` by id (``id > last``).

    A long listing read by offset (``$skip``) repeats or misses records when
    others are created or deleted meanwhile; each round here starts after the
    last id seen, so nothing that exists throughout is missed or repeated.
    The listing ends with one empty round.  A query the client must split
    into several (an ``$in`` list longer than the API parses) is read as a
    plain listing, each part in id order.
    """
    if "id" in query or len(split_in(normalize_filters(query))) != 1:
        yield from client.list_activities(**query)
        return
    last = 0
    while True:
        page = client.list_activities(**query, id={"$gt": last})
        got = 0
        try:
            for activity in islice(page, page_size):
                got += 1
                last = activity.id
                yield activity
        finally:
            close = getattr(page, "close", None)
            if close is not None:
                close()
        if got == 0:
            return


def resolve_type_keys(requested: Iterable[str], types: Iterable[ActivityType]) -> tuple[str, ...]:
    """The ``activity_type`` keys named by ``requested`` (keys or names, case-insensitive).

    Raises :class:`UnknownActivityType` for the first name that matches no type.
    """
    known = sorted(types, key=lambda t: t.key)
    keys: list[str] = []
    for name in requested:
        wanted = name.strip().casefold()
        as_key = type_key(name)
        for t in known:
            if wanted in (t.key.casefold(), t.name.strip().casefold()) or as_key == t.key:
                keys.append(t.key)
                break
        else:
            raise UnknownActivityType(name, known)
    return tuple(dict.fromkeys(keys))


def types_by_key(types: Iterable[ActivityType]) -> dict[str, ActivityType]:
    """Activity types keyed the way the mapping looks them up (``type_key(name)``)."""
    return {t.key: t for t in types}


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


def split_group(split_by: SplitBy) -> GroupOf:
    """The grouping of a split export: by assigned user id, or by type key (``none`` when unset)."""

    def by_user(activity: Activity) -> Sequence[tuple[str, str | None]]:
        user = activity.assigned_to_user_id
        name = activity.assigned_to_user.full_name if activity.assigned_to_user else None
        return ((f"user-{user}" if user is not None else "user-none", name),)

    def by_type(activity: Activity) -> Sequence[tuple[str, str | None]]:
        raw = activity.activity_type
        key = _FILE_UNSAFE.sub("_", type_key(raw)).lstrip(".") if raw and raw.strip() else ""
        return ((f"type-{key or 'none'}", raw),)

    return by_user if split_by == "user" else by_type


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
        if not groups:
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
    """Write one calendar to ``path`` atomically (see :func:`apexcal.sync.file_sink.write_atomic`)."""
    return write_atomic(
        path,
        lambda out: write_spooled(out, components, props, zoned=zoned),
        only_if_changed=only_if_changed,
    )
