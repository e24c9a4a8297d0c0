"""merge: our rendering over the server's copy keeps every client's additions byte for byte."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apexcal.ical.alarms import alarms_for
from apexcal.ical.contentlines import Block, ContentLineError, Line, parse, to_bytes
from apexcal.ical.mapping import MappingOptions, calendar_bytes, map_activity, object_for
from apexcal.ical.merge import has_foreign, merge
from apexcal.ical.ownership import is_apex_alarm, main_component, owned_hash
from tests.unit.ical.client_shapes import (
    APPLE,
    EVOLUTION,
    JTX,
    ODDITIES,
    SHAPES,
    TASKS_ORG,
    THUNDERBIRD,
    Shape,
    add_shape,
    unfolded,
)
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both
from tests.unit.ical.test_ownership import REWRITES, mapped_objects, shuffle_properties

GOLDEN = Path(__file__).parents[2] / "data" / "golden"
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NY = MappingOptions(timezone="America/New_York")
EVENT: dict[str, object] = {"location": "Client Office", "note": "Bring the contract"}
TASK: dict[str, object] = {"activity_type": "task", "subject": "Send proposal"}
OUR_ALARM = (
    "BEGIN:VALARM\r\n"
    "UID:apexcal-alarm-0a1b2c3d@api.achieveapex.com\r\n"
    "ACTION:DISPLAY\r\n"
    "TRIGGER;RELATED=START:-PT15M\r\n"
    "DESCRIPTION:Reminder\r\n"
    "X-APEX-ALARM:-15m\r\n"
    "END:VALARM\r\n"
)


def render(act: dict[str, object] = EVENT, opts: MappingOptions = NY, **changes: object) -> bytes:
    """The mapping's bytes for an activity (API fields) with some fields changed."""
    return object_for(activity(**{**act, **changes}), TYPES, opts).data


def with_lines(data: bytes, lines: str) -> bytes:
    """``data`` with raw lines added at the end of its VEVENT/VTODO."""
    text = data.decode()
    kind = "VTODO" if "BEGIN:VTODO" in text else "VEVENT"
    return text.replace(f"END:{kind}\r\n", lines + f"END:{kind}\r\n", 1).encode()


def assert_kept(merged: bytes, fragments: list[str]) -> None:
    """Each fragment is a whole content line of ``merged``, folding and bytes unchanged."""
    text = "\r\n" + merged.decode()
    for fragment in fragments:
        assert f"\r\n{fragment}\r\n" in text, fragment


def assert_valid(merged: bytes) -> None:
    """Both parsers read it; exactly one VTIMEZONE per TZID used, none unused."""
    parse_both(merged)
    root = parse(merged)
    zones = [b.value("TZID") for b in root.blocks("VTIMEZONE")]
    used = {
        value
        for block in root.walk()
        if block.name != "VTIMEZONE"
        for line in block.lines()
        for value in line.param("TZID") or ()
    }
    assert sorted(zones) == sorted(used)


CHANGES = {
    "subject": {"subject": "Quarterly review (moved)"},
    "time": {"start_time": "14:00:00", "end_time": "15:30:00"},
    "all-day": {"start_time": None, "end_time": None},
    "location": {"location": "Head office", "location_geocoded": {"lat": 40.7, "lng": -74.0, "address": "NYC"}},
    "done": {"done": True},
}


