"""Attendees without invitations: ORGANIZER/ATTENDEE from the joined user and contact, marked as apexcal's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apexcal.ical.contentlines import Line, parse
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.ical.merge import merge
from apexcal.ical.ownership import is_owned_line, main_component, owned_hash
from apexcal.ical.people import mail_address
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.test_ownership import REWRITES

ON = MappingOptions(attendees=True)


def _people(data: bytes) -> list[Line]:
    main = main_component(parse(data))
    assert main is not None
    return [line for line in main.lines() if line.name in ("ATTENDEE", "ORGANIZER")]


def _with(user: dict[str, Any] | None = None, contact: dict[str, Any] | None = None, **fields: Any) -> Any:
    extra: dict[str, Any] = dict(fields)
    if user is not None:
        extra.update(assigned_to_user_id=user["id"], assigned_to_user=user)
    if contact is not None:
        extra.update(contact_id=contact["id"], contact=contact)
    return activity(**extra)


USER = {"id": 46, "full_name": "John Doe", "email": "john.doe@example.com"}
CONTACT = {"id": 456, "full_name": "Alex Johnson", "email": "alex.johnson@acmecorp.com"}


class TestRendering:
    def test_user_organizes_and_attends_contact_attends(self) -> None:
        data = object_for(_with(USER, CONTACT), TYPES, ON).data
        people = {(line.name, line.value, line.param("CN")[0] if line.param("CN") else None) for line in _people(data)}
        assert people == {
            ("ORGANIZER", "mailto:john.doe@example.com", "John Doe"),
            ("ATTENDEE", "mailto:john.doe@example.com", "John Doe"),
            ("ATTENDEE", "mailto:alex.johnson@acmecorp.com", "Alex Johnson"),
        }
        for line in _people(data):
            assert line.param("SCHEDULE-AGENT") == ["CLIENT"]
            assert line.param("X-APEX-OWNED") == ["TRUE"]
            assert is_owned_line("VEVENT", line)

    def test_off_by_default(self) -> None:
        assert _people(object_for(_with(USER, CONTACT), TYPES, MappingOptions()).data) == []

    @pytest.mark.parametrize("privacy", ["public", "busy"])
    def test_never_under_public_or_busy_privacy(self, privacy: str) -> None:
        options = MappingOptions(attendees=True, privacy=privacy)  # type: ignore[arg-type]
        assert _people(object_for(_with(USER, CONTACT), TYPES, options).data) == []

    def test_no_email_no_line(self) -> None:
        data = object_for(_with({**USER, "email": None}, {**CONTACT, "email": "not an address"}), TYPES, ON).data
        assert _people(data) == []
        data = object_for(_with({**USER, "email": ""}, CONTACT), TYPES, ON).data
        assert [(line.name, line.value) for line in _people(data)] == [
            ("ATTENDEE", "mailto:alex.johnson@acmecorp.com")
        ]

    def test_contact_with_the_users_address_is_not_repeated(self) -> None:
        data = object_for(_with(USER, {**CONTACT, "email": "JOHN.DOE@example.com"}), TYPES, ON).data
        assert sorted(line.name for line in _people(data)) == ["ATTENDEE", "ORGANIZER"]

    def test_todos_carry_them_too(self) -> None:
        data = object_for(_with(USER, CONTACT, activity_type="task"), TYPES, ON).data
        assert b"BEGIN:VTODO" in data
        assert len(_people(data)) == 3

    @pytest.mark.parametrize("name", ["\\", "x\\", "a\\b", "\\\\", 'Jo "Q" \\ Doe'])
    def test_a_backslash_in_a_name_survives_icalendar(self, name: str) -> None:
        """icalendar reads a CN's backslash as an escape (quoted or not): the CN carries a look-alike instead."""
        for kind in ("meeting", "task"):
            data = object_for(_with({**USER, "full_name": name}, None, activity_type=kind), TYPES, ON).data
            cns = {line.param("CN")[0] for line in _people(data)}
            assert cns == {name.replace('"', "'").replace("\\", "\uff3c")}
            people = [ln for ln in data.replace(b"\r\n ", b"").split(b"\r\n") if b";CN=" in ln]
            assert len(people) == 2
            assert not any(b"\\" in line for line in people)
            assert owned_hash(REWRITES["icalendar"](data)) == owned_hash(data)

    @pytest.mark.parametrize(
        ("email", "address"),
        [
            (" jane@example.com ", "mailto:jane@example.com"),
            ("alice@internal", "mailto:alice@internal"),
            ("a b@example.com", None),
            ("a@b@example.com", None),
            ("@example.com", None),
            ("jane@", None),
            ('"x"@example.com', None),
            ("jane@example.com\n", "mailto:jane@example.com"),
            ("ja\x00ne@example.com", None),
            ("x" * 250 + "@example.com", None),
            (None, None),
        ],
    )
    def test_mail_address(self, email: str | None, address: str | None) -> None:
        assert mail_address(email) == address


