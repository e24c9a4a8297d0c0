"""The state store's API on SQLite and on PostgreSQL (when APEXCAL_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from apexcal.apex.models import Activity, ActivityType, GeoPoint
from apexcal.errors import StateError, UserError
from apexcal.geocode.cache import CachedGeocoder, GeocodeCache, StoreGeocodeCache
from apexcal.state import (
    ObjectRecord,
    Store,
    StoreFailure,
    StoreUnavailable,
    TargetBusy,
    TokenGrant,
)
from apexcal.state.tables import Base

PG_ENV = "APEXCAL_TEST_POSTGRES_URL"
ORG = 27
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


# --- fixtures -------------------------------------------------------------------------


def _pg_schema_url() -> tuple[str, str, str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"apexcal_test_{uuid.uuid4().hex[:12]}"
    # Commits need not wait for the disk in tests: the database is thrown away.
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    url = make_url(base).update_query_dict({"options": options})
    return base, schema, url.render_as_string(hide_password=False)


@contextmanager
def _pg_schema() -> Iterator[str]:
    base, schema, url = _pg_schema_url()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}", "{schema}_procrastinate" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped after the test."""
    with _pg_schema() as url:
        yield url


@pytest.fixture(scope="module")
def pg_migrated_url() -> Iterator[str]:
    """A PostgreSQL schema migrated once for this module (tables are emptied per test)."""
    with _pg_schema() as url:
        Store.open(url).close()
        yield url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test runs on SQLite and on PostgreSQL."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file under a not-yet-existing directory, or a PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state/dir/state.db"
    url: str = request.getfixturevalue("pg_url")
    return url


class FakeClock:
    """A settable clock for the store's own timestamps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    migrate_schema = backend == "sqlite"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/state.db"
    else:
        url = request.getfixturevalue("pg_migrated_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            # DELETE, not TRUNCATE: on a handful of rows it is ten times faster.
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
    # The PostgreSQL schema was migrated once for the module.
    with Store.open(url, clock=clock, migrate_schema=migrate_schema) as opened:
        yield opened


def activity(activity_id: int, *, org: int = ORG, **fields: Any) -> Activity:
    """A valid activity with sensible defaults."""
    raw: dict[str, Any] = {
        "id": activity_id,
        "organization_id": org,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-02-01T00:00:00.000Z",
        "subject": f"Activity {activity_id}",
        "activity_type": "call",
        "assigned_to_user_id": 46,
        "start_date": "2025-03-10",
    }
    raw.update(fields)
    return Activity.model_validate(raw)


def activity_type(type_id: int, name: str, **fields: Any) -> ActivityType:
    raw: dict[str, Any] = {
        "id": type_id,
        "organization_id": ORG,
        "name": name,
        "color": "#3B82F6",
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
    }
    raw.update(fields)
    return ActivityType.model_validate(raw)


# --- opening -------------------------------------------------------------------------


class TestOpen:
    def test_open_migrates_an_empty_database_to_head(self, db_url: str) -> None:
        """Opening an empty database creates the schema at the newest revision."""
        from apexcal.state.migrate import head_revision

        with Store.open(db_url) as store:
            assert store.schema_revision() == head_revision()
            assert store.count_records("nobody") == 0

    def test_reopening_keeps_data(self, db_url: str) -> None:
        """A second open of a migrated database finds what the first stored."""
        with Store.open(db_url) as first:
            first.upsert_activities(ORG, [activity(1)], watermark=T0)
        with Store.open(db_url) as second:
            assert second.live_activity_ids(ORG) == {1}
            assert second.watermark(ORG) == T0

    def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(self, tmp_path: Path) -> None:
        """Every SQLite connection runs in WAL mode with foreign keys on and a busy timeout."""
        url = f"sqlite:///{tmp_path}/a/b/state.db"
        with Store.open(url) as store, store._db.read("pragmas") as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert (tmp_path / "a" / "b" / "state.db").is_file()

    def test_unreachable_server_is_an_operator_error_without_password(self) -> None:
        """A refused PostgreSQL connection raises StoreUnavailable that never shows the password."""
        with pytest.raises(StoreUnavailable) as info:
            Store.open("postgresql+psycopg://apex:s3cret-pw@127.0.0.1:1/state")
        assert isinstance(info.value, UserError)
        assert "s3cret-pw" not in str(info.value)
        assert "127.0.0.1" in str(info.value)

    @pytest.mark.postgres
    def test_plain_postgresql_url_uses_psycopg(self, pg_url: str) -> None:
        """A ``postgresql://`` URL without a driver name is served by psycopg 3."""
        plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with Store.open(plain) as store:
            assert store.dialect == "postgresql"
            assert store._db.engine.dialect.driver == "psycopg"

    def test_unsupported_database_is_refused(self) -> None:
        """A URL for a database other than SQLite or PostgreSQL is an operator error."""
        with pytest.raises(StoreUnavailable, match="unsupported database"):
            Store.open("mysql://root:pw@localhost/db")

    def test_unwritable_directory_is_an_operator_error(self, tmp_path: Path) -> None:
        """A SQLite path whose directory cannot be created is reported naming the directory."""
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        with pytest.raises(StoreUnavailable, match="cannot create the directory"):
            Store.open(f"sqlite:///{blocker}/sub/state.db")