class TestClientAdditionsSurvive:
    """Every shape a real client writes survives a CRM change byte for byte, and its removal sticks."""

    @pytest.mark.parametrize("change", CHANGES, ids=str)
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
    @pytest.mark.parametrize("kind", ["event", "todo"])
    def test_additions_survive_a_crm_change(self, shape: Shape, change: str, kind: str) -> None:
        """After merging a changed rendering, each addition is still there and the CRM's change came through."""
        act = EVENT if kind == "event" else TASK
        current = add_shape(with_lines(render(act), OUR_ALARM), shape)
        desired = render(act, **CHANGES[change])
        merged = merge(current, desired)
        assert_kept(merged, shape.fragments())
        assert owned_hash(merged) == owned_hash(desired)
        assert merge(merged, desired) == merged
        assert_valid(merged)

    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
    def test_all_shapes_at_once(self, shape: Shape) -> None:
        """All clients' additions together survive too (one object edited by several apps)."""
        current = render()
        for each in SHAPES:
            current = add_shape(current, each)
        merged = merge(current, render(subject="Renamed"))
        for each in SHAPES:
            assert_kept(merged, each.fragments())
        assert_valid(merged)

    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
    def test_removed_additions_stay_removed(self, shape: Shape) -> None:
        """A user who deletes their additions in the calendar does not get them back on the next change."""
        first = merge(add_shape(render(), shape), render(subject="One"))
        fragments = set(shape.fragments())
        root = parse(first)  # the user deletes, in the calendar, all they had added
        main = main_component(root)
        assert main is not None
        main.items = [i for i in main.items if (i.raw not in fragments if isinstance(i, Line) else is_apex_alarm(i))]
        root.items = [
            i for i in root.items
            if (i.raw not in fragments if isinstance(i, Line) else i is main or i.name == "VTIMEZONE")
        ]
        removed = to_bytes(root)
        assert removed != first
        again = merge(removed, render(subject="Two"))
        assert again == render(subject="Two")
        distinctive = [f for f in fragments if not f.startswith(("BEGIN:", "END:")) and f not in render().decode()]
        assert distinctive
        for fragment in distinctive:
            assert fragment in first.decode()
            assert fragment not in again.decode()

    def test_removing_one_of_two_user_alarms(self) -> None:
        """Deleting the Thunderbird alarm keeps the Apple one, and the next merge does not restore it."""
        both = add_shape(add_shape(render(), THUNDERBIRD), APPLE)
        without_tb = both.replace(b"BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;VALUE=DURATION:-PT15M\r\nDESCRIPTION:Default Mozilla Description\r\nEND:VALARM\r\n", b"")
        assert without_tb != both
        merged = merge(without_tb, render(subject="Renamed"))
        assert b"Default Mozilla Description" not in merged
        assert_kept(merged, APPLE.fragments())

    def test_no_additions_gives_the_rendering_itself(self) -> None:
        """With nothing of the user's in the copy, the result is our rendering byte for byte."""
        for path in sorted(GOLDEN.glob("*.ics")):
            data = path.read_bytes()
            assert merge(data, data) == data
            assert merge(render(), data) == data
            assert not has_foreign(data)

    def test_server_rewritten_copy_keeps_its_own_form(self) -> None:
        """Lines of a copy the server refolded and re-quoted are kept in the server's form."""
        current = REWRITES["quote-all"](REWRITES["refold-tab"](add_shape(render(), EVOLUTION)))
        merged = merge(current, render(subject="Renamed"))
        held = [line.raw for line in main_component(parse(current)).lines() if line.name == "ATTENDEE"]  # type: ignore[union-attr]
        assert len(held) == 1
        assert_kept(merged, held)
        assert "\r\n\t" in held[0] or '"' in held[0]


