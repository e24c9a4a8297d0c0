"""The CalDAV adapter against real Radicale and Xandikos servers on loopback."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Collection, Iterator

import httpx
import icalendar
import pytest
import structlog

from apexcal.errors import (
    CalDAVAuthError,
    CalDAVError,
    CalDAVTransportError,
    PreconditionFailed,
    UidConflict,
)
from apexcal.sync.caldav import CalDAVSink, CalendarNotFound
from apexcal.sync.plan import Create, Delete, Update
from apexcal.sync.sink import WriteResult, uid_of
from tests.fixtures.caldav_servers import CalDAVServerHandle

pytestmark = pytest.mark.caldav


def make_object(uid: str, summary: str = "Call Jane", *, todo: bool = True) -> bytes:
    """A small calendar object as the mapping layer writes them (icalendar output)."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//apexcal//apexcal tests//EN")
    cal.add("version", "2.0")
    comp = icalendar.Todo() if todo else icalendar.Event()
    comp.add("uid", uid)
    comp.add("summary", summary)
    comp.add("dtstamp", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    comp.add("dtstart", dt.datetime(2025, 1, 2, 9, 30, tzinfo=dt.UTC))
    if not todo:
        # Cyrus refuses a VEVENT without DTEND or DURATION (403 valid-calendar-data).
        comp.add("dtend", dt.datetime(2025, 1, 2, 10, 0, tzinfo=dt.UTC))
    comp.add("sequence", 1)
    comp.add(
        "description",
        "Ünïcödé notes long enough to be folded by the serializer, with commas, "
        "semicolons; and a second sentence to make sure of it.",
    )
    cal.add_component(comp)
    return cal.to_ical()


def create_write(name: str, data: bytes) -> Create:
    """A planned create of member ``name`` (the sink needs only the name and the bytes)."""
    return Create(
        uid=uid_of(data), activity_id=0, href_name=name, data=data, content_hash="", kind="VEVENT", done=False
    )


def update_write(href: str, data: bytes, etag: str) -> Update:
    """A planned update of ``href`` with ``If-Match: etag``."""
    return Update(
        uid=uid_of(data), activity_id=0, href=href, etag=etag, data=data, content_hash="", kind="VEVENT", done=False
    )


def delete_write(href: str, etag: str | None = None) -> Delete:
    """A planned delete of ``href``."""
    return Delete(uid="", href=href, etag=etag)


def unfold(data: bytes) -> list[bytes]:
    """The content lines of an iCalendar body, unfolded."""
    return data.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").split(b"\r\n")


@pytest.fixture
def sink(caldav_server: CalDAVServerHandle, calendar_url: str) -> Iterator[CalDAVSink]:
    """Our adapter on a fresh calendar of each server."""
    with CalDAVSink(
        calendar_url, username=caldav_server.username, password=caldav_server.password
    ) as s:
        yield s


@pytest.fixture
def other_client(caldav_server: CalDAVServerHandle) -> Iterator[httpx.Client]:
    """Another CalDAV client (a calendar app) editing the same collection."""
    with httpx.Client(auth=caldav_server.auth, timeout=10.0) as c:
        yield c


def other_put(client: httpx.Client, sink: CalDAVSink, href: str, data: bytes) -> None:
    """Another client overwrites an object unconditionally."""
    r = client.put(sink.url_for(href), content=data, headers={"Content-Type": "text/calendar"})
    assert r.status_code in (200, 201, 204)


class TestEnsureCalendar:
    def test_existing_calendar_holds_events_and_tasks(self, sink: CalDAVSink) -> None:
        """A calendar made with VEVENT+VTODO is reported as holding both, with its name."""
        info = sink.ensure_calendar(create=False)
        assert (info.supports_vevent, info.supports_vtodo, info.created) == (True, True, False)
        assert info.display_name == "cal"
        assert info.url == sink.url
        assert info.supports_sync is True
        assert sink.changes(None).token

    def test_missing_calendar_is_created_when_asked(
        self, caldav_server: CalDAVServerHandle
    ) -> None:
        """ensure_calendar(create=True) makes the calendar with MKCALENDAR, once."""
        url = caldav_server.make_calendar_url("made")
        with CalDAVSink(url, username=caldav_server.username, password=caldav_server.password) as s:
            info = s.ensure_calendar(create=True, display_name="CRM")
            again = s.ensure_calendar(create=True)
        assert info.created
        assert not again.created
        assert (again.supports_vevent, again.supports_vtodo) == (True, True)
        assert again.display_name == "CRM"

    def test_missing_calendar_without_create_is_a_clear_error(
        self, caldav_server: CalDAVServerHandle
    ) -> None:
        """A missing calendar with create=false names the URL and the key to set."""
        url = caldav_server.make_calendar_url("absent")
        with (
            CalDAVSink(url, username=caldav_server.username, password=caldav_server.password) as s,
            pytest.raises(CalendarNotFound) as info,
        ):
            s.ensure_calendar(create=False)
        assert url in str(info.value)
        assert "create = true" in str(info.value)

    def test_event_only_calendar_reports_no_tasks(self, caldav_server: CalDAVServerHandle) -> None:
        """A calendar limited to VEVENT reports that it cannot hold VTODO."""
        url = caldav_server.make_calendar_url("events")
        body = (
            b'<?xml version="1.0" encoding="utf-8"?>'
            b'<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            b'<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
            b"</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
        )
        r = httpx.request(
            "MKCALENDAR",
            url,
            content=body,
            auth=caldav_server.auth,
            headers={"Content-Type": "application/xml"},
        )
        assert r.status_code == 201
        with CalDAVSink(url, username=caldav_server.username, password=caldav_server.password) as s:
            info = s.ensure_calendar(create=True)
        assert (info.supports_vevent, info.supports_vtodo) == (True, False)

    def test_discovery_and_creation_requests_are_counted(
        self, caldav_server: CalDAVServerHandle
    ) -> None:
        """The requests made to find and create the calendar reach on_request, all authenticated."""
        url = caldav_server.make_calendar_url("counted")
        seen: list[tuple[str, int]] = []
        with CalDAVSink(
            url,
            username=caldav_server.username,
            password=caldav_server.password,
            on_request=lambda m, s: seen.append((m, s)),
        ) as s:
            s.ensure_calendar(create=True, display_name="CRM")
            assert s.request_count == len(seen)
        assert seen[0][0] == "PROPFIND"
        assert ("MKCALENDAR", 201) in seen
        assert seen[-1] == ("PROPFIND", 207)
        assert all(status not in (0, 401) for _, status in seen)


class TestConditionalWrites:
    def test_create_update_delete_follow_the_etags(self, sink: CalDAVSink) -> None:
        """Create, update with the read etag, then delete with the new one, all accepted."""
        created = sink.create("a.ics", make_object("uid-a"))
        assert created.href == sink.href_for("a.ics")
        assert created.etag
        etag = sink.multiget([created.href])[created.href].etag
        assert etag == created.etag
        updated = sink.update(created.href, make_object("uid-a", "Call Jane again"), etag)
        assert updated.etag
        assert updated.etag != etag
        fetched = sink.multiget([created.href])[created.href]
        assert b"SUMMARY:Call Jane again" in fetched.data
        gone = sink.delete(created.href, fetched.etag)
        assert gone.status in (200, 204)
        assert sink.multiget([created.href]) == {}

    def test_create_over_an_existing_object_is_refused_and_keeps_it(self, sink: CalDAVSink) -> None:
        """If-None-Match: * on an existing href raises PreconditionFailed; the object is untouched."""
        sink.create("a.ics", make_object("uid-a", "Original"))
        with pytest.raises(PreconditionFailed) as info:
            sink.create("a.ics", make_object("uid-a", "Replacement"))
        assert info.value.href == sink.href_for("a.ics")
        assert not isinstance(info.value, UidConflict)
        data = sink.multiget([sink.href_for("a.ics")])[sink.href_for("a.ics")].data
        assert b"SUMMARY:Original" in data

    def test_update_after_another_clients_edit_is_refused(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """If-Match with a stale etag raises PreconditionFailed and the other edit survives."""
        w = sink.create("a.ics", make_object("uid-a"))
        stale = sink.multiget([w.href])[w.href].etag
        other_put(other_client, sink, w.href, make_object("uid-a", "Edited in the app"))
        with pytest.raises(PreconditionFailed) as info:
            sink.update(w.href, make_object("uid-a", "Ours"), stale)
        assert info.value.etag == stale
        assert b"SUMMARY:Edited in the app" in sink.multiget([w.href])[w.href].data

    def test_delete_after_another_clients_edit_is_refused(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """DELETE with a stale etag raises PreconditionFailed and the object stays."""
        w = sink.create("a.ics", make_object("uid-a"))
        stale = sink.multiget([w.href])[w.href].etag
        other_put(other_client, sink, w.href, make_object("uid-a", "Edited in the app"))
        with pytest.raises(PreconditionFailed):
            sink.delete(w.href, stale)
        assert w.href in sink.multiget([w.href])

    def test_update_of_an_object_deleted_elsewhere_is_refused(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """If-Match on an object another client deleted raises PreconditionFailed, nothing is re-created."""
        w = sink.create("a.ics", make_object("uid-a"))
        etag = sink.multiget([w.href])[w.href].etag
        assert other_client.delete(sink.url_for(w.href)).status_code in (200, 204)
        with pytest.raises(PreconditionFailed):
            sink.update(w.href, make_object("uid-a", "Ours"), etag)
        assert sink.multiget([w.href]) == {}

    def test_delete_of_a_missing_object_is_fine(self, sink: CalDAVSink) -> None:
        """Deleting an object that is already gone reports 404 instead of failing."""
        result = sink.delete(sink.href_for("never-there.ics"))
        assert result.status == 404

    def test_same_uid_under_another_href_is_a_uid_conflict(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """A second href for an existing UID raises UidConflict (Radicale 409, Xandikos 412)."""
        sink.create("first.ics", make_object("uid-dup", "First"))
        with pytest.raises(UidConflict) as info:
            sink.create("second.ics", make_object("uid-dup", "Second"))
        expected = {"radicale": 409, "xandikos": 412, "cyrus": 403}[caldav_server.kind]
        assert (info.value.uid, info.value.status) == ("uid-dup", expected)
        assert info.value.href == sink.href_for("second.ics")
        assert info.value.existing_href == sink.href_for("first.ics")
        assert sink.multiget([sink.href_for("second.ics")]) == {}

    def test_find_uid_locates_events_and_tasks(self, sink: CalDAVSink) -> None:
        """find_uid returns the href and etag holding a UID, for a VEVENT and for a VTODO."""
        event = sink.create("event.ics", make_object("uid-event", todo=False)).href
        task = sink.create("task.ics", make_object("uid-task")).href
        etags = {h: o.etag for h, o in sink.multiget([event, task]).items()}
        assert sink.find_uid("uid-event") == {event: etags[event]}
        assert sink.find_uid("uid-task") == {task: etags[task]}
        assert sink.find_uid("uid-nobody") == {}

    def test_invalid_data_is_not_taken_for_a_precondition(self, sink: CalDAVSink) -> None:
        """A body the server refuses as invalid is a CalDAVError, never PreconditionFailed."""
        with pytest.raises(CalDAVError) as info:
            sink.create("bad.ics", b"this is not iCalendar\r\n")
        assert not isinstance(info.value, PreconditionFailed)
        assert info.value.status in (400, 403, 412, 415)

    def test_our_bytes_arrive_unchanged(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """Xandikos stores our bytes verbatim; Radicale only re-folds lines (vobject folds by characters)."""
        data = make_object("uid-bytes")
        w = sink.create("bytes.ics", data)
        raw = httpx.get(sink.url_for(w.href), auth=caldav_server.auth).content
        if caldav_server.kind == "xandikos":
            assert raw == data
        else:
            assert unfold(raw) == unfold(data)
        assert unfold(sink.multiget([w.href])[w.href].data) == unfold(raw)


class TestChanges:
    def test_no_token_lists_everything_with_a_server_token(self, sink: CalDAVSink) -> None:
        """Without a token the answer is a full listing and a token the server issued."""
        hrefs = {sink.create(f"o{i}.ics", make_object(f"uid-{i}")).href for i in range(3)}
        changes = sink.changes(None)
        assert changes.full
        assert set(changes.changed) == hrefs
        assert all(changes.changed.values())
        assert changes.token
        assert not changes.token.startswith("fake")

    def test_incremental_sync_reports_exactly_what_changed(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """After a token, only the edited and the new object are changed, the removed one deleted."""
        a, b, c = (sink.create(f"{n}.ics", make_object(f"uid-{n}")).href for n in "abc")
        token = sink.changes(None).token
        other_put(other_client, sink, a, make_object("uid-a", "Edited in the app"))
        assert other_client.delete(sink.url_for(b)).status_code in (200, 204)
        d = sink.create("d.ics", make_object("uid-d")).href
        changes = sink.changes(token)
        assert not changes.full
        assert set(changes.changed) == {a, d}
        assert changes.deleted == {b}
        assert c not in changes.changed
        assert changes.changed[a] == sink.multiget([a])[a].etag

    def test_unchanged_collection_costs_one_request(self, sink: CalDAVSink) -> None:
        """A sync with a current token reports nothing, in a single request."""
        sink.create("a.ics", make_object("uid-a"))
        token = sink.changes(None).token
        before = sink.request_count
        changes = sink.changes(token)
        assert sink.request_count - before == 1
        assert (changes.changed, changes.deleted, changes.full) == ({}, frozenset(), False)

    def test_collection_token_equal_to_the_stored_one_skips_the_report(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """The PROPFIND of the calendar reads its sync token: equal to the stored one, no REPORT at all.

        A change by another client after that gives another token: the next
        probe differs and the REPORT names the change.
        """
        a = sink.create("a.ics", make_object("uid-a")).href
        sink.ensure_calendar()
        first = sink.changes(None)
        sink.ensure_calendar()
        token = sink.changes(first.token).token or first.token  # settles the echo of our write
        info = sink.ensure_calendar()
        assert info.sync_token == token
        before = sink.request_count
        changes = sink.changes(token)
        assert sink.request_count == before
        assert (changes.token, changes.changed, changes.deleted, changes.full) == (
            token, {}, frozenset(), False,
        )
        other_put(other_client, sink, a, make_object("uid-a", "Edited in the app"))
        assert sink.ensure_calendar().sync_token != token
        changes = sink.changes(token)
        assert set(changes.changed) == {a}
        assert changes.token != token

    def test_answer_naming_nothing_reads_no_recorded_hrefs(self, sink: CalDAVSink) -> None:
        """The caller's recorded hrefs are read only when an answer could be a full listing."""

        class Untouchable(Collection[str]):
            def __contains__(self, href: object) -> bool:
                raise AssertionError("recorded hrefs read")

            def __iter__(self) -> Iterator[str]:
                raise AssertionError("recorded hrefs read")

            def __len__(self) -> int:
                raise AssertionError("recorded hrefs read")

        sink.create("a.ics", make_object("uid-a"))
        token = sink.changes(None).token
        token = sink.changes(token).token or token  # settles the echo of our write
        assert sink.changes(token, known_hrefs=Untouchable()).changed == {}

    def test_probe_is_not_trusted_after_a_request_or_without_a_token(self, sink: CalDAVSink) -> None:
        """The probe holds only for the next listing, with no request of ours in between."""
        sink.create("a.ics", make_object("uid-a"))
        token = sink.changes(None).token
        sink.ensure_calendar()
        sink.create("b.ics", make_object("uid-b"))
        changes = sink.changes(token)
        assert sink.href_for("b.ics") in changes.changed  # (DAViCal repeats a.ics too)
        sink.ensure_calendar()
        sink.changes(changes.token)
        before = sink.request_count
        assert sink.changes(changes.token).changed == {}  # no probe of its own: a REPORT
        assert sink.request_count - before == 1
        sink.ensure_calendar()
        before = sink.request_count
        sink.changes(None)  # no stored token: a full listing whatever the probe said
        assert sink.request_count - before == 1

    @pytest.mark.parametrize(
        "bad_token",
        ["garbage", "http://radicale.org/ns/sync/" + "0" * 64, "0" * 40],
    )
    def test_invalid_token_falls_back_to_a_full_listing(
        self, sink: CalDAVSink, other_client: httpx.Client, bad_token: str
    ) -> None:
        """A rejected token (Radicale 403, Xandikos 412) gives a full listing: nothing missed, deletions derivable."""
        a, b = (sink.create(f"{n}.ics", make_object(f"uid-{n}")).href for n in "ab")
        assert other_client.delete(sink.url_for(b)).status_code in (200, 204)
        c = sink.create("c.ics", make_object("uid-c")).href
        changes = sink.changes(bad_token, known_hrefs={a, b})
        assert changes.full
        assert set(changes.changed) == {a, c}
        assert changes.deleted == {b}
        assert changes.token
        assert changes.token != bad_token
        assert sink.changes(changes.token).changed == {}


class TestMultiget:
    def test_150_objects_come_back_in_at_most_three_requests(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """calendar-multiget batches: 150 objects in at most 3 REPORTs, unknown hrefs simply absent."""
        caldav_server.seed(sink.url, {f"m{i}.ics": make_object(f"uid-m{i}") for i in range(150)})
        hrefs = [sink.href_for(f"m{i}.ics") for i in range(150)]
        assert set(sink.changes(None).changed) == set(hrefs)
        before = sink.request_count
        got = sink.multiget([*hrefs, sink.href_for("missing.ics")])
        assert sink.request_count - before <= 3
        assert set(got) == set(hrefs)
        for i, href in enumerate(hrefs):
            assert f"UID:uid-m{i}\r\n".encode() in got[href].data


class TestApplyMany:
    def test_one_failing_object_does_not_block_the_rest(
        self, sink: CalDAVSink, other_client: httpx.Client
    ) -> None:
        """Results come back in order, a refused op as its error, the others accepted."""
        first = sink.create("x.ics", make_object("uid-x"))
        stale = sink.multiget([first.href])[first.href].etag
        other_put(other_client, sink, first.href, make_object("uid-x", "Edited in the app"))
        ops = [
            create_write("n1.ics", make_object("uid-n1")),
            update_write(first.href, make_object("uid-x", "Ours"), stale),
            create_write("n2.ics", make_object("uid-n2")),
            delete_write(sink.href_for("nothing.ics")),
        ]
        seen: list[int] = []
        results = sink.apply_many(ops, on_result=lambda i, op, outcome: seen.append(i))
        assert isinstance(results[0], WriteResult)
        assert isinstance(results[1], PreconditionFailed)
        assert isinstance(results[2], WriteResult)
        assert isinstance(results[3], WriteResult)
        assert results[3].status == 404
        assert sorted(seen) == [0, 1, 2, 3]

    def test_stop_sends_no_further_op(self, sink: CalDAVSink) -> None:
        """Once ``stop`` answers true, ops not yet started are not sent; those in flight finish."""
        finished: list[int] = []
        asked = itertools.count(1)
        lock = threading.Lock()

        def stop() -> bool:
            # Asked once before each op starts: answer "stop" from the fourth on.
            with lock:
                return next(asked) > 3

        ops = [create_write(f"s{i}.ics", make_object(f"uid-s{i}")) for i in range(16)]
        results = sink.apply_many(ops, on_result=lambda i, op, outcome: finished.append(i), stop=stop)
        stored = sink.changes(None).changed
        assert len(finished) == len(results) == len(stored) == 3
        assert all(isinstance(r, WriteResult) for r in results)

    def test_write_log_lines_carry_the_callers_bound_context(self, sink: CalDAVSink) -> None:
        """Log lines from the write threads carry the context the cycle bound (target, cycle id)."""
        events: list[dict[str, object]] = []

        def keep(_logger: object, _method: str, event: dict[str, object]) -> dict[str, object]:
            events.append(dict(event))
            raise structlog.DropEvent

        previous = structlog.get_config()
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars, keep],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            cache_logger_on_first_use=False,
        )
        try:
            with structlog.contextvars.bound_contextvars(target="jane", cycle_id="c-1"):
                sink.apply_many(
                    [
                        create_write(f"ctx{i}.ics", make_object(f"uid-ctx{i}"))
                        for i in range(3)
                    ]
                )
        finally:
            structlog.configure(**previous)
        writes = [e for e in events if e.get("event") == "caldav.write"]
        assert len(writes) == 3
        assert all(e.get("target") == "jane" and e.get("cycle_id") == "c-1" for e in writes)

    def test_concurrent_updates_all_land(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """Four updates at a time all succeed, also where the server refuses overlap with 423 (Xandikos)."""
        caldav_server.seed(sink.url, {f"u{i}.ics": make_object(f"uid-u{i}") for i in range(24)})
        first = sink.changes(None)
        fetched = sink.multiget(first.changed)
        ops = [
            update_write(
                o.href,
                make_object("uid-" + o.href.rsplit("/", 1)[1].removesuffix(".ics"), "New"),
                o.etag,
            )
            for o in fetched.values()
        ]
        results = sink.apply_many(ops)
        assert [type(r) for r in results] == [WriteResult] * 24
        assert set(sink.changes(first.token).changed) == set(fetched)


class TestFaults:
    def test_stopped_server_is_a_transport_error(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """With the server down mid-way, reads and writes fail as CalDAVTransportError, then recover."""
        sink.create("a.ics", make_object("uid-a"))
        token = sink.changes(None).token
        caldav_server.stop()
        try:
            with pytest.raises(CalDAVTransportError):
                sink.changes(token)
            outcomes = sink.apply_many(
                [create_write(f"b{i}.ics", make_object(f"uid-b{i}")) for i in range(3)]
            )
            assert all(isinstance(o, CalDAVTransportError) for o in outcomes)
        finally:
            caldav_server.start()
        assert sink.changes(token).changed == {}

    def test_stopped_server_during_discovery_is_a_counted_transport_error(
        self, sink: CalDAVSink, caldav_server: CalDAVServerHandle
    ) -> None:
        """ensure_calendar against a stopped server raises CalDAVTransportError and counts status 0."""
        seen: list[tuple[str, int]] = []
        caldav_server.stop()
        try:
            with CalDAVSink(
                sink.url,
                username=caldav_server.username,
                password=caldav_server.password,
                on_request=lambda m, s: seen.append((m, s)),
            ) as s:
                with pytest.raises(CalDAVTransportError) as info:
                    s.ensure_calendar(create=True)
                assert s.request_count == 1
        finally:
            caldav_server.start()
        assert seen == [("PROPFIND", 0)]
        assert sink.url in str(info.value)
        assert sink.ensure_calendar().supports_vevent

    def test_bad_credentials_are_an_auth_error_without_the_password(
        self, radicale_server: CalDAVServerHandle
    ) -> None:
        """Radicale refusing a wrong password raises CalDAVAuthError that does not quote it."""
        radicale_server.start()
        url = radicale_server.make_calendar()
        with (
            CalDAVSink(url, username="alice", password="wrong-password-123") as s,
            pytest.raises(CalDAVAuthError) as info,
        ):
            s.ensure_calendar()
        assert info.value.status == 401
        assert "wrong-password-123" not in str(info.value)

    def test_another_users_calendar_is_forbidden(self, radicale_server: CalDAVServerHandle) -> None:
        """bob reading alice's calendar on Radicale raises CalDAVAuthError (403), his own is fine."""
        radicale_server.start()
        url = radicale_server.make_calendar()
        own = radicale_server.make_calendar(user="bob")
        with CalDAVSink(own, username="bob", password=radicale_server.users["bob"]) as s:
            assert s.ensure_calendar().supports_vtodo
        with (
            CalDAVSink(url, username="bob", password=radicale_server.users["bob"]) as s,
            pytest.raises(CalDAVAuthError) as refused,
        ):
            s.ensure_calendar()
        assert refused.value.status == 403
        assert radicale_server.users["bob"] not in str(refused.value)
        with (
            CalDAVSink(url, username="bob", password=radicale_server.users["bob"]) as s,
            pytest.raises(CalDAVAuthError) as info,
        ):
            s.changes(None)
        assert info.value.status == 403
