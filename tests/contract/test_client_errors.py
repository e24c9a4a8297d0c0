"""The API client's failures: typed errors, bounded retries, and a token that never leaks."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from apexcal.apex.client import ApexClient
from apexcal.apex.retry import NO_RETRY, RetryPolicy, may_retry, parse_retry_after, retry_delay
from apexcal.errors import (
    ApiError,
    ApiHTTPError,
    ApiProtocolError,
    ApiTransportError,
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
)
from tests.fixtures.emulator import EmulatorHandle

# Tiny waits: the tests check the retry logic and its bounds, not real back-off durations.
FAST = RetryPolicy(attempts=5, timeout=5.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)


@pytest.fixture
def emu(emulator: EmulatorHandle) -> Iterator[EmulatorHandle]:
    """The emulator with no pending faults and zeroed request counters."""
    emulator.admin.clear_faults()
    emulator.admin.reset_counters()
    yield emulator
    emulator.admin.clear_faults()


def client_for(emu: EmulatorHandle, *, token: str | None = None, **kw: Any) -> ApexClient:
    """A client of the demo organization (``token`` overrides the demo user's)."""
    kw.setdefault("retry", NO_RETRY)
    return ApexClient(emu.base_url, token or emu.token, emu.org_id, **kw)


class DroppingProxy:
    """A loopback TCP proxy to the emulator that drops connections on demand.

    While ``drops`` is positive, each new connection has its request read and is
    then closed without an answer (a peer vanishing mid-request); other
    connections are piped to the emulator untouched.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.URL(upstream)
        self.drops = 0
        self.dropped = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            drop = self.drops > 0
            if drop:
                self.drops -= 1
        if drop:
            with conn:
                conn.recv(65536)
                with self._lock:
                    self.dropped += 1
            return
        upstream = socket.create_connection((self.upstream.host, self.upstream.port or 80))
        with conn, upstream:
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join(timeout=10)

    def close(self) -> None:
        """Stop accepting connections."""
        self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(emu: EmulatorHandle) -> Iterator[DroppingProxy]:
    """A dropping proxy in front of the emulator."""
    dropping = DroppingProxy(emu.base_url)
    yield dropping
    dropping.close()


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestErrorMapping:
    def test_bad_token_is_not_authenticated(self, emu: EmulatorHandle) -> None:
        """An unknown token gives NotAuthenticated with the server's message."""
        with (
            client_for(emu, token="not-a-valid-token") as api,
            pytest.raises(NotAuthenticated) as info,
        ):
            list(api.list_activities())
        assert info.value.status == 401
        assert info.value.server_message

    def test_other_organization_is_forbidden(self, emu: EmulatorHandle) -> None:
        """A token of another organization gives Forbidden."""
        with client_for(emu, token=emu.other_token) as api, pytest.raises(Forbidden) as info:
            list(api.list_activities())
        assert info.value.status == 403

    def test_missing_record_is_not_found_with_the_server_message(self, emu: EmulatorHandle) -> None:
        """A get of an unknown id gives NotFound carrying the Feathers message and name."""
        with client_for(emu) as api, pytest.raises(NotFound) as info:
            api.get_activity(999999)
        assert info.value.server_message == "No record found for id '999999'"
        assert info.value.name == "NotFound"
        assert info.value.class_name == "not-found"
        assert str(info.value).startswith("GET /activities/999999: 404 NotFound")

    def test_refused_query_is_bad_request_naming_the_query(self, emu: EmulatorHandle) -> None:
        """An unknown filter field gives BadRequest with the server's message and the query sent."""
        with client_for(emu) as api, pytest.raises(BadRequest) as info:
            list(api.list_activities(no_such_field=1))
        assert "no_such_field" in info.value.server_message
        assert "GET /activities?organization_id=27&no_such_field=1" in str(info.value)

    def test_rate_limit_carries_retry_after(self, emu: EmulatorHandle) -> None:
        """A 429 without retries left gives RateLimited with the server's Retry-After."""
        emu.admin.fault("rate_limit", retry_after=7)
        with client_for(emu) as api, pytest.raises(RateLimited) as info:
            api.get_activity(1)
        assert info.value.retry_after == 7

    @pytest.mark.parametrize(
        ("status", "error"),
        [(500, ServerError), (503, ServerError), (418, ApiHTTPError), (409, ApiHTTPError)],
    )
    def test_other_statuses_map_by_class(
        self, emu: EmulatorHandle, status: int, error: type[ApiHTTPError]
    ) -> None:
        """5xx is ServerError with its status; other 4xx are plain ApiHTTPError."""
        emu.admin.fault("status", status=status)
        with client_for(emu) as api, pytest.raises(ApiHTTPError) as info:
            list(api.list_activity_types())
        assert type(info.value) is error
        assert info.value.status == status

    def test_malformed_json_is_a_protocol_error(self, emu: EmulatorHandle) -> None:
        """A truncated JSON body gives ApiProtocolError."""
        emu.admin.fault("malformed")
        with client_for(emu) as api, pytest.raises(ApiProtocolError):
            list(api.list_activity_types())

    def test_wrong_envelope_is_a_protocol_error(self) -> None:
        """A page without the documented envelope gives ApiProtocolError."""
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[{"id": 1}]))
        api = ApexClient("http://api.test", "tok-123456", 27, transport=transport)
        with api, pytest.raises(ApiProtocolError, match="page"):
            list(api.list_activities())

    def test_redirect_is_a_protocol_error(self) -> None:
        """A redirect is not followed (it could carry the token elsewhere): ApiProtocolError."""
        transport = httpx.MockTransport(
            lambda request: httpx.Response(302, headers={"Location": "http://elsewhere.test/"})
        )
        api = ApexClient("http://api.test", "tok-123456", 27, transport=transport)
        with api, pytest.raises(ApiProtocolError, match="redirect"):
            api.get_activity(3)

    def test_unreachable_host_is_a_transport_error(self) -> None:
        """Nothing listening on the port gives ApiTransportError naming method and path."""
        api = ApexClient(f"http://127.0.0.1:{free_port()}", "tok-123456", 27, retry=NO_RETRY)
        with api, pytest.raises(ApiTransportError, match=r"^GET /activities/5: ConnectError"):
            api.get_activity(5)

    def test_dropped_connection_is_a_transport_error(
        self, emu: EmulatorHandle, proxy: DroppingProxy
    ) -> None:
        """A connection closed without an answer gives ApiTransportError."""
        proxy.drops = 1
        api = ApexClient(proxy.base_url, emu.token, emu.org_id, retry=NO_RETRY)
        with api, pytest.raises(ApiTransportError, match=r"^GET /activities/1: "):
            api.get_activity(1)
        assert proxy.dropped == 1

    def test_slow_answer_times_out(self, emu: EmulatorHandle) -> None:
        """An answer slower than the request timeout gives ApiTransportError, promptly."""
        emu.admin.fault("delay", seconds=2)
        started = time.monotonic()
        with client_for(emu, timeout=0.3) as api, pytest.raises(ApiTransportError, match="Timeout"):
            list(api.list_activity_types())
        assert time.monotonic() - started < 1.5


