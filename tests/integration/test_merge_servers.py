"""Merge against real servers: what a client adds survives our update, as the server stores it.

The round trip a calendar object makes: we create it; a client (Thunderbird,
Apple, tasks.org, jtx, Evolution) adds its alarms and properties and PUTs it
back; the CRM changes and we merge our new rendering over what the server now
holds and PUT that.  Each server stores what it is given in its own way
(Radicale re-serialises), so the checks are: every line of the user's that the
server held before our PUT is in what we sent, unchanged; what the server holds
afterwards has the same user lines in canonical form and the owned content of
our rendering (``owned_hash``); once the client removes its additions, our next
merge does not bring them back.
"""

from __future__ import annotations

import httpx
import pytest
from icalendar import Calendar

from apexcal.ical.alarms import alarms_for
from apexcal.ical.contentlines import Block, Line, parse
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.ical.merge import merge
from apexcal.ical.ownership import (
    canonical_line,
    is_apex_alarm,
    is_owned,
    is_owned_line,
    main_component,
    owned_hash,
)
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.unit.ical.client_shapes import SHAPES, Shape, add_shape
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both

pytestmark = pytest.mark.caldav

OPTS = MappingOptions(timezone="Europe/Berlin")
TASK_SHAPES = {"tasks.org", "jtx"}
# Real clients' shapes; the synthetic "oddities" (an unknown top-level component) is refused by Radicale.
CLIENT_SHAPES = [shape for shape in SHAPES if shape.name != "oddities"]


def _render(kind: str, **changes: object) -> bytes:
    fields: dict[str, object] = {"location": "Client Office", "note": "Bring the contract"}
    if kind == "todo":
        fields["activity_type"] = "task"
    return object_for(activity(**{**fields, **changes}), TYPES, OPTS).data


def _user_lines(data: bytes) -> list[Line]:
    """The lines of an object that are not ours, at every level (user alarms and components included)."""
    root = parse(data)
    found = [line for line in root.lines() if not is_owned("VCALENDAR", line.name)]
    main = main_component(root)

    def below(block: Block) -> list[Line]:
        return [line for b in block.walk() for line in b.lines()]

    for block in root.blocks():
        if block is main:
            found += [line for line in block.lines() if not is_owned_line(block.name, line)]
            for sub in block.blocks():
                if is_apex_alarm(sub):
                    found += [line for line in sub.lines() if not is_owned("VALARM", line.name)]
                else:
                    found += below(sub)
        elif block.name != "VTIMEZONE":
            found += below(block)
    return found


def _canonical(lines: list[Line]) -> list[str]:
    return sorted(repr(canonical_line(line)) for line in lines)


class _Client:
    """Plain PUT/GET as a calendar app does them."""

    def __init__(self, server: CalDAVServerHandle, calendar_url: str) -> None:
        self.http = httpx.Client(auth=server.auth, timeout=10.0)
        self.url = calendar_url + "apexcal-27-101.ics"

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def put(self, data: bytes, etag: str | None) -> None:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        headers.update({"If-Match": etag} if etag else {"If-None-Match": "*"})
        r = self.http.put(self.url, content=data, headers=headers)
        assert r.status_code in (201, 204), r.text[:300]

    def get(self) -> tuple[bytes, str]:
        r = self.http.get(self.url)
        assert r.status_code == 200
        return r.content, r.headers["etag"]


@pytest.mark.parametrize("shape", CLIENT_SHAPES, ids=lambda s: s.name)
def test_client_additions_survive_a_crm_change_on_the_server(
    caldav_server: CalDAVServerHandle, calendar_url: str, shape: Shape
) -> None:
    """Create, a client adds its shape, the CRM changes: the additions stay; removed, they stay removed."""
    kind = "todo" if shape.name in TASK_SHAPES else "event"
    with _Client(caldav_server, calendar_url) as client:
        first = _render(kind)
        client.put(first, None)
        held, etag = client.get()
        assert owned_hash(held) == owned_hash(first)

        client.put(add_shape(held, shape), etag)  # the calendar app saves its additions
        with_additions, etag = client.get()
        users = _user_lines(with_additions)
        assert users, "the server kept none of the client's lines"

        second = _render(kind, subject="Moved review", start_time="14:00:00", end_time="15:00:00",
                         updated_at="2025-06-02T08:00:00Z")
        merged = merge(with_additions, second)
        merged_raw = {line.raw for block in parse(merged).walk() for line in block.lines()}
        for line in users:  # exactly as the server held them, folding included
            assert line.raw in merged_raw, line.text
        client.put(merged, etag)
        stored, etag = client.get()
        parse_both(stored)
        assert owned_hash(stored) == owned_hash(second)
        assert _canonical(_user_lines(stored)) == _canonical(users)

        # The user deletes everything they had added; our next update does not bring it back.
        client.put(second, etag)
        cleaned, etag = client.get()
        third = _render(kind, subject="Final review", updated_at="2025-06-03T08:00:00Z")
        client.put(merge(cleaned, third), etag)
        final, _ = client.get()
        assert _user_lines(final) == []
        assert owned_hash(final) == owned_hash(third)


def _with_alarms(data: bytes, triggers: list[str]) -> bytes:
    """``data`` re-rendered with our alarms (as the mapping adds them)."""
    calendar = Calendar.from_ical(data)
    component = next(c for c in calendar.subcomponents if c.name in ("VEVENT", "VTODO"))
    for alarm in alarms_for(component, triggers, timezone=OPTS.timezone):
        component.add_component(alarm)
    return bytes(calendar.to_ical())


TRICKY = {
    # Cyrus keeps GEO at 6 decimals; quoted parameter values with a colon and commas.
    "geocoded": {
        "location": "Client Office",
        "location_geocoded": {"lat": 40.712834567, "lng": -74.00601234, "address": "Suite: 4, New York"},
    },
    # Long text full of escapes, folded differently by each server.
    "escapes": {"note": "a;b,c:d \\ é " * 30, "subject": "Review; pricing, terms: final"},
    "online": {"location": "https://us02web.zoom.us/j/8123456789?pwd=abc"},
    "all-day-task": {"activity_type": "task", "start_time": None, "end_date": "2025-06-14"},
}


@pytest.mark.parametrize("name", TRICKY, ids=str)
def test_owned_hash_of_what_the_server_stores(caldav_server: CalDAVServerHandle, calendar_url: str, name: str) -> None:
    """What each server stores for our bytes (re-serialised, refolded, GEO cut to 6 decimals) has our owned_hash."""
    kind = "todo" if TRICKY[name].get("activity_type") == "task" else "event"
    ours = _with_alarms(_render(kind, **TRICKY[name]), ["-15m", "09:00"])
    with _Client(caldav_server, calendar_url) as client:
        client.put(ours, None)
        held, _ = client.get()
    assert owned_hash(held) == owned_hash(ours)
    assert merge(held, ours) == ours  # nothing of anyone else's in it: a merge gives back our rendering
