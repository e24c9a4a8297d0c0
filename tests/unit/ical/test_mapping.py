"""Activity → VEVENT/VTODO mapping: one table of cases per rule, checked on parsed output."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from icalendar import Event, Todo

from apexcal.errors import ICalError, TemplateError, Unmappable
from apexcal.ical.location import is_online
from apexcal.ical.mapping import (
    MappingOptions,
    href_name,
    map_activity,
    object_for,
    parse_uid,
    sequence_for,
    uid_for,
)
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both

BERLIN = ZoneInfo("Europe/Berlin")


def _map(options: MappingOptions | None = None, **fields: Any) -> Event | Todo:
    return map_activity(activity(**fields), TYPES, options or MappingOptions())


def _lines(component: Event | Todo) -> list[str]:
    return component.to_ical().decode().replace("\r\n ", "").split("\r\n")


class TestIdentity:
    """UIDs, resource names and the ids that make round trips possible."""

    def test_uid_has_organization_activity_and_domain(self) -> None:
        """The UID is apexcal-<org>-<id>@<domain>."""
        assert uid_for(27, 101, "api.achieveapex.com") == "apexcal-27-101@api.achieveapex.com"

    @pytest.mark.parametrize(
        ("uid", "expected"),
        [
            ("apexcal-27-101@api.achieveapex.com", (27, 101)),
            ("apexcal-1-2@x", (1, 2)),
            ("apexcal-0-2@x", None),
            ("apexcal-27-101", None),
            ("1234-5678@google.com", None),
            ("", None),
        ],
    )
    def test_parse_uid_recognises_only_our_uids(self, uid: str, expected: tuple[int, int] | None) -> None:
        """parse_uid returns (org, id) for our UIDs and None for foreign ones."""
        assert parse_uid(uid) == expected

    def test_href_name_is_safe_and_stable(self) -> None:
        """The resource name uses only URL- and file-safe characters and ends in .ics."""
        name = href_name("apexcal-27-101@api.achieveapex.com")
        assert name == "apexcal-27-101_api.achieveapex.com.ics"
        assert href_name("a/b?c d@e") == "a_b_c_d_e.ics"

    def test_component_carries_ids_for_round_trips(self) -> None:
        """X-APEX-ACTIVITY-ID and X-APEX-ORGANIZATION-ID are written, also under busy."""
        component = _map(MappingOptions(privacy="busy"))
        assert str(component["X-APEX-ACTIVITY-ID"]) == "101"
        assert str(component["X-APEX-ORGANIZATION-ID"]) == "27"

    def test_url_follows_template(self) -> None:
        """URL comes from the activity URL template."""
        options = MappingOptions(activity_url_template="https://crm.example/o/{organization_id}/a/{id}")
        assert _map(options).url == "https://crm.example/o/27/a/101"

    @pytest.mark.parametrize("template", ["{nope}", "{subject.__class__}", "{subject!r}", "{"])
    def test_bad_templates_are_refused(self, template: str) -> None:
        """Templates naming unknown fields, attributes or conversions raise TemplateError."""
        with pytest.raises(TemplateError):
            MappingOptions(summary_template=template)


class TestChange:
    """SEQUENCE, DTSTAMP, LAST-MODIFIED and CREATED come from the data."""

    def test_stamps_come_from_updated_and_created(self) -> None:
        """DTSTAMP = LAST-MODIFIED = updated_at and CREATED = created_at, in UTC."""
        component = _map()
        updated = datetime(2025, 6, 1, 9, 30, 15, tzinfo=UTC)
        assert component.stamp == updated
        assert component.last_modified == updated
        assert component.created == datetime(2025, 5, 1, 8, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("earlier", "later"),
        [
            ("2025-06-01T09:30:15.000Z", "2025-06-01T09:30:16.000Z"),
            ("2020-01-01T00:00:00.000Z", "2031-01-01T00:00:00.000Z"),
            ("2019-05-01T00:00:00.000Z", "2020-01-01T00:00:01.000Z"),
        ],
    )
    def test_sequence_rises_with_updated_at(self, earlier: str, later: str) -> None:
        """A later updated_at gives a larger SEQUENCE, with no stored state."""
        assert _map(updated_at=earlier).sequence < _map(updated_at=later).sequence

    def test_sequence_is_never_negative(self) -> None:
        """updated_at before the 2020 epoch gives SEQUENCE 0."""
        assert sequence_for(datetime(2001, 1, 1, tzinfo=UTC)) == 0


class TestComponentChoice:
    """VTODO or VEVENT by tasks_as and the per-type table."""

    @pytest.mark.parametrize(
        ("activity_type", "tasks_as", "components", "expected"),
        [
            ("task", "todos", {"task": "todo"}, Todo),
            ("task", "events", {"task": "todo"}, Event),
            ("meeting", "todos", {"task": "todo"}, Event),
            ("Customer Training", "todos", {"customer_training": "todo"}, Todo),
            ("customer_training", "todos", {"Customer Training": "todo"}, Todo),
            (None, "todos", {"task": "todo"}, Event),
        ],
    )
    def test_component_kind(self, activity_type: str | None, tasks_as: Any, components: Any, expected: type) -> None:
        """The component follows tasks_as and the type table (keys are type keys)."""
        options = MappingOptions(tasks_as=tasks_as, components=components)
        assert type(_map(options, activity_type=activity_type)) is expected


    def test_options_are_hashable_and_frozen(self) -> None:
        """Options can be cache keys and their component table cannot be changed."""
        options = MappingOptions(components={"Task": "todo"})
        assert hash(options) == hash(MappingOptions(components={"task": "todo"}))
        with pytest.raises(TypeError):
            options.components["call"] = "todo"  # type: ignore[index]


class TestTime:
    """Start and end in the configured zone, all-day, DST and midnight rules."""

    @pytest.mark.parametrize(
        ("fields", "start", "end"),
        [
            # timed, ordinary
            ({}, datetime(2025, 6, 12, 10, 0, tzinfo=BERLIN), datetime(2025, 6, 12, 11, 0, tzinfo=BERLIN)),
            # end time before start time and no end date: crosses midnight
            (
                {"start_time": "22:00:00", "end_time": "01:30:00", "end_date": None},
                datetime(2025, 6, 12, 22, 0, tzinfo=BERLIN),
                datetime(2025, 6, 13, 1, 30, tzinfo=BERLIN),
            ),
            # same explicit end date, duration agrees with the crossing: crosses midnight
            (
                {"start_time": "23:30:00", "end_time": "00:30:00", "duration": 60},
                datetime(2025, 6, 12, 23, 30, tzinfo=BERLIN),
                datetime(2025, 6, 13, 0, 30, tzinfo=BERLIN),
            ),
            # same explicit end date, end before start: the duration decides
            (
                {"start_time": "14:30:00", "end_time": "14:00:00", "duration": 30},
                datetime(2025, 6, 12, 14, 30, tzinfo=BERLIN),
                datetime(2025, 6, 12, 15, 0, tzinfo=BERLIN),
            ),
            # same explicit end date, end before start, no duration: the default
            (
                {"start_time": "22:00:00", "end_time": "01:30:00"},
                datetime(2025, 6, 12, 22, 0, tzinfo=BERLIN),
                datetime(2025, 6, 12, 22, 30, tzinfo=BERLIN),
            ),
            # no end: duration
            (
                {"end_date": None, "end_time": None, "duration": 45},
                datetime(2025, 6, 12, 10, 0, tzinfo=BERLIN),
                datetime(2025, 6, 12, 10, 45, tzinfo=BERLIN),
            ),
            # no end, no duration: default 30 minutes
            (
                {"end_date": None, "end_time": None},
                datetime(2025, 6, 12, 10, 0, tzinfo=BERLIN),
                datetime(2025, 6, 12, 10, 30, tzinfo=BERLIN),
            ),
            # end on an earlier date: duration wins
            (
                {"end_date": "2025-06-11", "duration": 20},
                datetime(2025, 6, 12, 10, 0, tzinfo=BERLIN),
                datetime(2025, 6, 12, 10, 20, tzinfo=BERLIN),
            ),
            # DST gap: 02:30 does not exist on 2025-03-30, moves forward by the gap
            (
                {"start_date": "2025-03-30", "end_date": "2025-03-30", "start_time": "02:30:00", "end_time": "05:00:00"},
                datetime(2025, 3, 30, 3, 30, tzinfo=BERLIN),
                datetime(2025, 3, 30, 5, 0, tzinfo=BERLIN),
            ),
            # multi-day timed
            (
                {"end_date": "2025-06-14", "end_time": "09:00:00"},
                datetime(2025, 6, 12, 10, 0, tzinfo=BERLIN),
                datetime(2025, 6, 14, 9, 0, tzinfo=BERLIN),
            ),
        ],
    )
    def test_timed_start_and_end(self, fields: dict[str, Any], start: datetime, end: datetime) -> None:
        """Timed activities get the documented start and end in the configured zone."""
        component = _map(MappingOptions(timezone="Europe/Berlin"), **fields)
        assert component.start == start
        assert component.end == end
        assert "DTSTART;TZID=Europe/Berlin:" in component.to_ical().decode()

    def test_dst_overlap_means_first_occurrence(self) -> None:
        """An ambiguous wall time (02:30 on 2025-10-26 in Berlin) is its first occurrence (CEST)."""
        component = _map(
            MappingOptions(timezone="Europe/Berlin"),
            start_date="2025-10-26",
            end_date="2025-10-26",
            start_time="02:30:00",
            end_time="04:00:00",
        )
        assert component.start.astimezone(UTC) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)

    def test_utc_times_are_written_in_utc(self) -> None:
        """In the UTC zone, times are written with Z and need no VTIMEZONE."""
        data = object_for(activity(), TYPES, MappingOptions()).data.decode()
        assert "DTSTART:20250612T100000Z" in data
        assert "VTIMEZONE" not in data

    def test_zoned_object_carries_its_vtimezone(self) -> None:
        """An object with a TZID includes exactly one VTIMEZONE for it, with RRULEs."""
        data = object_for(activity(), TYPES, MappingOptions(timezone="America/New_York")).data.decode()
        assert data.count("BEGIN:VTIMEZONE") == 1
        assert "TZID:America/New_York" in data
        assert "RRULE:FREQ=YEARLY" in data

    @pytest.mark.parametrize(
        ("fields", "start", "end"),
        [
            ({"start_time": None, "end_time": None}, date(2025, 6, 12), date(2025, 6, 13)),
            ({"start_time": None, "end_time": None, "end_date": "2025-06-15"}, date(2025, 6, 12), date(2025, 6, 16)),
            ({"start_time": None, "end_time": None, "end_date": "2025-06-01"}, date(2025, 6, 12), date(2025, 6, 13)),
            ({"start_time": None, "end_time": None, "end_date": None}, date(2025, 6, 12), date(2025, 6, 13)),
        ],
    )
    def test_all_day_has_exclusive_end(self, fields: dict[str, Any], start: date, end: date) -> None:
        """No start time → DATE values with an exclusive end, at least the next day."""
        component = _map(**fields)
        assert component.start == start
        assert component.end == end
        assert "DTSTART;VALUE=DATE:" in component.to_ical().decode()

    def test_event_without_start_date_is_unmappable(self) -> None:
        """A VEVENT needs a start date: Unmappable names the activity."""
        with pytest.raises(Unmappable) as info:
            _map(start_date=None)
        assert info.value.activity_id == 101
        assert isinstance(info.value, ICalError)

    @pytest.mark.parametrize(
        ("fields", "start", "due"),
        [
            ({}, None, date(2025, 6, 12)),
            ({"end_date": None}, None, date(2025, 6, 12)),
            ({"end_date": "2025-06-01"}, None, date(2025, 6, 12)),
            ({"end_date": "2025-06-14"}, date(2025, 6, 12), date(2025, 6, 14)),
        ],
    )
    def test_all_day_todo_is_due_on_its_last_day(self, fields: dict[str, Any], start: date | None, due: date) -> None:
        """An all-day VTODO's DUE is the inclusive last day; a one-day to-do has no DTSTART."""
        component = _map(activity_type="task", start_time=None, end_time=None, **fields)
        assert isinstance(component, Todo)
        assert component.get("DUE").dt == due
        assert (component.get("DTSTART").dt if "DTSTART" in component else None) == start
        assert f"DUE;VALUE=DATE:{due:%Y%m%d}" in component.to_ical().decode()

    def test_todo_without_start_date_has_no_dates(self) -> None:
        """A VTODO without a start date has neither DTSTART nor DUE."""
        component = _map(activity_type="task", start_date=None)
        assert isinstance(component, Todo)
        assert "DTSTART" not in component
        assert "DUE" not in component


