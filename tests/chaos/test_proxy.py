"""The fault-injecting proxy does to each request exactly what its plan says, in front of a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from xml.etree import ElementTree

import httpx
import pytest

from tests.chaos.proxy import (
    Fault,
    FaultKind,
    FaultProxy,
    RandomFaults,
    Request,
    ScriptedFaults,
    matching,
)
from tests.fixtures.caldav_servers import CalDAVServerHandle

EVENT = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//proxy tests//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\n"
    b"DTEND:20260102T110000Z\r\nSUMMARY:Proxied\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
PROPFIND = (
    b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>'
)
CT = {"Content-Type": "text/calendar; charset=utf-8"}


@pytest.fixture
def calendar(radicale_server: CalDAVServerHandle) -> str:
    """A fresh calendar on Radicale (the upstream of every test here)."""
    radicale_server.start()
    return radicale_server.make_calendar("proxied")


@pytest.fixture
def proxy(radicale_server: CalDAVServerHandle) -> Iterator[FaultProxy]:
    """The proxy in front of Radicale, with no faults planned."""
    with FaultProxy(upstream=radicale_server.base_url) as p:
        yield p


@pytest.fixture
def direct(radicale_server: CalDAVServerHandle) -> Iterator[httpx.Client]:
    """A client that talks to Radicale itself, to see what the server holds."""
    with httpx.Client(auth=radicale_server.auth, timeout=30) as c:
        yield c


@pytest.fixture
def client(radicale_server: CalDAVServerHandle) -> Iterator[httpx.Client]:
    """A client for the proxy, retrying nothing."""
    with httpx.Client(auth=radicale_server.auth, timeout=30) as c:
        yield c


def put(client: httpx.Client, url: str, uid: bytes) -> httpx.Response:
    return client.put(url, content=EVENT % uid, headers={**CT, "If-None-Match": "*"})


def first(kind: FaultKind, *methods: str, **params: object) -> ScriptedFaults:
    """A plan hurting the first request of these methods with one fault."""
    return ScriptedFaults(rules=[(matching(*methods), 1, Fault(kind=kind, **params))])  # type: ignore[arg-type]


class TestForwarding:
    def test_untouched_requests_reach_the_server_and_come_back_whole(
        self, proxy: FaultProxy, client: httpx.Client, direct: httpx.Client, calendar: str
    ) -> None:
        """Without faults, a PUT and a GET through the proxy are those of the server."""
        created = put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        assert created.status_code == 201
        through = client.get(proxy.rewrite(f"{calendar}a.ics"))
        held = direct.get(f"{calendar}a.ics")
        assert (through.status_code, through.content, through.headers["ETag"]) == (
            200,
            held.content,
            held.headers["ETag"],
        )
        assert created.headers["ETag"] == held.headers["ETag"]
        assert proxy.counts() == {"none": 2}

    def test_only_loopback_upstreams_are_accepted(self) -> None:
        """The proxy refuses to forward anywhere but 127.0.0.1."""
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
            FaultProxy(upstream="http://example.org/")


class TestFaults:
    def test_error_answers_without_forwarding(
        self, proxy: FaultProxy, client: httpx.Client, direct: httpx.Client, calendar: str
    ) -> None:
        """An ERROR fault answers its 5xx and the server never sees the write."""
        proxy.plan = first(FaultKind.ERROR, "PUT", status=502)
        answer = put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        assert answer.status_code == 502
        assert direct.get(f"{calendar}a.ics").status_code == 404
        assert proxy.events[-1].fault is FaultKind.ERROR
        assert proxy.events[-1].upstream_status is None

    def test_reset_breaks_the_connection_without_forwarding(
        self, proxy: FaultProxy, client: httpx.Client, direct: httpx.Client, calendar: str
    ) -> None:
        """A RESET fault is a transport error for the client and no write for the server."""
        proxy.plan = first(FaultKind.RESET, "PUT")
        with pytest.raises(httpx.TransportError):
            put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        assert direct.get(f"{calendar}a.ics").status_code == 404

    def test_drop_after_applies_the_write_but_loses_the_answer(
        self, proxy: FaultProxy, client: httpx.Client, direct: httpx.Client, calendar: str
    ) -> None:
        """A DROP_AFTER fault: the client hears nothing, the server has applied the PUT."""
        proxy.plan = first(FaultKind.DROP_AFTER, "PUT")
        with pytest.raises(httpx.RemoteProtocolError):
            put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        held = direct.get(f"{calendar}a.ics")
        assert held.status_code == 200
        assert b"UID:uid-a" in held.content
        assert proxy.events[-1].upstream_status == 201

    def test_delay_holds_the_request_back(
        self, proxy: FaultProxy, client: httpx.Client, calendar: str
    ) -> None:
        """A DELAY fault forwards the request after the delay, unchanged."""
        proxy.plan = first(FaultKind.DELAY, "PUT", delay_s=0.4)
        started = time.monotonic()
        answer = put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        assert time.monotonic() - started >= 0.4
        assert answer.status_code == 201

    def test_truncate_dies_mid_body(
        self, proxy: FaultProxy, client: httpx.Client, calendar: str
    ) -> None:
        """A TRUNCATE fault on a 207: the connection closes before the declared length."""
        put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        proxy.plan = first(FaultKind.TRUNCATE, "PROPFIND")
        with pytest.raises(httpx.RemoteProtocolError):
            client.request(
                "PROPFIND", proxy.rewrite(calendar), content=PROPFIND, headers={"Depth": "1"}
            )

    def test_cut_sends_a_well_framed_half_207(
        self, proxy: FaultProxy, client: httpx.Client, direct: httpx.Client, calendar: str
    ) -> None:
        """A CUT fault on a 207: a complete answer whose XML stops at ``keep`` bytes."""
        put(client, proxy.rewrite(f"{calendar}a.ics"), b"uid-a")
        whole = direct.request("PROPFIND", calendar, content=PROPFIND, headers={"Depth": "1"})
        proxy.plan = first(FaultKind.CUT, "PROPFIND", keep=60)
        cut = client.request(
            "PROPFIND", proxy.rewrite(calendar), content=PROPFIND, headers={"Depth": "1"}
        )
        assert cut.status_code == 207
        assert cut.content == whole.content[:60]
        with pytest.raises(ElementTree.ParseError):
            ElementTree.fromstring(cut.content)  # noqa: S314 - our own server's answer


class TestPlans:
    def test_scripted_rule_fires_once_at_its_request(
        self, proxy: FaultProxy, client: httpx.Client, calendar: str
    ) -> None:
        """The second matching request gets the fault; the others and non-matching ones do not."""
        proxy.plan = ScriptedFaults(rules=[(matching("PUT"), 2, Fault(kind=FaultKind.ERROR))])
        statuses = [
            put(client, proxy.rewrite(f"{calendar}{n}.ics"), n.encode()).status_code for n in "abc"
        ]
        assert client.get(proxy.rewrite(f"{calendar}a.ics")).status_code == 200
        assert statuses == [201, 503, 201]
        assert proxy.counts() == {"none": 3, "error": 1}

    def test_random_plan_is_reproducible_from_its_seed(self) -> None:
        """Two plans with one seed give the same faults to the same requests; the cap holds."""
        requests = [Request(method="PUT", path=f"/c/{i}.ics", number=i) for i in range(1, 400)]

        def draw(seed: str) -> list[Fault | None]:
            plan = RandomFaults(seed=seed, rate=0.3, max_faults=40)
            return [plan.fault_for(r) for r in requests]

        first_run, second_run, other = draw("s1"), draw("s1"), draw("s2")
        assert first_run == second_run
        assert first_run != other
        faults = [f for f in first_run if f is not None]
        assert len(faults) == 40
        assert {f.kind for f in faults} == set(FaultKind)
        assert all(500 <= f.status <= 599 and 0 <= f.delay_s <= 0.3 for f in faults)

    def test_random_plan_spares_what_it_does_not_match(self) -> None:
        """Only matching requests can get a fault."""
        plan = RandomFaults(seed=1, rate=1.0, match=matching("REPORT"))
        assert plan.fault_for(Request(method="PUT", path="/x", number=1)) is None
        assert plan.fault_for(Request(method="REPORT", path="/x", number=2)) is not None

    def test_faults_block_restores_the_previous_plan(self, proxy: FaultProxy) -> None:
        """``with proxy.faults(plan)`` applies the plan inside the block only."""
        plan = RandomFaults(seed=3)
        with proxy.faults(plan):
            assert proxy.plan is plan
        assert proxy.plan is None

    def test_fault_parameters_are_checked(self) -> None:
        """A non-5xx error status, a negative or huge delay and a negative keep are refused."""
        with pytest.raises(ValueError, match="5xx"):
            Fault(kind=FaultKind.ERROR, status=404)
        with pytest.raises(ValueError, match="delay"):
            Fault(kind=FaultKind.DELAY, delay_s=60)
        with pytest.raises(ValueError, match="keep"):
            Fault(kind=FaultKind.CUT, keep=-1)
