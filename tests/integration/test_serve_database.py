"""The stateless server's caches over a real state store: token lifetime, body versions, memory bound."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from apexcal.feeds.output import compress
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.serve import create_app, serve_in_thread
from apexcal.serve.app import Grant
from apexcal.serve.database import DatabaseFeeds, DatabaseHealth, FeedEntry
from apexcal.serve.tokens import MISS
from apexcal.state import Store

T0 = datetime(2026, 6, 15, 9, tzinfo=UTC)
FEEDS = {
    "acme": {"team": FeedEntry(per_user=True, max_age=1800), "office": FeedEntry(per_user=False, max_age=300)},
    "beta": {"team": FeedEntry(per_user=False, max_age=300)},
}


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/state.db") as opened:
        yield opened


@contextmanager
def _another_process(store: Store) -> Iterator[Store]:
    with Store.open(store.url) as other:
        yield other


def put(store: Store, org: str, name: str, body: bytes, parent: str = "team") -> None:
    store.for_organization(org).put_feed_body(
        name, parent=parent, body=body, gzip=compress(body), etag=f'"{len(body)}-{body[:4]!r}"', at=T0
    )


class TestTokens:
    def test_a_revoked_token_works_at_most_for_the_token_lifetime(self, store: Store) -> None:
        """A cached grant is trusted for token_ttl, then read again, so revocation elsewhere shows within that bound."""
        clock = Clock()
        library = DatabaseFeeds(store, lambda: FEEDS, token_ttl=30, clock=clock)
        token = hash_token(new_token())
        store.for_organization("acme").add_feed_token("team", token, None, T0)
        assert library.grant(token) == Grant(scope="acme", feed="team", revoked=False)
        with _another_process(store) as other:  # a store object of its own, as `apexcal feed revoke` has
            other.for_organization("acme").revoke_feed_tokens("team")
        clock.now += 29.9
        assert library.grant(token) == Grant(scope="acme", feed="team", revoked=False)
        clock.now += 0.1
        assert library.grant(token) == Grant(scope="acme", feed="team", revoked=True)

    def test_a_revocation_through_the_same_store_shows_at_once(self, store: Store) -> None:
        """Revoking or rotating through the store the server reads drops the cached grants at once."""
        library = DatabaseFeeds(store, lambda: FEEDS, token_ttl=30, clock=Clock())
        token = hash_token(new_token())
        store.for_organization("acme").add_feed_token("team", token, None, T0)
        assert library.grant_now(token) is MISS
        assert library.grant(token) == Grant(scope="acme", feed="team", revoked=False)
        assert library.grant_now(token) == Grant(scope="acme", feed="team", revoked=False)
        store.for_organization("acme").revoke_feed_tokens("team")
        assert library.grant_now(token) is MISS
        assert library.grant(token) == Grant(scope="acme", feed="team", revoked=True)

    def test_unknown_tokens_are_not_cached(self, store: Store) -> None:
        """A URL made after a miss works at once."""
        library = DatabaseFeeds(store, lambda: FEEDS, token_ttl=30, clock=Clock())
        token = hash_token(new_token())
        assert library.grant(token) is None
        store.for_organization("beta").add_feed_token("team", token, None, T0)
        assert library.grant(token) == Grant(scope="beta", feed="team", revoked=False)

    def test_token_cache_is_bounded(self, store: Store) -> None:
        """At most max_tokens grants are held; the least recently used one is read again."""
        library = DatabaseFeeds(store, lambda: FEEDS, max_tokens=2, clock=Clock())
        hashes = [hash_token(new_token()) for _ in range(3)]
        for h in hashes:
            store.for_organization("acme").add_feed_token("team", h, None, T0)
        for h in hashes:
            library.grant(h)
        with _another_process(store) as other:  # a store object of its own, as `apexcal feed revoke` has
            other.for_organization("acme").revoke_feed_tokens("team")
        grants = [library.grant(h) for h in reversed(hashes)]
        assert [g.revoked if g else None for g in grants] == [False, False, True]


class TestBodies:
    def test_only_configured_feeds_and_built_per_user_feeds_exist(self, store: Store) -> None:
        """Configured feeds not built yet have no version; unbuilt per-user, unconfigured and other organizations' feeds are none."""
        library = DatabaseFeeds(store, lambda: FEEDS, clock=Clock())
        office = library.servable("acme", "office")
        assert office is not None
        assert (office.version, office.max_age) == (None, 300)
        assert library.servable("acme", "team-46") is None
        put(store, "acme", "team-46", b"forty-six")
        user = library.servable("acme", "team-46")
        assert user is not None
        assert user.version is not None
        assert (user.version.body, user.max_age) == (b"forty-six", 1800)
        assert library.servable("beta", "team-46") is None
        assert library.servable("acme", "other") is None
        assert library.servable("gamma", "team") is None

    def test_a_new_version_is_served_once_the_version_check_is_due(self, store: Store) -> None:
        """Bodies are held by version; a newer version replaces the held one at the next check."""
        clock = Clock()
        library = DatabaseFeeds(store, lambda: FEEDS, version_ttl=1.0, clock=clock)
        put(store, "acme", "team", b"one")
        first = library.servable("acme", "team")
        assert first is not None
        assert first.version is not None
        assert first.version.gzip_body() == compress(b"one")
        put(store, "acme", "team", b"two!")
        held = library.servable("acme", "team")
        assert held is not None
        assert held.version is first.version
        clock.now += 1.0
        fresh = library.servable("acme", "team")
        assert fresh is not None
        assert fresh.version is not None
        assert (fresh.version.body, fresh.version.etag) == (b"two!", "\"4-b'two!'\"")
        clock.now += 1.0
        again = library.servable("acme", "team")
        assert again is not None
        assert again.version is fresh.version  # same version: not read again

    def test_held_bodies_stay_within_the_byte_budget(self, store: Store) -> None:
        """Bodies and gzip forms held never exceed cache_bytes; one larger than it is served, not held."""
        library = DatabaseFeeds(store, lambda: FEEDS, cache_bytes=200, clock=Clock())
        put(store, "acme", "team", b"a" * 60)
        put(store, "acme", "office", b"b" * 60, parent="office")
        put(store, "beta", "team", b"c" * 500)
        for org, name in (("acme", "team"), ("acme", "office"), ("beta", "team")):
            found = library.servable(org, name)
            assert found is not None
            assert found.version is not None
            assert library.cached_bytes <= 200
        assert library.cached_bytes > 0