class TestTodo:
    """Completion properties of VTODOs and their absence on VEVENTs."""

    def test_done_todo_is_completed(self) -> None:
        """A done task has STATUS:COMPLETED, COMPLETED at updated_at and PERCENT-COMPLETE:100."""
        component = _map(activity_type="task", done=True)
        lines = _lines(component)
        assert "STATUS:COMPLETED" in lines
        assert "COMPLETED:20250601T093015Z" in lines
        assert "PERCENT-COMPLETE:100" in lines
        assert "DUE;TZID" not in component.to_ical().decode()  # UTC zone
        assert "DUE:20250612T110000Z" in lines

    def test_open_todo_needs_action(self) -> None:
        """An open task has STATUS:NEEDS-ACTION and no completion properties."""
        lines = _lines(_map(activity_type="task"))
        assert "STATUS:NEEDS-ACTION" in lines
        assert not any(line.startswith(("COMPLETED", "PERCENT-COMPLETE")) for line in lines)

    def test_done_event_has_no_completion_properties(self) -> None:
        """A done activity mapped as an event carries no STATUS, COMPLETED or PERCENT-COMPLETE."""
        component = _map(MappingOptions(tasks_as="events"), activity_type="task", done=True)
        for name in ("STATUS", "COMPLETED", "PERCENT-COMPLETE"):
            assert name not in component


