"""``attendees = true`` on CalDAV targets, against each real server with the emulator as the API.

The objects carry the assigned user as ORGANIZER and ATTENDEE and the
contact as ATTENDEE, every line with ``SCHEDULE-AGENT=CLIENT``; no server
creates a scheduling message for them.  Cyrus and DAViCal schedule
(RFC 6638): the organizer and the attendee are the addresses of the server's
own accounts (alice owns the calendar, bob is the contact), so implicit
scheduling would deliver a request to bob's schedule inbox (and a reply or
cancellation to alice's) on the server itself; both inboxes must stay as
they were through a create, an update and a delete, also for an object
whose organizer has no account on the server.  Radicale and Xandikos
have no scheduling inbox.
"""

from __future__ import annotations

import re
import uuid
from xml.etree import ElementTree

import httpx

from apexcal.apex.people import forget_all
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.integration.test_sync_support import Harness, harness, new_activity

__all__ = ["harness"]

_DAV = "{DAV:}"
_CAL = "{urn:ietf:params:xml:ns:caldav}"
_PRINCIPAL_PROPS = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" '
    b'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:schedule-inbox-URL/>'
    b"<c:calendar-user-address-set/><d:current-user-principal/></d:prop></d:propfind>"
)
_LIST = b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'


def _propfind(server: CalDAVServerHandle, user: str, url: str, body: bytes, depth: str) -> ElementTree.Element:
    r = httpx.request(
        "PROPFIND", url, content=body, auth=server.auth_for(user),
        headers={"Depth": depth, "Content-Type": "application/xml; charset=utf-8"}, timeout=10.0,
    )
    assert r.status_code == 207, f"PROPFIND {url} answered {r.status_code}: {r.text[:300]}"
    return ElementTree.fromstring(r.content)  # noqa: S314 - a test server; expat >= 2.4 refuses entity expansion


def _scheduling(server: CalDAVServerHandle, user: str) -> tuple[str | None, str | None]:
    """``user``'s schedule inbox URL and mailto: address, when the server schedules."""
    root = _propfind(server, user, server.home_url(user), _PRINCIPAL_PROPS, "0")
    principal = root.find(f".//{_DAV}current-user-principal/{_DAV}href")
    if principal is not None and principal.text:
        url = str(httpx.URL(server.home_url(user)).join(principal.text.strip()))
        root = _propfind(server, user, url, _PRINCIPAL_PROPS, "0")
    inbox = root.find(f".//{_CAL}schedule-inbox-URL/{_DAV}href")
    mailto = [
        (h.text or "").strip()
        for h in root.iterfind(f".//{_CAL}calendar-user-address-set/{_DAV}href")
        if (h.text or "").strip().lower().startswith("mailto:")
    ]
    inbox_url = str(httpx.URL(server.home_url(user)).join(inbox.text.strip())) if inbox is not None and inbox.text else None
    return inbox_url, (mailto[0][len("mailto:"):] if mailto else None)


def _inbox(server: CalDAVServerHandle, user: str, url: str) -> set[str]:
    """The hrefs of the messages in a schedule inbox (the collection itself left out)."""
    root = _propfind(server, user, url, _LIST, "1")
    own = httpx.URL(url).path.rstrip("/")
    hrefs = {(h.text or "").strip() for h in root.iterfind(f"{_DAV}response/{_DAV}href")}
    return {h for h in hrefs if httpx.URL(url).join(h).path.rstrip("/") != own}


def _people(data: bytes) -> list[str]:
    text = data.decode().replace("\r\n ", "")
    return sorted(line for line in text.split("\r\n") if re.match(r"^(ATTENDEE|ORGANIZER)[;:]", line))