class TestHealth:
    def test_every_organizations_feeds_are_listed_with_their_last_build(self, store: Store) -> None:
        """Configured and built per-user feeds of every organization, as <org>/<feed>."""
        store.for_organization("acme").set_feed_built("team", '"x"', T0, 1, parent="team")
        store.for_organization("acme").set_feed_built("team-46", '"y"', T0, 1, parent="team")
        store.for_organization("beta").set_feed_built("team-46", '"z"', T0, 1, parent="team")
        health = DatabaseHealth(
            store, lambda: FEEDS, stale_after=timedelta(minutes=15), started_at=T0, clock=lambda: T0,
        )
        snap = health.snapshot()
        assert snap.feeds == {
            "acme/team": T0, "acme/team-46": T0, "acme/office": None, "beta/team": None,
        }


class TestDatabaseAway:
    def test_feeds_and_health_answer_503_when_the_database_cannot_be_read(self) -> None:
        """A server whose database is away answers 503 (with Retry-After), not an error page, and never a feed."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        store = Store.open(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=2", migrate_schema=False)
        try:
            library = DatabaseFeeds(store, lambda: FEEDS)
            health = DatabaseHealth(
                store, lambda: FEEDS, stale_after=timedelta(minutes=15), started_at=T0, clock=lambda: T0,
            )
            app = create_app(
                library=library, health=health, metrics_registry=CollectorRegistry(), stale_is_unhealthy=False
            )
            with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
                feed = client.get(f"/feeds/{new_token()}/team.ics")
                assert (feed.status_code, feed.headers["retry-after"]) == (503, "30")
                healthz = client.get("/healthz")
                assert healthz.status_code == 503
                assert healthz.json()["status"] == "unavailable"
        finally:
            store.close()
