"""Two `apexcal serve` processes over the feeds an `apexcal worker` process stored in PostgreSQL.

Everything is a real process or server: a scratch PostgreSQL database for the
module (dropped after), the emulator on loopback, one worker building the
feed, two stateless servers, and the CLI issuing and revoking URLs.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.serve.files import with_source

pytestmark = [pytest.mark.postgres]

PG_ENV = "APEXCAL_TEST_POSTGRES_URL"
ORG_ID = 31
TOKEN_CACHE_S = 2
# What a request may add to the token lifetime: the request in flight, process scheduling.
SLACK_S = 3.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(predicate: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``predicate()`` holds; fails naming ``what`` after ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what}")


def _apexcal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apexcal", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


@dataclass
class Cluster:
    config_dir: Path
    db_url: str
    servers: list[str]
    paths: list[str]
    """Feed paths of two URLs from ``apexcal feed url`` (the same on every server)."""
    serving: list[subprocess.Popen[bytes]]
    crm: EmulatorState | None = None
    """The emulator's data (the CRM the worker pulls from)."""

    def stored(self) -> tuple[bytes, str] | None:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                if conn.execute(text("SELECT to_regclass('feed_bodies')")).scalar() is None:
                    return None
                row = conn.execute(
                    text("SELECT body, etag FROM feed_bodies WHERE organization = 'acme' AND feed = 'team'")
                ).first()
        finally:
            engine.dispose()
        return None if row is None else (bytes(row.body), str(row.etag))


