"""Filtered feed URLs (``apexcal feed url NAME --filter …``) end to end, files on disk.

The emulator holds the CRM, ``apexcal sync`` and ``apexcal feed`` run as real
processes on a real state store, and the feed server answers over HTTP.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from apexcal.config import load_config
from apexcal.daemon.served import DirectoryFeeds
from apexcal.metrics import Metrics
from apexcal.serve import StoreHealth, create_app, serve_in_thread
from apexcal.serve.feedmap import feeds_source
from apexcal.state import Store
from tests.fixtures.emulator import EmulatorHandle

APEXCAL = str(Path(sys.executable).parent / "apexcal")
_ACTIVITY_ID = re.compile(rb"X-APEX-ACTIVITY-ID:([0-9]+)")

CONFIG = """\
[source]
base_url = "{base_url}"
token = "{token}"
organization_id = {org_id}

[state]
url = "sqlite:///{db}"

[mapping]
geocoder = "none"

[[feeds]]
name = "team"
path = "{dir}/feeds/team.ics"
window = {{ past_days = 3660, future_days = 3660 }}

[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9"
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APEXCAL, *args], capture_output=True, text=True, timeout=120, check=False)


def ids_in(body: bytes) -> set[int]:
    return {int(m) for m in _ACTIVITY_ID.findall(body)}


@dataclass
class Setup:
    emulator: EmulatorHandle
    config: Path
    root: Path
    base: str

    def sync(self) -> None:
        done = run("sync", "--config", str(self.config))
        assert done.returncode == 0, done.stderr

    def issue(self, *args: str) -> str:
        """The served path of a new URL of ``team`` with ``args`` (filters, label)."""
        done = run("feed", "url", "team", "--config", str(self.config), *args)
        assert done.returncode == 0, done.stderr
        return urlsplit(done.stdout.splitlines()[0]).path

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=headers, timeout=10)

    def expected(self, keep: object) -> set[int]:
        """Ids of the organization's live activities for which ``keep(activity)`` holds."""
        return {
            int(a["id"])
            for a in self.emulator.state.activities(self.emulator.org_id)
            if keep(a)  # type: ignore[operator]
        }


@pytest.fixture
def setup(emulator: EmulatorHandle, tmp_path: Path) -> Iterator[Setup]:
    """A synced organization with a ``team`` feed, served from its files by a real server."""
    emulator.state.seed(emulator.org_id, 40, seed=12)
    db = tmp_path / "state.db"
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(
            base_url=emulator.base_url, token=emulator.token, org_id=emulator.org_id,
            db=db, dir=tmp_path,
        )
    )
    done = run("sync", "--config", str(config))
    assert done.returncode == 0, done.stderr
    loaded = load_config(config)
    store = Store.open(f"sqlite:///{db}")
    metrics = Metrics()
    health = StoreHealth(
        store, feeds=lambda: ["team"], targets=list, stale_after=timedelta(minutes=15),
        started_at=datetime.now(UTC), clock=lambda: datetime.now(UTC),
    )
    app = create_app(
        feeds=feeds_source(lambda: loaded.feeds), tokens=store, health=health,
        metrics_registry=metrics.registry,
    )
    try:
        with serve_in_thread(app) as base:
            yield Setup(emulator=emulator, config=config, root=tmp_path, base=base)
    finally:
        store.close()


def _pick(emulator: EmulatorHandle) -> tuple[str, str, int]:
    """Two activity types and a user that the seeded data has, with the types' names."""
    acts = emulator.state.activities(emulator.org_id)
    types = sorted({a["activity_type"] for a in acts if a.get("activity_type")})
    users = sorted({a["assigned_to_user_id"] for a in acts if a.get("assigned_to_user_id")})
    assert len(types) >= 2, "the seed gives several types"
    assert users, "the seed assigns activities to users"
    return types[0], types[1], users[0]


