"""Ownership: which properties are apexcal's, and the hash over them that decides "nothing to do"."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import vobject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from apexcal.apex.models import Activity
from apexcal.ical.contentlines import Block, ContentLineError, Line, parse, to_bytes
from apexcal.ical.mapping import MappingOptions, Unmappable, object_for
from apexcal.ical.ownership import (
    MAIN_COMPONENTS,
    is_apex_alarm,
    is_owned,
    is_owned_line,
    main_component,
    owned_changes,
    owned_hash,
    owned_view,
)
from apexcal.sync.detect import legacy_hash
from tests.unit.ical.client_shapes import SHAPES, Shape, add_shape
from tests.unit.ical.factories import TYPES, activity

GOLDEN = sorted((Path(__file__).parents[2] / "data" / "golden").glob("*.ics"))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

APEX_ALARM = (
    "BEGIN:VALARM\r\n"
    "UID:apexcal-alarm-0a1b2c3d4e5f60718293a4b5@api.achieveapex.com\r\n"
    "ACTION:DISPLAY\r\n"
    "TRIGGER;RELATED=START:-PT15M\r\n"
    "DESCRIPTION:Reminder\r\n"
    "X-APEX-ALARM:-15m\r\n"
    "END:VALARM\r\n"
)


def _golden(name: str) -> bytes:
    return next(p for p in GOLDEN if p.name == name).read_bytes()


def _with_component_lines(data: bytes, lines: str) -> bytes:
    text = data.decode()
    kind = "VTODO" if "BEGIN:VTODO" in text else "VEVENT"
    return text.replace(f"END:{kind}\r\n", lines + f"END:{kind}\r\n").encode()


# --- server rewritings the hash must survive ----------------------------------------


def refold(data: bytes, width: int, continuation: str = " ") -> bytes:
    """Unfold and fold again at ``width`` characters (Cyrus/Radicale fold differently from us)."""
    out = []
    for line in re.sub(r"\r\n[ \t]", "", data.decode()).split("\r\n"):
        pieces = [line[:width]] + [line[i : i + width - 1] for i in range(width, len(line), width - 1)]
        out.append("\r\n".join([pieces[0], *(continuation + p for p in pieces[1:])]))
    return "\r\n".join(out).encode()


def quote_all(data: bytes) -> bytes:
    """Every parameter value quoted (Cyrus re-quotes)."""
    root = parse(data)
    for block in root.walk():
        new_items: list[Line | Block] = []
        for item in block.items:
            if isinstance(item, Line) and ";" in item.text.split(":", 1)[0]:
                name, params, value = item.split()
                quoted = "".join(f";{key}=" + ",".join(f'"{v}"' for v in values) for key, values in params)
                item = Line.of(f"{name}{quoted}:{value}")
            new_items.append(item)
        block.items = new_items
    return to_bytes(root)


def shuffle_properties(data: bytes, seed: int) -> bytes:
    """Properties of each component in another order (Radicale re-orders)."""
    root = parse(data)
    rng = random.Random(seed)
    for block in root.walk():
        lines = [item for item in block.items if isinstance(item, Line)]
        blocks = [item for item in block.items if isinstance(item, Block)]
        rng.shuffle(lines)
        rng.shuffle(blocks)
        block.items = [*lines, *blocks]
    return to_bytes(root)


def geo_six(data: bytes) -> bytes:
    """GEO at 6 decimals (Cyrus)."""
    return re.sub(
        rb"GEO:([-0-9.]+);([-0-9.]+)",
        lambda m: b"GEO:%.6f;%.6f" % (float(m.group(1)), float(m.group(2))),
        data,
    )


def lf_only(data: bytes) -> bytes:
    """Bare LF line endings."""
    return data.replace(b"\r\n", b"\n")


def vobject_roundtrip(data: bytes) -> bytes:
    """What Radicale (vobject) stores for our bytes."""
    return str(vobject.readOne(data.decode()).serialize()).encode()


def icalendar_roundtrip(data: bytes) -> bytes:
    """What a client using icalendar writes back."""
    return bytes(Calendar.from_ical(data).to_ical())


REWRITES = {
    "refold-40": lambda d: refold(d, 40),
    "refold-tab": lambda d: refold(d, 60, "\t"),
    "quote-all": quote_all,
    "shuffle": lambda d: shuffle_properties(d, 7),
    "geo-six": geo_six,
    "lf-only": lf_only,
    "vobject": vobject_roundtrip,
    "icalendar": icalendar_roundtrip,
}


@st.composite
def mapped_objects(draw: st.DrawFn) -> bytes:
    """Objects as the mapping writes them, over the option space that changes their shape."""
    fields = {
        "subject": draw(st.text(max_size=60)),
        "note": draw(st.one_of(st.none(), st.text(max_size=200))),
        "location": draw(
            st.one_of(
                st.none(),
                st.text(max_size=40),
                st.sampled_from(["Client Office", "https://zoom.us/j/1?pwd=x", "Room 4; floor 2, \"B\""]),
            )
        ),
        "location_geocoded": draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "lat": st.floats(-90, 90, allow_nan=False),
                        "lng": st.floats(-180, 180, allow_nan=False),
                        "address": st.text(max_size=30),
                    }
                ),
            )
        ),
        "activity_type": draw(st.sampled_from(["meeting", "call", "task"])),
        "start_time": draw(st.sampled_from([None, "10:00:00", "23:30:00"])),
        "done": draw(st.booleans()),
    }
    opts = MappingOptions(
        timezone=draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
        privacy=draw(st.sampled_from(["full", "public", "busy"])),
        tasks_as=draw(st.sampled_from(["todos", "events"])),
    )
    try:
        return object_for(activity(**fields), TYPES, opts).data
    except Unmappable:
        return _golden("meeting-geocoded.ics")


class TestOwnedProperties:
    """The one list: every property the mapping writes is owned, nothing a client adds is."""

    @pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
    def test_every_property_of_a_golden_file_is_owned(self, path: Path) -> None:
        """Each property the mapping wrote in a golden file is owned in its component."""
        root = parse(path.read_bytes())
        for block in root.walk():
            if block.name in ("VCALENDAR", *MAIN_COMPONENTS):
                assert [line.name for line in block.lines() if not is_owned_line(block.name, line)] == []

    @SETTINGS
    @given(data=mapped_objects())
    def test_every_property_the_mapping_writes_is_owned(self, data: bytes) -> None:
        """Over the mapping's option space, no property it writes is left unowned."""
        main = main_component(parse(data))
        assert main is not None
        assert [line.name for line in main.lines() if not is_owned_line(main.name, line)] == []

    @pytest.mark.parametrize(
        ("component", "prop", "owned"),
        [
            ("VEVENT", "SUMMARY", True),
            ("vevent", "dtstart", True),
            ("VEVENT", "DTEND", True),
            ("VEVENT", "DURATION", True),
            ("VEVENT", "RRULE", True),
            ("VEVENT", "X-ALT-DESC", True),
            ("VEVENT", "X-APEX-ACTIVITY-ID", True),
            ("VEVENT", "X-APEX-SOMETHING-NEW", True),
            ("VEVENT", "X-APPLE-STRUCTURED-LOCATION", True),
            ("VEVENT", "STATUS", False),
            ("VEVENT", "DUE", False),
            ("VEVENT", "TRANSP", False),
            ("VEVENT", "X-MOZ-LASTACK", False),
            ("VEVENT", "X-MOZ-SNOOZE-TIME", False),
            ("VEVENT", "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR", False),
            ("VEVENT", "RELATED-TO", False),
            ("VEVENT", "ATTENDEE", False),
            ("VEVENT", "ORGANIZER", False),
            ("VTODO", "STATUS", True),
            ("VTODO", "PERCENT-COMPLETE", True),
            ("VTODO", "COMPLETED", True),
            ("VTODO", "DUE", True),
            ("VTODO", "DTEND", False),
            ("VTODO", "PRIORITY", False),
            ("VALARM", "TRIGGER", True),
            ("VALARM", "ACKNOWLEDGED", False),
            ("VALARM", "X-WR-ALARMUID", False),
            ("VALARM", "X-APEX-ALARM", True),
            ("VCALENDAR", "PRODID", True),
            ("VCALENDAR", "X-WR-CALNAME", False),
            ("VTIMEZONE", "TZID", False),
            ("X-ACME-PANEL", "X-APEX-ACTIVITY-ID", False),
        ],
    )
    def test_is_owned(self, component: str, prop: str, owned: bool) -> None:
        """Owned by name per component; ATTENDEE/ORGANIZER only line by line."""
        assert is_owned(component, prop) is owned

    @pytest.mark.parametrize(
        ("text", "owned"),
        [
            ("ATTENDEE;X-APEX-OWNED=TRUE;CN=Jo;SCHEDULE-AGENT=CLIENT:mailto:jo@example.com", True),
            ('ORGANIZER;X-APEX-OWNED="true";CN=Al:mailto:al@example.com', True),
            ("ATTENDEE;CN=Jo:mailto:jo@example.com", False),
            ("ATTENDEE;X-APEX-OWNED=FALSE:mailto:jo@example.com", False),
            ('ATTENDEE;CN="X-APEX-OWNED=TRUE":mailto:jo@example.com', False),
        ],
    )
    def test_attendees_are_owned_by_mark(self, text: str, owned: bool) -> None:
        """An ATTENDEE/ORGANIZER is ours only with X-APEX-OWNED=TRUE as a real parameter."""
        assert is_owned_line("VEVENT", Line.of(text)) is owned

    @pytest.mark.parametrize(
        ("lines", "ours"),
        [
            ("X-APEX-ALARM:-15m\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n", True),
            ("UID:apexcal-alarm-abc@x\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n", True),
            ("X-WR-ALARMUID:apexcal-alarm-abc@x\r\nUID:E2B1\r\nTRIGGER:-PT15M\r\n", True),
            ("UID:4D0B2E1C\r\nX-WR-ALARMUID:4D0B2E1C\r\nTRIGGER:-PT30M\r\n", False),
            ("ACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:apexcal-alarm-\r\n", False),
        ],
    )
    def test_apex_alarms_are_recognised_by_marker_or_uid(self, lines: str, ours: bool) -> None:
        """X-APEX-ALARM or an apexcal-alarm- UID (also in Apple's X-WR-ALARMUID) make a VALARM ours."""
        data = f"BEGIN:VCALENDAR\r\nBEGIN:VALARM\r\n{lines}END:VALARM\r\nEND:VCALENDAR\r\n"
        alarm = next(parse(data).blocks("VALARM"))
        assert is_apex_alarm(alarm) is ours

    def test_owned_view_keeps_only_ours(self) -> None:
        """The owned view of an object with a user's additions equals that of the object alone."""
        base = _with_component_lines(_golden("meeting-geocoded.ics"), APEX_ALARM)
        with_additions = base
        for shape in SHAPES:
            with_additions = add_shape(with_additions, shape)
        view = owned_view(parse(with_additions))
        assert to_bytes(view) == to_bytes(owned_view(parse(base)))
        alarm = next(main.blocks("VALARM") for main in view.blocks())
        assert [line.name for line in next(alarm).lines()] == ["UID", "ACTION", "TRIGGER", "DESCRIPTION", "X-APEX-ALARM"]


