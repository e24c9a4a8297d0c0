"""The CalDAV adapter against a scripted HTTP peer, for behaviour real servers do not show on demand.

Radicale and Xandikos never truncate a sync-collection answer (507), always
support sync-collection and never send broken XML, and their speed hides how
many requests run at once.  This peer is a plain HTTP server on loopback: the
fake sits at the transport, our code runs unchanged.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.errors import CalDAVAuthError, CalDAVError, CalDAVTransportError
from apexcal.sync.caldav import MAX_OBJECT_BYTES, CalDAVSink, ObjectTooLarge
from apexcal.sync.caldav.davxml import normalise_href, quote_href
from apexcal.sync.sink import WriteResult
from tests.integration.test_caldav_sink import create_write

MS_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'


def etag_response(href: str, etag: str) -> str:
    """A multistatus response for a changed member."""
    return (
        f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>"
        f"<D:getetag>{etag}</D:getetag></D:prop>"
        "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )


def gone_response(href: str) -> str:
    """A multistatus response for a removed member."""
    return f"<D:response><D:href>{href}</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response>"


@dataclass
class Request:
    """One request the peer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Peer:
    """A scripted HTTP server: ``handler(request) -> (status, body)`` answers every request."""

    url: str
    handler: Callable[[Request], tuple[int, bytes]]
    requests: list[Request] = field(default_factory=list)