class TestFilteredUrl:
    def test_a_filtered_url_serves_only_the_matching_activities(self, setup: Setup) -> None:
        """type= and user= select their activities (OR within a key, AND across keys); the whole feed is unchanged."""
        first, second, user = _pick(setup.emulator)
        whole = setup.issue()
        whole_before = setup.get(whole)
        by_type = setup.issue("--filter", f"type={first},{second}")
        by_user = setup.issue("--filter", f"user={user}")
        both = setup.issue("--filter", f"type={first}", "--filter", f"user={user}")

        everything = setup.get(whole)
        assert everything.status_code == 200
        assert everything.content == whole_before.content  # the whole feed did not change
        assert everything.content == (setup.root / "feeds" / "team.ics").read_bytes()
        all_ids = ids_in(everything.content)
        assert all_ids == setup.expected(lambda a: True)

        want_type = setup.expected(lambda a: a["activity_type"] in (first, second))
        want_user = setup.expected(lambda a: a["assigned_to_user_id"] == user)
        want_both = setup.expected(
            lambda a: a["activity_type"] == first and a["assigned_to_user_id"] == user
        )
        assert want_both, "the seed gives the combined filter something to match"
        for path, want in ((by_type, want_type), (by_user, want_user), (both, want_both)):
            response = setup.get(path)
            assert response.status_code == 200
            assert ids_in(response.content) == want
            assert want < all_ids
            assert response.content.startswith(b"BEGIN:VCALENDAR")
        etags = {setup.get(p).headers["etag"] for p in (whole, by_type, by_user, both)}
        assert len(etags) == 4

    def test_conditional_requests_and_gzip_are_per_filter(self, setup: Setup) -> None:
        """A view's ETag gives 304 on its own URL; another view's ETag gets its body; gzip tags differ too."""
        first, second, _ = _pick(setup.emulator)
        one = setup.issue("--filter", f"type={first}")
        other = setup.issue("--filter", f"type={second}")
        plain = setup.get(one, **{"Accept-Encoding": "identity"})
        again = setup.get(one, **{"If-None-Match": plain.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        crossed = setup.get(other, **{"If-None-Match": plain.headers["etag"], "Accept-Encoding": "identity"})
        assert crossed.status_code == 200
        assert crossed.headers["etag"] != plain.headers["etag"]
        assert ids_in(crossed.content) == setup.expected(lambda a: a["activity_type"] == second)
        with httpx.stream("GET", setup.base + one, headers={"Accept-Encoding": "gzip"}, timeout=10) as r:
            packed_one = r.headers["etag"]
        with httpx.stream("GET", setup.base + other, headers={"Accept-Encoding": "gzip"}, timeout=10) as r:
            packed_other = r.headers["etag"]
        assert packed_one != packed_other
        assert setup.get(one, **{"If-None-Match": packed_one}).status_code == 304

    def test_the_same_filter_twice_shares_one_view(self, setup: Setup) -> None:
        """Two URLs with equal filters (any order, names or keys) serve the same bytes under one ETag."""
        first, second, _ = _pick(setup.emulator)
        a = setup.issue("--filter", f"type={first},{second}", "--label", "a")
        b = setup.issue("--filter", f"type={second},{first},{first}", "--label", "b")
        ra, rb = setup.get(a), setup.get(b)
        assert ra.content == rb.content
        assert ra.headers["etag"] == rb.headers["etag"]
        views = sorted(p.name for p in (setup.root / "feeds").iterdir() if ".view-" in p.name)
        assert len(views) == 1

    def test_a_revoked_filtered_url_is_gone(self, setup: Setup) -> None:
        """Revoking a filtered URL answers 410; list shows its filter; the other URLs keep working."""
        _, _, user = _pick(setup.emulator)
        path = setup.issue("--filter", f"user={user}", "--label", "phone")
        kept = setup.issue("--filter", f"user={user}", "--label", "tablet")
        assert setup.get(path).status_code == 200
        listed = run("feed", "list", "--config", str(setup.config))
        rows = [line.split("\t") for line in listed.stdout.splitlines()]
        assert rows[0] == ["id", "feed", "label", "created", "revoked", "filter"]
        phone = next(r for r in rows if r[2] == "phone")
        assert phone[5] == f"user={user}"
        done = run("feed", "revoke", "team", "--token-id", phone[0], "--config", str(setup.config))
        assert done.returncode == 0, done.stderr
        assert f"revoked\t{phone[0]}\tphone\tuser={user}" in done.stdout.splitlines()
        assert setup.get(path).status_code == 410
        assert setup.get(kept).status_code == 200

    def test_rotate_names_the_revoked_filters_and_may_issue_a_filtered_url(self, setup: Setup) -> None:
        """`feed rotate --filter` revokes every URL (naming each one's filter) and prints a filtered one."""
        first, _, user = _pick(setup.emulator)
        old_view = setup.issue("--filter", f"user={user}", "--label", "old")
        old_whole = setup.issue("--label", "whole")
        done = run(
            "feed", "rotate", "team", "--config", str(setup.config), "--filter", f"type={first}",
        )
        assert done.returncode == 0, done.stderr
        revoked = [line.split("\t") for line in done.stderr.splitlines() if line.startswith("revoked\t")]
        assert sorted((r[2], r[3]) for r in revoked) == [("old", f"user={user}"), ("whole", "-")]
        assert f"filter: type={first}" in done.stderr
        new = urlsplit(done.stdout.splitlines()[0]).path
        assert [setup.get(p).status_code for p in (old_view, old_whole)] == [410, 410]
        response = setup.get(new)
        assert response.status_code == 200
        assert ids_in(response.content) == setup.expected(lambda a: a["activity_type"] == first)

    def test_a_crm_change_reaches_the_filtered_feed(self, setup: Setup) -> None:
        """An activity retyped in the CRM leaves one view and enters the other after the next sync."""
        first, second, _ = _pick(setup.emulator)
        one = setup.issue("--filter", f"type={first}")
        other = setup.issue("--filter", f"type={second}")
        before = setup.get(one)
        moved = min(setup.expected(lambda a: a["activity_type"] == first))
        setup.emulator.state.patch_activity(moved, {"activity_type": second})
        setup.sync()
        after_one = setup.get(one, **{"If-None-Match": before.headers["etag"]})
        assert after_one.status_code == 200
        assert moved not in ids_in(after_one.content)
        assert moved in ids_in(setup.get(other).content)
        assert ids_in(after_one.content) == setup.expected(lambda a: a["activity_type"] == first)

    def test_a_type_given_by_name_or_id_is_stored_as_its_key(self, setup: Setup) -> None:
        """type= takes a type's key, its name (any case) or its id; the stored filter names the key."""
        types = setup.emulator.state.activity_types(setup.emulator.org_id)
        chosen = next(t for t in types if " " not in t["name"]) if types else None
        assert chosen is not None
        by_name = setup.issue("--filter", f"type={chosen['name'].upper()}", "--label", "n")
        by_id = setup.issue("--filter", f"type={chosen['id']}", "--label", "i")
        assert setup.get(by_name).content == setup.get(by_id).content
        listed = run("feed", "list", "team", "--config", str(setup.config)).stdout
        filters = {line.split("\t")[5] for line in listed.splitlines()[1:]}
        assert len(filters) == 1
        assert filters.pop().startswith("type=")


class TestDirectoryServer:
    def test_apexcal_run_config_dir_serves_a_filtered_view(self, setup: Setup) -> None:
        """The server of `apexcal run --config-dir` resolves a filtered token to its organization's view."""
        _, _, user = _pick(setup.emulator)
        path = setup.issue("--filter", f"user={user}")
        config = load_config(setup.config)
        store = Store.open(str(config.state.url))
        try:
            library = DirectoryFeeds(store, lambda: {"": config})
            metrics = Metrics()
            health = StoreHealth(
                store, feeds=lambda: ["team"], targets=list, stale_after=timedelta(minutes=15),
                started_at=datetime.now(UTC), clock=lambda: datetime.now(UTC),
            )
            app = create_app(library=library, health=health, metrics_registry=metrics.registry)
            with serve_in_thread(app) as base:
                response = httpx.get(base + path, timeout=10)
        finally:
            store.close()
        assert response.status_code == 200
        assert ids_in(response.content) == setup.expected(lambda a: a["assigned_to_user_id"] == user)


class TestValidation:
    CASES = (
        (["--filter", "colour=red"], "unknown key 'colour'"),
        (["--filter", "user=jane"], "'jane' is not a user id"),
        (["--filter", "user=46,x"], "'x' is not a user id"),
        (["--filter", "type=nosuchtype"], "unknown activity type 'nosuchtype'"),
        (["--filter", "type"], "is not KEY=VALUE"),
        (["--filter", "type=a", "--filter", "type=b"], "given twice"),
        (["--filter", "done=maybe"], "'maybe' is not true or false"),
        (["--filter", "user="], "an empty value for 'user'"),
    )

    def test_bad_filters_are_one_line_and_exit_2(self, setup: Setup) -> None:
        """A bad --filter names the bad part on one stderr line, exits 2 and stores no token."""
        for arguments, message in self.CASES:
            done = run("feed", "url", "team", "--config", str(setup.config), *arguments)
            assert done.returncode == 2, arguments
            assert done.stdout == ""
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert message in done.stderr, (arguments, done.stderr)
        listed = run("feed", "list", "--config", str(setup.config))
        assert listed.stdout.splitlines()[1:] == []

    def test_help_describes_the_filter(self) -> None:
        """`apexcal feed url --help` shows --filter with its keys."""
        done = run("feed", "url", "--help")
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        assert "--filter" in text
        for key in ("type=", "user=", "done="):
            assert key in text
