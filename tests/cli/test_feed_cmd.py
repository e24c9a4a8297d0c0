"""``apexcal feed url|rotate|revoke|list`` as a real subprocess, against a served feed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apexcal.cli.feed_cmd import resolve_feed_name
from apexcal.config import load_config
from apexcal.errors import UsageError
from apexcal.feeds.tokens import hash_token
from apexcal.metrics import Metrics
from apexcal.serve import StoreHealth, create_app, serve_in_thread
from apexcal.state import Store

APEXCAL = str(Path(sys.executable).parent / "apexcal")
TEAM_BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//test//EN\r\nEND:VCALENDAR\r\n"

CONFIG = """\
[source]
base_url = "http://127.0.0.1:9"
organization_id = 27

[state]
url = "sqlite:///{db}"

[[feeds]]
name = "team"
path = "{dir}/team.ics"
per_user = true

[[feeds]]
name = "office"
path = "{dir}/office.ics"

[server]
listen = "127.0.0.1:0"
public_url = "{public_url}"
"""


@dataclass
class Env:
    config: Path
    db: Path
    base: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [APEXCAL, "feed", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def url(self, name: str, *extra: str) -> list[str]:
        done = self.run("url", "--config", str(self.config), name, *extra)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A feed server on the same state store the CLI writes to."""
    root = tmp_path_factory.mktemp("feedcli")
    db = root / "state.db"
    for name in ("team", "team-46", "office"):
        (root / f"{name}.ics").write_bytes(TEAM_BODY)
    store = Store.open(f"sqlite:///{db}")
    metrics = Metrics()
    feeds = {name: root / f"{name}.ics" for name in ("team", "team-46", "office")}
    health = StoreHealth(
        store,
        feeds=lambda: ["team", "office"],
        targets=list,
        stale_after=timedelta(minutes=15),
        started_at=datetime.now(UTC),
        clock=lambda: datetime.now(UTC),
        per_user_feeds=lambda: ["team"],
    )
    app = create_app(
        feeds=lambda: feeds, tokens=store, health=health, metrics_registry=metrics.registry
    )
    try:
        with serve_in_thread(app) as base:
            config = root / "config.toml"
            config.write_text(CONFIG.format(db=db, dir=root, public_url=base))
            yield Env(config=config, db=db, base=base)
    finally:
        store.close()


