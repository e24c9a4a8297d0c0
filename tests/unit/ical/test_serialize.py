"""The fast serializer writes exactly icalendar's ``to_ical()`` bytes, which every parser reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import vobject
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from icalendar import Alarm, Calendar, Component, Event, Todo, vCalAddress, vGeo, vText, vUri
from icalendar.parser.string import _foldline

from apexcal.apex.models import Activity, ContactRef, UserRef
from apexcal.errors import Unmappable
from apexcal.ical.mapping import MappingOptions, calendar_bytes, map_activity
from apexcal.ical.serialize import component_bytes, fold
from tests.unit.ical.factories import TYPES
from tests.unit.ical.parsers import parse_both
from tests.unit.ical.test_mapping_properties import activities, options

# Sized so the whole file runs in a few seconds on two cores.
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter to escaping and folding: TEXT escapes, RFC 6868's caret,
# line breaks, a BOM, and two-, three- and four-octet UTF-8 sequences.
_TRICKY = "a \\;,:\"'^\n\r\t\ufeffé€😀会"
tricky_text = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=_TRICKY, max_size=200),
    st.builds(lambda s, n: s * n, st.text(alphabet=_TRICKY, min_size=1, max_size=7), st.integers(1, 60)),
)
param_text = st.text(alphabet="aZ 09-_.'\"^:;,/é😀\n", max_size=40)
zones = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Etc/UTC"])
naive = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))


@st.composite
def when(draw: st.DrawFn) -> date | datetime:
    """A date, a floating time, a UTC time or a zoned time (TZID)."""
    kind = draw(st.sampled_from(["date", "floating", "utc", "zoned"]))
    moment = draw(naive).replace(microsecond=0)
    if kind == "date":
        return moment.date()
    if kind == "floating":
        return moment
    if kind == "utc":
        return moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=ZoneInfo(draw(zones)))


@st.composite
def properties(draw: st.DrawFn) -> list[tuple[str, Any, dict[str, Any] | None]]:
    """Properties of every value type apexcal writes, with and without parameters."""
    props: list[tuple[str, Any, dict[str, Any] | None]] = [("UID", draw(tricky_text), None)]
    for name in draw(st.sets(st.sampled_from(["SUMMARY", "DESCRIPTION", "LOCATION", "COMMENT", "COLOR", "X-APEX-ICON"]))):
        props.append((name, vText(draw(tricky_text)), None))
    for name in draw(st.sets(st.sampled_from(["DTSTART", "DTEND", "DUE", "RECURRENCE-ID"]))):
        props.append((name, draw(when()), None))
    for name in draw(st.sets(st.sampled_from(["DTSTAMP", "CREATED", "LAST-MODIFIED", "COMPLETED"]))):
        props.append((name, draw(naive).replace(microsecond=0, tzinfo=UTC), None))
    for name in draw(st.sets(st.sampled_from(["SEQUENCE", "PERCENT-COMPLETE", "PRIORITY"]))):
        props.append((name, draw(st.integers(0, 2**31 - 1)), None))
    if draw(st.booleans()):
        props.append(("DURATION", timedelta(seconds=draw(st.integers(0, 10**7))), None))
    if draw(st.booleans()):
        props.append(("GEO", vGeo((draw(st.floats(-90, 90)), draw(st.floats(-180, 180)))), None))
    if draw(st.booleans()):
        props.append(("CATEGORIES", draw(st.lists(tricky_text, min_size=1, max_size=4)), None))
    if draw(st.booleans()):
        props.append(("URL", vUri("https://example.com/" + draw(st.text("ab/?=&%é", max_size=90))), None))
    for _ in range(draw(st.integers(0, 2))):
        params = {"VALUE": "URI", "FEATURE": draw(st.sampled_from(["VIDEO", "AUDIO,VIDEO"])), "LABEL": draw(param_text)}
        props.append(("CONFERENCE", vUri("https://meet.example.com/" + draw(st.text("abc-", max_size=80))), params))
    if draw(st.booleans()):
        where = draw(param_text)
        params = {"VALUE": "URI", "X-ADDRESS": where, "X-APPLE-RADIUS": "70.0", "X-TITLE": where}
        props.append(("X-APPLE-STRUCTURED-LOCATION", vUri(f"geo:{draw(st.floats(-90, 90)):.6f},1.000000"), params))
    if draw(st.booleans()):
        params = {"CN": draw(param_text), "ROLE": "REQ-PARTICIPANT", "LANGUAGE": draw(st.sampled_from(["en", "de-CH"]))}
        props.append(("ATTENDEE", vCalAddress("mailto:" + draw(st.text("abc.", min_size=1, max_size=60)) + "@example.com"), params))
    if draw(st.booleans()):
        props.append(("X-APEX-ACTIVITY-ID", str(draw(st.integers(1, 2**31))), {"X-PARAM": draw(st.lists(param_text, min_size=1, max_size=3))}))
    return props


@st.composite
def components(draw: st.DrawFn) -> Component:
    """A VEVENT or VTODO (sometimes with a VALARM), or a VCALENDAR holding some."""

    def one() -> Component:
        component: Component = draw(st.sampled_from([Event, Todo]))()
        for name, value, params in draw(properties()):
            component.add(name, value, parameters=params)
        if draw(st.booleans()):
            alarm = Alarm()
            alarm.add("ACTION", "DISPLAY")
            alarm.add("TRIGGER", -timedelta(minutes=draw(st.integers(0, 10000))))
            alarm.add("DESCRIPTION", draw(tricky_text))
            component.add_component(alarm)
        return component

    if not draw(st.booleans()):
        return one()
    calendar = Calendar()
    calendar.add("PRODID", "-//apexcal//test//EN")
    calendar.add("VERSION", "2.0")
    calendar.add("NAME", vText(draw(tricky_text)))
    calendar.add("REFRESH-INTERVAL", timedelta(hours=draw(st.integers(1, 48))), parameters={"VALUE": "DURATION"})
    for _ in range(draw(st.integers(0, 3))):
        calendar.add_component(one())
    return calendar


class TestFold:
    """Folding on bytes matches icalendar's character-by-character folding."""

    def test_short_line_is_unchanged(self) -> None:
        """A line of 74 octets stays one line."""
        assert fold(b"X" * 74) == b"X" * 74

    def test_never_splits_a_utf8_sequence(self) -> None:
        """A three-octet character that would cross octet 74 starts the next line."""
        line = ("a" * 73 + "€b").encode()
        assert fold(line) == ("a" * 73).encode() + b"\r\n " + "€b".encode()

    def test_an_escape_is_not_split_across_lines(self) -> None:
        """A backslash that would end a line moves to the next one with what it escapes."""
        line = b"a" * 73 + b"\\nbc"
        assert fold(line) == b"a" * 73 + b"\r\n \\nbc"

    @SETTINGS
    @given(line=st.one_of(st.text(max_size=400), st.text(alphabet=_TRICKY.replace("\n", "").replace("\r", ""), max_size=400)))
    def test_matches_icalendar_fold(self, line: str) -> None:
        """Any line folds to the same bytes as icalendar's ``_foldline``."""
        assume("\n" not in line)
        assert fold(line.encode("utf-8", "surrogatepass")) == _foldline(line).encode("utf-8", "surrogatepass")


