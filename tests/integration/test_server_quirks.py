"""What each CalDAV server of the suite answers, as docs/servers.md's measured tables say.

Plain HTTP, no apexcal code: these pin the servers' behaviour, so a server
upgrade that changes it fails here first, next to the table to update.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.caldav_servers import CalDAVServerHandle

EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//quirk tests//EN\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\n"
    "DTEND:20260102T110000Z\r\nSUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
)
TODO = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//quirk tests//EN\r\nBEGIN:VTODO\r\n"
    "UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:Task\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
)
CALENDAR = {"Content-Type": "text/calendar; charset=utf-8"}
CREATE = {**CALENDAR, "If-None-Match": "*"}
XML = {"Content-Type": "application/xml; charset=utf-8"}


def event(uid: str, summary: str = "Quirk", extra: str = "") -> bytes:
    return EVENT.format(uid=uid, summary=summary, extra=extra).encode()


def sync_collection(token: str, *, limit: int | None = None) -> bytes:
    limit_xml = f"<D:limit><D:nresults>{limit}</D:nresults></D:limit>" if limit else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
        f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>{limit_xml}"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    ).encode()


@pytest.fixture
def client(caldav_server: CalDAVServerHandle) -> Iterator[httpx.Client]:
    """A client with the server's credentials."""
    with httpx.Client(auth=caldav_server.auth, timeout=30) as c:
        yield c


