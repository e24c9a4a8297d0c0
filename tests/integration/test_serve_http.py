"""The feed server over real HTTP: uvicorn on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import http.client
import io
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from apexcal.errors import UserError
from apexcal.feeds.tokens import feed_path, hash_token, new_token
from apexcal.ical.feed import etag_for
from apexcal.log import configure
from apexcal.metrics import Metrics
from apexcal.serve import HealthSnapshot, ServedFeed, StoreHealth, create_app, serve_in_thread
from apexcal.state import Store

TEAM_BODY = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//test//EN\r\n"
    + b"BEGIN:VEVENT\r\nUID:apexcal-1-1@example.com\r\nSUMMARY:Call \xc3\xa9t\xc3\xa9\r\n"
    + b"DTSTART:20260101T090000Z\r\nDTSTAMP:20260101T000000Z\r\nEND:VEVENT\r\n" * 40
    + b"END:VCALENDAR\r\n"
)
USER_BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//test//EN\r\nEND:VCALENDAR\r\n"
SECRET_BODY = b"not a feed: must never be served\n"
MTIME = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@dataclass
class TokenTable:
    """Issues and revokes feed tokens in a real state store, as ``apexcal feed`` does."""

    store: Store
    ids: dict[str, int] = field(default_factory=dict)

    def issue(self, feed: str) -> str:
        token = new_token()
        self.ids[token] = self.store.add_feed_token(feed, hash_token(token), None, datetime.now(UTC))
        return token

    def revoke(self, token: str, feed: str) -> None:
        assert self.store.revoke_feed_tokens(feed, self.ids[token]) == 1


@dataclass
class SettableHealth:
    """A health source whose last-success times a test sets."""

    snap: HealthSnapshot

    def snapshot(self) -> HealthSnapshot:
        return self.snap


@dataclass
class Server:
    base: str
    feed_dir: Path
    tokens: TokenTable
    health: SettableHealth
    metrics: Metrics
    feeds: dict[str, Path | ServedFeed]

    def url(self, token: str, name: str) -> str:
        return self.base + feed_path(token, name)


def _write(path: Path, body: bytes, mtime: datetime = MTIME) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    os.utime(tmp, (mtime.timestamp(), mtime.timestamp()))
    tmp.replace(path)


def _healthy(now: datetime) -> HealthSnapshot:
    return HealthSnapshot(
        now=now,
        stale_after=timedelta(minutes=15),
        started_at=now - timedelta(hours=1),
        feeds={"team": now - timedelta(minutes=1)},
        targets={"jane": now - timedelta(minutes=2)},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    feed_dir = tmp_path_factory.mktemp("feeds")
    _write(feed_dir / "team.ics", TEAM_BODY)
    _write(feed_dir / "team-46.ics", USER_BODY)
    (feed_dir / "secret.ics").write_bytes(SECRET_BODY)
    feeds: dict[str, Path | ServedFeed] = {
        "team": ServedFeed(path=feed_dir / "team.ics", max_age=3600),
        "team-46": feed_dir / "team-46.ics",
        "unbuilt": feed_dir / "unbuilt.ics",
    }
    health = SettableHealth(_healthy(datetime.now(UTC)))
    metrics = Metrics()
    with Store.open(f"sqlite:///{feed_dir / 'state.db'}") as store:
        tokens = TokenTable(store)
        # Grants held in memory, as `apexcal run` holds them: revocations
        # through this store still show at once.
        app = create_app(
            feeds=lambda: feeds,
            tokens=store,
            health=health,
            metrics_registry=metrics.registry,
            metrics=metrics,
            token_cache=30,
        )
        with serve_in_thread(app) as base:
            yield Server(base, feed_dir, tokens, health, metrics, feeds)


@pytest.fixture(scope="module")
def team_token(server: Server) -> str:
    return server.tokens.issue("team")


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    # httpx would send Accept and Accept-Encoding by default: start from none.
    with httpx.Client(base_url=server.base, headers={}, timeout=10) as c:
        c.headers.clear()
        yield c


def raw_request(
    base: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send ``path`` byte for byte (no normalisation, no default headers but Host)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def sha_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest() + '"'


class TestFeedResponse:
    def test_get_serves_the_file_with_calendar_headers(self, server: Server, team_token: str) -> None:
        """A valid token and name return the exact file with calendar and cache headers."""
        status, headers, body = raw_request(server.base, "GET", feed_path(team_token, "team"))
        assert status == 200
        assert body == TEAM_BODY
        assert headers["Content-Type"] == "text/calendar; charset=utf-8"
        assert headers["Content-Disposition"] == 'inline; filename="team.ics"'
        assert headers["ETag"] == sha_etag(TEAM_BODY) == etag_for(TEAM_BODY)
        assert headers["Last-Modified"] == format_datetime(MTIME, usegmt=True)
        assert headers["Cache-Control"] == "private, max-age=3600"
        assert headers["Vary"] == "Accept-Encoding"
        assert int(headers["Content-Length"]) == len(TEAM_BODY)
        assert "Content-Encoding" not in headers

    def test_request_without_any_accept_header_gets_the_feed(self, server: Server, team_token: str) -> None:
        """Google's fetcher sends no Accept header at all; it still gets a 200."""
        status, _, body = raw_request(server.base, "GET", feed_path(team_token, "team"))
        assert status == 200
        assert body == TEAM_BODY

    @pytest.mark.parametrize("accept", ["text/calendar", "*/*", "text/calendar, */*;q=0.1"])
    def test_usual_accept_headers_get_the_feed(self, server: Server, team_token: str, accept: str) -> None:
        """Accept values calendar clients send are all answered with the feed."""
        status, _, body = raw_request(
            server.base, "GET", feed_path(team_token, "team"), {"Accept": accept}
        )
        assert (status, body) == (200, TEAM_BODY)

    def test_default_cache_lifetime_is_five_minutes(self, server: Server) -> None:
        """A feed given as a bare path is cacheable for 300 seconds."""
        token = server.tokens.issue("team-46")
        status, headers, body = raw_request(server.base, "GET", feed_path(token, "team-46"))
        assert (status, body) == (200, USER_BODY)
        assert headers["Cache-Control"] == "private, max-age=300"

    def test_head_returns_get_headers_without_body(self, client: httpx.Client, server: Server, team_token: str) -> None:
        """HEAD answers with GET's headers, including its Content-Length, and no body."""
        path = feed_path(team_token, "team")
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""
        for name in ("etag", "last-modified", "content-type", "content-length", "cache-control"):
            assert head.headers[name] == got.headers[name]
        assert int(head.headers["content-length"]) == len(TEAM_BODY)

    def test_feed_not_built_yet_is_503(self, server: Server) -> None:
        """A configured feed whose file does not exist yet answers 503 with Retry-After."""
        token = server.tokens.issue("unbuilt")
        status, headers, _ = raw_request(server.base, "GET", feed_path(token, "unbuilt"))
        assert status == 503
        assert headers["Retry-After"]