class TestOwnedContent:
    """What is ours is replaced: the user's edits of it are reverted on the CRM's next change."""

    def test_user_edits_of_owned_properties_are_reverted(self) -> None:
        """SUMMARY, LOCATION, DESCRIPTION and CATEGORIES edited in the calendar go back to the CRM's."""
        desired = render(subject="New")
        current = (
            render()
            .replace(b"SUMMARY:Quarterly review", b"SUMMARY:My own title")
            .replace(b"CATEGORIES:Meeting", b"CATEGORIES:Meeting,Personal")
        )
        merged = merge(add_shape(current, THUNDERBIRD), desired)
        assert b"SUMMARY:New\r\n" in merged
        assert b"My own title" not in merged
        assert b"Personal" not in merged
        assert_kept(merged, THUNDERBIRD.fragments())

    def test_owned_property_absent_from_rendering_is_removed(self) -> None:
        """Switching to busy privacy removes DESCRIPTION, LOCATION, GEO from the copy, keeping the user's lines."""
        current = add_shape(render(location_geocoded={"lat": 40.7, "lng": -74.0, "address": "NYC"}), APPLE)
        desired = render(opts=MappingOptions(timezone="America/New_York", privacy="busy"))
        merged = merge(current, desired)
        for name in (b"DESCRIPTION", b"LOCATION", b"GEO:", b"X-APPLE-STRUCTURED-LOCATION", b"CATEGORIES", b"URL:"):
            assert b"\r\n" + name not in merged
        assert_kept(merged, APPLE.fragments())

    def test_duration_and_recurrence_added_by_a_client_are_removed(self) -> None:
        """A client's DURATION (instead of DTEND), RRULE and overrides go: the CRM activity happens once."""
        uid = "apexcal-27-101@api.achieveapex.com"
        current = with_lines(
            render().replace(b"DTEND;TZID=America/New_York:20250612T110000\r\n", b""),
            "DURATION:PT2H\r\nRRULE:FREQ=WEEKLY\r\nEXDATE;TZID=America/New_York:20250619T100000\r\n",
        ).replace(
            b"END:VCALENDAR",
            f"BEGIN:VEVENT\r\nUID:{uid}\r\nRECURRENCE-ID;TZID=America/New_York:20250626T100000\r\n"
            "DTSTART;TZID=America/New_York:20250626T120000\r\nDTSTAMP:20250601T093015Z\r\nEND:VEVENT\r\nEND:VCALENDAR".encode(),
        )
        merged = merge(current, render(subject="Renamed"))
        assert merged == render(subject="Renamed")

    def test_our_alarms_are_updated_and_keep_the_users_acknowledgement(self) -> None:
        """Our VALARM takes the new trigger; ACKNOWLEDGED and Apple's X-WR-ALARMUID a client added stay."""
        held_alarm = OUR_ALARM.replace(
            "END:VALARM", "ACKNOWLEDGED:20250612T094501Z\r\nX-WR-ALARMUID:apexcal-alarm-0a1b2c3d@api.achieveapex.com\r\nEND:VALARM"
        )
        current = with_lines(render(), held_alarm)
        desired = with_lines(render(subject="New"), OUR_ALARM.replace("-PT15M", "-PT5M"))
        merged = merge(current, desired)
        alarms = list(main_component(parse(merged)).blocks("VALARM"))  # type: ignore[union-attr]
        assert len(alarms) == 1
        assert [line.text for line in alarms[0].lines()] == [
            "UID:apexcal-alarm-0a1b2c3d@api.achieveapex.com",
            "ACTION:DISPLAY",
            "TRIGGER;RELATED=START:-PT5M",
            "DESCRIPTION:Reminder",
            "X-APEX-ALARM:-15m",
            "ACKNOWLEDGED:20250612T094501Z",
            "X-WR-ALARMUID:apexcal-alarm-0a1b2c3d@api.achieveapex.com",
        ]
        assert owned_hash(merged) == owned_hash(desired)

    @pytest.mark.parametrize(
        "held_alarm",
        [
            OUR_ALARM,
            OUR_ALARM.replace("X-APEX-ALARM:-15m\r\n", ""),  # a client dropped our marker, the UID remains
            OUR_ALARM.replace("UID:apexcal-alarm-0a1b2c3d@api.achieveapex.com\r\n", "UID:E1F2\r\n"),  # marker remains
        ],
        ids=["marked", "marker-dropped", "uid-replaced"],
    )
    def test_our_alarms_no_longer_rendered_are_removed_users_stay(self, held_alarm: str) -> None:
        """Alarms we stopped rendering go; the user's alarms stay."""
        current = add_shape(with_lines(render(), held_alarm), THUNDERBIRD)
        merged = merge(current, render())
        assert b"Reminder" not in merged
        assert_kept(merged, THUNDERBIRD.fragments())

    def test_alarm_added_when_rendered_first_time(self) -> None:
        """A new alarm of ours is added beside the user's, not instead of it."""
        merged = merge(add_shape(render(), APPLE), with_lines(render(), OUR_ALARM))
        assert len(list(main_component(parse(merged)).blocks("VALARM"))) == 2  # type: ignore[union-attr]
        assert_kept(merged, APPLE.fragments())

    def test_attendees(self) -> None:
        """Our marked attendees and organizer replace their earlier selves; people the user invited stay."""
        ours_old = (
            "ORGANIZER;X-APEX-OWNED=TRUE;SCHEDULE-AGENT=CLIENT;CN=Al:mailto:al@example.com\r\n"
            "ATTENDEE;X-APEX-OWNED=TRUE;SCHEDULE-AGENT=CLIENT;CN=Old:mailto:old@example.com\r\n"
        )
        users = "ATTENDEE;CN=Friend;PARTSTAT=ACCEPTED:mailto:friend@example.com\r\n"
        unmarked_copy = "ATTENDEE;CN=Jo M.:MAILTO:Jo@Example.com\r\n"  # a client dropped the mark of ours
        ours_new = (
            "ORGANIZER;X-APEX-OWNED=TRUE;SCHEDULE-AGENT=CLIENT;CN=Bea:mailto:bea@example.com\r\n"
            "ATTENDEE;X-APEX-OWNED=TRUE;SCHEDULE-AGENT=CLIENT;CN=Jo:mailto:jo@example.com\r\n"
        )
        merged = merge(with_lines(render(), ours_old + users + unmarked_copy), with_lines(render(), ours_new))
        text = unfolded(merged)
        assert "old@example.com" not in text
        assert "al@example.com" not in text
        assert text.count("ORGANIZER") == 1
        assert text.lower().count("jo@example.com") == 1
        assert_kept(merged, [users.removesuffix("\r\n")])
        assert_valid(merged)

    def test_users_organizer_stays_when_we_write_none(self) -> None:
        """Without attendees of ours, the user's ORGANIZER and ATTENDEEs are theirs."""
        users = "ORGANIZER;CN=Me:mailto:me@example.com\r\nATTENDEE;CN=Friend:mailto:friend@example.com\r\n"
        merged = merge(with_lines(render(), users), render(subject="x"))
        assert_kept(merged, users.strip().split("\r\n"))

    def test_component_kind_change_keeps_x_properties_and_alarms(self) -> None:
        """An event that becomes a to-do keeps the user's X- properties, alarms and RELATED-TO, not TRANSP."""
        current = render(TASK, MappingOptions(tasks_as="events"))
        for shape in (APPLE, THUNDERBIRD, JTX):
            current = add_shape(current, shape)
        desired = render(TASK, MappingOptions(tasks_as="todos"))
        merged = merge(current, desired)
        assert b"BEGIN:VTODO" in merged
        assert b"BEGIN:VEVENT" not in merged
        assert b"TRANSP" not in merged
        kept = APPLE.fragments() + THUNDERBIRD.fragments() + JTX.fragments()
        assert_kept(merged, [f for f in kept if f != "TRANSP:OPAQUE"])
        assert owned_hash(merged) == owned_hash(desired)
        assert merge(merged, desired) == merged
        assert_valid(merged)
        back = merge(merged, render(TASK, MappingOptions(tasks_as="events")))
        assert_kept(back, [f for f in kept if f != "TRANSP:OPAQUE"])
        assert_valid(back)


