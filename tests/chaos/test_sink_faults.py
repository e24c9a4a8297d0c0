"""Every network fault the proxy injects reaches the CalDAV sink's caller as one of apexcal's errors."""

from __future__ import annotations

from apexcal.errors import ApexcalError
from apexcal.sync.caldav import CalDAVSink
from tests.chaos.proxy import Fault, FaultKind, FaultProxy, ScriptedFaults, matching
from tests.fixtures.caldav_servers import CalDAVServerHandle

EVENT = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//fault tests//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\n"
    b"DTEND:20260102T110000Z\r\nSUMMARY:Faulty\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_each_fault_on_each_request_kind_is_an_apexcal_error(
    caldav_server: CalDAVServerHandle,
) -> None:
    """A fault on a PUT, a sync REPORT or a PROPFIND is a clean error or no error, never a library's."""
    url = caldav_server.make_calendar("faults")
    leaks: list[str] = []
    with (
        FaultProxy(upstream=caldav_server.base_url) as proxy,
        CalDAVSink(
            proxy.rewrite(url), username=caldav_server.username, password=caldav_server.password
        ) as sink,
    ):
        sink.create("seed.ics", EVENT % b"seed")
        token = sink.changes(None).token
        for n, (kind, method) in enumerate(
            (kind, method) for kind in FaultKind for method in ("PUT", "REPORT", "PROPFIND")
        ):
            proxy.plan = ScriptedFaults(
                rules=[(matching(method), 1, Fault(kind=kind, delay_s=0.05))]
            )
            try:
                sink.create(f"o{n}.ics", EVENT % f"o{n}".encode())
                sink.changes(token)
                sink.changes(None)
            except ApexcalError:
                pass
            except Exception as exc:
                leaks.append(
                    f"{kind} on {method}: {type(exc).__module__}.{type(exc).__name__}: {exc}"
                )
    assert leaks == []
    events = proxy.counts()
    assert all(events[kind.value] >= 1 for kind in FaultKind), events