class TestConditionalRequests:
    @pytest.mark.parametrize(
        "if_none_match",
        [
            "{etag}",
            "W/{etag}",
            '"other", {etag}',
            "*",
        ],
    )
    def test_matching_if_none_match_is_304(self, server: Server, team_token: str, if_none_match: str) -> None:
        """The current ETag (alone, weak, in a list, or ``*``) gets 304 without a body."""
        value = if_none_match.format(etag=sha_etag(TEAM_BODY))
        status, headers, body = raw_request(
            server.base, "GET", feed_path(team_token, "team"), {"If-None-Match": value}
        )
        assert status == 304
        assert body == b""
        assert headers["ETag"] == sha_etag(TEAM_BODY)
        assert headers["Cache-Control"] == "private, max-age=3600"

    def test_other_etag_is_200(self, server: Server, team_token: str) -> None:
        """An If-None-Match naming another version gets the full body."""
        status, _, body = raw_request(
            server.base, "GET", feed_path(team_token, "team"), {"If-None-Match": '"0123", W/"x"'}
        )
        assert (status, body) == (200, TEAM_BODY)

    @pytest.mark.parametrize(
        ("since", "expected"),
        [
            (MTIME, 304),
            (MTIME + timedelta(days=1), 304),
            (MTIME - timedelta(seconds=1), 200),
            (MTIME - timedelta(days=400), 200),
        ],
    )
    def test_if_modified_since_is_compared_as_a_date(
        self, server: Server, team_token: str, since: datetime, expected: int
    ) -> None:
        """An equal or newer date gets 304; an older date gets 200."""
        status, _, _ = raw_request(
            server.base,
            "GET",
            feed_path(team_token, "team"),
            {"If-Modified-Since": format_datetime(since, usegmt=True)},
        )
        assert status == expected

    def test_obsolete_date_formats_are_understood(self, server: Server, team_token: str) -> None:
        """The RFC 850 date form of the modification time still gets 304."""
        status, _, _ = raw_request(
            server.base,
            "GET",
            feed_path(team_token, "team"),
            {"If-Modified-Since": MTIME.strftime("%A, %d-%b-%y %H:%M:%S GMT")},
        )
        assert status == 304

    def test_unparsable_date_is_ignored(self, server: Server, team_token: str) -> None:
        """If-Modified-Since that is not a date is ignored (200)."""
        status, _, _ = raw_request(
            server.base, "GET", feed_path(team_token, "team"), {"If-Modified-Since": "yesterday"}
        )
        assert status == 200

    def test_if_none_match_takes_precedence_over_dates(self, server: Server, team_token: str) -> None:
        """With a non-matching If-None-Match, a newer If-Modified-Since does not give 304."""
        status, _, _ = raw_request(
            server.base,
            "GET",
            feed_path(team_token, "team"),
            {
                "If-None-Match": '"stale"',
                "If-Modified-Since": format_datetime(MTIME + timedelta(days=1), usegmt=True),
            },
        )
        assert status == 200

    def test_head_honours_conditions(self, client: httpx.Client, team_token: str) -> None:
        """A conditional HEAD gets the same 304 as a conditional GET."""
        r = client.head(feed_path(team_token, "team"), headers={"If-None-Match": sha_etag(TEAM_BODY)})
        assert r.status_code == 304


