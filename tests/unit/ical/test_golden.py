"""Golden files: representative activities compared byte for byte with reviewed .ics files.

Regenerate after an intended change with
``APEXCAL_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/ical/test_golden.py``,
then review the diff of ``tests/data/golden/`` by eye before committing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from apexcal.ical.mapping import MappingOptions, object_for
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden"
REGEN = os.environ.get("APEXCAL_REGEN_GOLDEN") == "1"

NY = {"lat": 40.7128, "lng": -74.006, "address": "New York, NY"}
PEOPLE = {
    "deal": {"id": 7, "name": "Acme renewal"},
    "contact": {"id": 8, "full_name": "Jo Martin"},
    "company": {"id": 9, "name": "Acme Inc"},
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "meeting-geocoded": (
        {"location": "Client Office", "location_geocoded": NY, "public_description": "Agenda: pricing", "note": "Bring the contract", **PEOPLE},
        {"timezone": "America/New_York"},
    ),
    "call-zoom-url": (
        {"activity_type": "call", "subject": "Discovery call", "location": "https://us02web.zoom.us/j/8123456789?pwd=abc"},
        {"timezone": "Europe/Berlin"},
    ),
    "call-online-no-url": (
        {"activity_type": "call", "location": "Online - Zoom", "location_geocoded": NY},
        {},
    ),
    "all-day": (
        {"start_time": None, "end_time": None, "subject": "Trade fair"},
        {"timezone": "Europe/Berlin"},
    ),
    "multi-day": (
        {"start_time": None, "end_time": None, "end_date": "2025-06-15", "subject": "Offsite"},
        {},
    ),
    "task-open-todo": (
        {"activity_type": "task", "subject": "Send proposal", "end_time": None, "end_date": None},
        {"timezone": "America/New_York"},
    ),
    "task-done-todo": (
        {"activity_type": "task", "subject": "Send proposal", "done": True},
        {"timezone": "America/New_York"},
    ),
    "task-as-event": (
        {"activity_type": "task", "subject": "Send proposal", "done": True},
        {"tasks_as": "events"},
    ),
    "task-all-day-todo": (
        {"activity_type": "task", "subject": "Renew licence", "start_time": None, "end_time": None},
        {"timezone": "Europe/Berlin"},
    ),
    "task-multi-day-todo": (
        {"activity_type": "task", "subject": "Prepare audit", "start_time": None, "end_time": None, "end_date": "2025-06-14"},
        {},
    ),
    "task-undated-todo": (
        {"activity_type": "task", "start_date": None, "start_time": None, "end_date": None, "end_time": None},
        {},
    ),
    "unicode": (
        {"subject": "Überprüfung — 会议 😀 " * 4, "location": "Café Ümlaut, Zürich", "note": "Zeile 1\nZeile 2\tTab\x07"},
        {"timezone": "Europe/Zurich"},
    ),
    "privacy-full": (
        {"public_description": "Agenda", "note": "secret note", "location": "Client Office", **PEOPLE},
        {"privacy": "full"},
    ),
    "privacy-public": (
        {"public_description": "Agenda", "note": "secret note", "location": "Client Office", **PEOPLE},
        {"privacy": "public"},
    ),
    "privacy-busy": (
        {"public_description": "Agenda", "note": "secret note", "location": "Client Office", **PEOPLE},
        {"privacy": "busy"},
    ),
    "dst-gap": (
        {"start_date": "2025-03-09", "end_date": "2025-03-09", "start_time": "02:30:00", "end_time": "04:00:00"},
        {"timezone": "America/New_York"},
    ),
    "southern-hemisphere": (
        {"start_date": "2045-01-15", "end_date": "2045-01-15"},
        {"timezone": "Australia/Sydney"},
    ),
}


class TestGolden:
    """Mapped objects equal their reviewed golden files byte for byte."""

    @pytest.mark.parametrize("name", sorted(CASES))
    def test_object_matches_golden_file(self, name: str) -> None:
        """The mapped object for this case is exactly tests/data/golden/<name>.ics."""
        fields, options = CASES[name]
        data = object_for(activity(**fields), TYPES, MappingOptions(**options)).data
        parse_both(data)
        path = GOLDEN / f"{name}.ics"
        if REGEN:
            path.write_bytes(data)
        assert path.read_bytes() == data

    def test_every_golden_file_has_a_case(self) -> None:
        """No stale golden files are left behind."""
        assert sorted(p.stem for p in GOLDEN.glob("*.ics")) == sorted(CASES)