class TestAttendeesOnTargets:
    def test_people_written_without_any_scheduling_message(self, harness: Harness) -> None:
        """Create, a second cycle, a CRM change and a deletion: attendees there, no inbox gets a message."""
        server, e = harness.server, harness.emulator
        forget_all()  # the emulator reuses ids after its reset: emails the process knows are another test's
        alice_inbox, alice_address = _scheduling(server, "alice")
        bob_inbox, bob_address = _scheduling(server, "bob")
        owner = alice_address or "owner@example.com"
        guest = bob_address or "guest@example.com"
        if server.kind in ("cyrus", "davical"):
            assert all((alice_inbox, bob_inbox, alice_address, bob_address)), "the server schedules"
        inboxes = [(u, url) for u, url in (("alice", alice_inbox), ("bob", bob_inbox)) if url]
        before = {url: _inbox(server, user, url) for user, url in inboxes}

        user_id = 90_000 + uuid.uuid4().int % 9_000
        e.state.add_user(
            id=user_id, full_name="Alice Owner", email=owner, organizations=[e.org_id],
            token=f"attendees-{uuid.uuid4().hex}",
        )
        contact = e.state.add_contact(organization_id=e.org_id, full_name="Bob Guest", email=guest)
        meeting = new_activity(
            e, subject="Kick-off", assigned_to_user_id=user_id, contact_id=contact
        )
        no_email = e.state.add_contact(organization_id=e.org_id, full_name="Nomail Person", email=None)
        other = new_activity(e, subject="Call", activity_type="call", assigned_to_user_id=user_id, contact_id=no_email)
        # An organizer who has no account on the server (the CRM user's address is elsewhere).
        outsider = user_id + 1
        e.state.add_user(
            id=outsider, full_name="Ext Organizer", email="ext.organizer@example.net",
            organizations=[e.org_id], token=f"attendees-{uuid.uuid4().hex}",
        )
        foreign = new_activity(e, subject="Visit", assigned_to_user_id=outsider, contact_id=contact)
        harness.sync = {"reconcile_interval": "0s"}
        harness.add_target("a", attendees=True)

        assert harness.cycle("a").ok
        objects = {obj.data.decode().split("X-APEX-ACTIVITY-ID:")[1].split("\r\n")[0]: obj.data
                   for obj in harness.remote("a").values()}
        people = _people(objects[str(meeting)])
        assert len(people) == 3, people
        for line in people:
            assert "SCHEDULE-AGENT=CLIENT" in line.upper(), line
            assert "X-APEX-OWNED=TRUE" in line.upper(), line
        assert sum(1 for line in people if line.startswith("ORGANIZER")) == 1
        assert any(line.lower().endswith(f"mailto:{guest}".lower()) and "Bob Guest" in line for line in people)
        assert any(line.startswith("ORGANIZER") and line.lower().endswith(f"mailto:{owner}".lower()) for line in people)
        # A contact without an email is no attendee; the user still is.
        assert [line.split(";")[0] for line in _people(objects[str(other)])] == ["ATTENDEE", "ORGANIZER"]
        assert len(_people(objects[str(foreign)])) == 3
        # One single-activity read per person at most, never one per activity.
        assert sum(1 for r in harness.api_requests if "/activities/:id" in r) <= 4

        # The second cycle writes nothing: what the server stored hashes as what we render.
        summary = harness.cycle("a", force=True)
        assert summary.ok
        assert harness.count("PUT") == 0
        assert harness.count("DELETE") == 0

        # An attendee the user invites in their calendar app is theirs: it stays through a CRM change.
        held = harness.object_of("a", meeting)
        friend = "ATTENDEE;CN=Friend;PARTSTAT=NEEDS-ACTION:mailto:friend@example.org"
        edited = held.data.replace(b"END:VEVENT", friend.encode() + b"\r\nEND:VEVENT")
        assert harness.put_raw("a", held.href, edited, held.etag).status_code in (200, 201, 204)
        e.state.patch_activity(meeting, {"subject": "Kick-off (moved)"})
        assert harness.cycle("a").ok
        assert harness.count("PUT") == 1
        people = _people(harness.object_of("a", meeting).data)
        assert len(people) == 4, people
        assert any(line.lower().endswith("mailto:friend@example.org") and "X-APEX" not in line for line in people)
        e.state.delete_activity(meeting)
        assert harness.cycle("a", force=True).ok
        assert harness.count("DELETE") == 1

        after = {url: _inbox(server, user, url) for user, url in inboxes}
        assert after == before, f"scheduling messages appeared: { {u: after[u] - before[u] for u in after} }"