class TestGzip:
    def test_gzip_body_decompresses_to_the_plain_body(self, client: httpx.Client, team_token: str) -> None:
        """With Accept-Encoding: gzip the body is gzip, with its own ETag, and inflates to the file."""
        r = client.get(feed_path(team_token, "team"), headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["vary"] == "Accept-Encoding"
        assert r.content == TEAM_BODY  # httpx inflates
        assert r.headers["etag"] not in (sha_etag(TEAM_BODY), "")
        assert int(r.headers["content-length"]) < len(TEAM_BODY)

    def test_gzip_body_is_stable(self, server: Server, team_token: str) -> None:
        """Two gzip responses of one version are byte-identical, as a strong ETag promises."""
        path = feed_path(team_token, "team")
        one = raw_request(server.base, "GET", path, {"Accept-Encoding": "gzip"})
        two = raw_request(server.base, "GET", path, {"Accept-Encoding": "gzip"})
        assert one[2] == two[2]
        assert gzip.decompress(one[2]) == TEAM_BODY
        assert one[1]["ETag"] == two[1]["ETag"]

    def test_gzip_etag_gets_304(self, server: Server, team_token: str) -> None:
        """The gzip variant's ETag is recognised in If-None-Match."""
        path = feed_path(team_token, "team")
        _, headers, _ = raw_request(server.base, "GET", path, {"Accept-Encoding": "gzip"})
        status, again, body = raw_request(
            server.base, "GET", path, {"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]}
        )
        assert (status, body) == (304, b"")
        assert again["ETag"] == headers["ETag"]

    @pytest.mark.parametrize("accept_encoding", ["gzip;q=0", "identity", "br", "*;q=0, identity"])
    def test_gzip_refused_gets_identity(self, server: Server, team_token: str, accept_encoding: str) -> None:
        """q=0 or no gzip in Accept-Encoding gets the plain body."""
        status, headers, body = raw_request(
            server.base, "GET", feed_path(team_token, "team"), {"Accept-Encoding": accept_encoding}
        )
        assert (status, body) == (200, TEAM_BODY)
        assert "Content-Encoding" not in headers

    def test_gzip_head_has_gzip_length(self, server: Server, team_token: str) -> None:
        """HEAD with gzip reports the compressed length."""
        path = feed_path(team_token, "team")
        _, get_headers, body = raw_request(server.base, "GET", path, {"Accept-Encoding": "gzip"})
        status, head_headers, head_body = raw_request(server.base, "HEAD", path, {"Accept-Encoding": "gzip"})
        assert (status, head_body) == (200, b"")
        assert head_headers["Content-Length"] == str(len(body)) == get_headers["Content-Length"]


class TestTokens:
    def test_unknown_token_and_wrong_name_get_identical_404(self, server: Server, team_token: str) -> None:
        """An unknown token and a known token with another feed's name look the same."""
        unknown = raw_request(server.base, "GET", feed_path(new_token(), "team"))
        wrong_name = raw_request(server.base, "GET", feed_path(team_token, "team-46"))
        not_configured = raw_request(server.base, "GET", feed_path(team_token, "other"))
        for status, headers, body in (unknown, wrong_name, not_configured):
            assert status == 404
            assert body == unknown[2]
            assert headers["Content-Type"] == unknown[1]["Content-Type"]
            assert headers["Content-Length"] == unknown[1]["Content-Length"]

    def test_file_beside_the_feeds_is_not_served(self, server: Server, team_token: str) -> None:
        """A file in the feed directory that is not in the mapping is never served."""
        status, _, body = raw_request(server.base, "GET", feed_path(team_token, "secret"))
        assert status == 404
        assert SECRET_BODY not in body

    def test_revoked_token_gets_410_gone(self, server: Server) -> None:
        """A token stops working once revoked, and says so: 410 Gone, never cached, no feed bytes."""
        token = server.tokens.issue("team")
        assert raw_request(server.base, "GET", feed_path(token, "team"))[0] == 200
        server.tokens.revoke(token, "team")
        for method in ("GET", "HEAD"):
            status, headers, body = raw_request(server.base, method, feed_path(token, "team"))
            assert status == 410
            assert headers["Cache-Control"] == "no-store"
            assert b"VCALENDAR" not in body
        # A conditional request from a client holding the old copy is not a 304.
        assert raw_request(
            server.base, "GET", feed_path(token, "team"), {"If-None-Match": "*"}
        )[0] == 410

    def test_revoked_token_with_another_name_is_a_plain_404(self, server: Server) -> None:
        """A revoked token tells nothing about feeds it was not issued for: the unknown-token 404."""
        token = server.tokens.issue("team")
        server.tokens.revoke(token, "team")
        unknown = raw_request(server.base, "GET", feed_path(new_token(), "team"))
        for name in ("team-46", "other"):
            status, headers, body = raw_request(server.base, "GET", feed_path(token, name))
            assert (status, body) == (404, unknown[2])
            assert headers["Content-Length"] == unknown[1]["Content-Length"]

    def test_rotation_replaces_old_tokens(self, server: Server) -> None:
        """After rotation the old URL is 410 Gone and the new one works."""
        old = server.tokens.issue("team-46")
        server.tokens.revoke(old, "team-46")
        new = server.tokens.issue("team-46")
        assert raw_request(server.base, "GET", feed_path(old, "team-46"))[0] == 410
        assert raw_request(server.base, "GET", feed_path(new, "team-46"))[0] == 200

    def test_several_tokens_per_feed(self, server: Server, team_token: str) -> None:
        """Each device's token serves the same feed."""
        phone = server.tokens.issue("team")
        for token in (team_token, phone):
            assert raw_request(server.base, "GET", feed_path(token, "team"))[2] == TEAM_BODY


class TestHostilePaths:
    @pytest.mark.parametrize(
        "template",
        [
            "/feeds/{t}/../../../etc/passwd",
            "/feeds/{t}/../secret.ics",
            "/feeds/{t}/%2e%2e/secret.ics",
            "/feeds/{t}/%2E%2E%2Fsecret.ics",
            "/feeds/{t}%2Fteam.ics",
            "/feeds/{t}/team%2Eics",
            "/feeds/{t}/te%61m.ics",
            "/feeds/{t}//team.ics",
            "/feeds/{t}/team.ics/",
            "/feeds/{t}/team.ics/..",
            "/feeds/{t}/..ics",
            "/feeds/{t}/.team.ics",
            "/feeds/{t}/a..b.ics",
            "/feeds/{t}/team",
            "/feeds/{t}/team.ics%00",
            "/feeds/{t}/%2Fetc%2Fpasswd",
            "/feeds/{t}/team.ICS",
            "/feeds/../feeds/{t}/team.ics",
            "/feeds/./{t}/team.ics",
            "/feeds/{t}/",
            "/feeds/",
            "/feeds",
            "/etc/passwd",
            "//etc/passwd",
            "/{t}/team.ics",
        ],
    )
    def test_traversal_and_malformed_paths_are_404(self, server: Server, team_token: str, template: str) -> None:
        """Raw traversal attempts and malformed feed paths get 404 and no file contents."""
        status, _, body = raw_request(server.base, "GET", template.format(t=team_token))
        assert status == 404
        assert body == b"Not Found"

    def test_absolute_form_target_is_not_served(self, server: Server, team_token: str) -> None:
        """An absolute-form request target pointing at a feed is not a feed path."""
        status, _, _ = raw_request(server.base, "GET", server.url(team_token, "team"))
        assert status == 404

    @pytest.mark.parametrize("extra", [1, 4000])
    def test_over_long_paths_are_404(self, server: Server, team_token: str, extra: int) -> None:
        """A path over 512 bytes is refused even when it is otherwise well formed."""
        name = "t" * (512 - len(feed_path(team_token, "")) + extra)
        server.feeds[name] = server.feed_dir / "team.ics"
        token = server.tokens.issue(name)
        path = feed_path(token, name)
        assert len(path) > 512
        assert raw_request(server.base, "GET", path)[0] == 404

    def test_query_string_is_ignored(self, server: Server, team_token: str) -> None:
        """Cache-busting query strings do not change the answer."""
        status, _, body = raw_request(server.base, "GET", feed_path(team_token, "team") + "?x=1")
        assert (status, body) == (200, TEAM_BODY)


class TestMethods:
    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND", "MKCALENDAR", "OPTIONS"])
    def test_odd_methods_on_feeds_are_405(self, server: Server, team_token: str, method: str) -> None:
        """Anything but GET and HEAD on a feed URL is 405 with Allow: GET, HEAD."""
        status, headers, _ = raw_request(server.base, method, feed_path(team_token, "team"))
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"

    def test_odd_method_on_unknown_path_is_404(self, server: Server) -> None:
        """An odd method on a path that is no feed URL is simply 404."""
        assert raw_request(server.base, "PROPFIND", "/feeds/x/../y")[0] == 404


class TestConcurrentRegeneration:
    def test_readers_never_see_a_partial_body(self, tmp_path: Path) -> None:
        """While a writer replaces the file in a loop, every body read is one complete version with its ETag."""
        # Distinct sizes per version, so a torn read could never pass as a whole one.
        versions = [
            b"BEGIN:VCALENDAR\r\n" + (b"X-VERSION:%d\r\n" % i) * (200 + 37 * i) + b"END:VCALENDAR\r\n"
            for i in range(6)
        ]
        path = tmp_path / "live.ics"
        path.write_bytes(versions[0])
        store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        token = TokenTable(store).issue("live")
        metrics = Metrics()
        app = create_app(
            feeds=lambda: {"live": path},
            tokens=store,
            health=SettableHealth(_healthy(datetime.now(UTC))),
            metrics_registry=metrics.registry,
            token_cache=30,
        )
        stop = threading.Event()
        writes = 0

        def writer() -> None:
            nonlocal writes
            i = 0
            while not stop.is_set():
                i += 1
                tmp = tmp_path / f".live.{i}.tmp"
                with open(tmp, "wb") as handle:
                    data = versions[i % len(versions)]
                    # Two writes, so a reader of the temp file would see half of it.
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    handle.write(data[len(data) // 2 :])
                os.replace(tmp, path)
                writes += 1

        seen: set[bytes] = set()
        problems: list[str] = []
        with serve_in_thread(app) as base:
            writer_thread = threading.Thread(target=writer)
            writer_thread.start()

            def reader() -> None:
                with httpx.Client(base_url=base, timeout=10) as c:
                    for n in range(60):
                        r = c.get(
                            feed_path(token, "live"),
                            headers={"Accept-Encoding": "gzip" if n % 2 else "identity"},
                        )
                        if r.status_code != 200 or r.content not in versions:
                            problems.append(f"status {r.status_code}, {len(r.content)} bytes")
                            continue
                        expected = sha_etag(r.content)
                        if n % 2:
                            expected = expected[:-1] + '-gz"'
                        if r.headers["etag"] != expected:
                            problems.append("etag does not match body")
                        seen.add(r.content)

            try:
                readers = [threading.Thread(target=reader) for _ in range(4)]
                for t in readers:
                    t.start()
                for t in readers:
                    t.join(30)
            finally:
                stop.set()
                writer_thread.join(10)
                store.close()
        assert problems == []
        assert writes > 20
        assert len(seen) > 1


class TestOtherPaths:
    def test_healthz_is_200_when_fresh(self, client: httpx.Client, server: Server) -> None:
        """Fresh feeds and targets give 200 with their last success times."""
        server.health.snap = _healthy(datetime.now(UTC))
        r = client.get("/healthz")
        assert r.status_code == 200
        doc = r.json()
        assert doc["status"] == "ok"
        assert doc["feeds"]["team"]["stale"] is False
        assert doc["targets"]["jane"]["last_success"] == server.health.snap.targets["jane"].isoformat()  # type: ignore[union-attr]

    def test_healthz_is_503_when_a_target_is_stale(self, client: httpx.Client, server: Server) -> None:
        """A target whose last success is older than the bound turns health to 503."""
        now = datetime.now(UTC)
        snap = _healthy(now)
        server.health.snap = HealthSnapshot(
            now=now,
            stale_after=snap.stale_after,
            started_at=snap.started_at,
            feeds=snap.feeds,
            targets={"jane": now - timedelta(minutes=16)},
        )
        try:
            r = client.get("/healthz")
        finally:
            server.health.snap = _healthy(now)
        assert r.status_code == 503
        assert r.json()["targets"]["jane"]["stale"] is True

    def test_healthz_is_503_when_a_feed_never_built_long_after_start(self, client: httpx.Client, server: Server) -> None:
        """A feed never built although the process started long ago is stale."""
        now = datetime.now(UTC)
        server.health.snap = HealthSnapshot(
            now=now,
            stale_after=timedelta(minutes=15),
            started_at=now - timedelta(hours=1),
            feeds={"team": None},
            targets={},
        )
        try:
            r = client.get("/healthz")
        finally:
            server.health.snap = _healthy(now)
        assert r.status_code == 503
        assert r.json()["feeds"]["team"] == {"last_built": None, "stale": True}

    def test_metrics_parse_and_count_feed_requests(self, client: httpx.Client, server: Server, team_token: str) -> None:
        """/metrics is Prometheus text that counts feed requests by status."""
        client.get(feed_path(team_token, "team"))
        client.get(feed_path(new_token(), "team"))
        server.metrics.cycle_finished("jane", {"created": 3}, 1.5)
        r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text)
            for s in family.samples
        }
        assert samples[("apexcal_feed_requests_total", (("feed", "team"), ("status", "200")))] >= 1
        assert samples[("apexcal_feed_requests_total", (("feed", "-"), ("status", "404")))] >= 1
        assert samples[("apexcal_objects_total", (("action", "created"), ("target", "jane")))] == 3

    def test_robots_txt_allows_only_feeds(self, client: httpx.Client) -> None:
        """robots.txt allows /feeds/ and disallows everything else."""
        r = client.get("/robots.txt")
        assert r.status_code == 200
        lines = r.text.splitlines()
        assert "Allow: /feeds/" in lines
        assert "Disallow: /" in lines

    @pytest.mark.parametrize("path", ["/", "/index.html", "/healthz/", "/metrics/x", "/static/team.ics"])
    def test_other_paths_are_404(self, client: httpx.Client, path: str) -> None:
        """Every path that is not served is a plain 404."""
        r = client.get(path)
        assert r.status_code == 404
        assert r.text == "Not Found"



class TestStoreHealth:
    def test_healthz_follows_the_state_store(self, tmp_path: Path) -> None:
        """/healthz reads feed builds and target successes from the store: 503 while one is stale, then 200."""
        now = datetime.now(UTC)
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            store.set_feed_built("team", etag_for(b"x"), now - timedelta(minutes=1), 1)
            store.set_feed_built("team-46", etag_for(b"y"), now - timedelta(minutes=1), 1)
            store.set_feed_built("retired", etag_for(b"z"), now - timedelta(days=9), 1)
            store.record_success("jane", now - timedelta(minutes=20), {})
            health = StoreHealth(
                store,
                feeds=lambda: ["team"],
                targets=lambda: ["jane", "joe"],
                stale_after=timedelta(minutes=15),
                started_at=now - timedelta(hours=1),
                clock=lambda: datetime.now(UTC),
                per_user_feeds=lambda: ["team"],
            )
            metrics = Metrics()
            app = create_app(
                feeds=dict, tokens=store, health=health, metrics_registry=metrics.registry
            )
            with serve_in_thread(app) as base:
                stale = httpx.get(base + "/healthz", timeout=10)
                store.record_success("jane", datetime.now(UTC), {})
                store.record_success("joe", datetime.now(UTC), {})
                fresh = httpx.get(base + "/healthz", timeout=10)
        assert stale.status_code == 503
        doc = stale.json()
        assert set(doc["feeds"]) == {"team", "team-46"}
        assert doc["targets"]["jane"]["stale"] is True
        assert doc["targets"]["joe"] == {"last_success": None, "stale": True}
        assert fresh.status_code == 200
        assert fresh.json()["status"] == "ok"


class TestSecrecy:
    def test_feed_tokens_never_reach_logs(self, server: Server, team_token: str) -> None:
        """Neither our debug logs nor uvicorn's loggers ever see a feed token."""
        records: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage() + repr(record.args))

        handler = Collect(level=logging.DEBUG)
        loggers = [
            logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error")
        ]
        levels = [lg.level for lg in loggers]
        stream = io.StringIO()
        configure("debug", stream=stream, json=True)
        for lg in loggers:
            lg.addHandler(handler)
            lg.setLevel(logging.DEBUG)
        try:
            for headers in ({}, {"If-None-Match": sha_etag(TEAM_BODY)}):
                raw_request(server.base, "GET", feed_path(team_token, "team"), headers)
            raw_request(server.base, "GET", feed_path(team_token, "nope"))
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.removeHandler(handler)
                lg.setLevel(level)
            structlog.reset_defaults()
        output = stream.getvalue()
        assert '"event": "feed.request"' in output
        assert '"feed": "team"' in output
        assert team_token not in output
        assert not any(team_token in r for r in records)


class TestServerThread:
    def test_busy_port_is_an_operator_error(self) -> None:
        """Listening on a port already taken raises a UserError naming the address, without hanging."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            metrics = Metrics()
            app = create_app(
                feeds=dict,
                tokens=_NoTokens(),
                health=SettableHealth(_healthy(datetime.now(UTC))),
                metrics_registry=metrics.registry,
            )
            with pytest.raises(UserError, match=f"127.0.0.1:{port}"), serve_in_thread(app, port=port):
                pass


class _NoTokens:
    def feed_token_state(self, token_hash: str) -> tuple[str, bool] | None:
        return None


class TestSourceProperty:
    """With a public URL, each subscriber's copy names its own URL in SOURCE."""

    def test_each_token_gets_its_own_source_and_etag(self, tmp_path: Path) -> None:
        """Two device URLs of one feed: SOURCE names each one's URL, ETags hash each body, 304 works."""
        body = (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apexcal//apexcal 0.1//EN\r\n"
            b"END:VCALENDAR\r\n"
        )
        path = tmp_path / "team.ics"
        path.write_bytes(body)
        public = "https://cal.example.com/with/a/rather/long/prefix/that/forces/folding"
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            table = TokenTable(store)
            phone, laptop = table.issue("team"), table.issue("team")
            metrics = Metrics()
            app = create_app(
                feeds=lambda: {"team": path},
                tokens=store,
                health=SettableHealth(_healthy(datetime.now(UTC))),
                metrics_registry=metrics.registry,
                public_url=public + "/",
            )
            with serve_in_thread(app) as base:
                answers = {}
                for token in (phone, laptop):
                    status, headers, got = raw_request(base, "GET", feed_path(token, "team"))
                    assert status == 200
                    answers[token] = (headers["ETag"], got)
                    unfolded = got.replace(b"\r\n ", b"").decode()
                    assert f"SOURCE;VALUE=URI:{public}{feed_path(token, 'team')}\r\n" in unfolded
                    assert all(len(line) <= 75 for line in got.split(b"\r\n"))
                    assert headers["ETag"] == sha_etag(got)
                    other = laptop if token == phone else phone
                    assert other.encode() not in got
                    status, _, _ = raw_request(
                        base, "GET", feed_path(token, "team"), {"If-None-Match": headers["ETag"]}
                    )
                    assert status == 304
                assert answers[phone][0] != answers[laptop][0]
                assert path.read_bytes() == body

    def test_without_public_url_the_file_is_served_as_is(self, server: Server, team_token: str) -> None:
        """No public URL configured: the body is the file, byte for byte, with no SOURCE."""
        status, _, body = raw_request(server.base, "GET", feed_path(team_token, "team"))
        assert (status, body) == (200, TEAM_BODY)
        assert b"SOURCE" not in body


@contextlib.contextmanager
def _big_feed_app(tmp_path: Path, body: bytes) -> Iterator[tuple[Any, str]]:
    """The feed app serving ``body`` as feed ``big`` from a file, and a token for it."""
    path = tmp_path / "big.ics"
    path.write_bytes(body)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        token = TokenTable(store).issue("big")
        yield create_app(
            feeds=lambda: {"big": path},
            tokens=store,
            health=SettableHealth(_healthy(datetime.now(UTC))),
            metrics_registry=Metrics().registry,
            token_cache=30,
        ), token


class TestLargeBodies:
    def test_a_body_larger_than_a_slice_arrives_whole(self, tmp_path: Path) -> None:
        """A feed sent in several slices arrives whole, with its length and ETag; HEAD sends none of it."""
        line = b"X-FILLER:" + b"y" * 60 + b"\r\n"
        body = b"BEGIN:VCALENDAR\r\n" + line * 30_000 + b"END:VCALENDAR\r\n"  # ~2 MiB
        with _big_feed_app(tmp_path, body) as (app, token), serve_in_thread(app) as base:
            status, headers, got = raw_request(base, "GET", feed_path(token, "big"))
            head = raw_request(base, "HEAD", feed_path(token, "big"))
        assert (status, got) == (200, body)
        assert headers["Content-Length"] == str(len(body))
        assert headers["ETag"] == sha_etag(body)
        assert (head[0], head[2], head[1]["Content-Length"]) == (200, b"", str(len(body)))

    def test_a_client_gone_mid_body_is_written_nothing_more(self, tmp_path: Path) -> None:
        """A connection lost while slices are written gets no further write: none reaches a closed transport.

        The ``send`` here behaves as uvicorn's does: a socket write that fails
        closes the transport, which schedules the protocol's
        ``connection_lost`` on the event loop; a send after that returns at
        once.  asyncio logs "socket.send() raised exception." for each write
        to a closed transport, so the body loop must let the loop run between
        slices instead of writing them all first.
        """
        line = b"X-FILLER:" + b"y" * 60 + b"\r\n"
        body = b"BEGIN:VCALENDAR\r\n" + line * 60_000 + b"END:VCALENDAR\r\n"  # ~4 MiB, 8 slices
        with _big_feed_app(tmp_path, body) as (app, token):
            target = feed_path(token, "big")
            scope = {
                "type": "http", "method": "GET", "path": target, "raw_path": target.encode(),
                "query_string": b"", "headers": [(b"host", b"127.0.0.1")],
            }
            written: list[dict[str, object]] = []
            lost = asyncio.Event()

            async def send(message: dict[str, object]) -> None:
                if lost.is_set():
                    return
                written.append(message)
                if message["type"] == "http.response.body":  # the first slice's write fails
                    asyncio.get_running_loop().call_soon(lost.set)

            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
        assert written[0]["type"] == "http.response.start"
        assert written[0]["status"] == 200
        assert [m["type"] for m in written[1:]] == ["http.response.body"]
        assert written[1]["more_body"] is True

    def test_clients_resetting_mid_body_leave_no_write_warnings(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Clients that reset the connection mid-download: the server stops writing, asyncio logs nothing."""
        line = b"X-FILLER:" + b"y" * 70 + b"\r\n"
        body = b"BEGIN:VCALENDAR\r\n" + line * 160_000 + b"END:VCALENDAR\r\n"  # ~12 MiB, 24 slices
        caplog.set_level(logging.WARNING, logger="asyncio")
        with _big_feed_app(tmp_path, body) as (app, token), serve_in_thread(app) as base:
            parts = urlsplit(base)
            for _ in range(10):
                with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
                    sock.sendall(f"GET {feed_path(token, 'big')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    got = 0
                    while got < 2_000_000:
                        chunk = sock.recv(1 << 20)
                        assert chunk
                        got += len(chunk)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
            status, _, whole = raw_request(base, "GET", feed_path(token, "big"))
        # The server has stopped: every aborted answer has ended.
        assert (status, whole) == (200, body)
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


class TestFeedMap:
    def test_the_feed_map_is_not_read_for_every_request(self, tmp_path: Path) -> None:
        """The feed map (a directory listing per per-user feed in the daemon) is read off the event loop, about once a second."""
        path = tmp_path / "team.ics"
        path.write_bytes(TEAM_BODY)
        calls = 0

        def feeds() -> dict[str, Path | ServedFeed]:
            nonlocal calls
            calls += 1
            return {"team": path}

        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            token = TokenTable(store).issue("team")
            app = create_app(
                feeds=feeds,
                tokens=store,
                health=SettableHealth(_healthy(datetime.now(UTC))),
                metrics_registry=Metrics().registry,
                token_cache=30,
            )
            with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as c:
                statuses = {c.get(feed_path(token, "team")).status_code for _ in range(50)}
        assert statuses == {200}
        assert calls < 25
