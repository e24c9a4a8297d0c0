"""Reminders in feeds are opt-in: a feed carries apexcal's VALARMs only when it sets ``alarms``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from apexcal.apex.client import ApexClient
from apexcal.config import config_from_dict
from apexcal.feeds import build_all_feeds, feed_paths
from apexcal.state import Store
from apexcal.sync.pull import pull
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_feeds import ORG, TODAY, activity


def test_only_feeds_that_opt_in_carry_reminders(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """With [mapping.alarms] set, a plain feed has no VALARM; ``alarms = true`` and a table of its own do."""
    emulator.state.insert_activity(activity(1, activity_type="call"))
    feeds = [
        {"name": "plain"},
        {"name": "opted", "alarms": True},
        {"name": "own", "alarms": {"default": ["-1h"]}},
    ]
    for feed in feeds:
        feed["path"] = str(tmp_path / f"{feed['name']}.ics")
    config = config_from_dict(
        {
            "source": {"base_url": emulator.base_url, "token": emulator.token, "organization_id": ORG},
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "mapping": {"geocoder": "none", "alarms": {"default": ["-15m"], "call": ["-5m"]}},
            "feeds": feeds,
        }
    )
    with Store.open(config.state.url) as store, ApexClient(emulator.base_url, emulator.token, ORG) as client:
        pull(config, store, client, now=datetime.now(UTC), force_reconcile=True)
        build_all_feeds(config, store, today=TODAY)
    files = {name: path.read_bytes() for name, path in feed_paths(config).items()}
    assert b"BEGIN:VALARM" not in files["plain"]
    assert b"X-APEX-ALARM:-5m\r\n" in files["opted"]
    assert b"X-APEX-ALARM:-1h\r\n" in files["own"]
    assert files["own"].count(b"BEGIN:VALARM") == 1
