"""The job queue's schema: created and dropped by the state migrations, beside the state's own schema."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from apexcal.state import Store
from apexcal.state.database import Database, make_engine
from apexcal.state.migrate import alembic_config, head_revision, upgrade
from apexcal.state.queue import queue_schema_name
from tests.integration.test_state_store import pg_url

__all__ = ["pg_url"]

QUEUE_TABLES = {"procrastinate_jobs", "procrastinate_workers", "procrastinate_events", "procrastinate_periodic_defers"}


def _schema_of(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())


class TestQueueSchema:
    def test_upgrade_creates_the_queue_in_its_own_schema_and_downgrade_drops_it(self, pg_url: str) -> None:
        """`db upgrade` creates procrastinate's tables in <schema>_procrastinate, none in the state's schema."""
        db = Database(make_engine(pg_url))
        try:
            upgrade(db)
            state_schema = _schema_of(db)
            queue = queue_schema_name(state_schema)
            assert queue == f"{state_schema}_procrastinate"
            inspector = inspect(db.engine)
            assert set(inspector.get_table_names(schema=queue)) == QUEUE_TABLES
            assert not set(inspector.get_table_names(schema=state_schema)) & QUEUE_TABLES
            assert upgrade(db)[0] == upgrade(db)[1]  # idempotent
            with db.engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0002")
            assert queue not in inspect(db.engine).get_schema_names()
            with db.engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")
            assert set(inspect(db.engine).get_table_names(schema=queue)) == QUEUE_TABLES
        finally:
            db.dispose()

    def test_public_schema_gets_the_plain_name(self) -> None:
        """Beside the default schema the queue is simply 'procrastinate'."""
        assert queue_schema_name("public") == "procrastinate"
        assert queue_schema_name("tenant_a") == "tenant_a_procrastinate"

    def test_sqlite_store_has_no_queue(self, tmp_path: object) -> None:
        """The queue revision is a no-op on SQLite: a store opens at head with no queue tables."""
        with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
            assert store.schema_revision() == head_revision()
