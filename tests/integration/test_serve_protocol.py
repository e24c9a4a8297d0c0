"""Feed revalidations answered by the server's protocol itself, beside the same server without that path.

A 304 whose answer is in memory is written by the HTTP protocol before any
ASGI scope exists (:mod:`apexcal.serve.runner`); everything else goes to the
application.  Both servers here serve the same files and tokens; one has
that path turned off, so each answer can be compared byte for byte.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from apexcal.feeds.tokens import feed_path, hash_token, new_token
from apexcal.metrics import Metrics
from apexcal.serve import HealthSnapshot, ServedFeed, create_app, serve_in_thread
from apexcal.serve.files import gzip_etag
from apexcal.state import Store

BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + b"X-LINE:protocol path\r\n" * 300 + b"END:VCALENDAR\r\n"
MTIME = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class _Healthy:
    def snapshot(self) -> HealthSnapshot:
        now = datetime.now(UTC)
        return HealthSnapshot(now=now, stale_after=timedelta(hours=1), started_at=now, feeds={}, targets={})


@dataclass
class Servers:
    fast: str
    plain: str
    store: Store
    metrics: Metrics
    token: str
    etag: str
    answered: list[bytes]  # the paths of the 304s the protocol wrote


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("protocol")
    (root / "team.ics").write_bytes(BODY)
    os.utime(root / "team.ics", (MTIME.timestamp(), MTIME.timestamp()))
    feeds: dict[str, Path | ServedFeed] = {"team": ServedFeed(path=root / "team.ics", max_age=600)}
    with Store.open(f"sqlite:///{root / 'state.db'}") as store:
        token = new_token()
        store.add_feed_token("team", hash_token(token), None, datetime.now(UTC))
        metrics = Metrics()

        def app(metrics: Metrics | None = None) -> object:
            return create_app(
                feeds=lambda: feeds, tokens=store, health=_Healthy(),
                metrics_registry=(metrics or Metrics()).registry, metrics=metrics, token_cache=30,
            )

        plain = app()
        plain.not_modified = None  # type: ignore[attr-defined]  # every request the ASGI way
        fast_app = app(metrics)
        answered: list[bytes] = []
        endpoint_answer = fast_app.not_modified  # type: ignore[attr-defined]

        def counted(raw_path: bytes, method: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
            head = endpoint_answer(raw_path, method, headers)
            if head is not None:
                answered.append(raw_path)
            return head

        fast_app.not_modified = counted  # type: ignore[attr-defined]
        with serve_in_thread(fast_app) as fast, serve_in_thread(plain) as slow:  # type: ignore[arg-type]
            status, headers, body = exchange(fast, [get(token, close=True)])[0]
            assert status == 200
            assert body == BODY
            yield Servers(fast, slow, store, metrics, token, headers["etag"], answered)


def get(token: str, *, method: str = "GET", version: str = "1.1", close: bool = False,
        extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {feed_path(token, 'team')} HTTP/{version}\r\nHost: feeds.test\r\n{extra}"
    if close:
        head += "Connection: close\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def exchange(base: str, requests: list[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    """Send every request at once on one connection (pipelined); the answers, read until it closes."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    heads = [r.split(b" ", 1)[0] for r in requests]
    answers = []
    for method in heads:
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        status = int(status_line.split()[1])
        size = 0 if method == b"HEAD" or status == 304 else int(headers.get("content-length", 0))
        answers.append((status, headers, data[:size]))
        data = data[size:]
    assert data == b"", "bytes after the last answer"
    return answers