# --- the mirror ----------------------------------------------------------------------


class TestUpsertActivities:
    def test_new_activities_are_written_and_reported_changed(self, store: Store) -> None:
        """Activities not yet mirrored are stored and listed as changed, in input order."""
        result = store.upsert_activities(ORG, [activity(3), activity(1)], watermark=T0)
        assert result.changed == (3, 1)
        assert result.unchanged == 0
        assert [a.id for a in store.activities(ORG)] == [1, 3]

    def test_unchanged_upsert_writes_nothing_and_keeps_the_change_sequence(
        self, store: Store
    ) -> None:
        """Re-upserting identical content changes no row and does not bump change_seq."""
        store.upsert_activities(ORG, [activity(1), activity(2)], watermark=T0)
        seq = store.mirror_seq(ORG)
        result = store.upsert_activities(ORG, [activity(1), activity(2)], watermark=T0)
        assert result.changed == ()
        assert result.unchanged == 2
        assert store.mirror_seq(ORG) == seq
        assert store.activities_changed_since(ORG, seq).empty
        with store._db.read("rows") as conn:
            seqs = conn.execute(text("SELECT DISTINCT change_seq FROM activities")).scalars().all()
        assert seqs == [seq]

    def test_changed_content_is_written_with_a_new_sequence(self, store: Store) -> None:
        """Only the activity whose content changed is rewritten, under a higher change_seq."""
        store.upsert_activities(ORG, [activity(1), activity(2)], watermark=T0)
        seq = store.mirror_seq(ORG)
        result = store.upsert_activities(
            ORG, [activity(1), activity(2, subject="Renamed")], watermark=T0
        )
        assert result.changed == (2,)
        assert result.unchanged == 1
        assert result.seq == seq + 1 == store.mirror_seq(ORG)
        changes = store.activities_changed_since(ORG, seq)
        assert [a.subject for a in changes.changed] == ["Renamed"]
        assert changes.seq == seq + 1

    def test_watermark_advances_with_the_rows_and_never_moves_back(self, store: Store) -> None:
        """The watermark follows the newest upsert and ignores an older or missing one."""
        assert store.watermark(ORG) is None
        store.upsert_activities(ORG, [activity(1)], watermark=T0)
        assert store.watermark(ORG) == T0
        store.upsert_activities(ORG, [activity(1)], watermark=T0 + timedelta(hours=1))
        assert store.watermark(ORG) == T0 + timedelta(hours=1)
        store.upsert_activities(ORG, [activity(2)], watermark=T0)
        store.upsert_activities(ORG, [activity(3)], watermark=None)
        assert store.watermark(ORG) == T0 + timedelta(hours=1)
        store.reset_watermark(ORG)
        assert store.watermark(ORG) is None

    def test_failed_upsert_rolls_back_rows_and_watermark(self, store: Store) -> None:
        """A row the database refuses mid-batch undoes the whole batch and leaves the watermark."""
        store.upsert_activities(ORG, [activity(1)], watermark=T0)
        seq = store.mirror_seq(ORG)
        invalid = activity(9).model_copy(update={"id": 0})  # violates the id > 0 check
        batch = [activity(1, subject="changed"), activity(2), invalid]
        with pytest.raises(StoreFailure) as info:
            store.upsert_activities(ORG, batch, watermark=T0 + timedelta(days=1))
        assert info.value.operation == "upsert activities"
        assert isinstance(info.value, StateError)
        assert store.watermark(ORG) == T0
        assert store.mirror_seq(ORG) == seq
        assert store.live_activity_ids(ORG) == {1}
        assert store.activities(ORG)[0].subject == "Activity 1"

    def test_duplicate_ids_in_one_batch_keep_the_last(self, store: Store) -> None:
        """A record seen twice while paging is stored once, as its latest version."""
        result = store.upsert_activities(
            ORG, [activity(1, subject="old"), activity(1, subject="new")], watermark=None
        )
        assert result.changed == (1,)
        assert store.activities(ORG, [1])[0].subject == "new"

    def test_activity_of_another_organization_is_refused(self, store: Store) -> None:
        """Upserting an activity under the wrong organization is a programming error."""
        with pytest.raises(ValueError, match="organization 28"):
            store.upsert_activities(ORG, [activity(1, org=28)], watermark=None)

    def test_organizations_are_kept_apart(self, store: Store) -> None:
        """The same activity id in two organizations makes two mirror rows and two sequences."""
        store.upsert_activities(ORG, [activity(1)], watermark=T0)
        store.upsert_activities(28, [activity(1, org=28)], watermark=None)
        assert store.live_activity_ids(28) == {1}
        assert store.watermark(28) is None
        assert store.mirror_seq(ORG) == 1
        assert store.mirror_seq(28) == 1
        assert store.count_activities(ORG) == 1


