"""What real calendar clients add to an object we wrote, as the server then holds it.

Each shape is the content a client adds: lines in the VEVENT/VTODO (user
VALARMs included), lines at the VCALENDAR level, and whole components.  The
lines are written the way those clients write them, folding included, so a
merge that keeps them byte for byte can be checked by plain substring tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRLF = "\r\n"


@dataclass(frozen=True, kw_only=True)
class Shape:
    """One client's additions to an object."""

    name: str
    component: str = ""
    """Raw lines (CRLF-terminated) added at the end of the VEVENT/VTODO."""
    calendar: str = ""
    """Raw lines added to the VCALENDAR after its own properties."""
    components: str = ""
    """Raw components added to the VCALENDAR after the object's component."""

    def fragments(self) -> list[str]:
        """Every added line (raw, as held), for byte-for-byte checks."""
        return [line for block in (self.component, self.calendar, self.components) for line in _lines(block)]


def _lines(block: str) -> list[str]:
    """Logical lines of a raw block, each with its folding as written."""
    return [m.group(0) for m in re.finditer(r"[^\r\n]+(?:\r\n[ \t][^\r\n]*)*", block)]


THUNDERBIRD = Shape(
    name="thunderbird",
    component=(
        "X-MOZ-LASTACK:20250612T094512Z\r\n"
        "X-MOZ-SNOOZE-TIME:20250612T095500Z\r\n"
        "X-MOZ-GENERATION:3\r\n"
        "BEGIN:VALARM\r\n"
        "ACTION:DISPLAY\r\n"
        "TRIGGER;VALUE=DURATION:-PT15M\r\n"
        "DESCRIPTION:Default Mozilla Description\r\n"
        "END:VALARM\r\n"
    ),
)

APPLE = Shape(
    name="apple",
    component=(
        "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r\n"
        "TRANSP:OPAQUE\r\n"
        "BEGIN:VALARM\r\n"
        "X-WR-ALARMUID:4D0B2E1C-8A5F-4B7E-9C3D-2F6A1E0B7C9D\r\n"
        "UID:4D0B2E1C-8A5F-4B7E-9C3D-2F6A1E0B7C9D\r\n"
        "TRIGGER:-PT30M\r\n"
        "ATTACH;VALUE=URI:Chord\r\n"
        "ACTION:AUDIO\r\n"
        "X-APPLE-DEFAULT-ALARM:TRUE\r\n"
        "ACKNOWLEDGED:20250612T093012Z\r\n"
        "END:VALARM\r\n"
    ),
    calendar="X-APPLE-CALENDAR-COLOR:#1BADF8\r\n",
)

TASKS_ORG = Shape(
    name="tasks.org",
    component=(
        "X-MOZ-SNOOZE-TIME:20250612T100500Z\r\n"
        "RELATED-TO;RELTYPE=PARENT:7f3c9a34-1b2d-4e5f-8a9b-0c1d2e3f4a5b\r\n"
        "PRIORITY:1\r\n"
        "X-APPLE-SORT-ORDER:734412345\r\n"
        "BEGIN:VALARM\r\n"
        "TRIGGER;RELATED=END:PT0S\r\n"
        "ACTION:DISPLAY\r\n"
        "DESCRIPTION:Default Tasks.org description\r\n"
        "END:VALARM\r\n"
    ),
)

JTX = Shape(
    name="jtx",
    component=(
        "RELATED-TO;RELTYPE=CHILD:c0ffee00-1111-2222-3333-444455556666\r\n"
        "X-MOZ-SNOOZE-TIME-1749722400000:20250612T100500Z\r\n"
        "COMMENT:Called back\\, left a message\r\n"
    ),
)

EVOLUTION = Shape(
    name="evolution",
    component=(
        "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=\r\n"
        " TRUE;CN=Jo Martin;LANGUAGE=en:mailto:jo@example.com\r\n"
        "X-EVOLUTION-CALDAV-HREF-HINT:kept-by-evolution\r\n"
        "BEGIN:VALARM\r\n"
        "X-EVOLUTION-ALARM-UID:20250612T094012Z-2731-1000-1-0@laptop\r\n"
        "ACTION:DISPLAY\r\n"
        "TRIGGER;VALUE=DURATION;RELATED=START:-PT10M\r\n"
        "DESCRIPTION:Quarterly review\r\n"
        "END:VALARM\r\n"
    ),
)

ODDITIES = Shape(
    name="oddities",
    component=(
        'X-ACME-NOTE;X-LABEL="a;b:c";LANGUAGE=de:Notiz mit Umlauten: äöü\\, und\r\n'
        "\t eine Faltung mit Tabulator\r\n"
        "X-ACME-LOCAL;TZID=Europe/Paris:20250612T100000\r\n"
        "BEGIN:X-ACME-PANEL\r\n"
        "X-STATE:open\r\n"
        "END:X-ACME-PANEL\r\n"
    ),
    calendar="X-WR-CALNAME:Jane's CRM\r\nX-ACME-SYNC;VALUE=TEXT:42\r\n",
    components=(
        "BEGIN:VTIMEZONE\r\n"
        "TZID:Europe/Paris\r\n"
        "BEGIN:STANDARD\r\n"
        "DTSTART:19701025T030000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
        "TZOFFSETFROM:+0200\r\n"
        "TZOFFSETTO:+0100\r\n"
        "END:STANDARD\r\n"
        "BEGIN:DAYLIGHT\r\n"
        "DTSTART:19700329T020000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"
        "TZOFFSETFROM:+0100\r\n"
        "TZOFFSETTO:+0200\r\n"
        "END:DAYLIGHT\r\n"
        "END:VTIMEZONE\r\n"
        "BEGIN:X-ACME-BLOB\r\n"
        "X-DATA:opaque\r\n"
        "END:X-ACME-BLOB\r\n"
    ),
)

SHAPES = (THUNDERBIRD, APPLE, TASKS_ORG, JTX, EVOLUTION, ODDITIES)


def add_shape(data: bytes, shape: Shape) -> bytes:
    """``data`` (one object) with a client's additions, placed where that client puts them."""
    text = data.decode("utf-8")
    for kind in ("VEVENT", "VTODO"):
        end = f"END:{kind}\r\n"
        if end in text:
            at = text.index(end)
            text = text[:at] + shape.component + text[at:]
            at = text.index(end) + len(end)
            text = text[:at] + shape.components + text[at:]
            break
    header_end = text.index("CALSCALE:GREGORIAN\r\n") + len("CALSCALE:GREGORIAN\r\n")
    text = text[:header_end] + shape.calendar + text[header_end:]
    return text.encode("utf-8")


def unfolded(data: bytes) -> str:
    """The object's text with folding undone (for checks that ignore folding)."""
    return re.sub(r"\r\n[ \t]", "", data.decode("utf-8"))