@pytest.fixture(scope="module")
def scratch_db() -> Iterator[str]:
    """A scratch PostgreSQL database for this module, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    name = f"apexcal_serve_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def cluster(scratch_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A worker that built the feed of organization ``acme``, and two servers on other ports."""
    root = tmp_path_factory.mktemp("stateless")
    state = EmulatorState()
    state.add_organization(ORG_ID, "acme")
    state.add_user(id=901, full_name="Sync acme", email=None, organizations=[ORG_ID], token="serve-token")
    state.seed(ORG_ID, 8, seed=ORG_ID)
    conf = root / "conf"
    conf.mkdir()
    (conf / "apexcal.toml").write_text(
        f'[state]\nurl = "{scratch_db}"\n\n[server]\npublic_url = "https://cal.example.com"\n'
        f'token_cache = "{TOKEN_CACHE_S}s"\nprocesses = 2\n\n[sync]\ninterval = "1h"\njitter = "0s"\n\n'
        '[worker]\ntick = "2s"\n\n[log]\nformat = "json"\n'
    )
    (conf / "acme.token").write_text("serve-token")
    processes: list[subprocess.Popen[bytes]] = []
    with serve_in_thread(create_app(state)) as base_url:
        (conf / "acme.toml").write_text(
            f'[source]\nbase_url = "{base_url}"\ntoken_file = "acme.token"\norganization_id = {ORG_ID}\n\n'
            '[mapping]\ngeocoder = "none"\n\n'
            f'[[feeds]]\nname = "team"\npath = "{root}/unused/team.ics"\nrefresh_interval = "30m"\n'
            "window = { past_days = 3660, future_days = 3660 }\n"
        )
        try:
            with (root / "worker.log").open("wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "apexcal", "worker", "--config-dir", str(conf), "--concurrency", "2"],
                    stdout=log, stderr=log,
                ))
            ports = [_free_port(), _free_port()]
            for index, port in enumerate(ports):
                with (root / f"serve-{index}.log").open("wb") as log:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "apexcal", "serve", "--config-dir", str(conf),
                         "--listen", f"127.0.0.1:{port}"],
                        stdout=log, stderr=log,
                    ))
            servers = [f"http://127.0.0.1:{port}" for port in ports]
            issuing = [
                subprocess.Popen(
                    [sys.executable, "-m", "apexcal", "feed", "url", "team", "--config-dir", str(conf),
                     "--org", "acme", "--label", f"device {n}"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
                for n in range(2)
            ]
            paths = []
            for issue in issuing:
                out, err = issue.communicate(timeout=60)
                assert issue.returncode == 0, err
                paths.append(urlsplit(out.splitlines()[0]).path)
            built = Cluster(
                config_dir=conf, db_url=scratch_db, servers=servers, paths=paths, serving=processes[1:],
                crm=state,
            )
            _wait_for(lambda: built.stored() is not None, 90, "the worker to store the feed")

            def up() -> bool:
                try:
                    return all(httpx.get(f"{s}/healthz", timeout=2).status_code == 200 for s in servers)
                except httpx.TransportError:
                    return False

            _wait_for(up, 30, "both servers to answer /healthz")
            yield built
            for proc in processes[1:]:
                proc.send_signal(signal.SIGTERM)
            for proc in processes[1:]:
                assert proc.wait(timeout=15) == 0, "a server did not exit 0 on SIGTERM"
        finally:
            for proc in processes:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)


def _children(pid: int) -> list[int]:
    """The server processes ``pid`` started (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
        children = [int(child) for child in listing.read().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


class TestStatelessServers:
    def test_processes_share_the_port(self, cluster: Cluster) -> None:
        """[server] processes = 2: each server runs one more process on its port; every connection is served."""
        for proc in cluster.serving:
            _wait_for(lambda p=proc: len(_children(p.pid)) == 1, 30, "the second server process")
        for server in cluster.servers:
            for _ in range(12):  # a fresh connection each: the kernel spreads them over both processes
                assert httpx.get(server + cluster.paths[0], timeout=10).status_code == 200

    def test_two_servers_give_the_same_bytes_and_etag(self, cluster: Cluster) -> None:
        """Both instances serve the worker's body (with SOURCE) under one ETag, 304 on it, and one gzip form."""
        path = cluster.paths[0]
        stored = cluster.stored()
        assert stored is not None
        identity = {"Accept-Encoding": "identity"}
        plain = [httpx.get(s + path, headers=identity, timeout=10) for s in cluster.servers]
        assert [r.status_code for r in plain] == [200, 200]
        assert plain[0].content == plain[1].content
        assert plain[0].headers["etag"] == plain[1].headers["etag"]
        assert plain[0].headers["last-modified"] == plain[1].headers["last-modified"]
        assert plain[0].headers["cache-control"] == "private, max-age=1800"
        assert plain[0].content == with_source(stored[0], f"https://cal.example.com{path}")
        assert b"BEGIN:VEVENT" in plain[0].content
        for server in cluster.servers:
            again = httpx.get(
                server + path, headers={**identity, "If-None-Match": plain[0].headers["etag"]}, timeout=10
            )
            assert (again.status_code, again.content) == (304, b"")
        packed: list[tuple[str, str, bytes]] = []
        for server in cluster.servers:
            with httpx.stream("GET", server + path, headers={"Accept-Encoding": "gzip"}, timeout=10) as r:
                packed.append((r.headers["content-encoding"], r.headers["etag"], b"".join(r.iter_raw())))
        assert packed[0] == packed[1]
        assert packed[0][:2] == ("gzip", plain[0].headers["etag"][:-1] + '-gz"')
        assert gzip.decompress(packed[0][2]) == plain[0].content

    def test_a_revoked_url_stops_on_every_server_within_the_bound(self, cluster: Cluster) -> None:
        """After `apexcal feed revoke`, every server answers 410 within [server] token_cache."""
        # Both servers hold the token in their caches (the first test's requests, or these).
        path = cluster.paths[1]
        assert [httpx.get(s + path, timeout=10).status_code for s in cluster.servers] == [200, 200]
        done = _apexcal("feed", "revoke", "team", "--all", "--config-dir", str(cluster.config_dir), "--org", "acme")
        assert done.returncode == 0, done.stderr
        took = _wait_for(
            lambda: all(httpx.get(s + path, timeout=10).status_code == 410 for s in cluster.servers),
            TOKEN_CACHE_S + SLACK_S,
            "the revoked URL to answer 410 on both servers",
        )
        assert took <= TOKEN_CACHE_S + SLACK_S

    def test_unknown_token_is_404_on_every_server(self, cluster: Cluster) -> None:
        """A token never issued opens nothing."""
        for server in cluster.servers:
            assert httpx.get(f"{server}/feeds/{'x' * 43}/team.ics", timeout=10).status_code == 404


    def test_sighup_reads_the_config_directory_again(self, cluster: Cluster) -> None:
        """A feed added to an organization's file is known to a server once it got SIGHUP (503 until built)."""
        org_file = cluster.config_dir / "acme.toml"
        org_file.write_text(
            org_file.read_text() + f'\n[[feeds]]\nname = "office"\npath = "{cluster.config_dir}/office.ics"\n'
        )
        done = _apexcal("feed", "url", "office", "--config-dir", str(cluster.config_dir), "--org", "acme")
        assert done.returncode == 0, done.stderr
        url = cluster.servers[0] + urlsplit(done.stdout.splitlines()[0]).path
        assert httpx.get(url, timeout=10).status_code == 404
        cluster.serving[0].send_signal(signal.SIGHUP)
        _wait_for(lambda: httpx.get(url, timeout=10).status_code == 503, 10, "the reloaded server to know the feed")
        assert cluster.serving[0].poll() is None


    def test_a_port_in_use_is_one_line_and_exit_2(self, cluster: Cluster) -> None:
        """Another instance on a taken address refuses to start with one line naming it."""
        taken = urlsplit(cluster.servers[0]).netloc
        done = _apexcal("serve", "--config-dir", str(cluster.config_dir), "--listen", taken)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert lines == [f"error: cannot listen on {taken}"], done.stderr


_ACTIVITY_ID = re.compile(rb"X-APEX-ACTIVITY-ID:([0-9]+)")


class TestFilteredViews:
    """Filtered URLs (`apexcal feed url … --filter`) on the stateless servers, built by the worker."""

    def test_a_filtered_url_serves_its_view_on_every_server(self, cluster: Cluster) -> None:
        """Issued, built by the next (triggered) build, served with its own ETag; follows a CRM change; 410 when revoked."""
        crm = cluster.crm
        assert crm is not None
        acts = crm.activities(ORG_ID)
        kinds = sorted({a["activity_type"] for a in acts if a.get("activity_type")})
        users = sorted({a["assigned_to_user_id"] for a in acts if a.get("assigned_to_user_id")})
        conf = str(cluster.config_dir)

        def issue(*args: str) -> str:
            done = _apexcal("feed", "url", "team", "--config-dir", conf, "--org", "acme", *args)
            assert done.returncode == 0, done.stderr
            assert ("next build" in done.stderr) == bool(args)
            return urlsplit(done.stdout.splitlines()[0]).path

        def ids(body: bytes) -> set[int]:
            return {int(m) for m in _ACTIVITY_ID.findall(body)}

        def expected(keep: Callable[[dict[str, object]], bool]) -> set[int]:
            return {int(str(a["id"])) for a in crm.activities(ORG_ID) if keep(a)}

        whole = issue()
        by_type = issue("--filter", f"type={kinds[0]}")
        by_user = issue("--filter", f"user={users[0]}", "--filter", f"type={','.join(kinds)}")
        done = _apexcal("trigger", "--config-dir", conf, "--org", "acme")
        assert done.returncode == 0, done.stderr

        def served(path: str) -> list[httpx.Response]:
            return [httpx.get(s + path, timeout=10) for s in cluster.servers]

        _wait_for(
            lambda: all(r.status_code == 200 for p in (by_type, by_user) for r in served(p)),
            90, "the worker to build both views",
        )
        want_type = expected(lambda a: a["activity_type"] == kinds[0])
        want_user = expected(
            lambda a: a["assigned_to_user_id"] == users[0] and a["activity_type"] in kinds
        )
        tags = set()
        for path, want in ((by_type, want_type), (by_user, want_user)):
            answers = served(path)
            assert answers[0].content == answers[1].content
            assert answers[0].headers["etag"] == answers[1].headers["etag"]
            assert ids(answers[0].content) == want
            tags.add(answers[0].headers["etag"])
            for server in cluster.servers:
                again = httpx.get(
                    server + path, headers={"If-None-Match": answers[0].headers["etag"]}, timeout=10
                )
                assert again.status_code == 304
        everything = served(whole)[0]
        assert ids(everything.content) == expected(lambda a: True)
        tags.add(everything.headers["etag"])
        assert len(tags) == 3

        # A CRM change reaches the view at the next build.
        moved = min(want_type)
        crm.patch_activity(moved, {"activity_type": kinds[1]})
        done = _apexcal("trigger", "--config-dir", conf, "--org", "acme")
        assert done.returncode == 0, done.stderr
        _wait_for(
            lambda: all(moved not in ids(r.content) for r in served(by_type)),
            90, "the worker to rebuild the view after the CRM change",
        )
        assert ids(served(by_type)[0].content) == expected(lambda a: a["activity_type"] == kinds[0])

        listed = _apexcal("feed", "list", "team", "--config-dir", conf, "--org", "acme")
        row = next(
            line.split("\t") for line in listed.stdout.splitlines() if f"user={users[0]}" in line
        )
        done = _apexcal(
            "feed", "revoke", "team", "--token-id", row[0], "--config-dir", conf, "--org", "acme"
        )
        assert done.returncode == 0, done.stderr
        _wait_for(
            lambda: all(r.status_code == 410 for r in served(by_user)),
            TOKEN_CACHE_S + SLACK_S, "the revoked filtered URL to answer 410 on both servers",
        )
        assert all(r.status_code == 200 for r in served(by_type))


class TestRefusals:
    def test_sqlite_config_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """serve needs the workers' PostgreSQL: a SQLite [state] url is one line naming it, exit 2."""
        (tmp_path / "apexcal.toml").write_text(f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n')
        (tmp_path / "acme.toml").write_text('[source]\nbase_url = "http://127.0.0.1:9"\norganization_id = 1\n')
        done = _apexcal("serve", "--config-dir", str(tmp_path))
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: apexcal serve needs PostgreSQL")
