"""`apexcal worker` and `apexcal trigger` on the command line: operator errors and a requested pull."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_state_store import pg_url

__all__ = ["pg_url"]

ORG = """\
[source]
base_url = "http://127.0.0.1:9"
token = "secret-token-xyz"
organization_id = {org}

[[targets]]
name = "jane"
url = "http://127.0.0.1:9/jane/"
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apexcal", *args], capture_output=True, text=True, timeout=120,
        check=False,
    )


def _config_dir(tmp_path: Path, state_url: str) -> Path:
    (tmp_path / "apexcal.toml").write_text(f'[state]\nurl = "{state_url}"\n')
    (tmp_path / "acme.toml").write_text(ORG.format(org=1))
    (tmp_path / "beta.toml").write_text(ORG.format(org=2))
    return tmp_path


class TestOperatorErrors:
    def test_worker_on_sqlite_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """A SQLite state store cannot hold the job queue: one clear line, exit 2."""
        config_dir = _config_dir(tmp_path, f"sqlite:///{tmp_path}/state.db")
        result = _run("worker", "--config-dir", str(config_dir))
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "error: apexcal worker needs PostgreSQL: set [state] url to postgresql+psycopg://… "
            "(SQLite is for apexcal run)"
        ]
        assert not (tmp_path / "state.db").exists()

    def test_trigger_names_an_unknown_organization(self, tmp_path: Path) -> None:
        """--org must name a file of the directory."""
        config_dir = _config_dir(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none")
        result = _run("trigger", "--config-dir", str(config_dir), "--org", "gamma")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "error: --org gamma: no such organization (configured: acme, beta)"
        ]


@pytest.fixture
def pg_dir(pg_url: str, tmp_path: Path) -> Path:
    return _config_dir(tmp_path, pg_url)


@pytest.mark.postgres
class TestTrigger:
    def test_trigger_defers_one_forced_pull_per_organization(self, pg_dir: Path, pg_url: str) -> None:
        """Each organization gets one pull job carrying keys only; a second request joins the first."""
        first = _run("trigger", "--config-dir", str(pg_dir))
        assert first.returncode == 0, first.stderr
        assert [line.split(":")[0] for line in first.stdout.splitlines()] == ["acme", "beta"]
        again = _run("trigger", "--config-dir", str(pg_dir), "--org", "beta", "--target", "jane")
        assert (again.returncode, again.stdout) == (0, "beta: already requested\n")
        engine = create_engine(pg_url)
        try:
            with engine.connect() as conn:
                schema = conn.execute(text("SELECT current_schema()")).scalar_one()
                rows = conn.execute(text(
                    f'SELECT task_name, lock, queueing_lock, args FROM "{schema}_procrastinate".procrastinate_jobs ORDER BY id'  # noqa: S608
                )).all()
        finally:
            engine.dispose()
        assert [(r.task_name, r.lock, r.queueing_lock) for r in rows] == [
            ("apexcal.pull", "pull:acme", "trigger:acme"),
            ("apexcal.pull", "pull:beta", "trigger:beta"),
        ]
        args = [r.args if isinstance(r.args, dict) else json.loads(r.args) for r in rows]
        assert args[0] == {"org": "acme", "force": True, "target": None}
        assert "secret-token-xyz" not in json.dumps(args)


