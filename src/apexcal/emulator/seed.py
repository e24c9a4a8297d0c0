"""Realistic, deterministic sample activities for the emulator.

The same ``(organization, count, seed, anchor)`` always gives the same records.
They cover what a calendar export has to get right: every live type of the
organization, timed, all-day and multi-day activities, end given by time or by
duration only, locations with and without geocodes, online meetings with Zoom,
Meet, Teams and Webex URLs and "Online - Zoom" without one, unicode and very
long notes, done and open ones, several assignees, deals, contacts and companies.
Dates lie from 60 days before to 120 days after ``anchor``; ``created_at`` and
``updated_at`` lie before the anchor, and about one record in twenty shares its
``updated_at`` with the previous one, as rows of a bulk import do.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apexcal.apex.models import format_timestamp, type_key

if TYPE_CHECKING:
    from apexcal.emulator.state import EmulatorState

_COMPANIES = [
    ("Acme Corp", "https://acmecorp.com"),
    ("Globex", "https://globex.example"),
    ("Initech", None),
    ("Umbrella Logistics", "https://umbrella-logistics.example"),
    ("Société Générale des Eaux", "https://sge.example.fr"),
    ("Müller & Söhne GmbH", "https://mueller-soehne.example.de"),
    ("東京トレーディング株式会社", None),
    ("Stark Industries", "https://stark.example"),
]
_PEOPLE = [
    "Alex Johnson",
    "Priya Natarajan",
    "Zoë Lefèvre",
    "Björn Ólafsson",
    "Chen Jing",
    "Fatima Al-Sayed",
    "Łukasz Wiśniewski",
    "O'Brien, Siobhán",
    "José Ángel Ruiz",
    "Ngozi Okafor",
]
_STAGES = ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
_DEALS = [
    "Enterprise Solution",
    "Renewal 2026",
    "Pilot project",
    "Support upgrade",
    "Expansion – EMEA",
]

# (location text, geocode or None)
_PLACES: list[tuple[str | None, dict[str, Any] | None]] = [
    (None, None),
    ("Client Office", {"lat": 40.7128, "lng": -74.0060, "address": "New York, NY"}),
    ("HQ, Conference Room B", {"lat": 37.7749, "lng": -122.4194, "address": "San Francisco, CA"}),
    (
        "Café de Flore",
        {"lat": 48.8541, "lng": 2.3326, "address": "172 Bd Saint-Germain, 75006 Paris, France"},
    ),
    ("Warehouse 4; Gate C", {"lat": 51.5072, "lng": -0.1276, "address": None}),
    ("Online - Zoom", None),
    ("Online - Zoom", {"lat": 37.7749, "lng": -122.4194, "address": "San Francisco, CA"}),
    ("https://zoom.us/j/91234567890?pwd=QWxhZGRpbjpvcGVuIHNlc2FtZQ", None),
    ("Google Meet: https://meet.google.com/abc-defg-hij", None),
    (
        "Microsoft Teams https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjE2%40thread.v2/0",
        None,
    ),
    ("https://acme.webex.com/meet/jsmith", None),
    ("Zoom Meeting", None),
    ("Customer site", {"lat": 35.6762, "lng": 139.6503, "address": "東京都千代田区"}),
    ("Kyiv office", {"lat": 50.4501, "lng": 30.5234, "address": "Київ, Україна"}),
]
_SUBJECTS = {
    "call": [
        "Sales Follow-up Call",
        "Check-in call with {who}",
        "Pricing call – {company}",
        "☎️ Quick sync",
    ],
    "email": ["Send proposal to {company}", "Reply to {who}", "Follow-up email: contract draft"],
    "meeting": [
        "Product Demo",
        "Quarterly review with {company}",
        "Kick-off: {deal}",
        "Réunion d'équipe",
    ],
    "task": [
        "Prepare quote for {company}",
        "Update CRM notes",
        "Send NDA, invoice & SOW",
        "Renew certificates",
    ],
    "customer_training": [
        "Onboarding training for {company}",
        "Admin workshop (advanced)",
        "Schulung: Berichte",
    ],
}
_NOTES = [
    None,
    "Discuss new product features and pricing",
    'Agenda:\n1. Intro\n2. Demo, Q&A; next steps\n3. Pricing, "special" terms',
    "Bring the signed NDA. Parking at the back, code 4711.",
    "Kunde möchte Rückruf – Ärger über Lieferung. 客户希望回电。 🚚",
    "Private: the champion is leaving the company in June; keep it quiet.",
]
_LONG = (
    "Detailed meeting minutes. Lorem ipsum dolor sit amet, consectetur adipiscing elit; "
    "sed do eiusmod tempor, incididunt ut labore et dolore magna aliqua — ünïcödé ✓. "
)


def generate(
    state: EmulatorState, org_id: int, count: int, *, seed: int, anchor: date
) -> list[dict[str, Any]]:
    """``count`` activity records for ``org_id`` (no ids; the state assigns them)."""
    rng = random.Random(f"{seed}:{org_id}")
    members = sorted(u["id"] for u in state.users.values() if org_id in u["organizations"]) or [
        None
    ]
    keys = sorted(type_key(t["name"]) for t in state.activity_types(org_id)) or ["call"]
    companies, contacts, deals = _references(state, org_id, rng)
    anchor_dt = datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC)
    records = []
    previous_update: str | None = None
    for _ in range(count):
        kind = rng.choice(keys)
        company = rng.choice(companies) if rng.random() < 0.7 else None
        contact = rng.choice(contacts) if rng.random() < 0.6 else None
        deal = rng.choice(deals) if rng.random() < 0.5 else None
        names = {
            "who": state.contacts[contact]["full_name"] if contact else "the customer",
            "company": state.companies[company]["name"] if company else "a prospect",
            "deal": state.deals[deal]["name"] if deal else "new deal",
        }
        subject = rng.choice(_SUBJECTS.get(kind, ["{company}: " + kind.replace("_", " ")])).format(
            **names
        )
        start = anchor + timedelta(days=rng.randint(-60, 120))
        record: dict[str, Any] = {
            "organization_id": org_id,
            "created_by_user_id": rng.choice(members),
            "assigned_to_user_id": rng.choice(members) if rng.random() < 0.9 else None,
            "subject": subject,
            "note": _note(rng),
            "public_description": rng.choice(
                [None, "Brief call to discuss product updates", "Product demonstration", subject]
            ),
            "deal_id": deal,
            "contact_id": contact,
            "company_id": company,
            "activity_type": kind,
            "done": rng.random() < (0.5 if start < anchor else 0.05),
            "deleted_at": None,
        }
        location, geo = rng.choice(_PLACES)
        record["location"] = location
        record["location_geocoded"] = dict(geo) if geo else None
        record.update(_timing(rng, start))
        created = anchor_dt - timedelta(
            days=rng.randint(1, 120), milliseconds=rng.randint(0, 86_399_999)
        )
        if previous_update is not None and rng.random() < 0.05:
            updated = previous_update
            created = min(created, datetime.fromisoformat(updated.replace("Z", "+00:00")))
        else:
            updated = format_timestamp(
                created + timedelta(milliseconds=rng.randint(0, 10 * 86_400_000))
            )
            updated = min(updated, format_timestamp(anchor_dt))
        record["created_at"] = min(format_timestamp(created), updated)
        record["updated_at"] = updated
        previous_update = updated
        records.append(record)
    return records


_LONG_NOTES = {n: _LONG * n for n in range(40, 161, 8)}  # 6-25 kB, shared between records


def _note(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.03:
        return _LONG_NOTES[rng.randrange(40, 161, 8)]
    return rng.choice(_NOTES)


def _timing(rng: random.Random, start: date) -> dict[str, Any]:
    shape = rng.random()
    hour, minute = rng.randint(7, 18), rng.choice([0, 15, 30, 45])
    duration = rng.choice([15, 30, 45, 60, 90, 120])
    begin = datetime(start.year, start.month, start.day, hour, minute)
    if shape < 0.55:  # timed, same day, end given
        end = begin + timedelta(minutes=duration)
        if end.date() != start:
            end = datetime(start.year, start.month, start.day, 23, 59)
            duration = int((end - begin).total_seconds() // 60)
        return _times(start, begin, end.date(), end, duration)
    if shape < 0.65:  # timed, end only by duration
        return {
            "start_date": start.isoformat(),
            "start_time": _hms(begin),
            "end_date": None,
            "end_time": None,
            "duration": duration,
        }
    if shape < 0.85:  # all day
        return {
            "start_date": start.isoformat(),
            "start_time": None,
            "end_date": rng.choice([None, start.isoformat()]),
            "end_time": None,
            "duration": None,
        }
    if shape < 0.95:  # multi-day, all day
        last = start + timedelta(days=rng.randint(1, 4))
        return {
            "start_date": start.isoformat(),
            "start_time": None,
            "end_date": last.isoformat(),
            "end_time": None,
            "duration": None,
        }
    last = start + timedelta(days=rng.randint(1, 3))  # multi-day, timed
    end = datetime(last.year, last.month, last.day, rng.randint(9, 17), 0)
    return _times(start, begin, last, end, int((end - begin).total_seconds() // 60))


def _hms(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"


def _times(
    start: date, begin: datetime, last: date, end: datetime, duration: int
) -> dict[str, Any]:
    return {
        "start_date": start.isoformat(),
        "start_time": _hms(begin),
        "end_date": last.isoformat(),
        "end_time": _hms(end),
        "duration": duration,
    }


def _references(
    state: EmulatorState, org_id: int, rng: random.Random
) -> tuple[list[int], list[int], list[int]]:
    """The organization's companies, contacts and deals, created on first use."""
    companies = [c["id"] for c in state.companies.values() if c["organization_id"] == org_id]
    if not companies:
        companies = [
            state.add_company(organization_id=org_id, name=n, website=w) for n, w in _COMPANIES
        ]
    contacts = [c["id"] for c in state.contacts.values() if c["organization_id"] == org_id]
    if not contacts:
        contacts = [
            state.add_contact(
                organization_id=org_id,
                full_name=name,
                email=rng.choice(
                    [
                        None,
                        name.lower().replace(" ", ".").replace(",", "").replace("'", "")
                        + "@example.com",
                    ]
                ),
            )
            for name in _PEOPLE
        ]
    deals = [d["id"] for d in state.deals.values() if d["organization_id"] == org_id]
    if not deals:
        deals = [
            state.add_deal(organization_id=org_id, name=n, stage=rng.choice(_STAGES))
            for n in _DEALS
        ]
    return companies, contacts, deals