class TestOwnedHash:
    """owned_hash: equal for what servers do to our bytes and for users' additions, different for CRM changes."""

    @pytest.mark.parametrize("rewrite", REWRITES, ids=str)
    @pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
    def test_survives_server_rewriting(self, path: Path, rewrite: str) -> None:
        """Refolding, quoting, reordering, GEO at 6 decimals, LF endings, vobject and icalendar round trips."""
        data = _with_component_lines(path.read_bytes(), APEX_ALARM)
        assert owned_hash(REWRITES[rewrite](data)) == owned_hash(data)

    @SETTINGS
    @given(data=mapped_objects(), rewrite=st.sampled_from(sorted(REWRITES)), seed=st.integers(0, 1000))
    def test_survives_server_rewriting_of_any_mapped_object(self, data: bytes, rewrite: str, seed: int) -> None:
        """Any mapped object keeps its hash through any rewriting and a reordering after it."""
        rewritten = shuffle_properties(REWRITES[rewrite](data), seed)
        assert owned_hash(rewritten) == owned_hash(data)

    @SETTINGS
    @given(data=mapped_objects(), width=st.integers(10, 90), seed=st.integers(0, 1000))
    def test_is_a_superset_of_legacy_hash(self, data: bytes, width: int, seed: int) -> None:
        """Whatever the byte-level legacy_hash tolerates (folding, order, quotes), owned_hash tolerates too."""
        rewritten = quote_all(shuffle_properties(refold(data, width), seed))
        if legacy_hash(rewritten) == legacy_hash(data):
            assert owned_hash(rewritten) == owned_hash(data)
        # ...and more: the byte-level legacy_hash misses re-quoting when a quoted value holds a colon.
        assert owned_hash(rewritten) == owned_hash(data)

    def test_tolerates_requoting_that_semantic_hash_misses(self) -> None:
        """A location with a colon, re-quoted by the server, keeps owned_hash (the byte-level legacy_hash changes)."""
        data = object_for(
            activity(location="Client Office", location_geocoded={"lat": 1.5, "lng": 2.5, "address": "Suite: 4"}),
            TYPES,
            MappingOptions(),
        ).data
        rewritten = quote_all(data)
        assert legacy_hash(rewritten) != legacy_hash(data)
        assert owned_hash(rewritten) == owned_hash(data)

    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
    @pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
    def test_ignores_a_clients_additions(self, path: Path, shape: Shape) -> None:
        """Alarms, acknowledgements, snoozes, X- properties, attendees and components a client adds change nothing."""
        data = path.read_bytes()
        assert owned_hash(add_shape(data, shape)) == owned_hash(data)
        assert legacy_hash(add_shape(data, shape)) != legacy_hash(data)

    def test_ignores_the_product_id(self) -> None:
        """A client re-saving the object under its own PRODID changes nothing we own."""
        data = _golden("meeting-geocoded.ics")
        other = data.replace(b"PRODID:-//apexcal//apexcal 0.1//EN", b"PRODID:-//Apple Inc.//macOS 15.1//EN")
        assert owned_hash(other) == owned_hash(data)

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            (b"SUMMARY:Quarterly review", b"SUMMARY:Quarterly Review"),
            (b"DTSTART;TZID=America/New_York:20250612T100000", b"DTSTART;TZID=America/New_York:20250612T100100"),
            (b"DTSTART;TZID=America/New_York", b"DTSTART;TZID=America/Chicago"),
            (b"GEO:40.7128;-74.006", b"GEO:40.7129;-74.006"),
            (b"LOCATION:Client Office\\, New York\\, NY", b"LOCATION:Client Office\\; New York\\, NY"),
            (b"X-APEX-ICON:users", b"X-APEX-ICON:user"),
            (b"CATEGORIES:Meeting\r\n", b""),
            (b"TRIGGER;RELATED=START:-PT15M", b"TRIGGER;RELATED=START:-PT10M"),
            (b"TRIGGER;RELATED=START:-PT15M", b"TRIGGER;RELATED=END:-PT15M"),
            (b"BEGIN:VEVENT", b"BEGIN:VEVENT\r\nRRULE:FREQ=DAILY"),
            (b"BEGIN:VEVENT", b"BEGIN:VEVENT\r\nATTENDEE;X-APEX-OWNED=TRUE:mailto:jo@example.com"),
        ],
    )
    def test_changes_with_owned_content(self, old: bytes, new: bytes) -> None:
        """A change, removal or addition of anything we own changes the hash and is named by owned_changes."""
        data = _with_component_lines(_golden("meeting-geocoded.ics"), APEX_ALARM)
        assert old in data
        changed = data.replace(old, new)
        assert owned_hash(changed) != owned_hash(data)
        assert owned_changes(data, changed) != []

    def test_owned_changes_names_the_properties(self) -> None:
        """owned_changes lists the changed owned properties by name, and VALARM for our alarms."""
        data = _with_component_lines(_golden("meeting-geocoded.ics"), APEX_ALARM)
        changed = (
            data.replace(b"SUMMARY:Quarterly review", b"SUMMARY:Renamed")
            .replace(b"-PT15M", b"-PT5M")
            .replace(b"X-APEX-ICON:users\r\n", b"")
        )
        assert owned_changes(data, add_shape(changed, SHAPES[0])) == ["SUMMARY", "VALARM", "X-APEX-ICON"]
        assert owned_changes(data, add_shape(data, SHAPES[1])) == []

    def test_kind_matters(self) -> None:
        """A VTODO and a VEVENT with the same owned lines hash differently."""
        data = _golden("privacy-busy.ics")
        assert owned_hash(data.replace(b"VEVENT", b"VTODO")) != owned_hash(data)