class TestTimezones:
    """Exactly one VTIMEZONE per TZID used: ours for our zone, the server's for a user's."""

    def test_zone_change_replaces_our_vtimezone(self) -> None:
        """Moving the source to Berlin drops New York's VTIMEZONE and adds Berlin's."""
        merged = merge(add_shape(render(), THUNDERBIRD), render(opts=MappingOptions(timezone="Europe/Berlin")))
        assert b"TZID:America/New_York" not in merged
        assert merged.count(b"BEGIN:VTIMEZONE") == 1
        assert_valid(merged)

    def test_users_zone_stays_while_used(self) -> None:
        """A VTIMEZONE the user's own line needs is kept; it goes once that line is gone."""
        merged = merge(add_shape(render(), ODDITIES), render(opts=MappingOptions(timezone="UTC")))
        assert b"TZID:Europe/Paris" in merged
        assert b"TZID:America/New_York" not in merged
        assert_valid(merged)
        gone = merged.replace(b"X-ACME-LOCAL;TZID=Europe/Paris:20250612T100000\r\n", b"")
        assert b"TZID:Europe/Paris" not in merge(gone, render(opts=MappingOptions(timezone="UTC")))

    def test_server_copy_of_our_zone_is_replaced(self) -> None:
        """A server-side (or stale) definition of our TZID gives way to ours: one block, our text."""
        ours = render()
        stale = ours.replace(b"RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", b"RRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=1SU")
        assert merge(stale, ours) == ours


