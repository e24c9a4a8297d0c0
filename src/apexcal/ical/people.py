"""The people of an activity as calendar addresses: the assigned user as ORGANIZER and ATTENDEE, the contact as ATTENDEE.

Used by :func:`~apexcal.ical.mapping.map_activity` with ``attendees`` on
(and ``full`` privacy); the rules are in :mod:`apexcal.ical.mapping`'s
docstring.  Every line is marked apexcal's own (:mod:`apexcal.ical.ownership`)
and carries ``SCHEDULE-AGENT=CLIENT``, so the server sends no invitation.
"""

from __future__ import annotations

import re

from icalendar import Event, Todo, vCalAddress

from apexcal.apex.models import Activity
from apexcal.ical.ownership import MARK_PARAM
from apexcal.ical.text import clean_line, param_text

_EMAIL = re.compile(r"^[^@\s\"<>()\[\]\\,;:]+@[^@\s\"<>()\[\]\\,;:]+$")
_EMAIL_MAX = 254


def mail_address(email: str | None) -> str | None:
    """``email`` as a ``mailto:`` calendar address, or ``None`` when it is not a usable address.

    Surrounding whitespace is dropped; anything with spaces, quotes, brackets,
    separators, not exactly one ``@`` with text on both sides, or longer than
    254 characters is not used (a wrong address is worse than none).
    """
    if email is None:
        return None
    text = email.strip()
    if len(text) > _EMAIL_MAX or not _EMAIL.match(text) or not text.isprintable():
        return None
    return f"mailto:{text}"


def _person(address: str, name: str | None, **params: str) -> vCalAddress:
    value = vCalAddress(address)
    cn = param_text(clean_line(name).replace('"', "'")) if name else ""  # no DQUOTE in a parameter value
    if cn:
        value.params["CN"] = cn
    for key, param in params.items():
        value.params[key.replace("_", "-")] = param
    value.params["SCHEDULE-AGENT"] = "CLIENT"
    value.params[MARK_PARAM] = "TRUE"
    return value


def add_people(component: Event | Todo, activity: Activity) -> None:
    """ORGANIZER and ATTENDEEs from the joined user and contact (see the module docstring)."""
    user = activity.assigned_to_user
    contact = activity.contact
    user_address = mail_address(user.email) if user else None
    contact_address = mail_address(contact.email) if contact else None
    if user_address is not None and user is not None:
        component.add("ORGANIZER", _person(user_address, user.full_name))
        component.add(
            "ATTENDEE",
            _person(user_address, user.full_name, CUTYPE="INDIVIDUAL", ROLE="CHAIR", PARTSTAT="ACCEPTED"),
        )
    if (
        contact_address is not None
        and contact is not None
        and (user_address is None or contact_address.lower() != user_address.lower())
    ):
        component.add(
            "ATTENDEE",
            _person(contact_address, contact.full_name, CUTYPE="INDIVIDUAL", ROLE="REQ-PARTICIPANT"),
        )
