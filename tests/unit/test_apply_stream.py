"""The pipelined first sync: with nothing recorded and nothing remote the planner only creates, chunk by chunk alike."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from apexcal.sync.apply_stream import FIRST_CHUNK, plans_only_creates, streamed_creates
from apexcal.sync.plan import ConflictPolicy, DeleteGuard, Desired, Plan, RemoteState, plan
from tests.unit.test_plan import desired, recorded, seen

_desired = st.builds(
    desired,
    aid=st.integers(1, 10_000),
    version=st.integers(0, 3),
    done=st.booleans(),
    kind=st.sampled_from(["VTODO", "VEVENT"]),
    updated=st.integers(0, 100),
)
_wanted = st.lists(_desired, max_size=40, unique_by=lambda d: d.uid)
_remote = st.builds(
    RemoteState,
    full=st.booleans(),
    deleted=st.frozensets(st.sampled_from(["/cal/x.ics", "/cal/apexcal-1-1@example.com.ics"]), max_size=2),
)


def _plan(ds: list[Desired], remote: RemoteState, policy: ConflictPolicy, writeback: bool) -> Plan:
    return plan(
        target="t", desired=ds, recorded=(), remote=remote, policy=policy, writeback=writeback,
        guard=DeleteGuard(), total_records=0, owns=lambda uid: uid.startswith("apexcal-"),
    )


@given(
    ds=_wanted,
    remote=_remote,
    policy=st.sampled_from(list(ConflictPolicy)),
    writeback=st.booleans(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
def test_nothing_recorded_nothing_remote_plans_one_create_per_object_in_any_chunking(
    ds: list[Desired], remote: RemoteState, policy: ConflictPolicy, writeback: bool, cuts: list[int]
) -> None:
    """The whole plan is only creates, one per object, and planning any chunks of them gives the same creates."""
    assert plans_only_creates({}, remote)
    whole = _plan(ds, remote, policy, writeback)
    assert whole == Plan(creates=whole.creates)
    assert sorted(c.uid for c in whole.creates) == sorted(d.uid for d in ds)
    bounds = [0, *sorted(cuts), len(ds)]
    chunked = [c for a, b in itertools.pairwise(bounds) for c in _plan(ds[a:b], remote, policy, writeback).creates]
    assert sorted(chunked, key=lambda c: c.uid) == sorted(whole.creates, key=lambda c: c.uid)


def test_a_record_or_an_object_seen_or_listed_is_not_a_first_sync() -> None:
    """Any record, or any object of ours in the calendar, goes through the whole plan."""
    d = desired()
    r = recorded(d)
    assert not plans_only_creates({r.uid: r}, RemoteState())
    assert not plans_only_creates({}, RemoteState(seen=(seen(r),)))
    assert not plans_only_creates({}, RemoteState(full=True, listed=frozenset({r.href})))


@given(n=st.integers(0, 60))
def test_streamed_creates_maps_a_chunk_at_a_time_as_they_are_asked_for(n: int) -> None:
    """Taking the first create maps at most the first chunk; all of them map everything once, in order."""
    mapped_ids: list[int] = []
    mapped: list[Desired] = []

    def map_chunk(ids: list[int]) -> list[Desired]:
        mapped_ids.extend(ids)
        return [desired(i) for i in ids if i % 7]  # some activities are not wanted

    stream = streamed_creates(
        range(1, n + 1), map_chunk=map_chunk,
        plan_chunk=lambda ds: _plan(ds, RemoteState(), ConflictPolicy.CRM_WINS, True), mapped=mapped,
    )
    first = next(stream, None)
    assert len(mapped_ids) <= FIRST_CHUNK  # the first chunk (1..4) always holds wanted objects
    creates = [first, *stream] if first is not None else []
    assert mapped_ids == list(range(1, n + 1))
    assert sorted(c.uid for c in creates) == sorted(d.uid for d in mapped)
    assert [d.activity_id for d in mapped] == [i for i in range(1, n + 1) if i % 7]