class TestWorkerMetrics:
    def test_metrics_are_served_on_their_own_address_and_stop(self) -> None:
        """A worker's /metrics answers on metrics_listen and stops answering once stopped."""
        import socket

        import httpx

        from apexcal.metrics import Metrics
        from apexcal.worker.runner import serve_metrics

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        metrics = Metrics()
        metrics.api_request("GET", 200)
        stop = serve_metrics(f"127.0.0.1:{port}", metrics)
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            stop()
        assert "apexcal_" in body
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)

    def test_healthz_says_whether_the_worker_runs_and_the_queue_answers(self) -> None:
        """/healthz: 200 while running with the queue answering; 503 when restarting or the queue is silent."""
        import socket

        import httpx

        from apexcal.metrics import Metrics
        from apexcal.worker.health import DATABASE_STALE_S, WorkerHealth
        from apexcal.worker.runner import serve_metrics

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        now = [1000.0]
        health = WorkerHealth(clock=lambda: now[0])
        stop = serve_metrics(f"127.0.0.1:{port}", Metrics(), health)

        def check() -> tuple[int, dict[str, object]]:
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return answer.status_code, answer.json()

        try:
            assert check()[0] == 200  # starting: healthy while the first query is due
            health.set_state("running")
            health.database_answered()
            assert check() == (200, {
                "status": "ok", "worker": "running", "database": "ok",
                "seconds_since_database_answered": 0.0, "last_database_error": None,
            })
            health.set_state("restarting")
            health.database_failed("OperationalError")
            status, document = check()
            assert status == 503
            assert document["worker"] == "restarting"
            assert document["last_database_error"] == "OperationalError"
            health.set_state("running")
            now[0] += DATABASE_STALE_S + 1
            status, document = check()
            assert (status, document["database"]) == (503, "unreachable")
            health.database_answered()
            assert check()[0] == 200
            health.set_state("stopping")
            assert check()[0] == 503
            assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
        finally:
            stop()

    def test_organizations_metrics_keep_targets_of_the_same_name_apart(self) -> None:
        """Two organizations' targets named alike are counted apart, as ``<org>/<target>``, once qualified."""
        from prometheus_client import generate_latest

        from apexcal.metrics import Metrics
        from apexcal.worker.metrics import OrganizationMetrics

        metrics = Metrics()
        acme, beta = OrganizationMetrics(metrics, "acme"), OrganizationMetrics(metrics, "beta")
        acme.cycle_finished("jane", {"created": 2}, 0.5)
        beta.cycle_failed("jane", "CalDAVAuthError", 0.1)
        beta.caldav_hook("jane")("PUT", 201)
        beta.feed_built("team", datetime.now(UTC))
        sample = metrics.registry.get_sample_value
        assert sample("apexcal_cycles_total", {"target": "acme/jane", "outcome": "ok"}) == 1
        assert sample("apexcal_objects_total", {"target": "acme/jane", "action": "created"}) == 2
        assert sample("apexcal_cycles_total", {"target": "beta/jane", "outcome": "failed"}) == 1
        assert sample("apexcal_errors_total", {"target": "beta/jane", "kind": "CalDAVAuthError"}) == 1
        assert sample("apexcal_caldav_requests_total",
                      {"target": "beta/jane", "method": "PUT", "status": "201"}) == 1
        assert sample("apexcal_feed_builds_total", {"feed": "beta/team"}) == 1
        assert b'target="jane"' not in generate_latest(metrics.registry)

    def test_queue_gauges_follow_the_queue(self) -> None:
        """Depth and oldest age per task come from the queue; a task with no waiting job reads 0."""
        from apexcal.metrics import Metrics
        from apexcal.worker.metrics import WorkerMetrics
        from apexcal.worker.tasks import PULL, SYNC_TARGET

        metrics = Metrics()
        gauges = WorkerMetrics(metrics)
        gauges.queue([{"task_name": PULL, "n": 3, "oldest": 12.5}], [PULL, SYNC_TARGET])
        sample = metrics.registry.get_sample_value
        assert sample("apexcal_queue_jobs", {"task": PULL}) == 3
        assert sample("apexcal_queue_oldest_job_seconds", {"task": PULL}) == 12.5
        assert sample("apexcal_queue_jobs", {"task": SYNC_TARGET}) == 0
        gauges.queue([], [PULL])
        assert sample("apexcal_queue_jobs", {"task": PULL}) == 0

    def test_bad_metrics_listen_is_one_line(self, tmp_path: Path) -> None:
        """--metrics-listen must be host:port."""
        config_dir = _config_dir(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none")
        result = _run("worker", "--config-dir", str(config_dir), "--metrics-listen", "nowhere")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "error: --metrics-listen nowhere: not host:port (e.g. 127.0.0.1:9101)"
        ]


