"""The state store's schema: migrations from empty to head, models matching them, and ``apexcal db``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from apexcal.state import Store
from apexcal.state.database import Database, make_engine
from apexcal.state.migrate import alembic_config, current_revision, head_revision, upgrade
from apexcal.state.tables import Base
from tests.integration.test_state_store import backend, db_url, pg_url

__all__ = ["backend", "db_url", "pg_url"]  # fixtures shared with the store tests

TABLES = {
    "activities",
    "activity_types",
    "feed_bodies",
    "feed_status",
    "feed_tokens",
    "geocode_cache",
    "mirror_state",
    "objects",
    "target_state",
    "writebacks",
}


class TestMigrations:
    def test_empty_database_upgrades_to_head_with_every_table(self, db_url: str) -> None:
        """Upgrading an empty database reaches head and creates every table."""
        db = Database(make_engine(db_url))
        try:
            assert current_revision(db) is None
            before, after = upgrade(db)
            assert (before, after) == (None, head_revision())
            assert current_revision(db) == head_revision()
            names = set(inspect(db.engine).get_table_names())
            assert names >= TABLES | {"alembic_version"}
            assert upgrade(db) == (head_revision(), head_revision())
        finally:
            db.dispose()

    def test_models_match_the_migrations(self, db_url: str) -> None:
        """Autogenerate finds no difference between the migrated schema and the table models."""
        db = Database(make_engine(db_url))
        try:
            upgrade(db)
            with db.engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                diff = compare_metadata(context, Base.metadata)
        finally:
            db.dispose()
        assert diff == []

    def test_downgrade_to_base_and_upgrade_again(self, db_url: str) -> None:
        """The migrations can be undone completely and redone."""
        db = Database(make_engine(db_url))
        try:
            upgrade(db)
            with db.engine.begin() as conn:
                command.downgrade(alembic_config(conn), "base")
            assert set(inspect(db.engine).get_table_names()) & TABLES == set()
            upgrade(db)
            assert set(inspect(db.engine).get_table_names()) >= TABLES
        finally:
            db.dispose()

    def test_workers_opening_at_once_migrate_exactly_once(self, db_url: str) -> None:
        """Several stores opening a fresh database at the same time all succeed."""
        errors: list[BaseException] = []

        def opener() -> None:
            try:
                Store.open(db_url).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        with Store.open(db_url) as store:
            assert store.schema_revision() == head_revision()


def _apexcal(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    return subprocess.run(
        [sys.executable, "-m", "apexcal", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


class TestDbCommand:
    def test_db_upgrade_with_a_config_creates_the_database(self, tmp_path: Path) -> None:
        """``apexcal db upgrade --config`` migrates the config's SQLite file and says so."""
        state = tmp_path / "var" / "state.db"
        config = tmp_path / "apexcal.toml"
        config.write_text(
            "[source]\n"
            'base_url = "http://127.0.0.1:9"\n'
            "organization_id = 27\n"
            "\n[state]\n"
            f'url = "sqlite:///{state}"\n'
        )
        first = _apexcal("db", "upgrade", "--config", str(config), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert f"upgraded from empty to revision {head_revision()}" in first.stdout
        assert state.is_file()
        with Store.open(f"sqlite:///{state}", migrate_schema=False) as store:
            assert store.schema_revision() == head_revision()

    def test_db_upgrade_on_an_unusable_path_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """An operator error prints one line on stderr, no traceback, and exits 2."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        result = _apexcal("db", "upgrade", "--url", f"sqlite:///{blocker}/x/state.db", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        assert "cannot create the directory" in result.stderr
