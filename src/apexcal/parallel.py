"""Mapping and serializing activities on every core, in order, in bounded memory.

Exports and feed builds spend most of their time turning activities into
serialized components, and each component depends only on its activity,
the activity types and the mapping options.  :func:`spool_mapped` reads the
activities in the calling process (where the API client, the state store,
the grouping and the geocoder live), has them mapped and serialized in
batches by a pool of worker processes, one per core, and adds the results
to the spools in the order the activities were read.  Workers and the
in-process path run the same function (:func:`map_batch`), so the spools —
and every file written from them — are byte-identical either way.

- **Memory.** At most two batches per worker are in flight; reading waits
  for the oldest to come back.  Nothing grows with the number of activities.
- **Small inputs** (fewer than ``min_parallel`` activities, or one core) are
  mapped in process: starting workers would cost more than it saves.
- **Shutdown.** Workers ignore SIGINT (a terminal sends it to the whole
  process group); when the caller is interrupted or fails, what is queued is
  cancelled, the batches being mapped (at most one per worker) finish, and
  the workers exit before the exception goes on.  A worker that dies takes
  the run down with :class:`~concurrent.futures.process.BrokenProcessPool`.
- **Start.** Workers are forked from the caller when it runs no other
  thread (an export), else from a fork server that has the mapping modules
  imported (the daemon, whose threads make a plain fork unsafe).
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, fields
from itertools import chain
from typing import Any

import structlog

from apexcal.apex.models import Activity, ActivityType, GeoPoint
from apexcal.errors import Unmappable
from apexcal.feeds.spool import ComponentSpool, GroupOf, SpoolCounts, whole
from apexcal.ical.mapping import MappingOptions, is_hidden, map_activity, uid_for
from apexcal.ical.serialize import component_bytes

log = structlog.get_logger(__name__)

#: Fewer activities than this are mapped in process.
PARALLEL_MIN = 2_000
#: Activities sent to a worker at a time.
BATCH_SIZE = 250
# Batches in flight per worker: one being mapped, one queued behind it.
_IN_FLIGHT = 2

#: One activity to map: the activity, a geocoded point for it, the option sets wanted.
Task = tuple[Activity, GeoPoint | None, tuple[int, ...]]
#: A serialized component, or the reason (``Unmappable.reason``) there is none.
Outcome = bytes | str


@dataclass(frozen=True, kw_only=True)
class SpoolJob:
    """One spool to fill: the mapping options of its components and the groups of each activity."""

    spool: ComponentSpool
    options: MappingOptions
    group_of: GroupOf = whole


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def map_batch(
    batch: Sequence[Task], types: Mapping[str, ActivityType], options: Sequence[MappingOptions]
) -> list[tuple[Outcome, ...]]:
    """Each task's serialized component (or reason it has none) per wanted option set, in order."""
    results: list[tuple[Outcome, ...]] = []
    for activity, point, wanted in batch:
        outcomes: list[Outcome] = []
        for index in wanted:
            try:
                component = map_activity(activity, types, options[index], geocode=point)
            except Unmappable as exc:
                outcomes.append(exc.reason)
            else:
                outcomes.append(component_bytes(component))
        results.append(tuple(outcomes))
    return results


# --- the worker side ----------------------------------------------------------------

_worker: tuple[Mapping[str, ActivityType], tuple[MappingOptions, ...]] | None = None


def _portable(options: MappingOptions) -> dict[str, Any]:
    # MappingOptions.components is a read-only mapping that pickle cannot rebuild item by item.
    kwargs = {f.name: getattr(options, f.name) for f in fields(options)}
    kwargs["components"] = dict(options.components)
    return kwargs


