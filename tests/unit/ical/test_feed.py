"""Feeds: deterministic, streamed VCALENDAR bytes with calendar properties and ETags."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta

from icalendar import Event

from apexcal.ical.feed import CalendarProps, etag_for, inner_component, write_calendar
from apexcal.ical.mapping import MappingOptions, map_activity, object_for
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both

PROPS = CalendarProps(
    name="Team activities",
    description="Everything the team does.\nUpdated hourly; read-only.",
    color="#3B82F6",
    refresh_interval=timedelta(hours=1),
    source_url="https://cal.example.com/feeds/abc.ics",
    timezone="Europe/Berlin",
)
OPTIONS = MappingOptions(timezone="Europe/Berlin", privacy="public", tasks_as="events")


def _components(count: int) -> Iterator[Event]:
    for i in range(1, count + 1):
        component = map_activity(activity(id=i, subject=f"Activity {i}"), TYPES, OPTIONS)
        assert isinstance(component, Event)
        yield component


def _feed(components: object, props: CalendarProps = PROPS) -> bytes:
    out = io.BytesIO()
    write_calendar(out, components, props, [props.timezone])  # type: ignore[arg-type]
    return out.getvalue()


class TestWriteCalendar:
    """write_calendar's output."""

    def test_header_properties(self) -> None:
        """The header carries RFC 7986 and X-WR/Apple properties and no METHOD."""
        lines = _feed(_components(1)).decode().replace("\r\n ", "").split("\r\n")
        for line in (
            "VERSION:2.0",
            "CALSCALE:GREGORIAN",
            "PRODID:-//apexcal//apexcal 0.1//EN",
            "NAME:Team activities",
            "X-WR-CALNAME:Team activities",
            "DESCRIPTION:Everything the team does.\\nUpdated hourly\\; read-only.",
            "X-WR-CALDESC:Everything the team does.\\nUpdated hourly\\; read-only.",
            "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
            "X-PUBLISHED-TTL:PT1H",
            "COLOR:dodgerblue",
            "X-APPLE-CALENDAR-COLOR:#3B82F6",
            "SOURCE;VALUE=URI:https://cal.example.com/feeds/abc.ics",
            "X-WR-TIMEZONE:Europe/Berlin",
        ):
            assert line in lines
        assert not any(line.startswith("METHOD") for line in lines)

    def test_vtimezone_before_components_and_parses(self) -> None:
        """The VTIMEZONE precedes the components and both parsers read every event."""
        data = _feed(_components(5))
        assert data.index(b"BEGIN:VTIMEZONE") < data.index(b"BEGIN:VEVENT")
        assert data.endswith(b"END:VCALENDAR\r\n")
        assert len(parse_both(data)[1].events) == 5

    def test_same_input_same_bytes_and_etag(self) -> None:
        """Two builds from the same data are byte-identical with the same strong ETag."""
        first, second = _feed(_components(20)), _feed(_components(20))
        assert first == second
        assert etag_for(first) == etag_for(second)
        assert etag_for(first).startswith('"')
        assert etag_for(first) != etag_for(_feed(_components(19)))

    def test_components_are_consumed_lazily(self) -> None:
        """Components are written one at a time as the iterable yields them."""
        out = io.BytesIO()
        seen: list[int] = []

        def generate() -> Iterator[Event]:
            for i, component in enumerate(_components(3)):
                seen.append(out.tell())
                yield component
                del i

        write_calendar(out, generate(), PROPS, ["Europe/Berlin"])
        assert seen[0] < seen[1] < seen[2]

    def test_serialized_objects_can_be_reused(self) -> None:
        """inner_component bytes from object_for mix with components and parse."""
        stored = object_for(activity(id=99, activity_type="task", done=True), TYPES, MappingOptions(timezone="Europe/Berlin"))
        data = _feed([*_components(2), inner_component(stored.data)])
        strict = parse_both(data)[1]
        assert len(strict.events) == 2
        assert len(strict.todos) == 1

    def test_utc_feed_has_no_vtimezone(self) -> None:
        """A UTC feed needs no VTIMEZONE and has no optional properties it was not given."""
        data = _feed([], CalendarProps(name="Plain", timezone="UTC"))
        assert b"VTIMEZONE" not in data
        assert b"SOURCE" not in data
        assert b"COLOR" not in data
        parse_both(data)
