"""Malformed calendar objects through the real reading path and the real cycle: reported by href, skipped, nothing lost.

The cycle runs over a :class:`~apexcal.sync.memory_sink.MemorySink` (held to
the CalDAV servers' behaviour by the Sink contract test) and the emulator's
app through the real API client; hypothesis breaks the objects the way
servers and clients do: truncation, lost lines, garbled bytes, broken
encodings, duplicated components.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from apexcal.apex.client import ApexClient
from apexcal.config import Config, config_from_dict
from apexcal.emulator import DEMO_ORG_ID, EmulatorState
from apexcal.emulator.state import DEMO_TOKEN
from apexcal.errors import RemoteParseError
from apexcal.ical.remote import read_remote
from apexcal.state import Store
from apexcal.sync.detect import is_our_uid, seen_from
from apexcal.sync.memory_sink import MemorySink
from apexcal.sync.run import run_target_cycle
from apexcal.sync.sink import FetchedObject
from apexcal.sync.summary import CycleSummary
from tests.unit.test_plan_stateful import NO_RETRY, EmulatorTransport

HREF = "/cal/x.ics"
DOMAIN = "crm.example.com"
OURS = f"apexcal-27-101@{DOMAIN}"
_EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
    "DTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nSUMMARY:theirs\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)
_TODO = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n"
    "DTSTAMP:20260101T000000Z\r\n{extra}STATUS:COMPLETED\r\nCOMPLETED:20260101T120000Z\r\nEND:VTODO\r\n"
    "END:VCALENDAR\r\n"
)
_COMPONENT = "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260103T100000Z\r\nEND:VEVENT\r\n"


def _two(first: str, second: str) -> bytes:
    return _EVENT.format(uid=first).replace("END:VCALENDAR", _COMPONENT.format(uid=second) + "END:VCALENDAR").encode()


class TestReadingMalformedObjects:
    """:func:`read_remote` on each kind of malformed object: a RemoteParseError naming href and what is wrong."""

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "empty body"),
            (b"  \r\n", "empty body"),
            (b"this is not a calendar at all", "no BEGIN:VCALENDAR"),
            (b"BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n", "not a VCALENDAR"),
            (_EVENT.format(uid=OURS).encode()[:-40], "truncated: no END:VCALENDAR"),
            (_EVENT.format(uid=OURS).replace("END:VEVENT\r\n", "").encode(), "END:VCALENDAR does not close VEVENT"),
            (_EVENT.replace("UID:{uid}\r\n", "").encode(), "no UID"),
            (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n", "no VEVENT or VTODO"),
            (_two(OURS, OURS), "2 components of UID " + OURS + " without RECURRENCE-ID"),
            (_two(OURS, "theirs@example.org"), "components of 2 UIDs"),
            (b"\xff\xfe\x00B\x00E\x00G\x00I\x00N\x00", "not UTF-8"),
        ],
        ids=[
            "empty", "blank", "garbage", "no-vcalendar", "missing-end", "unclosed-component", "no-uid",
            "no-components", "two-masters", "two-uids", "utf16",
        ],
    )
    def test_reported_with_href_and_reason(self, data: bytes, reason: str) -> None:
        """Each is a RemoteParseError carrying the href and a reason that says what is wrong."""
        with pytest.raises(RemoteParseError) as info:
            read_remote(HREF, data)
        assert info.value.href == HREF
        assert reason in info.value.reason

    @pytest.mark.parametrize(
        "extra",
        ["DTSTART:2026-13-45\r\n", "DTSTART;TZID=Nowhere/City:20260102T100000\r\n", "DUE:\xff\r\n"],
        ids=["bad-date", "unknown-tzid", "bad-byte"],
    )
    def test_bad_value_elsewhere_keeps_identity_and_completion(self, extra: str) -> None:
        """A bad date, an unknown TZID or a stray byte in one value still leaves UID and completion readable."""
        data = _TODO.format(uid=OURS, extra=extra).encode("utf-8", errors="surrogateescape")
        data = data.replace("\xff".encode(), b"\xff")
        remote = read_remote(HREF, data)
        assert (remote.uid, remote.activity_id, remote.done) == (OURS, 101, True)

    @pytest.mark.parametrize("size", [0, 300_000], ids=["small", "over-scan-threshold"])
    def test_byte_order_mark_and_bare_newlines_are_read(self, size: int) -> None:
        """A UTF-8 byte order mark and LF line ends (some clients write both) do not make an object unreadable."""
        body = _TODO.format(uid=OURS, extra=f"X-A:{'x' * size}\r\n").replace("\r\n", "\n")
        assert read_remote(HREF, b"\xef\xbb\xbf" + body.encode()).done is True

    def test_override_of_the_master_is_one_object(self) -> None:
        """A master and an override (RECURRENCE-ID) of one UID are a valid object: the master is read."""
        override = _COMPONENT.format(uid=OURS).replace("END:VEVENT", "RECURRENCE-ID:20260103T100000Z\r\nEND:VEVENT")
        data = _EVENT.format(uid=OURS).replace("END:VCALENDAR", override + "END:VCALENDAR").encode()
        assert read_remote(HREF, data).uid == OURS

    def test_ten_megabyte_bodies_are_read_quickly(self) -> None:
        """A 10 MB description and a 2 MB object of 300,000 lines are each read in well under 10 s."""
        long_value = _TODO.format(uid=OURS, extra="DESCRIPTION:" + "x" * 10_000_000 + "\r\n")
        many_lines = _TODO.format(uid=OURS, extra="X-A:b\r\n" * 300_000)
        for body in (long_value, many_lines):
            started = time.monotonic()
            assert read_remote(HREF, body.encode()).done is True
            assert time.monotonic() - started < 10
        with pytest.raises(RemoteParseError, match="characters, truncated"):
            read_remote(HREF, many_lines[:-30].encode())


# --- hypothesis: valid objects, broken --------------------------------------------------


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


@st.composite
def broken(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` broken the way servers, networks and clients break objects."""
    how = draw(st.sampled_from(["truncate", "drop-lines", "garble", "encoding", "duplicate", "second-uid"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "drop-lines":
        lines = _lines(data)
        drop = draw(st.sets(st.integers(0, len(lines) - 1), min_size=1, max_size=4))
        return b"\r\n".join(line for i, line in enumerate(lines) if i not in drop)
    if how == "garble":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "encoding":
        text = data.decode()
        codec = draw(st.sampled_from(["utf-16", "latin-1-mojibake", "stray-bytes"]))
        if codec == "utf-16":
            return text.encode("utf-16")
        if codec == "latin-1-mojibake":
            return text.replace("SUMMARY:", "SUMMARY:Café ").encode("utf-8").decode("latin-1").encode("utf-8")
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + data[at:]
    lines = _lines(data)
    begin = next(i for i, line in enumerate(lines) if line in (b"BEGIN:VTODO", b"BEGIN:VEVENT"))
    end = next(i for i, line in enumerate(lines) if line in (b"END:VTODO", b"END:VEVENT"))
    block = lines[begin : end + 1]
    if how == "second-uid":
        block = [b"UID:someone-else@example.org" if line.startswith(b"UID:") else line for line in block]
    return b"\r\n".join(lines[: end + 1] + block + lines[end + 1 :])


class TestReadingPathNeverCrashes:
    """The reading step of every cycle (:func:`seen_from`) on broken copies of apexcal's own objects."""

    @settings(max_examples=150, deadline=None)
    @given(st.data())
    def test_broken_object_is_read_or_reported_never_raised(self, data: st.DataObject) -> None:
        """Either our object is recognised (same UID), or it is reported unreadable, or it reads as not ours."""
        original = _TODO.format(uid=OURS, extra="SUMMARY:Send the proposal\r\n").encode()
        body = data.draw(broken(original))
        with capture_logs() as logs:
            seen = seen_from(FetchedObject(href=HREF, etag='"e1"', data=body), _ours)
        if seen is not None and seen.uid is None:
            (report,) = [e for e in logs if e["event"] == "sync.remote_unreadable"]
            assert report["href"] == HREF
            assert report["reason"]


def _ours(uid: str) -> bool:
    return is_our_uid(uid, organization_id=DEMO_ORG_ID, domain=DOMAIN)


# --- hypothesis: a real cycle over a calendar holding a broken object -----------------------


FOREIGN_HREF = "/cal/other-app.ics"
FOREIGN = _EVENT.format(uid="not-ours@elsewhere").encode()


_TEMPLATE: list[Path] = []


def _migrated_store(path: Path) -> Store:
    """A store at ``path``, copied from one migrated once per test session (migrations cost most of a world)."""
    if not _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="apexcal-bad-remote-template-")) / "state.db"
        Store.open(f"sqlite:///{template}").close()
        _TEMPLATE.append(template)
    shutil.copyfile(_TEMPLATE[0], path)
    return Store.open(f"sqlite:///{path}")


class World:
    """Emulator + store + memory calendar, synced once: two open tasks, a done task, a meeting, a foreign event."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="apexcal-bad-remote-"))
        self.state = EmulatorState()
        self.transport = EmulatorTransport(self.state)
        self.client = ApexClient("http://api.test", DEMO_TOKEN, DEMO_ORG_ID, transport=self.transport, retry=NO_RETRY)
        self.sink = MemorySink("/cal/")
        self.store = _migrated_store(self.tmp / "state.db")
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.config = self._config()
        self.ids = [self._create(i) for i in range(4)]
        self.sink.put_unconditionally(FOREIGN_HREF, FOREIGN)
        assert self.cycle().created == 4

    def _config(self) -> Config:
        return config_from_dict(
            {
                "source": {
                    "base_url": "http://api.test", "token": DEMO_TOKEN,
                    "organization_id": DEMO_ORG_ID, "uid_domain": DOMAIN,
                },
                "state": {"url": f"sqlite:///{self.tmp / 'state.db'}"},
                "sync": {"reconcile_interval": "0s", "caldav_reconcile_interval": "0s"},
                "mapping": {"geocoder": "none"},
                "targets": [{"name": "t", "url": "http://calendar.test/cal/", "tasks_as": "todos"}],
            }
        )

    def _create(self, i: int) -> int:
        record: dict[str, Any] = {
            "organization_id": DEMO_ORG_ID, "subject": f"Activity {i}", "assigned_to_user_id": 46,
            "activity_type": "meeting" if i == 3 else "task", "start_date": "2026-01-05",
            "end_date": "2026-01-05", "done": i == 2,
        }
        if i == 3:
            record.update(start_time="10:00:00", end_time="11:00:00", duration=60)
        return int(self.state.create_activity(record, user_id=46)["id"])

    def cycle(self) -> CycleSummary:
        self.clock += timedelta(minutes=1)
        return run_target_cycle(
            self.config, self.config.targets[0], self.store, client=self.client,
            sink_factory=lambda target, **_: self.sink, now=self.clock,
        )

    def objects(self) -> dict[str, FetchedObject]:
        return self.sink.multiget(self.sink.listing())

    def href_of(self, activity_id: int) -> str:
        return next(h for h, o in self.objects().items() if f"-{activity_id}@".encode() in o.data)

    def close(self) -> None:
        self.store.close()
        self.client.close()
        self.transport.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _readable_as(data: bytes) -> str | None:
    try:
        return read_remote(HREF, data).uid.strip()
    except RemoteParseError:
        return None


class TestCycleOverBrokenObjects:
    """A real cycle over a calendar where one object was broken: the rest syncs, nothing is lost."""

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data(), victim=st.integers(0, 3), elsewhere=st.booleans())
    def test_broken_object_is_skipped_and_the_rest_syncs(self, data: st.DataObject, victim: int, elsewhere: bool) -> None:
        """One of our objects broken in place (or a broken copy added beside them) never stops or fails the cycle.

        The other activity's CRM change is written; every other object (the
        foreign one included) stays byte for byte; no object is deleted
        because it could not be read; the next cycle is clean.
        """
        with capture_logs():  # not rendered: a cycle logs much at debug level
            self._check(data, victim, elsewhere)

    def _check(self, data: st.DataObject, victim: int, elsewhere: bool) -> None:
        w = World()
        try:
            before = w.objects()
            victim_id = w.ids[victim]
            victim_href = w.href_of(victim_id)
            body = data.draw(broken(before[victim_href].data))
            uid = _readable_as(body)
            # A copy garbled into another of our UIDs is a duplicate, deleted by design.
            assume(uid is None or not _ours(uid) or f"-{victim_id}@" in uid)
            href = "/cal/broken-copy.ics" if elsewhere else victim_href
            w.sink.put_unconditionally(href, body)
            changed_id = w.ids[(victim + 1) % 4]
            w.state.patch_activity(changed_id, {"subject": "Changed in the CRM"})
            summary = w.cycle()
            assert summary.ok, summary.errors
            after = w.objects()
            assert b"SUMMARY:Changed in the CRM" in after[w.href_of(changed_id)].data
            assert after[FOREIGN_HREF].data == FOREIGN
            for other in set(w.ids) - {victim_id, changed_id}:
                assert after[w.href_of(other)].data == before[w.href_of(other)].data
            if not (elsewhere and uid is not None and _ours(uid)):  # else a duplicate, deleted by design
                assert href in after, "a malformed object was deleted"
            if uid is None:
                assert after[href].data == body, "an unreadable object was overwritten without a CRM change"
            again = w.cycle()
            assert again.ok
            assert (again.created, again.deleted) == (0, 0)
        finally:
            w.close()

    def test_our_object_given_a_foreign_uid_is_reported_not_recreated_over_itself(self) -> None:
        """A client rewrote the UID of one of ours: reported and left alone (no failing re-creation at its own href); a CRM change replaces it."""
        w = World()
        try:
            with capture_logs():
                href = w.href_of(w.ids[0])
                body = w.objects()[href].data.replace(b"UID:apexcal-27-", b"UID:\x00pexcal-27-")
                w.sink.put_unconditionally(href, body)
                summary = w.cycle()
                again = w.cycle()
                assert summary.ok, summary.errors
                assert again.ok, again.errors
                assert summary.warnings == (f"{href}: unreadable, skipped: holds a UID that is not apexcal's",)
                assert w.objects()[href].data == body
                w.state.patch_activity(w.ids[0], {"subject": "Changed in the CRM"})
                replaced = w.cycle()
            assert (replaced.updated, replaced.created, replaced.deleted) == (1, 0, 0)
            assert b"SUMMARY:Changed in the CRM" in w.objects()[href].data
        finally:
            w.close()
