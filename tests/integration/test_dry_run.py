"""``apexcal sync --dry-run [--json]``: the plan of each target, and nothing written anywhere.

Run as the real command against the emulator and Radicale (what the command
does is not server-specific; the reads it makes are those of a cycle): after CRM changes and a completion ticked in the calendar, the dry run
names the create, the update (with the owned properties that change), the
delete and the writeback; the calendar, the CRM and every row of the state
store are exactly as before; a real cycle then does what it said.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from apexcal.state.scratch import scratch_store
from apexcal.sync.dry_run import preview_target
from tests.integration.test_sync_cli import rad, sync
from tests.integration.test_sync_postgres import pg
from tests.integration.test_sync_support import Harness, completed_like, new_activity, new_task

pytestmark = pytest.mark.caldav
__all__ = ["pg", "rad"]


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite store, sorted."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # Table names read from sqlite_master itself, not from input.
        rows = {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}  # noqa: S608
    db.close()
    return rows


def _world(h: Harness) -> tuple[object, ...]:
    """The calendar (href → etag), the CRM's activities and the store's rows."""
    with h.sink("a") as sink:
        listing = sink.listing()
    return listing, h.emulator.state.activities(h.emulator.org_id), _rows(h.tmp / "state.db")


class TestDryRun:
    def test_the_plan_is_printed_and_nothing_changes(self, rad: Harness) -> None:
        """Create, update, delete and writeback are listed; calendar, CRM and store are untouched; a cycle then does them."""
        moved = new_activity(rad.emulator, subject="Quarterly review")
        leaving = new_activity(rad.emulator, subject="Handover")
        task = new_task(rad.emulator)
        rad.add_target("a", filter={"assigned_to_user_id": 46})
        rad.cycle("a")

        rad.emulator.state.patch_activity(moved, {"subject": "Moved review"})
        rad.emulator.state.patch_activity(leaving, {"assigned_to_user_id": 45})
        fresh = new_activity(rad.emulator, subject="Kick-off")
        obj = rad.object_of("a", task)
        assert rad.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 201, 204)
        leaving_href = rad.object_of("a", leaving).href
        config = rad.config_file()
        before = _world(rad)

        result = sync(config, "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        (plan,) = json.loads(result.stdout)["targets"]
        assert plan["error"] is None
        assert [c["activity_id"] for c in plan["creates"]] == [fresh]
        (update,) = plan["updates"]
        assert update["activity_id"] == moved
        assert "SUMMARY" in update["changes"]
        assert [d["href"] for d in plan["deletes"]] == [leaving_href]
        assert plan["writebacks"] == [{"activity_id": task, "done": True, "pending": False}]
        text = sync(config, "--dry-run")
        assert text.returncode == 0, text.stderr
        assert f"create activity {fresh} " in text.stdout
        assert f"update activity {moved} " in text.stdout
        assert _world(rad) == before

        summary = rad.cycle("a")
        # The written-back to-do is also rewritten, with the SEQUENCE of the CRM's answer.
        assert (summary.created, summary.updated, summary.deleted, summary.written_back) == (1, 2, 1, 1)

    def test_a_tick_on_a_to_do_leaving_the_target_is_listed(self, rad: Harness) -> None:
        """Ticked, then reassigned away: the dry run names its writeback beside its delete."""
        task = new_task(rad.emulator)
        rad.add_target("a", filter={"assigned_to_user_id": 46})
        rad.cycle("a")
        obj = rad.object_of("a", task)
        assert rad.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).is_success
        rad.emulator.state.patch_activity(task, {"assigned_to_user_id": 45})
        result = sync(rad.config_file(), "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        (plan,) = json.loads(result.stdout)["targets"]
        assert [d["href"] for d in plan["deletes"]] == [obj.href]
        assert plan["writebacks"] == [{"activity_id": task, "done": True, "pending": False}]

    def test_postgres_state_is_rolled_back(self, pg: Harness) -> None:
        """On PostgreSQL the dry run's pull and plan happen in a transaction that is rolled back."""
        moved = new_activity(pg.emulator, subject="Quarterly review")
        pg.add_target("a")
        pg.cycle("a")
        pg.emulator.state.patch_activity(moved, {"subject": "Moved review"})
        org = pg.emulator.org_id

        def state() -> tuple[object, ...]:
            store = pg.store
            return list(store.iter_activities(org)), store.records("a"), store.target_state("a"), store.mirror_seq(org)

        before = state()
        with scratch_store(pg.store) as scratch:
            preview = preview_target(pg.config, pg.config.target("a"), scratch, client=pg.client)
            assert list(scratch.iter_activities(org)) != before[0]  # the scratch store did pull
        assert [u["activity_id"] for u in preview.updates] == [moved]
        assert state() == before
        assert pg.cycle("a").updated == 1