class TestText:
    """Summary template, description per privacy, text hygiene."""

    @pytest.mark.parametrize(
        ("template", "fields", "expected"),
        [
            ("{subject}", {}, "Quarterly review"),
            ("{subject} — {deal}", {"deal": {"id": 1, "name": "Acme renewal"}}, "Quarterly review — Acme renewal"),
            ("{type}: {subject}", {}, "Meeting: Quarterly review"),
            ("{subject}", {"subject": None}, "Meeting"),
            ("{subject}", {"subject": None, "activity_type": None}, "Activity"),
            ("{subject}", {"subject": "Line one\r\nDESCRIPTION:injected"}, "Line one DESCRIPTION:injected"),
            ("{subject}", {"subject": "Bell\x07 and null\x00 gone"}, "Bell and null gone"),
        ],
    )
    def test_summary(self, template: str, fields: dict[str, Any], expected: str) -> None:
        """SUMMARY renders the template from cleaned, single-line values."""
        assert _map(MappingOptions(summary_template=template), **fields).summary == expected

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("{type} — {contact}", "Meeting"),
            ("{subject} — {deal}", "Quarterly review"),
            ("{deal} — {subject}", "Quarterly review"),
            ("{subject} — {deal} — {company}", "Quarterly review — Acme Inc"),
            ("{subject} | {contact} | {deal}", "Quarterly review"),
            ("Call: {contact}", "Call"),
            ("{type}: {subject} ({deal})", "Meeting: Quarterly review"),
            ("{subject}-{deal}-{company}", "Quarterly review-Acme Inc"),
            ("{subject} · {deal} · {assigned_to} · {company}", "Quarterly review · Acme Inc"),
            ("{type} {deal} {subject}", "Meeting Quarterly review"),
            ("{deal}{contact}", "Meeting"),
            ("{subject} - {company}", "Quarterly review - Acme Inc"),
            ("{subject} -- {company}", "Quarterly review -- Acme Inc"),
        ],
    )
    def test_summary_tidies_separators_of_empty_fields(self, template: str, expected: str) -> None:
        """Separators left next to an empty field are trimmed at the ends and collapsed in the middle."""
        component = _map(MappingOptions(summary_template=template), company={"id": 3, "name": "Acme Inc"})
        assert component.summary == expected

    def test_cr_lf_cannot_inject_a_property(self) -> None:
        """A subject or location with CR/LF produces no extra content line."""
        component = _map(subject="x\r\nATTENDEE:mailto:evil@example.com", location="a\nGEO:1;2")
        assert not any(line.startswith(("ATTENDEE", "GEO")) for line in _lines(component))

    def test_long_unicode_folds_without_splitting_utf8(self) -> None:
        """Lines fold at 75 octets and every physical line is valid UTF-8 on its own."""
        data = object_for(activity(subject="Überprüfung 😀 " * 40), TYPES, MappingOptions()).data
        for line in data.split(b"\r\n"):
            assert len(line) <= 75
            line.decode("utf-8")
        assert parse_both(data)[1].events[0].summary == ("Überprüfung 😀 " * 40).strip()

    def test_huge_note_is_truncated_with_marker(self) -> None:
        """A note over max_note_bytes is cut and marked."""
        component = _map(MappingOptions(max_note_bytes=1000), note="ä" * 5000)
        description = str(component.description)
        assert description.count("ä") < 500
        assert "… (truncated)" in description

    @pytest.mark.parametrize(
        ("privacy", "present", "absent"),
        [
            ("full", ["Agenda", "private note", "Deal: Acme", "Contact: Jo", "Company: Acme Inc", "https://app"], []),
            ("public", ["Agenda", "https://app"], ["private note", "Deal:", "Contact:", "Company:"]),
        ],
    )
    def test_description_per_privacy(self, privacy: Any, present: list[str], absent: list[str]) -> None:
        """DESCRIPTION holds what the privacy level allows, with the CRM link last."""
        component = _map(
            MappingOptions(privacy=privacy),
            public_description="Agenda",
            note="private note",
            deal={"id": 1, "name": "Acme"},
            contact={"id": 2, "full_name": "Jo"},
            company={"id": 3, "name": "Acme Inc"},
        )
        description = str(component.description)
        for text in present:
            assert text in description
        for text in absent:
            assert text not in description
        assert description.endswith("https://app.achieveapex.com/activities/101")

    def test_busy_hides_everything(self) -> None:
        """busy: SUMMARY Busy, CLASS PRIVATE, no description, location, links, categories or colour."""
        component = _map(
            MappingOptions(privacy="busy"),
            note="secret",
            public_description="Agenda",
            location="https://zoom.us/j/123",
        )
        assert component.summary == "Busy"
        assert str(component["CLASS"]) == "PRIVATE"
        for name in ("DESCRIPTION", "LOCATION", "URL", "CATEGORIES", "COLOR", "CONFERENCE", "GEO", "X-APEX-COLOR", "X-APEX-ICON"):
            assert name not in component