class TestRetries:
    def test_recovers_from_rate_limit_honouring_retry_after(self, emu: EmulatorHandle) -> None:
        """After a 429 the client waits the Retry-After seconds and succeeds."""
        created = emu.state.seed(emu.org_id, 1)[0]
        emu.admin.fault("rate_limit", retry_after=0.3)
        statuses: list[int] = []
        with client_for(emu, retry=FAST, on_request=lambda _route, s: statuses.append(s)) as api:
            started = time.monotonic()
            assert api.get_activity(created).id == created
            elapsed = time.monotonic() - started
        assert statuses == [429, 200]
        assert elapsed >= 0.3

    def test_recovers_from_dropped_connections_and_503(
        self, emu: EmulatorHandle, proxy: DroppingProxy
    ) -> None:
        """Two dropped connections then two 503s are retried until the page arrives."""
        emu.state.seed(emu.org_id, 3)
        proxy.drops = 2
        emu.admin.fault("status", count=2, status=503)
        statuses: list[int] = []
        api = ApexClient(
            proxy.base_url,
            emu.token,
            emu.org_id,
            retry=FAST,
            on_request=lambda _route, s: statuses.append(s),
        )
        with api:
            assert len(list(api.list_activities())) == 3
        assert statuses == [0, 0, 503, 503, 200]
        assert proxy.dropped == 2

    def test_gives_up_after_the_attempts(self, emu: EmulatorHandle) -> None:
        """With three attempts allowed, three requests are made and the last error is raised."""
        emu.admin.fault("status", count=50, status=502)
        policy = RetryPolicy(
            attempts=3, timeout=10, wait_initial=0.01, wait_max=0.01, wait_jitter=0
        )
        with client_for(emu, retry=policy) as api, pytest.raises(ServerError) as info:
            api.get_activity(1)
        assert info.value.status == 502
        assert emu.admin.counters()["by_route"]["GET /activities/:id"] == 3

    def test_gives_up_within_the_time_bound(self, emu: EmulatorHandle) -> None:
        """However many attempts are allowed, the client stops once its time budget is spent."""
        emu.admin.fault("status", count=10_000, status=503)
        policy = RetryPolicy(
            attempts=10_000, timeout=0.6, wait_initial=0.05, wait_max=0.2, wait_jitter=0.05
        )
        with client_for(emu, retry=policy) as api:
            started = time.monotonic()
            with pytest.raises(ServerError):
                api.get_activity(1)
            elapsed = time.monotonic() - started
        # A bound, not a speed test: the budget plus one attempt and a loaded
        # machine's scheduling slack.  A client ignoring the budget would go on
        # for thousands of attempts (minutes), far past it.
        assert 0.6 <= elapsed <= 0.6 + 1.0

    def test_retry_after_beyond_the_budget_gives_up_at_once(self, emu: EmulatorHandle) -> None:
        """A Retry-After longer than the time left is not waited for: RateLimited comes now."""
        emu.admin.fault("rate_limit", retry_after=30)
        with client_for(emu, retry=FAST) as api:
            started = time.monotonic()
            with pytest.raises(RateLimited):
                api.get_activity(1)
        assert time.monotonic() - started < 1.0

    def test_post_is_not_retried_on_503(self, emu: EmulatorHandle) -> None:
        """A create answered 503 is not sent again: it may have been acted on."""
        emu.admin.fault("status", status=503, method="POST")
        with client_for(emu, retry=FAST) as api, pytest.raises(ServerError):
            api.create_activity({"subject": "once", "activity_type": "call"})
        assert emu.admin.counters()["by_route"]["POST /activities"] == 1

    def test_post_is_not_retried_on_a_dropped_connection(
        self, emu: EmulatorHandle, proxy: DroppingProxy
    ) -> None:
        """A create whose connection dropped after sending is not sent again."""
        proxy.drops = 5
        api = ApexClient(proxy.base_url, emu.token, emu.org_id, retry=FAST)
        with api, pytest.raises(ApiTransportError):
            api.create_activity({"subject": "once", "activity_type": "call"})
        assert proxy.dropped == proxy.connections == 1

    def test_post_is_retried_when_the_connection_never_opened(self, emu: EmulatorHandle) -> None:
        """A create that failed to connect, so was provably not sent, is retried once connected."""

        class RefuseFirstConnect(httpx.HTTPTransport):
            refused = False

            def handle_request(self, request: httpx.Request) -> httpx.Response:
                if not self.refused:
                    self.refused = True
                    raise httpx.ConnectError("connection refused", request=request)
                return super().handle_request(request)

        with client_for(emu, retry=FAST, transport=RefuseFirstConnect()) as api:
            created = api.create_activity({"subject": "exactly once", "activity_type": "call"})
        assert [a["subject"] for a in emu.state.activities(emu.org_id)] == [created.subject]

    def test_patch_is_retried_on_503(self, emu: EmulatorHandle) -> None:
        """A PATCH of absolute values is idempotent, so a 503 is retried."""
        created = emu.state.seed(emu.org_id, 1)[0]
        emu.admin.fault("status", status=503, method="PATCH")
        with client_for(emu, retry=FAST) as api:
            assert api.patch_activity(created, {"done": True}).done