class TestInputs:
    """What merge accepts and refuses."""

    def test_desired_as_icalendar_component(self) -> None:
        """A lone VEVENT from map_activity merges like the mapping's bytes."""
        component = map_activity(activity(**EVENT), TYPES, NY)
        current = add_shape(render(), APPLE)
        assert merge(current, component) == merge(current, render())

    def test_unreadable_copy_is_a_clear_error(self) -> None:
        """A copy that is not an iCalendar object raises ContentLineError naming the line."""
        with pytest.raises(ContentLineError, match="line 3: END:VCALENDAR closes VEVENT"):
            merge(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", render())

    def test_rendering_without_component_is_refused(self) -> None:
        """A rendering with no VEVENT/VTODO is a programming error."""
        with pytest.raises(ValueError, match="no VEVENT or VTODO"):
            merge(render(), b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")

    def test_has_foreign(self) -> None:
        """has_foreign tells whether a copy holds anything not ours."""
        assert not has_foreign(with_lines(render(), OUR_ALARM))
        assert has_foreign(with_lines(render(), OUR_ALARM.replace("END:VALARM", "ACKNOWLEDGED:20250101T000000Z\r\nEND:VALARM")))
        for shape in SHAPES:
            assert has_foreign(add_shape(render(), shape))


# --- property-based -------------------------------------------------------------------

_names = st.from_regex(r"X-(?!APEX-)[A-Z]{1,8}(-[A-Z0-9]{1,6})?", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=120)


@st.composite
def user_lines(draw: st.DrawFn) -> str:
    """A client's X- property, possibly with a quoted parameter, folded the client's way."""
    name = draw(_names)
    param = draw(st.sampled_from(["", ";X-P=v", ';X-LABEL="a;b:c"', ";VALUE=TEXT"]))
    line = f"{name}{param}:{draw(_values)}"
    width = draw(st.integers(20, 200))
    cont = draw(st.sampled_from([" ", "\t"]))
    pieces = [line[:width]] + [line[i : i + width] for i in range(width, len(line), width)]
    return "\r\n".join([pieces[0], *(cont + p for p in pieces[1:])])


@st.composite
def held_copies(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A server's copy: an old rendering, client shapes and random X- lines, maybe rewritten by the server."""
    base = draw(mapped_objects())
    if draw(st.booleans()):
        base = with_lines(base, OUR_ALARM)
    rewrite = draw(st.sampled_from(["none", "refold-40", "quote-all", "shuffle"]))
    if rewrite != "none":
        base = REWRITES[rewrite](base)
    shapes = draw(st.lists(st.sampled_from([THUNDERBIRD, APPLE, TASKS_ORG, JTX, EVOLUTION]), max_size=3, unique=True))
    for shape in shapes:
        base = add_shape(base, shape)
    extra = draw(st.lists(user_lines(), max_size=4))
    if extra:
        base = with_lines(base, "".join(e + "\r\n" for e in extra))
    if draw(st.booleans()):
        base = shuffle_properties(base, draw(st.integers(0, 100)))
    fragments = [f for s in shapes for f in s.fragments()] + extra
    return base, fragments


class TestMergeProperties:
    """Invariants over any copy and any rendering."""

    @SETTINGS
    @given(held=held_copies(), desired=mapped_objects())
    def test_invariants(self, held: tuple[bytes, list[str]], desired: bytes) -> None:
        """Additions kept byte for byte, owned content ours, idempotent, valid for icalendar."""
        current, fragments = held
        same_kind = main_component(parse(current)).name == main_component(parse(desired)).name  # type: ignore[union-attr]
        assume(same_kind)
        merged = merge(current, desired)
        assert_kept(merged, fragments)
        assert owned_hash(merged) == owned_hash(desired)
        assert merge(merged, desired) == merged
        # Re-serialised by the server in between, the copy still merges to the same owned content.
        assert owned_hash(merge(REWRITES["vobject"](merged), desired)) == owned_hash(desired)

    @SETTINGS
    @given(desired=mapped_objects(), old=mapped_objects())
    def test_without_additions_the_result_is_the_rendering(self, desired: bytes, old: bytes) -> None:
        """A copy holding only our content (of any earlier rendering) merges to the rendering itself."""
        assert merge(old, desired) == desired


def test_dates_in_the_past_are_kept_too() -> None:
    """A user's snooze in the past stays (merge does not judge values of the user's lines)."""
    current = with_lines(render(), "X-MOZ-SNOOZE-TIME:19991231T235959Z\r\n")
    assert b"X-MOZ-SNOOZE-TIME:19991231T235959Z" in merge(current, render(start_date=date(2030, 1, 1)))


def test_merge_modules_import_no_io_library() -> None:
    """The ownership, merge, alarm and content-line modules stay pure (no network, database or scheduler)."""
    code = (
        "import sys, apexcal.ical.contentlines, apexcal.ical.ownership, apexcal.ical.merge, apexcal.ical.alarms; "
        "print(','.join(m for m in ('httpx', 'caldav', 'sqlalchemy', 'apscheduler', 'structlog') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


_CLIENT_SHAPES = [THUNDERBIRD, APPLE, TASKS_ORG, JTX, EVOLUTION]
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("crm"), st.sampled_from(sorted(CHANGES)), st.sampled_from([[], ["-15m"], ["-5m", "09:00"]])),
        st.tuples(st.just("add"), st.sampled_from(_CLIENT_SHAPES), st.just([])),
        st.tuples(st.just("remove"), st.sampled_from(_CLIENT_SHAPES), st.just([])),
    ),
    min_size=1,
    max_size=8,
)


def _without(data: bytes, shape: Shape) -> bytes:
    """``data`` after the client deleted its additions (its lines, its alarms and components)."""
    fragments = set(shape.fragments())

    def theirs(item: Line | Block) -> bool:
        if isinstance(item, Line):
            return item.raw in fragments
        return not is_apex_alarm(item) and all(line.raw in fragments for line in item.lines())

    root = parse(data)
    main = main_component(root)
    assert main is not None
    for block in (root, main):
        block.items = [item for item in block.items if not theirs(item)]
    return to_bytes(root)


class TestMergeSequences:
    """Any sequence of CRM changes and client edits: the object holds exactly what each side last left."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=_steps)
    def test_sequence(self, steps: list[tuple[str, object, list[str]]]) -> None:
        """After every step, our content is the last rendering and the user's additions are those not removed."""
        def rendering(change: str, triggers: list[str]) -> bytes:
            component = map_activity(activity(**{**EVENT, **CHANGES.get(change, {})}), TYPES, NY)
            for alarm in alarms_for(component, triggers, timezone="America/New_York"):
                component.add_component(alarm)
            return calendar_bytes(component, "America/New_York")

        desired = rendering("", [])
        held = desired
        present: set[str] = set()
        for op, arg, triggers in steps:
            if op == "crm":
                assert isinstance(arg, str)
                desired = rendering(arg, triggers)
                held = merge(held, desired)
            elif op == "add" and isinstance(arg, Shape) and arg.name not in present:
                held = add_shape(held, arg)
                present.add(arg.name)
            elif op == "remove" and isinstance(arg, Shape) and arg.name in present:
                held = _without(held, arg)
                present.discard(arg.name)
            assert owned_hash(held) == owned_hash(desired)
            for shape in _CLIENT_SHAPES:
                distinctive = [f for f in shape.fragments() if f.startswith(("X-", "ACK", "RELATED", "COMMENT"))]
                for fragment in distinctive:
                    assert (fragment in held.decode()) is (shape.name in present), (shape.name, fragment)
        assert_valid(merge(held, desired))


_garbage_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "BEGIN:VCALENDAR", "END:VCALENDAR", "BEGIN:VEVENT", "END:VEVENT", "BEGIN:VALARM", "END:VALARM",
                "BEGIN:VTIMEZONE", "END:VTIMEZONE", "BEGIN:", "END:", "UID:apexcal-27-101@api.achieveapex.com",
                "GEO:nan;inf", "GEO:1", "TRIGGER:-P", "TRIGGER;VALUE=DATE-TIME:x", 'X-A;B="unterminated:v',
                "X-APEX-ALARM:", "UID:apexcal-alarm-x", "DTSTART;TZID=:1", "ATTENDEE;X-APEX-OWNED=:m", ";:", ":",
                " continued", "\tcontinued", "", "RECURRENCE-ID:1",
            ]
        ),
        st.text(st.characters(blacklist_characters="\r\n"), max_size=30),
    ),
    max_size=30,
)