_NAMES = st.one_of(st.none(), st.text(max_size=40))
_EMAILS = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.emails(),
    st.sampled_from(["john.doe@example.com", "x@y", "a;b@example.com", "x,y@example.com"]),
)


@st.composite
def people_activities(draw: st.DrawFn) -> Any:
    user = {"id": 46, "full_name": draw(_NAMES), "email": draw(_EMAILS)} if draw(st.booleans()) else None
    contact = {"id": 456, "full_name": draw(_NAMES), "email": draw(_EMAILS)} if draw(st.booleans()) else None
    kind = draw(st.sampled_from(["meeting", "task"]))
    return _with(user, contact, activity_type=kind)


class TestProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(people_activities())
    def test_every_line_is_marked_and_has_a_usable_address(self, act: Any) -> None:
        data = object_for(act, TYPES, ON).data
        lines = _people(data)
        user = act.assigned_to_user
        contact = act.contact
        user_address = mail_address(user.email) if user else None
        contact_address = mail_address(contact.email) if contact else None
        expected = {a.lower() for a in (user_address, contact_address) if a}
        assert {line.value.lower() for line in lines if line.name == "ATTENDEE"} == expected
        assert len([line for line in lines if line.name == "ATTENDEE"]) == len(expected)
        assert [line.value for line in lines if line.name == "ORGANIZER"] == ([user_address] if user_address else [])
        for line in lines:
            assert line.param("SCHEDULE-AGENT") == ["CLIENT"]
            assert line.param("X-APEX-OWNED") == ["TRUE"]
            assert mail_address(line.value.removeprefix("mailto:")) == line.value

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(people_activities(), st.sampled_from(sorted(REWRITES)))
    def test_server_rewrites_keep_the_owned_hash(self, act: Any, rewrite: str) -> None:
        """What servers do to stored objects leaves the hash alone: a second cycle writes nothing."""
        data = object_for(act, TYPES, ON).data
        assert owned_hash(REWRITES[rewrite](data)) == owned_hash(data)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(people_activities())
    def test_user_added_attendees_survive_a_merge_and_do_not_change_the_hash(self, act: Any) -> None:
        data = object_for(act, TYPES, ON).data
        added = b"ATTENDEE;CN=Added By User;PARTSTAT=NEEDS-ACTION:mailto:friend@example.org\r\n"
        held = data.replace(b"END:VEVENT", added + b"END:VEVENT").replace(b"END:VTODO", added + b"END:VTODO")
        assert owned_hash(held) == owned_hash(data)
        changed = object_for(act.model_copy(update={"subject": "Renamed"}), TYPES, ON).data
        merged = merge(held, changed)
        assert added.rstrip(b"\r\n") in merged.replace(b"\r\n ", b"")
        assert owned_hash(merged) == owned_hash(changed)
        assert merge(merged, changed) == merged

    def test_ours_replace_the_users_line_for_the_same_address_and_organizer(self) -> None:
        data = object_for(_with(USER, CONTACT), TYPES, ON).data
        theirs = (
            b"ATTENDEE;PARTSTAT=TENTATIVE:mailto:alex.johnson@acmecorp.com\r\n"
            b"ORGANIZER:mailto:someone@example.org\r\n"
        )
        held = data.replace(b"END:VEVENT", theirs + b"END:VEVENT")
        merged = merge(held, data)
        lines = _people(merged)
        assert [line.name for line in lines].count("ORGANIZER") == 1
        assert [line.value for line in lines].count("mailto:alex.johnson@acmecorp.com") == 1
        assert all(line.param("X-APEX-OWNED") == ["TRUE"] for line in lines)

    def test_attendees_off_again_removes_ours_keeps_theirs(self) -> None:
        data = object_for(_with(USER, CONTACT), TYPES, ON).data
        added = b"ATTENDEE:mailto:friend@example.org\r\n"
        held = data.replace(b"END:VEVENT", added + b"END:VEVENT")
        off = object_for(_with(USER, CONTACT), TYPES, MappingOptions()).data
        merged = merge(held, off)
        assert [line.value for line in _people(merged)] == ["mailto:friend@example.org"]