class TestMaybeApplied:
    """A failed request says whether it may have taken effect (a write's lost answer)."""

    def _bulk_done(self, emu: EmulatorHandle, api: ApexClient) -> ApiError:
        created = emu.state.seed(emu.org_id, 1)[0]
        with api, pytest.raises(ApiError) as caught:
            api.bulk_patch_activities([created], {"done": True})
        return caught.value

    def test_a_lost_answer_may_have_been_applied(self, emu: EmulatorHandle) -> None:
        """The bulk PATCH is applied and every answer lost: the error says it may have been applied."""
        emu.admin.fault("drop_answer", count=5, method="PATCH")
        exc = self._bulk_done(emu, client_for(emu, retry=FAST))
        assert isinstance(exc, ApiTransportError)
        assert exc.maybe_applied

    @pytest.mark.parametrize("status", [400, 429, 503])
    def test_a_refusing_answer_was_not_applied(self, emu: EmulatorHandle, status: int) -> None:
        """Answered 400, 429 or 503 on every attempt: nothing was applied."""
        emu.admin.fault("status", count=5, status=status, method="PATCH")
        exc = self._bulk_done(emu, client_for(emu))
        assert not exc.maybe_applied

    def test_a_connection_never_opened_was_not_applied(self) -> None:
        """Nobody listens: nothing was applied."""
        api = ApexClient(f"http://127.0.0.1:{free_port()}", "tok-123456", 27, retry=FAST)
        with api, pytest.raises(ApiTransportError) as caught:
            api.bulk_patch_activities([1], {"done": True})
        assert not caught.value.maybe_applied

    def test_an_earlier_attempt_counts(self, emu: EmulatorHandle) -> None:
        """The first attempt's answer is lost, the retries get 503: it may still have been applied."""
        emu.admin.fault("drop_answer", count=1, method="PATCH")
        emu.admin.fault("status", count=4, status=503, method="PATCH")
        exc = self._bulk_done(emu, client_for(emu, retry=FAST))
        assert isinstance(exc, ServerError)
        assert exc.maybe_applied


