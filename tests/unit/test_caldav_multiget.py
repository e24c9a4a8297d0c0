"""calendar-multiget answers the four servers of the suite never give: objects listed without data, reads that fail.

The CalDAV sink talks to an :class:`httpx.MockTransport` answering like a
server would; the same behaviour on a real server (Xandikos failing a read of
an object of invalid UTF-8) is in ``tests/contract/test_sink_contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.errors import CalDAVError, ObjectsUnread
from apexcal.sync.caldav import CalDAVSink
from apexcal.sync.caldav.reads import MULTIGET_BATCH, MULTIGET_FAILURES

BASE = "/cal/"
DATA = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:{uid}\nDTSTART:20260102T100000Z\nEND:VEVENT\nEND:VCALENDAR\n"


def _response(href: str, kind: str) -> str:
    ok = "<D:status>HTTP/1.1 200 OK</D:status>"
    missing = "<D:status>HTTP/1.1 404 Not Found</D:status>"
    if kind == "gone":
        return f"<D:response><D:href>{href}</D:href>{missing}</D:response>"
    if kind == "all-404":
        return (
            f"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:getetag/><C:calendar-data/>"
            f"</D:prop>{missing}</D:propstat></D:response>"
        )
    etag = f'<D:getetag>"e-{href.rsplit("/", 1)[1]}"</D:getetag>'
    if kind == "no-data":
        return f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{etag}</D:prop>{ok}</D:propstat></D:response>"
    if kind == "data-404":
        return (
            f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{etag}</D:prop>{ok}</D:propstat>"
            f"<D:propstat><D:prop><C:calendar-data/></D:prop>{missing}</D:propstat></D:response>"
        )
    data = DATA.format(uid=href)
    return (
        f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{etag}"
        f"<C:calendar-data>{data}</C:calendar-data></D:prop>{ok}</D:propstat></D:response>"
    )


class FakeServer:
    """Answers calendar-multiget REPORTs: each href by its kind; 500 to any REPORT naming a ``fails`` href."""

    def __init__(self, kinds: dict[str, str], *, fails: Callable[[str], bool] = lambda href: False) -> None:
        self.kinds = kinds
        self.fails = fails
        self.reports: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "REPORT"
        hrefs = re.findall(r"<D:href>([^<]+)</D:href>", request.content.decode())
        self.reports.append(hrefs)
        if any(self.fails(h) for h in hrefs):
            return httpx.Response(500, text="Server got itself in trouble")
        body = "".join(_response(h, self.kinds.get(h.rsplit("/", 1)[1], "gone")) for h in hrefs)
        xml = f'<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">{body}</D:multistatus>'
        return httpx.Response(207, content=xml.encode(), headers={"Content-Type": "application/xml"})


@pytest.fixture
def sink() -> Iterator[CalDAVSink]:
    with CalDAVSink("http://calendar.test" + BASE) as s:
        yield s


def _serve(sink: CalDAVSink, server: FakeServer) -> None:
    sink._dav._client._transport = httpx.MockTransport(server)  # a transport-level fake


def test_listed_without_data_is_unread_not_gone(sink: CalDAVSink) -> None:
    """An href answered with its etag and no calendar-data (or calendar-data 404) is present, not gone."""
    kinds = {"good.ics": "ok", "no-data.ics": "no-data", "data-404.ics": "data-404", "gone.ics": "gone",
             "all-404.ics": "all-404"}
    _serve(sink, FakeServer(kinds))
    with pytest.raises(ObjectsUnread) as info:
        sink.multiget([BASE + name for name in kinds])
    assert set(info.value.found) == {BASE + "good.ics"}
    assert info.value.unread == {
        BASE + "no-data.ics": ("listed without its calendar-data", '"e-no-data.ics"'),
        BASE + "data-404.ics": ("listed without its calendar-data", '"e-data-404.ics"'),
    }
    assert BASE + "no-data.ics" in str(info.value)


def test_a_failing_read_is_split_down_to_the_bad_object(sink: CalDAVSink) -> None:
    """A 500 for a multiget of many hrefs: halves are read until the one that fails is alone."""
    names = [f"o{i}.ics" for i in range(40)]
    server = FakeServer(dict.fromkeys(names, "ok"), fails=lambda h: h.endswith("/o17.ics"))
    _serve(sink, server)
    with pytest.raises(ObjectsUnread) as info:
        sink.multiget([BASE + n for n in names])
    assert set(info.value.found) == {BASE + n for n in names} - {BASE + "o17.ics"}
    assert info.value.unread == {BASE + "o17.ics": ("the server answers 500 to reading it", None)}
    assert len(server.reports) <= 2 * 6 + 1  # two halves per level, log2(40) < 6 levels


def test_a_server_failing_every_read_is_not_asked_once_per_object(sink: CalDAVSink) -> None:
    """Every REPORT failing: at most MULTIGET_FAILURES split reads, then the server's error."""
    names = [f"o{i}.ics" for i in range(100)]
    server = FakeServer(dict.fromkeys(names, "ok"), fails=lambda h: True)
    _serve(sink, server)
    with pytest.raises(CalDAVError) as info:
        sink.multiget([BASE + n for n in names])
    assert not isinstance(info.value, ObjectsUnread)
    assert info.value.status == 500
    assert len(server.reports) == MULTIGET_FAILURES + 1


def test_a_complete_answer_is_returned_as_before(sink: CalDAVSink) -> None:
    """Nothing unread: the objects, and missing hrefs simply absent."""
    _serve(sink, FakeServer({"a.ics": "ok"}))
    got = sink.multiget([BASE + "a.ics", BASE + "gone.ics"])
    assert set(got) == {BASE + "a.ics"}
    assert got[BASE + "a.ics"].etag == '"e-a.ics"'


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 250), bad=st.sets(st.integers(0, 249), max_size=6))
def test_splitting_isolates_exactly_the_bad_objects_or_gives_up(size: int, bad: set[int]) -> None:
    """Any number of hrefs, any few bad ones: exactly those unread and the rest read, or the server's error; never a guess."""
    names = [f"o{i}.ics" for i in range(size)]
    bad_names = {f"o{i}.ics" for i in bad if i < size}
    server = FakeServer(dict.fromkeys(names, "ok"), fails=lambda h: h.rsplit("/", 1)[1] in bad_names)
    outcome: dict[str, object] | ObjectsUnread | CalDAVError
    with CalDAVSink("http://calendar.test" + BASE) as sink:
        _serve(sink, server)
        try:
            outcome = dict(sink.multiget([BASE + n for n in names]))
        except CalDAVError as exc:
            outcome = exc
    good = {BASE + n for n in names if n not in bad_names}
    if isinstance(outcome, ObjectsUnread):
        assert set(outcome.found) == good
        assert set(outcome.unread) == {BASE + n for n in bad_names}
    elif isinstance(outcome, CalDAVError):
        assert outcome.status == 500
        assert len(bad_names) > 1
    else:
        assert not bad_names
        assert set(outcome) == good
    failed = sum(1 for hrefs in server.reports if any(h.rsplit("/", 1)[1] in bad_names for h in hrefs))
    assert failed <= MULTIGET_FAILURES + 1
    if len(bad_names) == 1:  # one bad object never exhausts the budget
        assert failed <= 2 + (MULTIGET_BATCH - 1).bit_length()