class TestUnreadableCopies:
    """A copy of any shape either merges or raises ContentLineError; nothing else escapes."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(lines=_garbage_lines, ending=st.sampled_from(["\r\n", "\n", "\r"]))
    def test_only_content_line_errors(self, lines: list[str], ending: str) -> None:
        """Garbage, broken nesting and odd values never crash merge or owned_hash with another error."""
        data = ending.join(lines).encode("utf-8", errors="surrogatepass")
        self._check(data)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(lines=_garbage_lines)
    def test_odd_values_inside_a_readable_copy(self, lines: list[str]) -> None:
        """Odd values inside a well-nested copy: merge and owned_hash still raise nothing but ContentLineError."""
        body = [line for line in lines if not line.startswith(("BEGIN", "END"))]
        data = "\r\n".join(
            ["BEGIN:VCALENDAR", "BEGIN:VEVENT", "UID:apexcal-27-101@api.achieveapex.com", *body, "END:VEVENT", "END:VCALENDAR", ""]
        ).encode("utf-8", errors="surrogatepass")
        self._check(data)

    @staticmethod
    def _check(data: bytes) -> None:
        try:
            merged = merge(data, render())
        except ContentLineError:
            return
        assert owned_hash(merged) == owned_hash(render())
        owned_hash(data)
