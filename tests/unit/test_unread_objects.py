"""A cycle over objects the calendar lists but does not return (MemorySink, held to the sink contract).

None of the four servers of the suite answers a calendar-multiget with an
object's etag and no calendar-data; the in-memory sink does it on request
(:meth:`MemorySink.make_unservable`).  Xandikos failing the read of an object
of invalid UTF-8 is in ``tests/integration/test_stuck_objects.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from tests.unit.test_bad_remote import World


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


@pytest.mark.parametrize("with_etag", [True, False], ids=["listed-without-data", "read-fails"])
def test_recorded_object_not_returned_is_kept_and_waits(world: World, with_etag: bool) -> None:
    """Not gone (no re-creation, no forgetting), not seen (its completion is read once it is returned)."""
    href = world.href_of(world.ids[0])
    token = world.store.target_state("t").sync_token
    done = world.objects()[href].data.replace(b"STATUS:NEEDS-ACTION", b"STATUS:COMPLETED")
    world.sink.put_unconditionally(href, done)
    world.sink.make_unservable(href, with_etag=with_etag)
    world.state.patch_activity(world.ids[1], {"subject": "Changed in the CRM"})
    with capture_logs():
        first = world.cycle()
        assert first.ok, first.errors
        assert (first.created, first.deleted, first.updated, first.written_back) == (0, 0, 1, 0)
        assert [w for w in first.warnings if w.startswith(f"{href}: not read")]
        assert world.store.target_state("t").sync_token == token
        world.sink.put_unconditionally(href, done)  # returned again
        second = world.cycle()
    assert second.ok, second.errors
    assert second.written_back == 1
    assert world.state.get(world.ids[0])["done"] is True


@pytest.mark.parametrize("with_etag", [True, False], ids=["listed-without-data", "read-fails"])
def test_lost_state_replaces_our_object_not_returned(world: World, with_etag: bool) -> None:
    """State lost: the re-creation meets 412 and the object cannot be read; the CRM's version goes over it, once."""
    href = world.href_of(world.ids[0])
    world.sink.make_unservable(href, with_etag=with_etag)
    world.store.forget_target("t")
    with capture_logs():
        first = world.cycle()
        assert not first.errors, first.errors
        assert (first.created, first.updated) == (0, 1)
        assert [w for w in first.warnings if w.startswith(f"{href}: one of apexcal's objects") and "replaced" in w]
        second = world.cycle()
        third = world.cycle()
    assert second.ok, second.errors
    assert (third.ok, third.created, third.updated, third.deleted, third.warnings) == (True, 0, 0, 0, ())
    assert world.href_of(world.ids[0]) == href
    assert len(world.objects()) == 5
