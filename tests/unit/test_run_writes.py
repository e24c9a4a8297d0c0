"""run_writes takes its writes lazily: the first write goes out before the last one exists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apexcal.sync.memory_sink import MemorySink
from apexcal.sync.plan import Create, Write
from apexcal.sync.sink import AHEAD, Outcome, WriteResult, run_writes, write_one
from tests.contract.test_sink_contract import create, make_object


def _creates(n: int, produced: list[int]) -> Iterator[Create]:
    for i in range(n):
        produced.append(i)
        yield create(f"o{i}.ics", make_object(f"uid-o{i}"))


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_writes_are_taken_from_the_iterable_as_the_answers_come(concurrency: int) -> None:
    """At the first send at most AHEAD × concurrency writes exist; all are sent, outcomes in order."""
    produced: list[int] = []
    at_send: list[int] = []
    with MemorySink() as sink:

        def send(write: Write) -> WriteResult:
            at_send.append(len(produced))
            return write_one(sink, write)

        outcomes = run_writes(send, _creates(30, produced), concurrency=concurrency)
        assert at_send[0] <= AHEAD * concurrency
        assert len(produced) == 30
        assert [o.href for o in outcomes if isinstance(o, WriteResult)] == [
            sink.href_for(f"o{i}.ics") for i in range(30)
        ]
        assert set(sink.listing()) == {sink.href_for(f"o{i}.ics") for i in range(30)}


def test_an_on_result_failure_stops_taking_writes() -> None:
    """When recording fails, the iterable is not drained: at most a window of writes more was taken."""
    produced: list[int] = []
    with MemorySink() as sink:

        def fail(_i: int, _w: Write, _o: Outcome) -> None:
            raise RuntimeError("store down")

        with pytest.raises(RuntimeError, match="store down"):
            run_writes(lambda w: write_one(sink, w), _creates(100, produced), concurrency=2, on_result=fail)
        assert len(produced) <= 2 * AHEAD * 2
        assert len(sink.listing()) < 100


def test_a_stop_ends_the_iteration() -> None:
    """Once stop answers true no more writes are taken from the iterable, none sent."""
    produced: list[int] = []
    answered: list[int] = []
    with MemorySink() as sink:
        run_writes(
            lambda w: write_one(sink, w),
            _creates(100, produced),
            concurrency=2,
            on_result=lambda i, w, o: answered.append(i),
            stop=lambda: len(answered) >= 5,
        )
        assert len(produced) < 100
        assert len(sink.listing()) == len(answered) < 100


def test_an_error_in_the_iterable_ends_the_run_after_what_was_sent() -> None:
    """A failure while producing a write (e.g. mapping) propagates; what was sent is reported first."""
    seen: list[int] = []
    with MemorySink() as sink:
        sink.create("o1.ics", make_object("uid-o1"))

        def broken() -> Iterator[Create]:
            yield create("o0.ics", make_object("uid-o0"))
            yield create("o1.ics", make_object("uid-o1"))
            raise ValueError("unmappable")

        outcomes: list[Outcome] = []
        with pytest.raises(ValueError, match="unmappable"):
            run_writes(
                lambda w: write_one(sink, w), broken(), concurrency=2,
                on_result=lambda i, w, o: (seen.append(i), outcomes.append(o)),
            )
        assert sorted(seen) == [0, 1]
        assert sorted(type(o).__name__ for o in outcomes) == ["PreconditionFailed", "WriteResult"]