def _start_worker(types: Mapping[str, ActivityType], options: Sequence[dict[str, Any]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when to stop
    global _worker
    _worker = (types, tuple(MappingOptions(**kwargs) for kwargs in options))


def _context() -> multiprocessing.context.BaseContext:
    """Fork this process when it runs no other thread (nothing to import again), else use the fork server.

    Forking a process that runs other threads can copy a lock some thread
    holds (the daemon runs feed builds beside its scheduler and feed server);
    the fork server, started once per process, has the mapping modules
    imported already.
    """
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _map_in_worker(batch: list[Task]) -> list[tuple[Outcome, ...]]:
    assert _worker is not None, "worker not started"
    return map_batch(batch, *_worker)


# --- the calling side ---------------------------------------------------------------

#: An activity read and where its outcomes go: its point, ``(job, groups)`` pairs, option sets wanted.
_Placed = tuple[Activity, GeoPoint | None, list[tuple[int, Sequence[tuple[str, str | None]]]], tuple[int, ...]]
_Outcomes = list[tuple[Outcome, ...]]


def _tasks(batch: list[_Placed]) -> list[Task]:
    return [(activity, point, wanted) for activity, point, _, wanted in batch]


def _emptied(items: list[list[_Placed]]) -> Iterator[list[_Placed]]:
    """The items, each dropped from the list as it is taken."""
    while items:
        yield items.pop(0)


def _mapped(
    batches: Iterator[list[_Placed]],
    types: Mapping[str, ActivityType],
    options: Sequence[MappingOptions],
    *,
    workers: int,
    min_parallel: int,
) -> Generator[tuple[list[_Placed], _Outcomes], None, None]:
    """Each batch with its outcomes, in order: in process for small inputs, else in a pool."""
    if workers <= 1:
        for batch in batches:
            yield batch, map_batch(_tasks(batch), types, options)
        return
    head: list[list[_Placed]] = []
    buffered = 0
    for batch in batches:
        head.append(batch)
        buffered += len(batch)
        if buffered >= min_parallel:
            break
    else:
        for batch in head:
            yield batch, map_batch(_tasks(batch), types, options)
        return
    context = _context()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(types, [_portable(o) for o in options]),
    )
    log.debug("map.pool", workers=workers, start=context.get_start_method())
    window: deque[tuple[list[_Placed], Future[_Outcomes]]] = deque()
    try:
        # The first submit forks the workers (or starts the fork server they come from):
        # with SIGINT blocked, inherited, a Ctrl-C sent to the process group never reaches
        # one, not even before its initializer runs.  Blocked, not ignored: one arriving
        # meanwhile is delivered here once unblocked.
        # Objects alive at the fork are frozen out of the collector's sight meanwhile, so
        # the workers' collections do not write to (and so copy) the pages they share.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        gc.freeze()
        try:
            first = head.pop(0)
            window.append((first, pool.submit(_map_in_worker, _tasks(first))))
        finally:
            gc.unfreeze()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for batch in chain(_emptied(head), batches):
            window.append((batch, pool.submit(_map_in_worker, _tasks(batch))))
            while len(window) >= workers * _IN_FLIGHT:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def spool_mapped(
    activities: Iterable[Activity],
    jobs: Sequence[SpoolJob],
    *,
    types: Mapping[str, ActivityType],
    geocode: Callable[[Activity], GeoPoint | None] | None = None,
    on_activity: Callable[[], None] | None = None,
    workers: int | None = None,
    min_parallel: int = PARALLEL_MIN,
    batch_size: int = BATCH_SIZE,
) -> list[SpoolCounts]:
    """Map each activity once per distinct option set and add it to every group of every job.

    Per job, as :func:`apexcal.feeds.spool.spool_activities` does for one:
    activities the job's ``group_of`` puts in no group, or that its options
    hide, are left out; those that cannot become the component (an event
    without a start date) are skipped and counted.  ``geocode`` supplies a
    point for an activity the API left without one.  ``workers`` defaults
    to the number of cores; the counts come back in the order of ``jobs``.
    """
    distinct: dict[MappingOptions, int] = {}
    option_of = [distinct.setdefault(job.options, len(distinct)) for job in jobs]
    options = list(distinct)
    read = 0
    skipped = [0] * len(jobs)

    def placed() -> Iterator[list[_Placed]]:
        nonlocal read
        batch: list[_Placed] = []
        for activity in activities:
            read += 1
            if on_activity is not None:
                on_activity()
            placements = []
            for j, job in enumerate(jobs):
                groups = job.group_of(activity)
                if groups and not is_hidden(activity, job.options):
                    placements.append((j, groups))
            if not placements:
                continue
            point = geocode(activity) if geocode is not None else None
            wanted = tuple(sorted({option_of[j] for j, _ in placements}))
            batch.append((activity, point, placements, wanted))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    run = _mapped(
        placed(), types, options, workers=workers or cores(), min_parallel=min_parallel
    )
    with closing(run):
        for batch, outcomes in run:
            for (activity, _, placements, wanted), outcome in zip(batch, outcomes, strict=True):
                for j, groups in placements:
                    data = outcome[wanted.index(option_of[j])]
                    if isinstance(data, str):
                        skipped[j] += 1
                        log.debug("export.skipped", activity_id=activity.id, reason=data)
                        continue
                    uid = uid_for(activity.organization_id, activity.id, jobs[j].options.uid_domain)
                    for group, label in groups:
                        jobs[j].spool.add(group, uid, data, label=label)
    return [SpoolCounts(read=read, skipped=n) for n in skipped]
