"""Property tests: any activity maps to output both parsers accept, deterministically and privately."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apexcal.apex.models import Activity, parse_activity
from apexcal.errors import Unmappable
from apexcal.ical.mapping import MappingOptions, object_for, uid_for
from apexcal.ical.remote import read_remote
from tests.unit.ical.factories import ORG, TYPES
from tests.unit.ical.parsers import parse_both

# Sized so the whole file runs in about ten seconds on two cores.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.one_of(st.none(), st.text(max_size=200), st.text(alphabet=st.characters(), max_size=30))
big_notes = st.one_of(texts, st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=10), st.integers(1, 20000)))
times = st.one_of(st.none(), st.times())
dates = st.one_of(st.none(), st.dates(min_value=date(1901, 1, 1), max_value=date(2200, 12, 31)))
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
geocodes = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "lat": st.floats(-90, 90, allow_nan=False),
            "lng": st.floats(-180, 180, allow_nan=False),
            "address": texts,
        }
    ),
)
locations = st.one_of(
    texts,
    st.sampled_from(["Online - Zoom", "https://zoom.us/j/1?pwd=x", "Client Office", "Room 4; floor 2, \"B\""]),
)


@st.composite
def activities(draw: st.DrawFn) -> Activity:
    """Activities with any unicode, nulls, odd times and huge notes."""
    raw: dict[str, Any] = {
        "id": draw(st.integers(1, 2**31)),
        "organization_id": ORG,
        "subject": draw(texts),
        "note": draw(big_notes),
        "public_description": draw(texts),
        "location": draw(locations),
        "location_geocoded": draw(geocodes),
        "start_date": draw(dates),
        "start_time": draw(times),
        "end_date": draw(dates),
        "end_time": draw(times),
        "duration": draw(st.one_of(st.none(), st.integers(0, 100000))),
        "activity_type": draw(st.one_of(st.none(), st.sampled_from(["meeting", "call", "task", "customer_training", "Site Visit"]), st.text(max_size=10))),
        "done": draw(st.one_of(st.none(), st.booleans())),
        "deal": draw(st.one_of(st.none(), st.fixed_dictionaries({"id": st.just(1), "name": texts}))),
        "created_at": draw(instants).isoformat(),
        "updated_at": draw(instants).isoformat(),
    }
    return parse_activity(raw)


options = st.builds(
    MappingOptions,
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Nuuk"]),
    privacy=st.sampled_from(["full", "public", "busy"]),
    tasks_as=st.sampled_from(["todos", "events"]),
    max_note_bytes=st.sampled_from([64, 1000, 65536]),
)


class TestMappingProperties:
    """Invariants that hold for every activity and option set."""

    @SETTINGS
    @given(activity=activities(), opts=options)
    def test_output_parses_and_is_deterministic(self, activity: Activity, opts: MappingOptions) -> None:
        """Output parses with icalendar and ical, keeps its UID and repeats byte for byte."""
        try:
            mapped = object_for(activity, TYPES, opts)
        except Unmappable:
            assert activity.start_date is None or activity.start_date.year >= 9999
            return
        assert mapped.uid == uid_for(ORG, activity.id, opts.uid_domain)
        _loose, strict = parse_both(mapped.data)
        components = strict.events + strict.todos
        assert len(components) == 1
        assert components[0].uid == mapped.uid
        assert object_for(activity, TYPES, opts).data == mapped.data
        for line in mapped.data.split(b"\r\n"):
            assert len(line) <= 75

    @SETTINGS
    @given(activity=activities(), privacy=st.sampled_from(["public", "busy"]))
    def test_note_never_leaks_under_public_or_busy(self, activity: Activity, privacy: Any) -> None:
        """A distinctive note never appears in public or busy output."""
        marked = activity.model_copy(update={"note": "SECRET-NOTE-4242", "start_date": date(2025, 1, 1)})
        data = object_for(marked, TYPES, MappingOptions(privacy=privacy)).data
        assert b"SECRET-NOTE-4242" not in data.replace(b"\r\n ", b"")

    @SETTINGS
    @given(activity=activities(), done=st.booleans())
    def test_todo_round_trips_completion(self, activity: Activity, done: bool) -> None:
        """A mapped VTODO read back by read_remote has the same done state and ids."""
        task = activity.model_copy(update={"activity_type": "task", "done": done})
        mapped = object_for(task, TYPES, MappingOptions(tasks_as="todos"))
        remote = read_remote("/cal/" + mapped.href_name, mapped.data)
        assert remote.kind == "VTODO"
        assert remote.done is done
        assert remote.activity_id == task.id
        assert remote.organization_id == ORG

    @FEWER
    @given(
        activity=activities(),
        updated=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2085, 1, 1), timezones=st.just(UTC)),
        later=st.integers(1, 10**8),
    )
    def test_sequence_rises_on_change(self, activity: Activity, updated: datetime, later: int) -> None:
        """Any later updated_at (2020–2088, the range SEQUENCE can count) gives a larger SEQUENCE."""
        activity = activity.model_copy(update={"start_date": activity.start_date or date(2025, 1, 1), "updated_at": updated})
        changed = activity.model_copy(update={"updated_at": activity.updated_at + timedelta(seconds=later)})
        opts = MappingOptions(tasks_as="events")
        first = parse_both(object_for(activity, TYPES, opts).data)[1].events[0].sequence
        second = parse_both(object_for(changed, TYPES, opts).data)[1].events[0].sequence
        assert first is not None
        assert second is not None
        assert second > first

    @FEWER
    @given(start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1)), minutes=st.integers(1, 5000))
    def test_event_end_is_after_start_in_any_zone(self, start: datetime, minutes: int) -> None:
        """DTEND is after DTSTART in absolute time, also across DST changes."""
        raw_end = start + timedelta(minutes=minutes)
        activity = parse_activity(
            {
                "id": 1,
                "organization_id": ORG,
                "start_date": start.date().isoformat(),
                "start_time": start.time().replace(microsecond=0).isoformat(),
                "end_date": raw_end.date().isoformat(),
                "end_time": time(raw_end.hour, raw_end.minute).isoformat(),
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
            }
        )
        for zone in ("Europe/Berlin", "America/New_York", "Australia/Sydney"):
            event = parse_both(object_for(activity, TYPES, MappingOptions(timezone=zone)).data)[1].events[0]
            assert isinstance(event.dtstart, datetime)
            assert isinstance(event.dtend, datetime)
            assert event.dtend > event.dtstart


@FEWER
@given(
    activity=activities(),
    tasks_as=st.sampled_from(["todos", "events"]),
    privacy=st.sampled_from(["full", "public"]),
)
def test_done_events_check_marks_exactly_the_done_events(activity: Activity, tasks_as: Any, privacy: Any) -> None:
    """check: a done VEVENT's SUMMARY is "✓ " + keep's; anything else is byte-identical to keep."""
    from apexcal.ical.mapping import is_hidden, map_activity

    keep = MappingOptions(uid_domain="example.com", tasks_as=tasks_as, privacy=privacy)
    check = MappingOptions(uid_domain="example.com", tasks_as=tasks_as, privacy=privacy, done_events="check")
    hide = MappingOptions(uid_domain="example.com", tasks_as=tasks_as, privacy=privacy, done_events="hide")
    try:
        kept = map_activity(activity, TYPES, keep)
    except Unmappable:
        return
    checked = map_activity(activity, TYPES, check)
    if activity.done and kept.name == "VEVENT":
        assert str(checked["SUMMARY"]) == "✓ " + str(kept["SUMMARY"])
    else:
        assert checked.to_ical() == kept.to_ical()
    is_task = activity.activity_type is not None and keep.components.get(
        activity.activity_type.lower()
    ) == "todo"
    assert is_hidden(activity, hide) == bool(activity.done and not is_task)
    assert not is_hidden(activity, keep)
    assert not is_hidden(activity, check)