class TestContentLines:
    """The line-level reader keeps what it reads and refuses what is not a calendar."""

    @pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
    def test_round_trip_is_exact(self, path: Path) -> None:
        """Parsing and writing back a golden file gives the same bytes."""
        data = path.read_bytes()
        assert to_bytes(parse(data)) == data

    def test_round_trip_keeps_folding_and_foreign_bytes(self) -> None:
        """Odd folding, tabs and bytes that are not UTF-8 come back unchanged."""
        data = b"BEGIN:VCALENDAR\r\nX-A:abc\r\n\tdef\r\n  ghi\r\nX-B:\xff\xfe\r\nEND:VCALENDAR\r\n"
        root = parse(data)
        assert to_bytes(root) == data
        assert next(root.lines()).text == "X-A:abcdef ghi"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("SUMMARY:a:b", ("SUMMARY", [], "a:b")),
            ('X-T;X-TITLE="a;b:c";V=x,"y,z":v', ("X-T", [("X-TITLE", ["a;b:c"]), ("V", ["x", "y,z"])], "v")),
            ("dtstart;tzid=Europe/Berlin:20250101T000000", ("DTSTART", [("TZID", ["Europe/Berlin"])], "20250101T000000")),
            ("BROKEN", ("BROKEN", [], "")),
        ],
    )
    def test_split(self, text: str, expected: tuple[str, list[tuple[str, list[str]]], str]) -> None:
        """Names are upper-cased, quoted parameter values may hold ; : and ,."""
        assert Line.of(text).split() == expected

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "line 1: no BEGIN:VCALENDAR"),
            (b"BEGIN:VEVENT\r\nEND:VEVENT\r\n", "line 1: BEGIN:VEVENT outside a VCALENDAR"),
            (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "line 3: END:VCALENDAR closes VEVENT"),
            (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", "BEGIN:VEVENT is never closed"),
            (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nX-A:b\r\n", "line 3: content outside"),
            (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\n", "line 3: more than one VCALENDAR"),
        ],
    )
    def test_not_a_calendar_is_a_clear_error(self, data: bytes, reason: str) -> None:
        """Unbalanced or missing BEGIN/END is a ContentLineError naming the line."""
        with pytest.raises(ContentLineError, match=re.escape(reason)):
            parse(data)


def test_activity_factory_is_an_activity() -> None:
    """The strategies build real activities (guards the factory import)."""
    assert isinstance(activity(), Activity)
