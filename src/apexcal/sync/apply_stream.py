"""Apply, pipelined: a first sync into a calendar holding nothing of ours maps and writes at once.

When the target has no record and the calendar shows none of our objects,
the planner can only create: every wanted object becomes a
:class:`~apexcal.sync.plan.Create` of its own, whatever the others are
(:func:`plans_only_creates`; a property test holds the planner to it).  Then
there is no need to map every activity before the first write:
:func:`streamed_creates` maps and plans the activities a chunk at a time,
as :func:`~apexcal.sync.sink.run_writes` asks for more writes, so mapping
runs while the first PUTs are in flight and the server is never idle
waiting for it.  Each write is still recorded as soon as the server accepts
it (:func:`~apexcal.sync.apply.apply_writes`), so a crash leaves exactly
what the unpipelined cycle would: records for what was accepted and
answered, and objects the next cycle adopts (a create meets 412) for the
writes in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from apexcal.sync.plan import Create, Desired, ObjectRecord, Plan, RemoteState

FIRST_CHUNK = 4
"""Activities mapped before the first writes go out: one per connection of the default concurrency."""

CHUNK = 16
"""Activities mapped and planned at a time afterwards (≈ 10 ms of mapping)."""

A = TypeVar("A")


def plans_only_creates(records: Mapping[str, ObjectRecord], remote: RemoteState) -> bool:
    """Whether a plan against these records and this remote state holds one create per wanted object and nothing else.

    True when there is no record and the calendar showed none of our objects
    (nothing read, nothing listed unchanged): nothing can be updated,
    adopted, deleted, written back or read first.
    """
    return not records and not remote.seen and not remote.listed


def streamed_creates(
    activities: Iterable[A],
    *,
    map_chunk: Callable[[list[A]], list[Desired]],
    plan_chunk: Callable[[list[Desired]], Plan],
    mapped: list[Desired],
) -> Iterator[Create]:
    """The creates of ``activities``, mapped and planned a chunk at a time as they are asked for.

    ``map_chunk`` gives the objects wanted for some activities, ``plan_chunk``
    plans them (with no record and nothing remote, see
    :func:`plans_only_creates`).  Each object mapped is appended to
    ``mapped``, so once the iteration ends it holds what mapping them all at
    once would have given, for whatever follows the writes (adoptions).
    """
    chunk: list[A] = []
    size = FIRST_CHUNK
    for activity in activities:
        chunk.append(activity)
        if len(chunk) >= size:
            yield from _creates(chunk, map_chunk, plan_chunk, mapped)
            chunk, size = [], CHUNK
    if chunk:
        yield from _creates(chunk, map_chunk, plan_chunk, mapped)


def _creates(
    chunk: list[A],
    map_chunk: Callable[[list[A]], list[Desired]],
    plan_chunk: Callable[[list[Desired]], Plan],
    mapped: list[Desired],
) -> list[Create]:
    desired = map_chunk(chunk)
    mapped.extend(desired)
    if not desired:
        return []
    the_plan = plan_chunk(desired)
    if the_plan != Plan(creates=the_plan.creates):
        raise AssertionError(f"a plan with nothing recorded and nothing remote holds more than creates: {the_plan.counts()}")
    return list(the_plan.creates)