class TestPreconditions:
    def test_412_bodies(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """Failed If-None-Match / If-Match: a bare 412 everywhere but DAViCal, which names the header."""
        href = f"{calendar_url}a.ics"
        assert client.put(href, content=event("uid-a"), headers=CREATE).status_code == 201
        answers = [
            client.put(href, content=event("uid-a", "Again"), headers=CREATE),
            client.put(
                href, content=event("uid-a", "Stale"), headers={**CALENDAR, "If-Match": '"stale"'}
            ),
            client.delete(href, headers={"If-Match": '"stale"'}),
            client.put(
                f"{calendar_url}gone.ics",
                content=event("uid-g"),
                headers={**CALENDAR, "If-Match": '"x"'},
            ),
        ]
        assert [a.status_code for a in answers] == [412, 412, 412, 412]
        elements = [re.findall(r"<(?:\w+:)?(if-match|if-none-match)\s*/>", a.text) for a in answers]
        if caldav_server.kind == "davical":
            assert elements == [["if-none-match"], ["if-match"], ["if-match"], ["if-match"]]
        else:
            assert elements == [[], [], [], []]

    def test_duplicate_uid(self, client: httpx.Client, caldav_server: CalDAVServerHandle) -> None:
        """A UID already used: per calendar on Radicale/Xandikos, per account on Cyrus, unchecked on DAViCal."""
        first = caldav_server.make_calendar("first")
        second = caldav_server.make_calendar("second")
        assert (
            client.put(f"{first}a.ics", content=event("uid-dup"), headers=CREATE).status_code == 201
        )
        same = client.put(f"{first}b.ics", content=event("uid-dup", "Same"), headers=CREATE)
        other = client.put(f"{second}a.ics", content=event("uid-dup", "Other"), headers=CREATE)
        expected = {
            "radicale": (409, "no-uid-conflict", 201),
            "xandikos": (412, "no-uid-conflict", 201),
            "cyrus": (403, "unique-scheduling-object-resource", 403),
            "davical": (201, "", 201),
        }[caldav_server.kind]
        assert (same.status_code, other.status_code) == (expected[0], expected[2])
        assert expected[1] in same.text
        if caldav_server.kind == "cyrus":
            assert f"{first[len(caldav_server.base_url) - 1 :]}a.ics" in same.text


class TestSyncTokens:
    def test_unknown_token(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """An unknown token: DAV:valid-sync-token (403 or 412) everywhere but DAViCal, which lists everything."""
        client.put(f"{calendar_url}a.ics", content=event("uid-a"), headers=CREATE)
        answer = client.request(
            "REPORT",
            calendar_url,
            content=sync_collection("garbage"),
            headers={"Depth": "1", **XML},
        )
        if caldav_server.kind == "davical":
            assert answer.status_code == 207
            assert "valid-sync-token" not in answer.text
            assert "a.ics" in answer.text
        else:
            expected = {"radicale": 403, "xandikos": 412, "cyrus": 403}[caldav_server.kind]
            assert answer.status_code == expected
            assert "valid-sync-token" in answer.text

    def test_limit(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """DAV:limit of 1 over three objects: Cyrus truncates with a 507, Xandikos silently, the others ignore it."""
        for name in "abc":
            client.put(f"{calendar_url}{name}.ics", content=event(f"uid-{name}"), headers=CREATE)
        answer = client.request(
            "REPORT",
            calendar_url,
            content=sync_collection("", limit=1),
            headers={"Depth": "1", **XML},
        )
        assert answer.status_code == 207
        listed = len(re.findall(r"[abc]\.ics</(?:\w+:)?href>", answer.text))
        # A DAV:status of 507 on the collection (the sync token, hex in Radicale's
        # answer, may hold the digits "507" too).
        truncated = re.search(r"<(?:\w+:)?status>\s*HTTP/1\.[01] 507\b", answer.text) is not None
        expected = {
            "radicale": (3, False),
            "xandikos": (1, False),  # cut short silently, with the collection's current token
            "cyrus": (1, True),
            "davical": (3, False),
        }[caldav_server.kind]
        assert (listed, truncated) == expected


class TestStorage:
    def test_component_set_enforcement(
        self, client: httpx.Client, caldav_server: CalDAVServerHandle
    ) -> None:
        """A VTODO into a VEVENT-only calendar: refused by Xandikos and Cyrus, stored by Radicale and DAViCal."""
        url = caldav_server.make_calendar_url("events")
        body = (
            b'<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            b'<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
            b"</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
        )
        assert client.request("MKCALENDAR", url, content=body, headers=XML).status_code == 201
        answer = client.put(
            f"{url}t.ics", content=TODO.format(uid="uid-t").encode(), headers=CREATE
        )
        if caldav_server.kind in ("xandikos", "cyrus"):
            assert answer.status_code == 403
            assert "supported-calendar-component" in answer.text
        else:
            assert answer.status_code == 201

    def test_etag_of_put_is_that_of_get(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """The PUT's ETag is the GET's; Cyrus weakens it (W/) on a gzip-compressed GET."""
        sent = event("uid-etag", extra=f"DESCRIPTION:{'long enough to be compressed ' * 20}\r\n")
        put = client.put(f"{calendar_url}etag.ics", content=sent, headers=CREATE)
        plain = client.get(f"{calendar_url}etag.ics", headers={"Accept-Encoding": "identity"})
        gzipped = client.get(f"{calendar_url}etag.ics", headers={"Accept-Encoding": "gzip"})
        assert plain.headers["ETag"] == put.headers["ETag"]
        weak = gzipped.headers.get("Content-Encoding") == "gzip" and caldav_server.kind == "cyrus"
        assert gzipped.headers["ETag"] == (
            f"W/{put.headers['ETag']}" if weak else put.headers["ETag"]
        )
        if caldav_server.kind == "cyrus":
            assert weak

    def test_rewrites(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """What comes back of GEO and a quoted URI-valued X- property."""
        location = (
            'X-APPLE-STRUCTURED-LOCATION;VALUE=URI;X-ADDRESS="Tokyo";X-TITLE="Site, Tokyo"'
            ":geo:35.6762,139.6503\r\n"
        )
        sent = event("uid-rich", extra=f"GEO:35.6762;139.6503\r\n{location}")
        client.put(f"{calendar_url}rich.ics", content=sent, headers=CREATE)
        got = client.get(f"{calendar_url}rich.ics")
        lines = got.content.replace(b"\r\n ", b"").replace(b"\r\n", b"\n").decode().split("\n")
        geo = next(line for line in lines if line.startswith("GEO"))
        apple = next(line for line in lines if line.startswith("X-APPLE-STRUCTURED-LOCATION"))
        if caldav_server.kind == "davical":
            assert got.content == sent
        elif caldav_server.kind == "xandikos":
            # Re-serialised by the icalendar library: same content lines, its order and folding.
            assert sorted(lines) == sorted(sent.decode().replace("\r\n", "\n").split("\n"))
            assert got.content != sent
        elif caldav_server.kind == "cyrus":
            assert geo == "GEO:35.676200;139.650300"
            assert apple.endswith(';X-ADDRESS=Tokyo;X-TITLE="Site, Tokyo":geo:35.6762,139.6503')
        else:
            assert geo == "GEO:35.6762;139.6503"
            assert apple.endswith(';X-ADDRESS=Tokyo;X-TITLE="Site, Tokyo":geo:35.6762')

    def test_event_without_end(
        self, client: httpx.Client, calendar_url: str, caldav_server: CalDAVServerHandle
    ) -> None:
        """A VEVENT with DTSTART and no DTEND/DURATION (valid iCalendar): only Cyrus refuses it."""
        body = event("uid-open").replace(b"DTEND:20260102T110000Z\r\n", b"")
        answer = client.put(f"{calendar_url}open.ics", content=body, headers=CREATE)
        if caldav_server.kind == "cyrus":
            assert answer.status_code == 403
            assert "valid-calendar-data" in answer.text
        else:
            assert answer.status_code == 201