class TestRetryDecision:
    def test_methods_and_errors(self) -> None:
        """429 always; 502-504 and transport errors only for idempotent methods."""
        unavailable = ServerError("x", method="GET", url="/", status=503)
        internal = ServerError("x", method="GET", url="/", status=500)
        limited = RateLimited("x", method="POST", url="/", retry_after=1.0)
        assert may_retry(unavailable, "GET")
        assert may_retry(unavailable, "PATCH")
        assert may_retry(unavailable, "DELETE")
        assert not may_retry(unavailable, "POST")
        assert not may_retry(internal, "GET")
        assert may_retry(limited, "POST")
        assert not may_retry(NotFound("x", method="GET", url="/"), "GET")

    def test_waits_grow_and_stay_within_the_budget(self) -> None:
        """Back-off grows exponentially to the cap and never passes the time left."""
        policy = RetryPolicy(attempts=10, timeout=60, wait_initial=0.5, wait_max=4, wait_jitter=0)
        exc = ServerError("x", method="GET", url="/", status=503)
        waits = [
            retry_delay(exc, method="GET", attempt=n, policy=policy, remaining=100)
            for n in range(1, 7)
        ]
        assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        assert retry_delay(exc, method="GET", attempt=3, policy=policy, remaining=0.7) == 0.7
        assert retry_delay(exc, method="GET", attempt=10, policy=policy, remaining=50) is None
        assert retry_delay(exc, method="GET", attempt=1, policy=policy, remaining=0) is None

    def test_retry_after_seconds_and_http_date(self) -> None:
        """Retry-After is read as seconds or as an HTTP date relative to now."""
        now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        assert parse_retry_after("3", now=now) == 3.0
        assert (
            parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now)
            == 90.0
        )
        assert (
            parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now)
            == 0.0
        )
        assert parse_retry_after("soon", now=now) is None
        assert parse_retry_after(None, now=now) is None


class TestSecrecy:
    def test_token_never_in_logs_or_exceptions(
        self, emu: EmulatorHandle, proxy: DroppingProxy, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Across successes, retries and every failure, the token appears in no log or error text."""
        caplog.set_level(logging.DEBUG)
        emu.state.seed(emu.org_id, 5)
        bad_token = "wrong-secret-token-0123456789"
        texts: list[str] = []
        with capture_logs() as logs:
            with client_for(emu, retry=FAST) as api:
                list(api.list_activities())
                emu.admin.fault("status", status=503)
                list(api.changes_since(None, overlap=timedelta(0)))
                for failing in (
                    lambda: api.get_activity(999999),
                    lambda: list(api.list_activities(no_such_field=1)),
                ):
                    with pytest.raises(ApiError) as info:
                        failing()
                    texts += [str(info.value), repr(info.value), repr(info.value.args)]
            with client_for(emu, token=bad_token) as api, pytest.raises(ApiError) as info:
                api.get_activity(1)
            texts += [str(info.value), repr(info.value)]
            api = ApexClient(f"http://127.0.0.1:{free_port()}", emu.token, 27, retry=NO_RETRY)
            with api, pytest.raises(ApiError) as info:
                api.get_activity(1)
            texts += [str(info.value), repr(info.value), str(info.value.__cause__)]
            proxy.drops = 10
            api = ApexClient(proxy.base_url, emu.token, 27, retry=FAST)
            with api, pytest.raises(ApiError) as info:
                api.get_activity(1)
            texts += [str(info.value), repr(info.value), str(info.value.__cause__)]
        assert proxy.dropped == FAST.attempts
        assert any(e["event"] == "stamina.retry_scheduled" for e in logs)
        assert any(e["event"] == "apex.request" for e in logs)
        everything = "\n".join([*texts, repr(logs), caplog.text])
        for secret in (emu.token, bad_token):
            assert secret not in everything