class TestDeletions:
    def test_mark_deleted_hides_activities_and_counts_only_live_ones(self, store: Store) -> None:
        """Deleted ids leave every live listing; already deleted or unknown ids are not counted."""
        store.upsert_activities(ORG, [activity(i) for i in (1, 2, 3)], watermark=T0)
        assert store.mark_deleted(ORG, [2, 3, 99]) == 2
        assert store.mark_deleted(ORG, [2]) == 0
        assert store.live_activity_ids(ORG) == {1}
        assert [a.id for a in store.activities(ORG)] == [1]
        assert [a.id for a in store.activities(ORG, [1, 2])] == [1]
        assert [a.id for a in store.iter_activities(ORG)] == [1]

    def test_deletions_appear_in_the_changes(self, store: Store) -> None:
        """A deletion bumps the sequence and is reported as a deleted id."""
        store.upsert_activities(ORG, [activity(1), activity(2)], watermark=T0)
        seq = store.mirror_seq(ORG)
        store.mark_deleted(ORG, [2])
        changes = store.activities_changed_since(ORG, seq)
        assert changes.deleted == (2,)
        assert changes.changed == ()
        assert changes.seq == seq + 1

    def test_mark_deleted_with_nothing_to_delete_keeps_the_sequence(self, store: Store) -> None:
        """A sweep that deletes nothing costs no sequence number."""
        store.upsert_activities(ORG, [activity(1)], watermark=T0)
        seq = store.mirror_seq(ORG)
        assert store.mark_deleted(ORG, [5]) == 0
        assert store.mark_deleted(ORG, []) == 0
        assert store.mirror_seq(ORG) == seq

    def test_upsert_revives_a_deleted_activity(self, store: Store) -> None:
        """An activity seen again after deletion (restored in the CRM) is live again."""
        store.upsert_activities(ORG, [activity(1)], watermark=T0)
        store.mark_deleted(ORG, [1])
        seq = store.mirror_seq(ORG)
        result = store.upsert_activities(ORG, [activity(1)], watermark=T0)
        assert result.changed == (1,)
        assert store.live_activity_ids(ORG) == {1}
        assert [a.id for a in store.activities_changed_since(ORG, seq).changed] == [1]

    def test_activity_arriving_with_deleted_at_is_stored_deleted(self, store: Store) -> None:
        """An API record carrying deleted_at is mirrored as deleted."""
        store.upsert_activities(
            ORG, [activity(1, deleted_at="2025-02-02T00:00:00.000Z")], watermark=None
        )
        assert store.live_activity_ids(ORG) == set()


class TestMirrorReads:
    def test_iter_activities_streams_every_live_activity_in_batches(self, store: Store) -> None:
        """Keyset batches return each live activity exactly once, in id order."""
        store.upsert_activities(ORG, [activity(i) for i in range(1, 11)], watermark=None)
        store.mark_deleted(ORG, [4])
        ids = [a.id for a in store.iter_activities(ORG, batch=3)]
        assert ids == [1, 2, 3, 5, 6, 7, 8, 9, 10]

    def test_activities_by_ids_returns_them_in_id_order(self, store: Store) -> None:
        """A lookup by ids returns the live ones found, by id, in many chunks."""
        store.upsert_activities(ORG, [activity(i) for i in range(1, 1201)], watermark=None)
        wanted = [*range(1200, 0, -2), 5000]
        found = store.activities(ORG, wanted)
        assert [a.id for a in found] == sorted(set(wanted) - {5000})
        assert found[0] == activity(2)

    def test_select_activities_filters_on_denormalised_columns(self, store: Store) -> None:
        """User, type, done and the date window filter without decoding every row."""
        store.upsert_activities(
            ORG,
            [
                activity(1, assigned_to_user_id=46, activity_type="call", start_date="2025-03-01"),
                activity(2, assigned_to_user_id=47, activity_type="task", done=True),
                activity(
                    3, start_date="2025-02-20", end_date="2025-03-02", activity_type="meeting"
                ),
                activity(4, start_date=None),
                activity(5, start_date="2025-05-01"),
            ],
            watermark=None,
        )

        def ids(**kw: Any) -> list[int]:
            return [a.id for a in store.select_activities(ORG, **kw)]

        assert ids(assigned_to_user_ids=[47]) == [2]
        assert ids(activity_types=["call", "meeting"]) == [1, 3, 4, 5]
        assert ids(done=True) == [2]
        assert ids(window=(date(2025, 3, 1), date(2025, 3, 31))) == [1, 2, 3]
        assert ids(window=(date(2025, 3, 3), date(2025, 3, 31))) == [2]

    def test_changes_since_an_old_position_cover_everything_after_it(self, store: Store) -> None:
        """Changes accumulate: a target that skipped cycles still sees every change once."""
        store.upsert_activities(ORG, [activity(1), activity(2), activity(3)], watermark=None)
        store.upsert_activities(ORG, [activity(2, subject="two")], watermark=None)
        store.mark_deleted(ORG, [3])
        everything = store.activities_changed_since(ORG, 0)
        assert [a.id for a in everything.changed] == [1, 2]
        assert everything.deleted == (3,)
        assert everything.seq == store.mirror_seq(ORG) == 3
        assert store.activities_changed_since(ORG, everything.seq).empty

    def test_last_reconcile_is_kept_per_organization(self, store: Store) -> None:
        """The reconcile time is stored and read back per organization."""
        assert store.last_reconcile(ORG) is None
        store.set_last_reconcile(ORG, T0)
        assert store.last_reconcile(ORG) == T0
        assert store.last_reconcile(28) is None


