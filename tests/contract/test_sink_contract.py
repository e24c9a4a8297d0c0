"""The Sink contract: every sink behaves alike — the in-memory one and every CalDAV server of the suite.

:class:`SinkContract` holds the tests; one subclass per backend provides the
``sink`` fixture and what "another client" does to the collection (an
unconditional PUT, a DELETE).  The CalDAV subclass runs over the
``caldav_server`` fixture, so every server it is parametrised with joins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import icalendar
import pytest

from apexcal.errors import CalendarNotFound, ObjectsUnread, PreconditionFailed, UidConflict
from apexcal.sync.apply import answered_etag
from apexcal.sync.caldav import CalDAVSink
from apexcal.sync.memory_sink import MemorySink
from apexcal.sync.plan import Create, Delete, Update, Write
from apexcal.sync.sink import Sink, WriteResult, uid_of
from tests.fixtures.caldav_servers import CalDAVServerHandle


def make_object(uid: str, summary: str = "Call Jane", *, todo: bool = True) -> bytes:
    """A small calendar object as the mapping writes them."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//apexcal//apexcal tests//EN")
    cal.add("version", "2.0")
    comp = icalendar.Todo() if todo else icalendar.Event()
    comp.add("uid", uid)
    comp.add("summary", summary)
    comp.add("dtstamp", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    comp.add("dtstart", dt.datetime(2025, 1, 2, 9, 30, tzinfo=dt.UTC))
    cal.add_component(comp)
    return cal.to_ical()


def create(name: str, data: bytes) -> Create:
    """A planned create of member ``name``."""
    return Create(
        uid=uid_of(data), activity_id=1, href_name=name, data=data,
        content_hash="", kind="VTODO", done=False,
    )


class SinkContract:
    """What every :class:`~apexcal.sync.sink.Sink` does; subclasses provide the backend."""

    @pytest.fixture
    def sink(self) -> Iterator[Sink]:
        raise NotImplementedError

    def other_put(self, sink: Sink, href: str, data: bytes) -> None:
        """Another client overwrites (or creates) the object at ``href`` unconditionally."""
        raise NotImplementedError

    def other_delete(self, sink: Sink, href: str) -> None:
        """Another client deletes the object at ``href``."""
        raise NotImplementedError

    def unservable(self, sink: Sink, name: str) -> str:
        """An object the backend lists but cannot return (its store holds it corrupt): its href.

        Skips where the backend cannot be made to hold one.
        """
        raise NotImplementedError

    # --- the collection ---------------------------------------------------------

    def test_existing_calendar_holds_events_and_tasks(self, sink: Sink) -> None:
        """ensure_calendar on an existing calendar reports both components and creates nothing."""
        info = sink.ensure_calendar()
        assert info.supports_vevent
        assert info.supports_vtodo
        assert not info.created

    # --- reading ------------------------------------------------------------------

    def test_multiget_reads_around_an_object_it_cannot_return(self, sink: Sink) -> None:
        """An object listed but not returned is neither read nor missing: ObjectsUnread, with the others read."""
        hrefs = [sink.create(f"g{i}.ics", make_object(f"uid-g{i}")).href for i in range(3)]
        bad = self.unservable(sink, "bad.ics")
        with pytest.raises(ObjectsUnread) as info:
            sink.multiget([hrefs[0], bad, *hrefs[1:], sink.href_for("nothing.ics")])
        assert set(info.value.found) == set(hrefs)
        assert list(info.value.unread) == [bad]
        assert bad in str(info.value)
        assert bad in sink.listing()

    # --- conditional writes -----------------------------------------------------

    def test_create_update_delete_follow_the_etags(self, sink: Sink) -> None:
        """Create, update with the etag read back, delete with the new one: all accepted."""
        created = sink.create("a.ics", make_object("uid-a"))
        assert created.href == sink.href_for("a.ics")
        etag = sink.multiget([created.href])[created.href].etag
        assert etag
        sink.update(created.href, make_object("uid-a", "Again"), etag)
        fetched = sink.multiget([created.href])[created.href]
        assert fetched.etag != etag
        assert b"SUMMARY:Again" in fetched.data
        assert sink.delete(created.href, fetched.etag).status in (200, 204)
        assert sink.multiget([created.href]) == {}

    def test_a_strong_etag_in_a_write_answer_is_the_one_listed_after(self, sink: Sink) -> None:
        """The cycle records a create's or update's strong answer ETag: it must be what the server lists and reads.

        A server that gives none (or a weak one) has its etags read back instead.
        """
        created = sink.create("s.ics", make_object("uid-s", "A summary long enough to be folded by a server that folds lines"))
        if answered_etag(created) is not None:
            assert sink.listing()[created.href] == created.etag
            assert sink.multiget([created.href])[created.href].etag == created.etag
        etag = sink.multiget([created.href])[created.href].etag
        updated = sink.update(created.href, make_object("uid-s", "Again"), etag)
        if answered_etag(updated) is not None:
            assert updated.etag != etag
            assert sink.listing()[created.href] == updated.etag
            assert sink.multiget([created.href])[created.href].etag == updated.etag

    def test_create_over_an_existing_object_is_a_precondition_failure(self, sink: Sink) -> None:
        """If-None-Match: * on an existing href is refused with PreconditionFailed; the object stays."""
        href = sink.create("a.ics", make_object("uid-a", "Original")).href
        with pytest.raises(PreconditionFailed) as info:
            sink.create("a.ics", make_object("uid-a", "Replacement"))
        assert not isinstance(info.value, UidConflict)
        assert b"SUMMARY:Original" in sink.multiget([href])[href].data

    def test_stale_etag_refuses_update_and_delete(self, sink: Sink) -> None:
        """After another client's edit, If-Match with the old etag is refused for PUT and DELETE."""
        href = sink.create("a.ics", make_object("uid-a")).href
        stale = sink.multiget([href])[href].etag
        self.other_put(sink, href, make_object("uid-a", "Edited in the app"))
        with pytest.raises(PreconditionFailed):
            sink.update(href, make_object("uid-a", "Ours"), stale)
        with pytest.raises(PreconditionFailed):
            sink.delete(href, stale)
        assert b"SUMMARY:Edited in the app" in sink.multiget([href])[href].data

    def test_update_of_an_object_deleted_elsewhere_is_refused(self, sink: Sink) -> None:
        """If-Match on a vanished object is a PreconditionFailed, and nothing is re-created."""
        href = sink.create("a.ics", make_object("uid-a")).href
        etag = sink.multiget([href])[href].etag
        self.other_delete(sink, href)
        with pytest.raises(PreconditionFailed):
            sink.update(href, make_object("uid-a", "Ours"), etag)
        assert sink.multiget([href]) == {}

    def test_delete_of_a_missing_object_reports_404(self, sink: Sink) -> None:
        """Deleting what is already gone is no error: status 404."""
        assert sink.delete(sink.href_for("never-there.ics")).status == 404

    def test_same_uid_under_another_href_is_a_uid_conflict(self, sink: Sink) -> None:
        """A second href for a UID is refused with UidConflict naming the holder."""
        sink.create("first.ics", make_object("uid-dup", "First"))
        with pytest.raises(UidConflict) as info:
            sink.create("second.ics", make_object("uid-dup", "Second"))
        assert info.value.uid == "uid-dup"
        assert info.value.existing_href == sink.href_for("first.ics")
        assert sink.multiget([sink.href_for("second.ics")]) == {}

    def test_href_for_refuses_what_is_not_a_member_name(self, sink: Sink) -> None:
        """Names with a slash, or dot names, are not members."""
        for bad in ("", "a/b.ics", ".", ".."):
            with pytest.raises(ValueError, match="not a member name"):
                sink.href_for(bad)

    # --- changes and listings ---------------------------------------------------

    def test_no_token_lists_everything_with_a_token(self, sink: Sink) -> None:
        """Without a token: a full listing with etags, and a token to go on from."""
        hrefs = {sink.create(f"o{i}.ics", make_object(f"uid-{i}")).href for i in range(3)}
        changes = sink.changes(None)
        assert changes.full
        assert set(changes.changed) == hrefs
        assert all(changes.changed.values())
        assert changes.token

    def test_incremental_changes_name_exactly_what_changed(self, sink: Sink) -> None:
        """After a token: the edited and the new object changed, the removed one deleted."""
        a, b, c = (sink.create(f"{n}.ics", make_object(f"uid-{n}")).href for n in "abc")
        token = sink.changes(None).token
        self.other_put(sink, a, make_object("uid-a", "Edited in the app"))
        self.other_delete(sink, b)
        d = sink.create("d.ics", make_object("uid-d")).href
        changes = sink.changes(token)
        assert not changes.full
        assert set(changes.changed) == {a, d}
        assert changes.deleted == {b}
        assert c not in changes.changed
        assert changes.changed[a] == sink.multiget([a])[a].etag

    def test_unchanged_collection_reports_nothing(self, sink: Sink) -> None:
        """With a current token nothing is changed or deleted."""
        sink.create("a.ics", make_object("uid-a"))
        changes = sink.changes(sink.changes(None).token)
        assert (changes.changed, changes.deleted, changes.full) == ({}, frozenset(), False)

    def test_collection_token_names_the_state_a_listing_answers(self, sink: Sink) -> None:
        """The calendar's sync token, when given, is the token of its current state.

        Read before a listing from that token, it is what the listing answers;
        after a change by another client it differs and the listing names the change.
        """
        href = sink.create("a.ics", make_object("uid-a")).href
        token = sink.changes(None).token
        token = sink.changes(token).token or token  # settles the echo of our write
        info = sink.ensure_calendar()
        changes = sink.changes(token)
        assert (changes.changed, changes.deleted, changes.full) == ({}, frozenset(), False)
        assert info.sync_token in (None, token)
        assert changes.token == token
        self.other_put(sink, href, make_object("uid-a", "Edited in the app"))
        info = sink.ensure_calendar()
        assert info.sync_token is None or info.sync_token != token
        assert set(sink.changes(token).changed) >= {href}

    def test_invalid_token_gives_a_full_listing_with_deletions(self, sink: Sink) -> None:
        """A token the backend never issued: full listing; known hrefs now absent are deleted."""
        a, b = (sink.create(f"{n}.ics", make_object(f"uid-{n}")).href for n in "ab")
        self.other_delete(sink, b)
        c = sink.create("c.ics", make_object("uid-c")).href
        changes = sink.changes("garbage", known_hrefs={a, b})
        assert changes.full
        assert set(changes.changed) == {a, c}
        assert changes.deleted == {b}
        assert changes.token
        assert changes.token != "garbage"
        assert sink.changes(changes.token).changed == {}

    def test_listing_names_every_object_with_its_etag(self, sink: Sink) -> None:
        """listing() is href → etag of every object, the etags multiget reads."""
        hrefs = [sink.create(f"l{i}.ics", make_object(f"uid-l{i}")).href for i in range(3)]
        self.other_delete(sink, hrefs[0])
        listed = sink.listing()
        assert set(listed) == set(hrefs[1:])
        assert listed == {h: o.etag for h, o in sink.multiget(hrefs).items()}

    def test_multiget_leaves_out_missing_hrefs(self, sink: Sink) -> None:
        """Unknown hrefs are simply absent from a multiget."""
        href = sink.create("m.ics", make_object("uid-m")).href
        got = sink.multiget([href, sink.href_for("nothing.ics")])
        assert set(got) == {href}
        assert uid_of(got[href].data) == "uid-m"

    # --- many writes ------------------------------------------------------------

    def test_apply_many_reports_each_outcome_in_order(self, sink: Sink) -> None:
        """A refused write comes back as its error; the others are accepted."""
        first = sink.create("x.ics", make_object("uid-x"))
        stale = sink.multiget([first.href])[first.href].etag
        self.other_put(sink, first.href, make_object("uid-x", "Edited in the app"))
        data = make_object("uid-x", "Ours")
        writes: list[Write] = [
            create("n1.ics", make_object("uid-n1")),
            Update(
                uid="uid-x", activity_id=2, href=first.href, etag=stale, data=data,
                content_hash="", kind="VTODO", done=False,
            ),
            Delete(uid="uid-z", href=sink.href_for("nothing.ics"), etag=None),
        ]
        seen: list[int] = []
        results = sink.apply_many(writes, on_result=lambda i, w, o: seen.append(i))
        assert isinstance(results[0], WriteResult)
        assert isinstance(results[1], PreconditionFailed)
        assert isinstance(results[2], WriteResult)
        assert results[2].status == 404
        assert sorted(seen) == [0, 1, 2]


class TestMemorySink(SinkContract):
    """The in-memory sink."""

    @pytest.fixture
    def sink(self) -> Iterator[Sink]:
        with MemorySink() as s:
            yield s

    def other_put(self, sink: Sink, href: str, data: bytes) -> None:
        assert isinstance(sink, MemorySink)
        sink.put_unconditionally(href, data)

    def other_delete(self, sink: Sink, href: str) -> None:
        assert isinstance(sink, MemorySink)
        sink.remove(href)

    def unservable(self, sink: Sink, name: str) -> str:
        assert isinstance(sink, MemorySink)
        href = sink.create(name, make_object("uid-" + name)).href
        sink.make_unservable(href)
        return href

    def test_missing_calendar_is_created_only_when_asked(self) -> None:
        """Without the collection: CalendarNotFound, unless create is asked."""
        sink = MemorySink(exists=False)
        with pytest.raises(CalendarNotFound):
            sink.ensure_calendar()
        assert sink.ensure_calendar(create=True, display_name="crm").created

    def test_expired_tokens_give_a_full_listing(self) -> None:
        """After the backend forgets its history a token it issued is invalid too."""
        sink = MemorySink()
        href = sink.create("a.ics", make_object("uid-a")).href
        token = sink.changes(None).token
        sink.expire_tokens()
        changes = sink.changes(token)
        assert changes.full
        assert set(changes.changed) == {href}


@pytest.mark.caldav
class TestCalDAVSink(SinkContract):
    """The CalDAV sink, on every server of the suite."""

    @pytest.fixture
    def sink(self, caldav_server: CalDAVServerHandle, calendar_url: str) -> Iterator[Sink]:
        with CalDAVSink(
            calendar_url, username=caldav_server.username, password=caldav_server.password
        ) as s:
            self._auth = caldav_server.auth
            self._server, self._url = caldav_server, calendar_url
            yield s

    def other_put(self, sink: Sink, href: str, data: bytes) -> None:
        assert isinstance(sink, CalDAVSink)
        r = httpx.put(
            sink.url_for(href), content=data, auth=self._auth,
            headers={"Content-Type": "text/calendar"}, timeout=10.0,
        )
        assert r.status_code in (200, 201, 204)

    def other_delete(self, sink: Sink, href: str) -> None:
        assert isinstance(sink, CalDAVSink)
        r = httpx.delete(sink.url_for(href), auth=self._auth, timeout=10.0)
        assert r.status_code in (200, 204)

    def unservable(self, sink: Sink, name: str) -> str:
        if self._server.kind != "xandikos":
            pytest.skip(f"{self._server.kind} keeps no object it cannot return")
        # Written into its store behind its back: Xandikos answers 500 to reading it.
        body = make_object("uid-" + name).replace(b"SUMMARY:", b"SUMMARY:caf\xe9 \xff ")
        self._server.seed(self._url, {name: body})
        return sink.href_for(name)