@pytest.fixture
def peer() -> Iterator[Peer]:
    """A scripted HTTP peer on an ephemeral loopback port; set ``peer.handler`` in the test."""
    state = Peer(url="", handler=lambda req: (500, b""))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Request(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            with lock:
                state.requests.append(req)
            status, body = state.handler(req)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if body:
                self.send_header("Content-Type", "application/xml; charset=utf-8")
            if req.method == "PUT" and 200 <= status < 300:
                self.send_header("ETag", '"e-1"')
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_REPORT = do_PROPFIND = do_DELETE = do_MKCALENDAR = _serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read ``peer.requests`` instead."""

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            """Quiet: a client that gave up (timeout tests) is expected here."""

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/cal/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class TestSyncTruncation:
    def test_507_truncation_is_followed_until_complete(self, peer: Peer) -> None:
        """A 507 on the collection means more to come: follow the new token, merge the pages."""
        pages = {
            "t0": (
                "t1",
                etag_response("/cal/a.ics", '"a1"')
                + etag_response("/cal/b.ics", '"b1"')
                + gone_response("/cal/z.ics")
                + "<D:response><D:href>/cal/</D:href>"
                "<D:status>HTTP/1.1 507 Insufficient Storage</D:status></D:response>",
            ),
            "t1": (
                "t2",
                etag_response("/cal/c.ics", '"c1"')
                + gone_response("/cal/b.ics")
                + etag_response("/cal/z.ics", '"z2"'),
            ),
        }

        def handler(req: Request) -> tuple[int, bytes]:
            token = req.body.split(b"<D:sync-token>")[1].split(b"<")[0].decode()
            new, body = pages[token]
            return (
                207,
                f"{MS_HEAD}{body}<D:sync-token>{new}</D:sync-token></D:multistatus>".encode(),
            )

        peer.handler = handler
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            changes = sink.changes("t0")
        assert changes.token == "t2"
        assert changes.changed == {"/cal/a.ics": '"a1"', "/cal/c.ics": '"c1"', "/cal/z.ics": '"z2"'}
        assert changes.deleted == {"/cal/b.ics"}
        assert not changes.full
        assert len(peer.requests) == 2
        assert all(b"limit" not in r.body for r in peer.requests)
        assert all(b"<D:sync-level>1</D:sync-level>" in r.body for r in peer.requests)

    def test_truncation_without_a_new_token_is_an_error(self, peer: Peer) -> None:
        """A 507 page that does not advance the token stops with an error instead of looping."""
        body = (
            f"{MS_HEAD}<D:response><D:href>/cal/</D:href>"
            "<D:status>HTTP/1.1 507 Insufficient Storage</D:status></D:response>"
            "<D:sync-token>t0</D:sync-token></D:multistatus>"
        ).encode()
        peer.handler = lambda req: (207, body)
        with CalDAVSink(peer.url, username=None, password=None) as sink, pytest.raises(CalDAVError):
            sink.changes("t0")
        assert len(peer.requests) == 1


class TestNoSyncSupport:
    def test_server_without_sync_collection_is_listed_in_full_every_time(self, peer: Peer) -> None:
        """A server refusing the report gets a PROPFIND listing, token None, and no more REPORTs."""
        member = etag_response("/cal/a.ics", '"a1"')
        listing = (
            f"{MS_HEAD}<D:response><D:href>/cal/</D:href><D:propstat><D:prop><D:resourcetype>"
            "<D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status>"
            f"</D:propstat></D:response>{member}</D:multistatus>"
        ).encode()

        def handler(req: Request) -> tuple[int, bytes]:
            if req.method == "REPORT":
                return 405, b""
            assert req.headers["depth"] == "1"
            return 207, listing

        peer.handler = handler
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            first = sink.changes(None, known_hrefs={"/cal/a.ics", "/cal/gone.ics"})
            second = sink.changes(None)
        assert (first.token, first.full) == (None, True)
        assert first.changed == {"/cal/a.ics": '"a1"'}
        assert first.deleted == {"/cal/gone.ics"}
        assert second.changed == first.changed
        assert [r.method for r in peer.requests] == ["REPORT", "PROPFIND", "PROPFIND"]


class TestMalformedAnswers:
    @pytest.mark.parametrize(
        "body",
        [b"<D:multistatus xmlns:D='DAV:'><D:response>", b"not xml at all", b"<html>oops</html>"],
    )
    def test_malformed_xml_is_a_caldav_error_naming_the_url(self, peer: Peer, body: bytes) -> None:
        """Broken or foreign XML in a 207 raises CalDAVError with the URL, not a parser error."""
        peer.handler = lambda req: (207, body)
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            with pytest.raises(CalDAVError) as info:
                sink.changes(None)
            assert sink.url in str(info.value)
        assert not isinstance(info.value, CalDAVTransportError)

    @pytest.mark.parametrize("body", [b"not xml at all", b"<html>oops</html>"])
    def test_malformed_calendar_description_is_a_caldav_error(
        self, peer: Peer, body: bytes
    ) -> None:
        """Broken XML in the collection's PROPFIND answer raises CalDAVError naming the URL."""
        peer.handler = lambda req: (207, body)
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            with pytest.raises(CalDAVError) as info:
                sink.ensure_calendar()
            assert sink.url in str(info.value)
        assert not isinstance(info.value, CalDAVTransportError)


class TestDiscoveryStatuses:
    @pytest.mark.parametrize("status", [429, 503])
    def test_busy_server_is_reported_at_once_without_retrying(
        self, peer: Peer, status: int
    ) -> None:
        """429/503 on the collection's PROPFIND is one CalDAVError with the status, sent once."""
        peer.handler = lambda req: (status, b"")
        with CalDAVSink(peer.url, username="alice", password="pw") as sink:
            with pytest.raises(CalDAVError) as info:
                sink.ensure_calendar()
            assert sink.request_count == 1
        assert info.value.status == status
        assert [r.method for r in peer.requests] == ["PROPFIND"]

    def test_refused_mkcalendar_is_an_auth_error(self, peer: Peer) -> None:
        """A 403 on MKCALENDAR (no right to create) raises CalDAVAuthError with the status."""
        peer.handler = lambda req: (404 if req.method == "PROPFIND" else 403, b"")
        with (
            CalDAVSink(peer.url, username="alice", password="pw-9") as sink,
            pytest.raises(CalDAVAuthError) as info,
        ):
            sink.ensure_calendar(create=True)
        assert info.value.status == 403
        assert "pw-9" not in str(info.value)
        assert [r.method for r in peer.requests] == ["PROPFIND", "MKCALENDAR"]
        assert peer.requests[1].path == "/cal/"


class TestCredentials:
    def test_credentials_in_the_url_are_used_and_never_shown(self, peer: Peer) -> None:
        """user:password in the URL become Basic auth and vanish from URLs and error text."""
        peer.handler = lambda req: (500, b"")
        url = peer.url.replace("http://", "http://alice:s3cret-pw@")
        with CalDAVSink(url, username=None, password=None) as sink:
            with pytest.raises(CalDAVError) as info:
                sink.ensure_calendar()
            assert "s3cret-pw" not in sink.url
        assert "s3cret-pw" not in str(info.value)
        assert info.value.status == 500
        expected = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
        assert peer.requests[0].headers["authorization"] == expected


class TestBoundedConcurrency:
    def test_apply_many_runs_exactly_concurrency_requests_at_once(self, peer: Peer) -> None:
        """With concurrency 4, the peer sees 4 PUTs in flight at most, and does see 4."""
        total = 14
        cond = threading.Condition()
        in_flight = 0
        started = 0
        peak = 0

        def handler(req: Request) -> tuple[int, bytes]:
            nonlocal in_flight, started, peak
            with cond:
                in_flight += 1
                started += 1
                peak = max(peak, in_flight)
                cond.notify_all()
                # Hold each PUT until a fifth one arrives (which must not happen),
                # all have arrived, or a short deadline passes.
                cond.wait_for(lambda: in_flight > 4 or started >= total, timeout=0.3)
                in_flight -= 1
            return 201, b""

        peer.handler = handler
        threads: set[int] = set()
        ops = [
            create_write(f"o{i}.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
            for i in range(total)
        ]
        with CalDAVSink(peer.url, username=None, password=None, concurrency=4) as sink:
            results = sink.apply_many(
                ops, on_result=lambda i, op, outcome: threads.add(threading.get_ident())
            )
        assert peak == 4
        assert all(isinstance(r, WriteResult) for r in results)
        assert [r.href for r in results if isinstance(r, WriteResult)] == [
            f"/cal/o{i}.ics" for i in range(total)
        ]
        assert threads == {threading.get_ident()}

    def test_on_request_counts_every_request_with_its_status(self, peer: Peer) -> None:
        """on_request sees each method and status, and request_count agrees."""
        peer.handler = lambda req: (412 if req.path.endswith("o1.ics") else 201, b"")
        seen: list[tuple[str, int]] = []
        ops = [create_write(f"o{i}.ics", b"x") for i in range(3)]
        with CalDAVSink(
            peer.url, username=None, password=None, on_request=lambda m, s: seen.append((m, s))
        ) as sink:
            sink.apply_many(ops)
            assert sink.request_count == 3
        assert sorted(seen) == [("PUT", 201), ("PUT", 201), ("PUT", 412)]


class TestLockedRetry:
    def test_locked_write_is_retried_until_accepted(self, peer: Peer) -> None:
        """423 Locked answers are retried (same conditional request) until the server accepts."""
        answers = iter([423, 423, 204])
        peer.handler = lambda req: (next(answers), b"")
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            result = sink.update("/cal/a.ics", b"data", '"e-0"')
            assert sink.request_count == 3
        assert result.status == 204
        assert [r.headers["if-match"] for r in peer.requests] == ['"e-0"'] * 3


class TestTimeouts:
    def test_a_silent_server_is_a_transport_error_after_the_timeout(self, peer: Peer) -> None:
        """A server that accepts but never answers raises CalDAVTransportError once the timeout passes."""
        release = threading.Event()

        def handler(req: Request) -> tuple[int, bytes]:
            release.wait(timeout=5)
            return 207, b""

        peer.handler = handler
        try:
            with CalDAVSink(peer.url, username=None, password=None, timeout=0.2) as sink:
                with pytest.raises(CalDAVTransportError) as info:
                    sink.changes(None)
                assert sink.request_count == 1
        finally:
            release.set()
        assert "timed out" in str(info.value)


class TestHrefs:
    @given(st.lists(st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s), max_size=4))
    def test_quoting_round_trips_every_path(self, segments: list[str]) -> None:
        """A canonical href survives quoting for the wire and normalising back."""
        path = "/" + "/".join(segments)
        assert normalise_href(quote_href(path)) == path

    @given(st.sampled_from(["a@b.ics", "a%40b.ics", "http://h:1/cal/a%40b.ics", " /cal/a@b.ics "]))
    def test_server_spellings_of_one_member_agree(self, spelling: str) -> None:
        """Radicale's escaped, Xandikos's raw and absolute-URL hrefs name the same member."""
        canonical = normalise_href(spelling if "/" in spelling.strip() else "/cal/" + spelling)
        assert canonical == "/cal/a@b.ics"


class TestObjectSize:
    def test_oversized_objects_are_refused_before_sending(self, peer: Peer) -> None:
        """A body over MAX_OBJECT_BYTES is an ObjectTooLarge outcome and never reaches the server."""
        peer.handler = lambda req: (201, b"")
        big = b"X" * (MAX_OBJECT_BYTES + 1)
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            outcomes = sink.apply_many(
                [create_write("big.ics", big), create_write("small.ics", b"x")]
            )
        assert isinstance(outcomes[0], ObjectTooLarge)
        assert isinstance(outcomes[1], WriteResult)
        assert [r.path for r in peer.requests] == ["/cal/small.ics"]


class TestWireFormat:
    def test_writes_send_our_bytes_and_conditions_verbatim(self, peer: Peer) -> None:
        """PUT bodies are our exact bytes; create, update and delete carry their conditional headers."""
        peer.handler = lambda req: (204 if req.method == "DELETE" else 201, b"")
        data = "BEGIN:VCALENDAR\r\nSUMMARY:Ünïcödé\r\n folded\r\nEND:VCALENDAR\r\n".encode()
        with CalDAVSink(peer.url, username=None, password=None) as sink:
            created = sink.create("a@b.ics", data)
            sink.update(created.href, data, '"e-1"')
            sink.delete(created.href, '"e-2"')
            sink.delete(created.href)
        create, update, delete, blind_delete = peer.requests
        assert created.etag == '"e-1"'
        assert (create.method, create.body, create.headers["if-none-match"]) == ("PUT", data, "*")
        assert "if-match" not in create.headers
        assert create.headers["content-type"].startswith("text/calendar")
        assert (update.method, update.body, update.headers["if-match"]) == ("PUT", data, '"e-1"')
        assert (delete.method, delete.headers["if-match"]) == ("DELETE", '"e-2"')
        assert "if-match" not in blind_delete.headers
        assert {r.path for r in peer.requests} == {"/cal/a@b.ics"}