class TestActivityTypes:
    def test_types_are_keyed_by_type_key_and_report_changes(self, store: Store) -> None:
        """A listing is stored keyed by type_key(name); an identical listing reports no change."""
        listing = [activity_type(1, "Call"), activity_type(2, "Customer Training")]
        assert store.upsert_types(ORG, listing) is True
        assert store.upsert_types(ORG, listing) is False
        types = store.types(ORG)
        assert set(types) == {"call", "customer_training"}
        assert types["customer_training"].name == "Customer Training"

    def test_changed_type_is_rewritten(self, store: Store) -> None:
        """A colour change is a change."""
        store.upsert_types(ORG, [activity_type(1, "Call")])
        assert store.upsert_types(ORG, [activity_type(1, "Call", color="#FF0000")]) is True
        assert store.types(ORG)["call"].color == "#FF0000"

    def test_vanished_types_still_resolve_flagged_deleted(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A type missing from a later listing stays readable with deleted_at set."""
        store.upsert_types(ORG, [activity_type(1, "Call"), activity_type(2, "Demo")])
        clock.now = T0 + timedelta(hours=2)
        assert store.upsert_types(ORG, [activity_type(1, "Call")]) is True
        types = store.types(ORG)
        assert types["demo"].deleted_at == T0 + timedelta(hours=2)
        assert types["call"].deleted_at is None
        assert set(store.types(ORG, include_deleted=False)) == {"call"}
        assert store.upsert_types(ORG, [activity_type(1, "Call")]) is False

    def test_live_type_wins_over_a_deleted_one_with_the_same_key(self, store: Store) -> None:
        """A re-created type replaces the deleted one under the same key."""
        store.upsert_types(ORG, [activity_type(1, "Demo")])
        store.upsert_types(ORG, [activity_type(2, "demo", color="#00FF00")])
        assert store.types(ORG)["demo"].id == 2


# --- per-target records and state ----------------------------------------------------


def record(uid: str = "apexcal-27-1@x", **fields: Any) -> ObjectRecord:
    values: dict[str, Any] = {
        "target": "jane",
        "uid": uid,
        "activity_id": 1,
        "href": f"/cal/{uid}.ics",
        "etag": '"e1"',
        "pushed_hash": "a" * 64,
        "pushed_done": False,
        "done_seen": None,
        "kind": "VTODO",
    }
    values.update(fields)
    return ObjectRecord(**values)


class TestRecords:
    def test_put_record_inserts_then_replaces(self, store: Store, clock: FakeClock) -> None:
        """A record is stored with the store's time and replaced by a later put."""
        store.put_record(record())
        assert store.records("jane").get("apexcal-27-1@x") == record(updated_at=T0)
        clock.now = T0 + timedelta(minutes=1)
        store.put_record(record(etag='"e2"', done_seen=True))
        got = store.records("jane").get("apexcal-27-1@x")
        assert got is not None
        assert (got.etag, got.done_seen, got.updated_at) == ('"e2"', True, clock.now)
        assert store.count_records("jane") == 1

    def test_records_are_per_target(self, store: Store) -> None:
        """Two targets holding the same UID have separate records."""
        store.put_record(record())
        store.put_record(record(target="team", etag='"t"'))
        assert set(store.records("jane")) == {"apexcal-27-1@x"}
        assert store.records("team")["apexcal-27-1@x"].etag == '"t"'
        assert store.records("nobody").get("apexcal-27-1@x") is None

    def test_lookups_by_activity_and_href(self, store: Store) -> None:
        """Records are found by activity id and by href without listing the target."""
        for i in range(1, 6):
            store.put_record(record(uid=f"u{i}", activity_id=i))
        assert sorted(r.uid for r in store.records_for_activities("jane", [2, 4, 9])) == [
            "u2",
            "u4",
        ]
        found = store.records_for_hrefs("jane", ["/cal/u3.ics", "/cal/none.ics"])
        assert list(found) == ["/cal/u3.ics"]
        assert found["/cal/u3.ics"].activity_id == 3

    def test_delete_record_reports_whether_it_existed(self, store: Store) -> None:
        """Deleting a record removes it once."""
        store.put_record(record())
        assert store.delete_record("jane", "apexcal-27-1@x") is True
        assert store.delete_record("jane", "apexcal-27-1@x") is False
        assert store.count_records("jane") == 0


class TestTargetState:
    def test_a_target_never_run_has_defaults(self, store: Store) -> None:
        """An unknown target has no token, position 0 and no history."""
        state = store.target_state("jane")
        assert state.sync_token is None
        assert state.mirror_seq_seen == 0
        assert state.last_success_at is None
        assert state.consecutive_failures == 0
        assert store.all_target_states() == []

    def test_sync_token_and_mirror_position_are_kept(self, store: Store) -> None:
        """The sync token and mirror position round-trip, and None forgets the token."""
        store.set_sync_token("jane", "http://radicale.org/ns/sync/abc")
        store.set_mirror_seq_seen("jane", 42)
        state = store.target_state("jane")
        assert (state.sync_token, state.mirror_seq_seen) == ("http://radicale.org/ns/sync/abc", 42)
        store.set_sync_token("jane", None)
        assert store.target_state("jane").sync_token is None
        assert store.target_state("jane").mirror_seq_seen == 42

    def test_failures_count_up_and_success_resets(self, store: Store) -> None:
        """Consecutive failures accumulate; a success resets them and keeps its summary."""
        store.record_failure("jane", T0, "CalDAVTransportError", "connection refused")
        store.record_failure("jane", T0 + timedelta(minutes=5), "ServerError", "x" * 5000)
        failed = store.target_state("jane")
        assert failed.consecutive_failures == 2
        assert failed.last_error_kind == "ServerError"
        assert failed.last_error is not None
        assert len(failed.last_error) <= 2000
        assert failed.last_error_at == T0 + timedelta(minutes=5)
        store.record_success("jane", T0 + timedelta(minutes=10), {"put": 3, "deleted": 0})
        ok = store.target_state("jane")
        assert ok.consecutive_failures == 0
        assert ok.last_success_at == T0 + timedelta(minutes=10)
        assert ok.last_summary == {"put": 3, "deleted": 0}
        assert ok.last_error_kind == "ServerError"

    def test_all_target_states_lists_every_target_by_name(self, store: Store) -> None:
        """Every target that ever stored state is listed, sorted."""
        store.set_mirror_seq_seen("team", 1)
        store.record_success("jane", T0, {})
        assert [s.target for s in store.all_target_states()] == ["jane", "team"]

    def test_forget_target_drops_records_and_state(self, store: Store) -> None:
        """A target removed from the config leaves nothing behind."""
        store.put_record(record())
        store.set_sync_token("jane", "tok")
        store.forget_target("jane")
        assert store.count_records("jane") == 0
        assert store.all_target_states() == []


# --- writeback journal ---------------------------------------------------------------


class TestWritebackJournal:
    def test_journaled_entries_are_pending_in_order(self, store: Store) -> None:
        """New entries are pending, returned and listed oldest first."""
        ids = store.journal_writebacks("jane", [(1, True), (2, False)], T0)
        pending = store.pending_writebacks()
        assert [e.id for e in pending] == ids
        assert [(e.activity_id, e.done, e.status) for e in pending] == [
            (1, True, "pending"),
            (2, False, "pending"),
        ]
        assert pending[0].detected_at == T0
        assert store.count_pending_writebacks() == 2

    def test_a_newer_entry_supersedes_a_pending_one_for_the_same_activity(
        self, store: Store
    ) -> None:
        """Only the latest intent per activity and target stays pending."""
        (first,) = store.journal_writebacks("jane", [(1, True)], T0)
        store.journal_writebacks("team", [(1, True)], T0)
        (second,) = store.journal_writebacks("jane", [(1, False)], T0 + timedelta(minutes=1))
        jane = store.pending_writebacks("jane")
        assert [(e.id, e.done) for e in jane] == [(second, False)]
        assert store.writebacks([first])[0].status == "superseded"
        assert store.count_pending_writebacks("team") == 1

    def test_the_same_activity_twice_in_one_call_keeps_the_last(self, store: Store) -> None:
        """Within one call, the later entry for an activity supersedes the earlier."""
        ids = store.journal_writebacks("jane", [(1, True), (1, False)], T0)
        assert [e.id for e in store.pending_writebacks("jane")] == [ids[1]]

    def test_sent_entries_leave_the_pending_list(self, store: Store) -> None:
        """Marking sent stamps the time, counts the attempt, and affects pending entries only."""
        ids = store.journal_writebacks("jane", [(1, True), (2, True)], T0)
        assert store.mark_writebacks_sent([ids[0]], T0 + timedelta(seconds=5)) == 1
        assert store.mark_writebacks_sent([ids[0]], T0 + timedelta(seconds=9)) == 0
        sent = store.writebacks([ids[0]])[0]
        assert (sent.status, sent.sent_at, sent.attempts) == ("sent", T0 + timedelta(seconds=5), 1)
        assert [e.id for e in store.pending_writebacks()] == [ids[1]]

    def test_the_same_value_again_keeps_the_pending_entry(self, store: Store) -> None:
        """Journaling the value already pending keeps that entry and its attempt."""
        (first,) = store.journal_writebacks("jane", [(1, True)], T0)
        store.set_writeback_attempt([first], T0 + timedelta(seconds=1))
        assert store.journal_writebacks("jane", [(1, True)], T0 + timedelta(minutes=1)) == [first]
        (entry,) = store.pending_writebacks("jane")
        assert (entry.id, entry.in_doubt) == (first, True)

    def test_an_attempt_whose_answer_is_lost_leaves_the_entry_in_doubt(self, store: Store) -> None:
        """The attempt's start is kept when it may have been applied, cleared when it was not."""
        lost, refused = store.journal_writebacks("jane", [(1, True), (2, True)], T0)
        at = T0 + timedelta(seconds=5)
        assert store.set_writeback_attempt([lost, refused], at) == 2
        store.mark_writeback_failed([lost], "ReadError", in_doubt=True)
        store.mark_writeback_failed([refused], "400 BadRequest")
        by_id = {e.id: e for e in store.pending_writebacks("jane")}
        assert (by_id[lost].in_doubt, by_id[lost].sent_at) == (True, at)
        assert (by_id[refused].in_doubt, by_id[refused].sent_at) == (False, None)

    def test_an_overridden_entry_records_what_both_sides_held(self, store: Store) -> None:
        """Set aside as delivered then changed in the CRM: the record takes the entry's value."""
        store.put_record(record(kind="VTODO", pushed_done=False, done_seen=True))
        (entry_id,) = store.journal_writebacks("jane", [(1, True)], T0)
        assert store.mark_writebacks_overridden([entry_id]) == 1
        assert store.writebacks([entry_id])[0].status == "superseded"
        (rec,) = store.records("jane").values()
        assert (rec.pushed_done, rec.done_seen) == (True, True)

    def test_failed_attempts_stay_pending_with_the_error(self, store: Store) -> None:
        """A failed send keeps the entry pending, counting attempts and keeping the reason."""
        ids = store.journal_writebacks("jane", [(1, True)], T0)
        store.mark_writeback_failed(ids, "503 ServerError: try later")
        store.mark_writeback_failed(ids, "timeout")
        (entry,) = store.pending_writebacks("jane")
        assert (entry.attempts, entry.last_error) == (2, "timeout")


# --- caches and feeds ----------------------------------------------------------------


class CountingGeocoder:
    """A provider that knows one city and counts its lookups."""

    def __init__(self) -> None:
        self.calls = 0

    def lookup(self, query: str) -> GeoPoint | None:
        self.calls += 1
        if "austin" in query.lower():
            return GeoPoint(lat=30.27, lng=-97.74, address="Austin, TX")
        return None


class TestGeocodeCache:
    def test_hits_misses_and_expiry(self, store: Store) -> None:
        """A stored point and a stored miss are hits until they expire."""
        point = GeoPoint(lat=40.7, lng=-74.0, address="New York, NY")
        assert store.geocode_get("New York", T0) == (False, None)
        store.geocode_put("New York", point, T0 + timedelta(days=1))
        store.geocode_put("Nowhere", None, T0 + timedelta(hours=1))
        assert store.geocode_get("new  york", T0) == (True, point)
        assert store.geocode_get("Nowhere", T0) == (True, None)
        assert store.geocode_get("Nowhere", T0 + timedelta(hours=2)) == (False, None)
        assert store.geocode_purge(T0 + timedelta(hours=2)) == 1

    def test_store_adapter_serves_the_cached_geocoder(self, store: Store, clock: FakeClock) -> None:
        """Behind CachedGeocoder, each query reaches the provider once until its TTL ends."""
        cache: GeocodeCache = StoreGeocodeCache(
            store, ttl=timedelta(days=30), negative_ttl=timedelta(days=1), clock=clock
        )
        provider = CountingGeocoder()
        geocoder = CachedGeocoder(provider, cache)
        assert geocoder.lookup("Austin, TX") == GeoPoint(
            lat=30.27, lng=-97.74, address="Austin, TX"
        )
        assert geocoder.lookup("austin,  tx") is not None
        assert geocoder.lookup("Atlantis") is None
        assert geocoder.lookup("Atlantis") is None
        assert provider.calls == 2
        clock.now = T0 + timedelta(days=2)
        assert geocoder.lookup("Atlantis") is None
        assert geocoder.lookup("Austin, TX") is not None
        assert provider.calls == 3


class TestFeeds:
    def test_token_lookup_and_revocation(self, store: Store) -> None:
        """A token hash opens its feed until revoked; revoking one leaves the others."""
        a = store.add_feed_token("team", "a" * 64, "phone", T0)
        b = store.add_feed_token("team", "b" * 64, None, T0)
        store.add_feed_token("jane", "c" * 64, "laptop", T0)
        assert store.feed_for_token_hash("a" * 64) == "team"
        assert store.feed_for_token_hash("f" * 64) is None
        assert store.revoke_feed_tokens("team", a, at=T0 + timedelta(days=1)) == 1
        assert store.feed_for_token_hash("a" * 64) is None
        assert store.feed_for_token_hash("b" * 64) == "team"
        tokens = store.feed_tokens("team")
        assert [(t.id, t.label, t.active) for t in tokens] == [(a, "phone", False), (b, None, True)]
        assert tokens[0].revoked_at == T0 + timedelta(days=1)

    def test_revoking_all_tokens_of_a_feed(self, store: Store) -> None:
        """Without a token id every active token of the feed is revoked, others untouched."""
        store.add_feed_token("team", "a" * 64, None, T0)
        store.add_feed_token("team", "b" * 64, None, T0)
        store.add_feed_token("jane", "c" * 64, None, T0)
        assert store.revoke_feed_tokens("team") == 2
        assert store.revoke_feed_tokens("team") == 0
        assert store.feed_for_token_hash("c" * 64) == "jane"

    def test_duplicate_token_hash_is_refused(self, store: Store) -> None:
        """The same token hash cannot be stored twice."""
        store.add_feed_token("team", "a" * 64, None, T0)
        with pytest.raises(StoreFailure, match="add feed token"):
            store.add_feed_token("jane", "a" * 64, None, T0)

    def test_feed_build_status(self, store: Store) -> None:
        """The last build of each feed is kept and replaced by the next."""
        assert store.feed_status("team") is None
        store.set_feed_built("team", '"abc"', T0, 1234)
        store.set_feed_built("team", '"def"', T0 + timedelta(hours=1), 999)
        store.set_feed_built("jane", '"x"', T0, 10)
        status = store.feed_status("team")
        assert status is not None
        assert (status.etag, status.built_at, status.length) == (
            '"def"',
            T0 + timedelta(hours=1),
            999,
        )
        assert [s.feed for s in store.all_feed_status()] == ["jane", "team"]

    def test_feed_failure_and_build_keep_each_other(self, store: Store) -> None:
        """A feed job's failure is stored beside the last build, and a build keeps the last failure."""
        store.record_feed_failure("new", T0, "OSError", "disk full")
        failed = store.feed_status("new")
        assert failed is not None
        assert (failed.built_at, failed.last_error_kind, failed.last_error) == (None, "OSError", "disk full")
        store.set_feed_built("team", '"abc"', T0, 1234, parent="team", signature="s1", events=3, mtime_ns=7)
        store.record_feed_failure("team", T0 + timedelta(hours=1), "ApiTransportError", "unreachable")
        status = store.feed_status("team")
        assert status is not None
        assert (status.etag, status.signature, status.events, status.mtime_ns) == ('"abc"', "s1", 3, 7)
        assert status.last_error_at == T0 + timedelta(hours=1)
        store.set_feed_built("team", '"def"', T0 + timedelta(hours=2), 10, parent="team")
        status = store.feed_status("team")
        assert status is not None
        assert (status.etag, status.last_error_kind) == ('"def"', "ApiTransportError")
        assert status.last_success_at == T0 + timedelta(hours=2)
        assert [s.feed for s in store.feed_files_status("team")] == ["team"]
        assert store.feed_files_status("new") == []


class TestFeedBodies:
    def test_each_new_body_is_the_next_version(self, store: Store) -> None:
        """A body replaces the last one as the next version; the version query reads no body."""
        assert store.feed_body("team") is None
        assert store.feed_body_version("team") is None
        assert store.put_feed_body("team", parent="team", body=b"one", gzip=b"g1", etag='"1"', at=T0) == 1
        later = T0 + timedelta(hours=1)
        assert store.put_feed_body("team", parent="team", body=b"two", gzip=b"g2", etag='"2"', at=later) == 2
        assert store.feed_body_version("team") == (2, '"2"')
        body = store.feed_body("team")
        assert body is not None
        assert (body.version, body.body, body.gzip, body.etag, body.modified_at) == (2, b"two", b"g2", '"2"', later)

    def test_bodies_are_kept_per_organization_and_listed_by_parent(self, store: Store) -> None:
        """Two organizations' feeds of one name are apart; per-user bodies are listed under their feed."""
        acme, beta = store.for_organization("acme"), store.for_organization("beta")
        acme.put_feed_body("team", parent="team", body=b"a", gzip=b"", etag='"a"', at=T0)
        acme.put_feed_body("team-46", parent="team", body=b"a46", gzip=b"", etag='"a46"', at=T0)
        beta.put_feed_body("team", parent="team", body=b"b", gzip=b"", etag='"b"', at=T0)
        assert acme.feed_body_names("team") == ["team", "team-46"]
        assert beta.feed_body_names("team") == ["team"]
        assert beta.feed_body_version("team") == (1, '"b"')
        assert store.feed_body("team") is None

    def test_a_token_names_its_organization(self, store: Store) -> None:
        """A token hash is found whatever the organization, with its feed and revocation."""
        store.for_organization("acme").add_feed_token("team", "a" * 64, None, T0)
        beta = store.for_organization("beta")
        beta.add_feed_token("team", "b" * 64, None, T0)
        beta.revoke_feed_tokens("team")
        assert store.token_grant("a" * 64) == TokenGrant(organization="acme", feed="team", revoked=False)
        assert store.token_grant("b" * 64) == TokenGrant(organization="beta", feed="team", revoked=True)
        assert store.token_grant("c" * 64) is None


# --- locking and concurrency ---------------------------------------------------------


class TestTargetLock:
    def test_a_held_target_cannot_be_taken_again(self, db_url: str) -> None:
        """While one store holds a target, another store on the same database is refused."""
        with Store.open(db_url) as one, Store.open(db_url) as two:
            with one.target_lock("jane"):
                with pytest.raises(TargetBusy), two.target_lock("jane"):
                    pass
                with two.target_lock("team"):
                    pass
            with two.target_lock("jane"):
                pass

    def test_the_lock_excludes_threads_of_one_store(self, store: Store) -> None:
        """Another thread of the same process is refused while the lock is held."""
        outcome: list[str] = []

        def other() -> None:
            try:
                with store.target_lock("jane"):
                    outcome.append("acquired")
            except TargetBusy:
                outcome.append("busy")

        with store.target_lock("jane"):
            worker = threading.Thread(target=other)
            worker.start()
            worker.join(timeout=10)
        assert outcome == ["busy"]

    def test_sqlite_lock_excludes_another_process(self, tmp_path: Path) -> None:
        """A second process on the same SQLite file finds the target busy."""
        url = f"sqlite:///{tmp_path}/state.db"
        probe = (
            "import sys\n"
            "from apexcal.state import Store, TargetBusy\n"
            "with Store.open(sys.argv[1]) as s:\n"
            "    try:\n"
            "        with s.target_lock('jane'): print('acquired')\n"
            "    except TargetBusy: print('busy')\n"
        )
        with Store.open(url) as store, store.target_lock("jane"):
            held = subprocess.run(
                [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60
            )
        assert held.stdout.strip() == "busy", held.stderr
        with Store.open(url) as again, again.target_lock("jane"):
            pass

    @pytest.mark.postgres
    def test_postgres_locks_are_per_schema(self) -> None:
        """Installations in two schemas of one database may sync same-named targets at once."""
        with (
            _pg_schema() as first_url,
            _pg_schema() as second_url,
            Store.open(first_url) as first,
            Store.open(second_url) as second,
            first.target_lock("jane"),
            second.target_lock("jane"),
        ):
            pass

    def test_in_memory_store_locks_within_the_store(self) -> None:
        """An in-memory SQLite store still refuses a second holder of a target."""
        with (
            Store.open("sqlite://") as store,
            store.target_lock("jane"),
            pytest.raises(TargetBusy),
            store.target_lock("jane"),
        ):
            pass


class TestConcurrency:
    def test_threads_writing_at_once_all_succeed(self, store: Store) -> None:
        """Several threads writing records and upserting the mirror meet no lock error."""
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(15):
                    store.put_record(record(uid=f"t{n}-{i}", activity_id=i + 1))
                    store.upsert_activities(
                        ORG, [activity(n * 100 + i + 1)], watermark=T0 + timedelta(seconds=i)
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert store.count_records("jane") == 60
        assert store.count_activities(ORG) == 60
        assert store.mirror_seq(ORG) == 60
        assert len(store.activities_changed_since(ORG, 0).changed) == 60


class TestErrors:
    def test_database_errors_name_the_operation_not_the_data(self, tmp_path: Path) -> None:
        """A failing statement surfaces as StoreFailure naming the operation, without bound values."""
        url = f"sqlite:///{tmp_path}/state.db"
        with Store.open(url) as store:
            with sqlite3.connect(tmp_path / "state.db") as raw:
                raw.execute("DROP TABLE feed_tokens")
            with pytest.raises(StoreFailure) as info:
                store.add_feed_token("team", "secret-hash-value", None, T0)
        assert info.value.operation == "add feed token"
        assert "no such table" in str(info.value)
        assert "secret-hash-value" not in str(info.value)


class TestFieldJournal:
    def test_closing_an_entry_moves_the_record_baseline_with_it(self, store: Store) -> None:
        """A delivered field writeback and the record's per-field baseline change in one step."""
        store.put_record(
            ObjectRecord(target="t", uid="u", activity_id=7, href="/c/u.ics", fields={"subject": "s0", "start": "t0"})
        )
        [entry_id] = store.journal_field_writebacks("t", [("u", 7, {"subject": "New"}, {"subject": "s1"})], T0)
        store.set_field_writeback_attempt([entry_id], T0)
        [pending] = store.pending_field_writebacks("t")
        assert pending.in_doubt
        assert pending.patch == {"subject": "New"}
        assert store.close_field_writebacks([entry_id], T0) == 1
        assert store.count_pending_field_writebacks("t") == 0
        assert store.records("t")["u"].fields == {"subject": "s1", "start": "t0"}

    def test_a_failed_attempt_not_applied_is_not_in_doubt(self, store: Store) -> None:
        """A refused attempt clears its start; a lost answer keeps it."""
        ids = store.journal_field_writebacks("t", [("u", 7, {"location": "x"}, {"location": "l1"})], T0)
        store.set_field_writeback_attempt(ids, T0)
        store.mark_field_writeback_failed(ids, "400", in_doubt=False)
        assert not store.pending_field_writebacks("t")[0].in_doubt
        store.set_field_writeback_attempt(ids, T0)
        store.mark_field_writeback_failed(ids, "timeout", in_doubt=True)
        assert store.pending_field_writebacks("t")[0].in_doubt