class TestComponentBytes:
    """``component_bytes`` is ``to_ical()``, byte for byte."""

    @SETTINGS
    @given(component=components())
    def test_generated_components_serialize_identically(self, component: Component) -> None:
        """Every value type, parameter quoting, unicode, escape and fold gives icalendar's bytes."""
        try:
            expected = component.to_ical()
        except (ValueError, AssertionError, UnicodeError):
            assume(False)  # icalendar refuses it too: nothing to compare
        assert component_bytes(component) == expected

    @SETTINGS
    @given(activity=activities(), opts=options, alarms=st.sampled_from([(), (("default", ("-PT15M", "PT0S")),)]))
    def test_mapped_activities_serialize_identically(
        self, activity: Activity, opts: MappingOptions, alarms: tuple[tuple[str, tuple[str, ...]], ...]
    ) -> None:
        """Whatever the mapping makes of any activity (reminders included), the bytes are icalendar's."""
        opts = replace(opts, alarms=alarms)
        try:
            component = map_activity(activity, TYPES, opts)
        except Unmappable:
            return
        assert component_bytes(component) == component.to_ical()

    @SETTINGS
    @given(
        activity=activities(),
        opts=options,
        user=st.tuples(st.one_of(st.none(), tricky_text), st.one_of(st.none(), st.emails())),
        contact=st.tuples(st.one_of(st.none(), tricky_text), st.one_of(st.none(), st.emails())),
    )
    def test_mapped_activities_with_people_serialize_identically(
        self,
        activity: Activity,
        opts: MappingOptions,
        user: tuple[str | None, str | None],
        contact: tuple[str | None, str | None],
    ) -> None:
        """ORGANIZER and ATTENDEE lines (names with any text, CN quoting) are icalendar's bytes too."""
        activity = activity.model_copy(
            update={
                "assigned_to_user": UserRef(id=46, full_name=user[0], email=user[1]),
                "contact": ContactRef(id=7, full_name=contact[0], email=contact[1]),
            }
        )
        try:
            component = map_activity(activity, TYPES, replace(opts, privacy="full", attendees=True))
        except Unmappable:
            return
        assert component_bytes(component) == component.to_ical()

    @FEWER
    @given(activity=activities(), opts=options)
    def test_three_parsers_read_it(self, activity: Activity, opts: MappingOptions) -> None:
        """icalendar reads back what was written, and the strict ``ical`` parser and vobject (Radicale's) accept it."""
        try:
            component = map_activity(activity, TYPES, opts)
        except Unmappable:
            return
        data = calendar_bytes(component, opts.timezone)
        assert data.count(component_bytes(component)) == 1
        loose, strict = parse_both(data)
        (again,) = [c for c in loose.subcomponents if c.name == component.name]
        for name in ("UID", "SUMMARY", "DESCRIPTION", "LOCATION", "DTSTART", "CATEGORIES"):
            assert (name in again) == (name in component)
            if name in component:
                assert again.decoded(name) == component.decoded(name)
        assert len(strict.events + strict.todos) == 1
        parsed = vobject.readOne(data.decode("utf-8"))
        (item,) = parsed.vevent_list if component.name == "VEVENT" else parsed.vtodo_list
        assert item.uid.value == str(component["UID"])