class TestDbWithConfigDir:
    def test_db_upgrade_and_current_read_the_shared_state_url(self, tmp_path: Path) -> None:
        """`apexcal db upgrade|current --config-dir DIR` act on apexcal.toml's [state] url."""
        config_dir = _config_dir(tmp_path, f"sqlite:///{tmp_path}/state.db")
        upgraded = _run("db", "upgrade", "--config-dir", str(config_dir))
        assert upgraded.returncode == 0, upgraded.stderr
        assert "upgraded from empty to revision" in upgraded.stdout
        current = _run("db", "current", "--config-dir", str(config_dir))
        assert current.returncode == 0, current.stderr
        assert current.stdout.strip().endswith("up to date)")
        both = _run("db", "current", "--config-dir", str(config_dir), "--url", "sqlite://")
        assert (both.returncode, both.stderr.strip()) == (
            2, "error: give exactly one of --config FILE, --config-dir DIR or --url URL"
        )


class TestSyncWithConfigDir:
    def test_org_is_needed_when_the_directory_holds_several(self, tmp_path: Path) -> None:
        """`apexcal sync --config-dir DIR` must name one of several organizations."""
        config_dir = _config_dir(tmp_path, f"sqlite:///{tmp_path}/state.db")
        result = _run("sync", "--config-dir", str(config_dir))
        assert (result.returncode, result.stderr.strip()) == (
            2, f"error: --org is needed: {config_dir} holds acme, beta"
        )
        result = _run("sync", "--config-dir", str(config_dir), "--org", "gamma")
        assert (result.returncode, result.stderr.strip()) == (
            2, "error: --org gamma: no such organization (configured: acme, beta)"
        )

    @pytest.mark.caldav
    def test_sync_of_one_organization_keys_its_state(
        self, emulator: EmulatorHandle, radicale_server: CalDAVServerHandle, tmp_path: Path
    ) -> None:
        """One cycle through `--config-dir DIR --org KEY` writes the calendar and keeps its state under KEY."""
        from apexcal.state import Store
        from tests.integration.test_sync_support import new_activity

        radicale_server.start()
        new_activity(emulator, subject="Kick-off")
        url = radicale_server.make_calendar()
        state_url = f"sqlite:///{tmp_path}/state.db"
        (tmp_path / "apexcal.toml").write_text(f'[state]\nurl = "{state_url}"\n')
        (tmp_path / "pw").write_text(radicale_server.password or "")
        (tmp_path / "acme.toml").write_text(
            f'[source]\nbase_url = "{emulator.base_url}"\ntoken = "{emulator.token}"\n'
            f"organization_id = {emulator.org_id}\n\n[mapping]\ngeocoder = \"none\"\n\n"
            f'[[targets]]\nname = "jane"\nurl = "{url}"\nusername = "{radicale_server.username}"\n'
            f'password_file = "{tmp_path / "pw"}"\n'
        )
        result = _run("sync", "--config-dir", str(tmp_path), "--org", "acme")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("jane: ok ")
        assert " created=1 " in result.stdout
        with Store.open(state_url) as store:
            assert len(store.for_organization("acme").records("jane")) == 1
            assert store.records("jane") == {}


@pytest.mark.postgres
class TestStatusWithConfigDir:
    def test_status_lists_every_organization_with_its_queue_state(self, pg_dir: Path, pg_url: str) -> None:
        """One table per organization; a target with a job waiting shows 'queued'."""
        from apexcal.state import Store
        from apexcal.worker.runner import make_app
        from apexcal.worker.tasks import SYNC_TARGET, target_lock

        with Store.open(pg_url) as store:
            schema = store.queue_schema()
        app = make_app(pg_url, schema, pool_size=1)
        with app.open():
            lock = target_lock("beta", "jane")
            app.configure_task(SYNC_TARGET, lock=lock, queueing_lock=lock).defer(org="beta", target="jane")
        result = _run("status", "--config-dir", str(pg_dir))
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "apexcal — acme (organization 1)" in out
        assert "apexcal — beta (organization 2)" in out
        acme, beta = out.split("apexcal — beta")
        jane_acme = next(line for line in acme.splitlines() if " jane " in line)
        jane_beta = next(line for line in beta.splitlines() if " jane " in line)
        assert "queued" not in jane_acme
        assert "queued" in jane_beta
