"""The state store keyed per organization: the migration of a single-organization store, and isolation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from apexcal.state import ObjectRecord, Store
from apexcal.state.database import Database, make_engine
from apexcal.state.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_state_store import backend, db_url, pg_url
from tests.integration.test_sync_support import Harness, new_activity, new_task

__all__ = ["backend", "db_url", "pg_url"]  # fixtures shared with the store tests

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEYED = ("objects", "target_state", "writebacks", "feed_tokens", "feed_status")


def _rows(db: Database, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(columns[:2])}"  # noqa: S608  (names from the schema)
        return [tuple(r) for r in conn.execute(text(query))]


def _columns(db: Database, table: str) -> list[str]:
    from sqlalchemy import inspect

    return [c["name"] for c in inspect(db.engine).get_columns(table)]


@pytest.fixture
def sqlite_harness(emulator: EmulatorHandle, radicale_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    radicale_server.start()
    h = Harness(emulator=emulator, server=radicale_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()


class TestSingleOrganizationStoreMovesOver:
    def test_store_at_the_previous_revision_upgrades_and_the_next_cycle_writes_nothing(
        self, sqlite_harness: Harness
    ) -> None:
        """Rows of a store without organization keys keep every value; a cycle after the upgrade writes nothing."""
        h = sqlite_harness
        for i in range(4):
            new_activity(h.emulator, subject=f"Call {i}")
        new_task(h.emulator)
        h.add_target("a")
        assert h.cycle("a").created == 5
        h.store.add_feed_token("team", "a" * 64, "office", T0)
        h.store.set_feed_built("team", '"e1"', T0, 10)
        sent = h.store.journal_writebacks("a", [(1, True)], T0)
        h.store.mark_writebacks_sent(sent, T0)
        h.store.close()
        h._store = None
        db = Database(make_engine(h.database_url))
        try:
            # Back to the schema of the previous release: no organization column anywhere.
            with db.engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0001")
            assert current_revision(db) == "0001"
            assert all("organization" not in _columns(db, t) for t in KEYED)
            # Later revisions may add columns: compare the ones the old store had.
            columns = {t: _columns(db, t) for t in KEYED}
            before = {t: _rows(db, t, columns[t]) for t in KEYED}
            assert upgrade(db) == ("0001", head_revision())
            after = {t: _rows(db, t, columns[t]) for t in KEYED}
            with db.engine.connect() as conn:
                keys = {
                    t: set(conn.execute(text(f"SELECT DISTINCT organization FROM {t}")).scalars())  # noqa: S608
                    for t in KEYED
                }
        finally:
            db.dispose()
        assert after == before
        assert keys == {t: {""} for t in KEYED}
        objects_before = h.store.records("a")
        summary = h.cycle("a")
        assert (summary.created, summary.updated, summary.deleted, summary.adopted) == (0, 0, 0, 0)
        assert h.count("PUT") == h.count("DELETE") == 0
        assert h.store.records("a") == objects_before
        assert h.store.feed_for_token_hash("a" * 64) == "team"
        h.assert_converged("a")


class TestOrganizationsAreIsolated:
    def test_same_target_and_feed_names_in_two_organizations(self, db_url: str) -> None:
        """Two organizations may both have a target 'a' and a feed 'team': nothing is shared."""
        with Store.open(db_url) as store:
            acme, beta = store.for_organization("acme"), store.for_organization("beta")
            record = ObjectRecord(
                target="a", uid="u1", activity_id=1, href="u1.ics", etag='"1"',
                pushed_hash="h", pushed_done=False, done_seen=False, kind="event", updated_at=T0,
            )
            acme.put_record(record)
            acme.record_success("a", T0, {"created": 1})
            acme.journal_writebacks("a", [(1, True)], T0)
            acme.add_feed_token("team", "b" * 64, None, T0)
            acme.set_feed_built("team", '"x"', T0, 1)
            assert beta.records("a") == {}
            assert store.records("a") == {}
            assert acme.records("a") == {"u1": record}
            assert beta.target_state("a").last_success_at is None
            assert [s.target for s in acme.all_target_states()] == ["a"]
            assert beta.all_target_states() == []
            assert beta.count_pending_writebacks() == 0
            assert acme.count_pending_writebacks("a") == 1
            assert beta.feed_for_token_hash("b" * 64) is None
            assert acme.feed_for_token_hash("b" * 64) == "team"
            assert beta.feed_status("team") is None
            assert beta.revoke_feed_tokens("team") == 0
            beta.put_record(record)
            beta.forget_target("a")
            assert acme.records("a") == {"u1": record}
            assert acme.organization == "acme"
            assert store.organization == ""

    def test_locks_of_one_target_name_in_two_organizations_are_distinct(self, db_url: str) -> None:
        """Target 'a' of one organization never makes target 'a' of another busy."""
        from apexcal.state import TargetBusy

        with Store.open(db_url) as store:
            acme, beta = store.for_organization("acme"), store.for_organization("beta")
            with (
                acme.target_lock("a"),
                beta.target_lock("a"),
                store.target_lock("a"),
                pytest.raises(TargetBusy),
                acme.for_organization("acme").target_lock("a"),
            ):
                pass