def without_date(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = answer
    assert "date" in headers
    return status, {k: v for k, v in headers.items() if k != "date"}, body


CONDITIONAL = [
    pytest.param(lambda etag: f"If-None-Match: {etag}\r\n", id="etag"),
    pytest.param(lambda etag: f"If-None-Match: W/{etag}\r\n", id="weak-etag"),
    pytest.param(lambda etag: f"If-None-Match: \"other\", {etag}\r\n", id="etag-in-list"),
    pytest.param(
        lambda etag: f"Accept-Encoding: gzip\r\nIf-None-Match: {gzip_etag(etag)}\r\n", id="gzip-etag"
    ),
    pytest.param(
        lambda etag: f"If-Modified-Since: {format_datetime(MTIME, usegmt=True)}\r\n", id="date"
    ),
]


class TestSameAnswers:
    @pytest.mark.parametrize("condition", CONDITIONAL)
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    @pytest.mark.parametrize("version", ["1.1", "1.0"])
    def test_a_304_is_the_applications_304(self, servers: Servers, condition, method: str, version: str) -> None:
        """Status and headers (but Date) are those the ASGI endpoint writes, for every way to a 304."""
        request = get(servers.token, method=method, version=version, close=True,
                      extra=condition(servers.etag))
        # Twice on the fast server: the first request is the one that teaches it the path.
        exchange(servers.fast, [request])
        before = len(servers.answered)
        fast = exchange(servers.fast, [request])[0]
        assert len(servers.answered) == before + 1, "not answered by the protocol"
        plain = exchange(servers.plain, [request])[0]
        assert fast[0] == 304
        assert without_date(fast) == without_date(plain)


class TestConnection:
    def test_pipelined_requests_are_answered_in_order(self, servers: Servers) -> None:
        """304s written by the protocol and 200s from the application keep the order they were asked in."""
        match = f"If-None-Match: {servers.etag}\r\n"
        requests = [
            get(servers.token, extra=match),
            get(servers.token, extra=match),
            get(servers.token),
            get(servers.token, extra=match),
            get(servers.token, method="HEAD"),
            get(servers.token, extra=match, close=True),
        ]
        before = len(servers.answered)
        answers = exchange(servers.fast, requests)
        assert [a[0] for a in answers] == [304, 304, 200, 304, 200, 304]
        # The first two by the protocol; those behind the 200 (queued by uvicorn while
        # it is answered) by the application, unless they arrived after it.
        assert 2 <= len(servers.answered) - before <= 4
        assert answers[2][2] == BODY
        assert answers[4][1]["content-length"] == str(len(BODY))
        assert answers[-1][1]["connection"] == "close"

    def test_a_request_body_is_read_and_dropped(self, servers: Servers) -> None:
        """A GET carrying a body gets its 304; the next request on the connection is parsed whole."""
        match = f"If-None-Match: {servers.etag}\r\n"
        answers = exchange(
            servers.fast,
            [get(servers.token, extra=match, body=b"GET / HTTP/1.1\r\n\r\n"), get(servers.token, close=True)],
        )
        assert [a[0] for a in answers] == [304, 200]
        assert answers[1][2] == BODY

    def test_an_idle_connection_closes_after_the_keep_alive_timeout(self, servers: Servers) -> None:
        """After the protocol's own 304s, a connection left idle is closed as uvicorn closes it (5 s)."""
        parts = urlsplit(servers.fast)
        match = f"If-None-Match: {servers.etag}\r\n"
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            for _ in range(3):  # kept alive between them
                sock.sendall(get(servers.token, extra=match))
                answer = b""
                while not answer.endswith(b"\r\n\r\n"):
                    answer += sock.recv(1 << 16)
                assert answer.startswith(b"HTTP/1.1 304 ")
            answered = time.monotonic()
            assert sock.recv(1 << 16) == b""  # the server closed it
            idle = time.monotonic() - answered
        assert 4.5 <= idle < 25, idle

    def test_http_1_0_closes_after_the_304(self, servers: Servers) -> None:
        request = get(servers.token, version="1.0", extra=f"If-None-Match: {servers.etag}\r\n")
        (answer,) = exchange(servers.fast, [request])  # read until the server closed
        assert answer[0] == 304
        assert answer[1]["connection"] == "close"


class TestState:
    def test_304s_are_counted(self, servers: Servers) -> None:
        def count() -> float:
            for family in text_string_to_metric_families(
                generate_latest(servers.metrics.registry).decode()
            ):
                for sample in family.samples:
                    if sample.name == "apexcal_feed_requests_total" and sample.labels["status"] == "304":
                        return sample.value
            return 0.0

        before = count()
        match = f"If-None-Match: {servers.etag}\r\n"
        exchange(servers.fast, [get(servers.token, extra=match)] * 4 + [get(servers.token, extra=match, close=True)])
        assert count() == before + 5

    def test_a_revoked_token_gets_410_at_once(self, servers: Servers) -> None:
        """A grant the protocol answered from goes when the token is revoked through the store."""
        token = new_token()
        token_id = servers.store.add_feed_token("team", hash_token(token), None, datetime.now(UTC))
        match = f"If-None-Match: {servers.etag}\r\n"
        assert [a[0] for a in exchange(servers.fast, [get(token, extra=match)] * 2 + [get(token, close=True)])] == [
            304, 304, 200,
        ]
        assert servers.store.revoke_feed_tokens("team", token_id) == 1
        assert exchange(servers.fast, [get(token, extra=match, close=True)])[0][0] == 410

    def test_absolute_form_and_encoded_paths_still_404(self, servers: Servers) -> None:
        """A path the protocol knows, asked for in another spelling, is no feed path."""
        match = f"If-None-Match: {servers.etag}\r\n"
        path = feed_path(servers.token, "team")
        for target in (f"http://feeds.test{path}", path.replace("team.ics", "te%61m.ics")):
            request = f"GET {target} HTTP/1.1\r\nHost: feeds.test\r\n{match}Connection: close\r\n\r\n".encode()
            assert exchange(servers.fast, [request])[0][0] == 404