class TestLocation:
    """LOCATION, GEO, Apple structured location and CONFERENCE."""

    GEOCODE: ClassVar[dict[str, Any]] = {"lat": 40.7128, "lng": -74.006, "address": "New York, NY"}

    def test_geocoded_place(self) -> None:
        """LOCATION adds the address; GEO and X-APPLE-STRUCTURED-LOCATION with X-TITLE = LOCATION."""
        component = _map(location="Client Office", location_geocoded=self.GEOCODE)
        assert component.location == "Client Office, New York, NY"
        assert "GEO:40.7128;-74.006" in _lines(component)
        apple = component["X-APPLE-STRUCTURED-LOCATION"]
        assert apple.params["X-TITLE"] == "Client Office, New York, NY"
        assert apple.params["X-ADDRESS"] == "New York, NY"
        assert apple.params["X-APPLE-RADIUS"] == "70.0"
        assert apple.params["VALUE"] == "URI"
        assert str(apple) == "geo:40.712800,-74.006000"

    def test_address_already_in_text_is_not_repeated(self) -> None:
        """When the text already holds the address, LOCATION is the text alone."""
        component = _map(location="250 Broadway, New York, NY", location_geocoded=self.GEOCODE)
        assert component.location == "250 Broadway, New York, NY"

    def test_geocode_passed_in_is_used(self) -> None:
        """A geocode resolved by the caller fills in for a missing location_geocoded."""
        from apexcal.apex.models import GeoPoint

        component = map_activity(
            activity(location="Austin office"), TYPES, MappingOptions(), geocode=GeoPoint(lat=30.27, lng=-97.74, address="Austin, TX")
        )
        assert component.location == "Austin office"
        assert "GEO:30.27;-97.74" in _lines(component)
        apple = component["X-APPLE-STRUCTURED-LOCATION"]
        assert apple.params["X-TITLE"] == "Austin office"
        assert apple.params["X-ADDRESS"] == "Austin, TX"

    @pytest.mark.parametrize("text", ["a\\b", "a\\\\b", "x\\,y", "\\"])
    def test_a_backslash_in_a_place_survives_icalendar(self, text: str) -> None:
        """icalendar reads a parameter's backslash as an escape, so X-TITLE and X-ADDRESS carry a look-alike."""
        from apexcal.apex.models import GeoPoint
        from apexcal.ical.mapping import object_for
        from apexcal.ical.ownership import owned_hash
        from tests.unit.ical.test_ownership import REWRITES

        mapped = object_for(activity(location=text), TYPES, MappingOptions(), geocode=GeoPoint(lat=1.0, lng=2.0, address=text))
        component = map_activity(activity(location=text), TYPES, MappingOptions(), geocode=GeoPoint(lat=1.0, lng=2.0, address=text))
        assert component.location == text  # the text value escapes it as TEXT does
        apple = component["X-APPLE-STRUCTURED-LOCATION"]
        assert apple.params["X-TITLE"] == apple.params["X-ADDRESS"] == text.replace("\\", "\uff3c")
        assert owned_hash(REWRITES["icalendar"](mapped.data)) == owned_hash(mapped.data)

    def test_geocode_passed_in_never_replaces_the_text(self) -> None:
        """A guessed geocode whose address contains the text still leaves LOCATION as written."""
        from apexcal.apex.models import GeoPoint

        component = map_activity(
            activity(location="Orange"), TYPES, MappingOptions(), geocode=GeoPoint(lat=33.8, lng=-117.9, address="Orange, CA")
        )
        assert component.location == "Orange"

    def test_api_geocode_wins_over_the_one_passed_in(self) -> None:
        """With location_geocoded from the API, LOCATION adds its address and the passed geocode is unused."""
        from apexcal.apex.models import GeoPoint

        component = map_activity(
            activity(location="Client Office", location_geocoded=self.GEOCODE),
            TYPES,
            MappingOptions(),
            geocode=GeoPoint(lat=1.0, lng=2.0, address="Elsewhere"),
        )
        assert component.location == "Client Office, New York, NY"
        assert "GEO:40.7128;-74.006" in _lines(component)

    @pytest.mark.parametrize(
        "url",
        [
            "https://us02web.zoom.us/j/8123456789?pwd=abc",
            "https://meet.google.com/abc-defg-hij",
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting",
            "https://acme.webex.com/meet/jo",
        ],
    )
    def test_meeting_link_becomes_conference(self, url: str) -> None:
        """A meeting URL in the location → CONFERENCE (VIDEO, Join), link in DESCRIPTION, no GEO."""
        component = _map(location=f"Video call {url}", location_geocoded=self.GEOCODE)
        line = next(line for line in _lines(component) if line.startswith("CONFERENCE"))
        assert "FEATURE=VIDEO" in line
        assert "LABEL=Join" in line
        assert "VALUE=URI" in line
        assert line.endswith(":" + url)
        assert f"Join: {url}" in str(component.description)
        assert "GEO" not in component
        assert "X-APPLE-STRUCTURED-LOCATION" not in component

    @pytest.mark.parametrize(
        ("text", "online"),
        [
            ("Online - Zoom", True),
            ("online", True),
            ("Online meeting", True),
            ("Virtual meeting (details to follow)", True),
            ("Zoom meeting", True),
            ("Weekly Teams meeting", True),
            ("Teams call", True),
            ("Google Meet", True),
            ("Webex meeting", True),
            ("Video call with Jo", True),
            ("Conference call", True),
            ("https://example.com/room/42", True),
            ("See meet.google.com/abc-defg-hij", True),
            ("Teams room B", False),
            ("Virtual reality lab", False),
            ("Zoom Café", False),
            ("Client Office", False),
            ("Conference room 3", False),
            ("The Online Store, Main St", False),
            ("Skyline Tower", False),
        ],
    )
    def test_online_is_decided_narrowly(self, text: str, online: bool) -> None:
        """Only URLs, a leading "Online"/"Virtual meeting" or clear meeting phrases make a location online."""
        assert is_online(text) is online
        component = _map(location=text, location_geocoded=self.GEOCODE)
        assert ("GEO" in component) is not online

    def test_online_without_link_keeps_text_only(self) -> None:
        """"Online - Zoom" keeps LOCATION, gets no CONFERENCE and no GEO even when geocoded."""
        component = _map(location="Online - Zoom", location_geocoded=self.GEOCODE)
        assert component.location == "Online - Zoom"
        for name in ("CONFERENCE", "GEO", "X-APPLE-STRUCTURED-LOCATION"):
            assert name not in component


class TestTypes:
    """CATEGORIES, COLOR, X-APEX-COLOR and X-APEX-ICON from the activity type."""

    def test_known_type(self) -> None:
        """A known type gives its name, nearest CSS3 colour, hex and icon."""
        lines = _lines(_map())
        assert "CATEGORIES:Meeting" in lines
        assert "COLOR:dodgerblue" in lines
        assert "X-APEX-COLOR:#3b82f6" in lines
        assert "X-APEX-ICON:users" in lines

    def test_custom_type_found_by_key(self) -> None:
        """A custom type is looked up by its key."""
        assert _map(activity_type="customer_training").categories == ["Customer Training"]

    def test_unknown_type_falls_back_to_raw_key(self) -> None:
        """An unknown or deleted type shows the raw activity_type and no colour."""
        component = _map(activity_type="site_visit")
        assert component.categories == ["site_visit"]
        assert "COLOR" not in component
        assert "X-APEX-ICON" not in component