def status_of(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


class TestUrl:
    def test_prints_https_webcal_and_google_links_that_work(self, env: Env) -> None:
        """The three printed lines are the https URL (served), its webcal twin and the Google link."""
        https, webcal, google = env.url("team", "--label", "phone")
        assert https.startswith(env.base + "/feeds/")
        assert https.endswith("/team.ics")
        assert webcal == "webcal://" + https.split("://", 1)[1]
        assert parse_qs(urlsplit(google).query)["cid"] == [webcal]
        response = httpx.get(https, timeout=10)
        assert response.status_code == 200
        assert response.content == TEAM_BODY

    def test_token_is_stored_only_as_a_hash(self, env: Env) -> None:
        """The state store holds the token's SHA-256, never the token."""
        https, _, _ = env.url("office", "--label", "laptop")
        token = https.split("/")[-2]
        with Store.open(f"sqlite:///{env.db}") as store:
            assert store.feed_for_token_hash(hash_token(token)) == "office"
            labels = [t.label for t in store.feed_tokens("office")]
        assert "laptop" in labels
        # Scanned from another process: opening and closing the database file
        # here would drop the server's SQLite locks (POSIX locks are per process).
        scan = subprocess.run(
            [
                sys.executable,
                "-c",
                "import pathlib, sys; d = pathlib.Path(sys.argv[1]);"
                "print(any(sys.argv[2].encode() in p.read_bytes()"
                " for p in d.glob('state.db*') if p.is_file()))",
                str(env.db.parent),
                token,
            ],
            capture_output=True, text=True, timeout=60, check=True,
        )
        assert scan.stdout.strip() == "False"

    def test_unknown_feed_is_one_line_and_exit_2(self, env: Env) -> None:
        """An unknown feed name is an operator error: one line on stderr, exit 2, nothing on stdout."""
        done = env.run("url", "--config", str(env.config), "office-46")
        assert done.returncode == 2
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1
        assert "unknown feed 'office-46'" in done.stderr
        assert "Traceback" not in done.stderr


class TestFeedNames:
    @pytest.mark.parametrize(
        ("name", "known"),
        [
            ("team", True),
            ("office", True),
            ("team-46", True),
            ("team-0046", True),
            ("office-46", False),
            ("team-abc", False),
            ("team-", False),
            ("team-46-1", False),
            ("nope", False),
            ("nope-46", False),
        ],
    )
    def test_per_user_names_only_for_per_user_feeds(self, env: Env, name: str, known: bool) -> None:
        """``<feed>-<user id>`` is a feed name only when that feed has per_user = true."""
        config = load_config(env.config)
        if known:
            assert resolve_feed_name(config, name) == name
        else:
            with pytest.raises(UsageError, match="unknown feed"):
                resolve_feed_name(config, name)


class TestRotateAndRevoke:
    def test_rotate_revokes_old_urls_and_prints_a_working_one(self, env: Env) -> None:
        """After rotate, every earlier URL of a (per-user) feed is 410 Gone and the new one is 200."""
        first = env.url("team-46")[0]
        assert first.endswith("/team-46.ics")
        assert status_of(first) == 200
        done = env.run("rotate", "--config", str(env.config), "team-46")
        assert done.returncode == 0, done.stderr
        new = done.stdout.splitlines()[0]
        assert [status_of(first), status_of(new)] == [410, 200]

    def test_revoke_one_token_leaves_the_others(self, env: Env) -> None:
        """Revoking one device's token by id keeps the other devices' URLs working."""
        phone = env.url("office", "--label", "phone")[0]
        tablet = env.url("office", "--label", "tablet")[0]
        with Store.open(f"sqlite:///{env.db}") as store:
            token_id = next(
                t.id for t in store.feed_tokens("office")
                if t.token_hash == hash_token(phone.split("/")[-2])
            )
        done = env.run("revoke", "--config", str(env.config), "office", "--token-id", str(token_id))
        assert done.returncode == 0, done.stderr
        assert (status_of(phone), status_of(tablet)) == (410, 200)
        again = env.run("revoke", "--config", str(env.config), "office", "--token-id", str(token_id))
        assert again.returncode == 2
        assert len(again.stderr.strip().splitlines()) == 1

    def test_revoke_all(self, env: Env) -> None:
        """--all revokes every URL of the feed."""
        url = env.url("team")[0]
        done = env.run("revoke", "--config", str(env.config), "team", "--all")
        assert done.returncode == 0, done.stderr
        assert status_of(url) == 410

    def test_revoke_needs_exactly_one_selector(self, env: Env) -> None:
        """Neither --token-id nor --all is an operator error."""
        done = env.run("revoke", "--config", str(env.config), "team")
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1


class TestList:
    def test_lists_ids_labels_and_dates_but_never_tokens(self, env: Env) -> None:
        """The listing shows each token's id, label, created and revoked times, without the token."""
        https = env.url("office", "--label", "desk")[0]
        token = https.split("/")[-2]
        done = env.run("list", "--config", str(env.config))
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].split("\t") == ["id", "feed", "label", "created", "revoked", "filter"]
        rows = [line.split("\t") for line in lines[1:]]
        desk = [row for row in rows if row[1:3] == ["office", "desk"]]
        assert len(desk) == 1
        assert desk[0][4] == "-"
        assert token not in done.stdout
        assert hash_token(token) not in done.stdout

    def test_missing_config_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """A config file that does not exist is an operator error."""
        done = subprocess.run(
            [APEXCAL, "feed", "list", "--config", str(tmp_path / "nope.toml")],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1


class TestConfigDir:
    def test_urls_are_issued_per_organization_of_a_config_dir(self, tmp_path: Path) -> None:
        """With --config-dir and --org a URL opens that organization's feed; without --org, two organizations are one line, exit 2."""
        conf = tmp_path / "conf"
        conf.mkdir()
        db = tmp_path / "state.db"
        (conf / "apexcal.toml").write_text(
            f'[state]\nurl = "sqlite:///{db}"\n\n[server]\npublic_url = "https://cal.example.com"\n'
        )
        for key, org_id in (("acme", 27), ("beta", 28)):
            (conf / f"{key}.toml").write_text(
                f'[source]\nbase_url = "http://127.0.0.1:9"\norganization_id = {org_id}\n\n'
                f'[[feeds]]\nname = "team"\npath = "{tmp_path}/{key}.ics"\n'
            )
        done = subprocess.run(
            [APEXCAL, "feed", "url", "team", "--config-dir", str(conf), "--org", "beta"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        token = urlsplit(done.stdout.splitlines()[0]).path.split("/")[2]
        with Store.open(f"sqlite:///{db}") as store:
            grant = store.token_grant(hash_token(token))
        assert grant is not None
        assert (grant.organization, grant.feed) == ("beta", "team")
        listed = subprocess.run(
            [APEXCAL, "feed", "list", "--config-dir", str(conf), "--org", "acme"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines() == ["id\tfeed\tlabel\tcreated\trevoked\tfilter"]
        ambiguous = subprocess.run(
            [APEXCAL, "feed", "list", "--config-dir", str(conf)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert ambiguous.returncode == 2
        assert ambiguous.stderr.strip().splitlines() == [
            f"error: --org is needed: {conf} holds acme, beta"
        ]
