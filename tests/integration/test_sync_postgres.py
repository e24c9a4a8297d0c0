"""The sync engine with its state in PostgreSQL (run when ``APEXCAL_TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import Harness, completed_like, new_activity, new_task

PG_ENV = "APEXCAL_TEST_POSTGRES_URL"


@pytest.fixture
def pg(emulator: EmulatorHandle, radicale_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on Radicale whose state store is a fresh PostgreSQL schema, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"apexcal_sync_{uuid.uuid4().hex[:12]}"
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    radicale_server.start()
    h = Harness(
        emulator=emulator,
        server=radicale_server,
        tmp=tmp_path,
        state_url=url.render_as_string(hide_password=False),
    )
    try:
        yield h
    finally:
        h.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}", "{schema}_procrastinate" CASCADE'))
        admin.dispose()


class TestPostgresState:
    """Everything a cycle records works the same on PostgreSQL."""

    def test_sync_update_and_writeback_on_postgres(self, pg: Harness) -> None:
        """Initial sync, one change (one PUT), a completion written back, then a quiet cycle."""
        ids = [new_activity(pg.emulator, subject=f"Call {i}") for i in range(5)]
        task = new_task(pg.emulator)
        pg.add_target("a")
        assert pg.cycle("a").created == 6
        pg.emulator.state.patch_activity(ids[0], {"subject": "Call moved"})
        assert pg.cycle("a").updated == 1
        assert pg.count("PUT") == 1
        obj = pg.object_of("a", task)
        assert pg.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 204)
        assert pg.cycle("a").written_back == 1
        assert pg.emulator.state.get(task)["done"] is True
        pg.cycle("a")
        assert pg.count("PUT") == 0
        pg.assert_converged("a")
