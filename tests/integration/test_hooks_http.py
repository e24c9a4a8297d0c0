"""The sync webhook over real HTTP, with a real state store: answers, secrets, debouncing, logs.

The endpoint is mounted as in the feed server, under uvicorn on loopback; the store is SQLite on disk.  The sync action records
the organizations it is called for (what it does is the daemon's or the
workers', tested with them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route
from structlog.testing import capture_logs

from apexcal.clock import utcnow
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.serve import serve_in_thread
from apexcal.serve.hooks import Debouncer, HookEndpoint, hook_path
from apexcal.state import Store

WINDOW_S = 0.5


@dataclass
class Calls:
    """Organizations the sync action was called for, in order."""

    orgs: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, org: str) -> None:
        with self.lock:
            self.orgs.append(org)

    def count(self, org: str) -> int:
        with self.lock:
            return self.orgs.count(org)


@dataclass
class Server:
    url: str
    store: Store
    calls: Calls
    debouncer: Debouncer
    registry: CollectorRegistry

    def secret(self, org: str) -> str:
        secret = new_token()
        self.store.for_organization(org).add_hook_secret(hash_token(secret), None, utcnow())
        return secret

    def post(self, secret: str, method: str = "POST") -> httpx.Response:
        return httpx.request(method, self.url + hook_path(secret), timeout=10)


def _until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        calls = Calls()
        debouncer = Debouncer(calls, window=WINDOW_S)
        registry = CollectorRegistry()
        hooks = HookEndpoint(
            secrets=store, debouncer=debouncer, organizations=lambda: ("acme", "beta"),
            registry=registry,
        )
        # Mounted as the feed server mounts it (the daemon's test goes through the feed server itself).
        app = Starlette(routes=[Route("/hooks/{rest:path}", hooks)])
        with serve_in_thread(app) as url:
            yield Server(url=url, store=store, calls=calls, debouncer=debouncer, registry=registry)
        debouncer.close()


class TestAnswers:
    def test_known_secret_is_accepted_and_syncs_its_organization(self, server: Server) -> None:
        """A POST with an active secret answers 202 and the action runs for that organization."""
        secret = server.secret("acme")
        response = server.post(secret)
        assert response.status_code == 202
        assert response.headers["cache-control"] == "no-store"
        _until(lambda: server.calls.count("acme") == 1, 10, "the sync of acme")
        assert server.calls.orgs == ["acme"]

    def test_unknown_malformed_and_other_organizations_secrets_are_404(self, server: Server) -> None:
        """A wrong secret, a malformed one, and one of an organization not served all get 404."""
        server.secret("acme")
        stranger = server.secret("gamma")  # a real secret, of an organization this server does not sync
        for path in (
            hook_path(new_token()),
            hook_path("short"),
            hook_path(new_token()) + "/",
            "/hooks/" + new_token(),
            hook_path(new_token()).replace("sync", "SYNC"),
            hook_path(stranger),
        ):
            response = httpx.post(server.url + path, timeout=10)
            assert response.status_code == 404, path
            assert response.text == "Not Found"
        assert server.calls.orgs == []
        assert server.debouncer.waiting() == 0

    def test_other_methods_are_refused_without_a_lookup(self, server: Server) -> None:
        """GET on a hook URL is 405 naming POST and syncs nothing."""
        response = server.post(server.secret("acme"), method="GET")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert server.debouncer.waiting() == 0

    def test_revoked_secret_stops_working_and_a_new_one_works(self, server: Server) -> None:
        """After a rotation (revoke all, issue one) the old secret is 404 and the new one 202."""
        old = server.secret("beta")
        assert server.post(old).status_code == 202
        view = server.store.for_organization("beta")
        assert view.revoke_hook_secrets(at=utcnow()) == 1
        new = server.secret("beta")
        assert server.post(old).status_code == 404
        assert server.post(new).status_code == 202


class TestDebounce:
    def test_many_posts_within_the_window_make_one_sync(self, server: Server) -> None:
        """Ten posts in a burst run the action once; a post after it ran opens a new window."""
        secret = server.secret("acme")
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                assert client.post(server.url + hook_path(secret)).status_code == 202
        _until(lambda: server.calls.count("acme") == 1, 10, "the first sync")
        # Every post arrived before the window closed (the action runs only then) and no
        # window is open: nothing more can run.
        assert server.debouncer.waiting() == 0
        assert server.calls.count("acme") == 1
        assert server.post(secret).status_code == 202
        _until(lambda: server.calls.count("acme") == 2, 10, "the second sync")

    def test_organizations_are_debounced_apart(self, server: Server) -> None:
        """A burst for one organization does not absorb a post for another."""
        acme, beta = server.secret("acme"), server.secret("beta")
        for secret in (acme, acme, beta, acme):
            assert server.post(secret).status_code == 202
        _until(lambda: sorted(server.calls.orgs) == ["acme", "beta"], 10, "one sync of each")


class TestSecrecy:
    def test_the_secret_appears_in_no_log_line(self, server: Server) -> None:
        """Accepted and refused posts log the organization, never the secret or its path."""
        secret = server.secret("acme")
        wrong = new_token()
        with capture_logs() as logs:
            server.post(secret)
            server.post(wrong)
            _until(lambda: server.calls.count("acme") == 1, 10, "the sync")
        text = repr(logs)
        assert any(entry.get("event") == "hook.sync" for entry in logs)
        assert secret not in text
        assert wrong not in text
        assert hash_token(secret) not in text

    def test_requests_are_counted_by_answer(self, server: Server) -> None:
        """``apexcal_hook_requests_total`` counts 202s and 404s."""
        server.post(server.secret("acme"))
        server.post(new_token())
        sample = server.registry.get_sample_value
        assert sample("apexcal_hook_requests_total", {"status": "202"}) == 1
        assert sample("apexcal_hook_requests_total", {"status": "404"}) == 1
