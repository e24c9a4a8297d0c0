"""The emulator's admin endpoint, fault injection, request counters, seeding and command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from apexcal.emulator import EmulatorState, create_app
from tests.fixtures.emulator import EmulatorHandle

FIND = "/activities?organization_id=27"


def _get(emulator: EmulatorHandle, path: str = FIND) -> httpx.Response:
    return emulator.admin.http.get(emulator.base_url + path, headers=emulator.headers())


async def _admin_calls(
    state: EmulatorState, client: tuple[str, int], *calls: tuple[str, Any]
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=create_app(state), client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        return [await http.post(path, json=body) for path, body in calls]


class TestAdminAccess:
    def test_admin_refuses_clients_off_loopback(self) -> None:
        """A request to /__admin/ from a non-loopback address answers 403 and changes nothing."""
        state = EmulatorState()
        response, refused_reset = asyncio.run(
            _admin_calls(
                state,
                ("10.0.0.1", 123),
                ("/__admin/faults", {"kind": "status"}),
                ("/__admin/reset", None),
            )
        )
        assert response.status_code == 403
        assert response.json()["name"] == "Forbidden"
        assert refused_reset.status_code == 403
        assert state.faults.pending() == []

    def test_admin_answers_loopback_clients(self) -> None:
        """The same request from 127.0.0.1 is accepted."""
        state = EmulatorState()
        (response,) = asyncio.run(
            _admin_calls(state, ("127.0.0.1", 123), ("/__admin/faults", {"kind": "status"}))
        )
        assert response.status_code == 200
        assert len(state.faults.pending()) == 1

    def test_bad_fault_specs_are_refused(self, emulator: EmulatorHandle) -> None:
        """An unknown fault kind or parameter answers 400."""
        for body in (
            {"kind": "explode"},
            {"kind": "status", "count": 0},
            {"kind": "delay", "sconds": 1},
        ):
            response = emulator.admin.http.post(f"{emulator.base_url}/__admin/faults", json=body)
            assert response.status_code == 400


class TestFaults:
    def test_status_fault_applies_to_the_next_n_requests_only(
        self, emulator: EmulatorHandle
    ) -> None:
        """A 503 fault with count 2 fails two requests with Feathers' Unavailable, then service resumes."""
        emulator.admin.fault("status", count=2, status=503)
        first, second, third = _get(emulator), _get(emulator), _get(emulator)
        assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
        assert first.json() == {
            "name": "Unavailable",
            "message": "Injected fault",
            "code": 503,
            "className": "unavailable",
        }

    def test_rate_limit_fault_sends_retry_after(self, emulator: EmulatorHandle) -> None:
        """A rate_limit fault answers 429 TooManyRequests with the Retry-After given."""
        emulator.admin.fault("rate_limit", retry_after=2)
        response = _get(emulator)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.json()["className"] == "too-many-requests"

    def test_drop_fault_closes_the_connection_without_an_answer(
        self, emulator: EmulatorHandle
    ) -> None:
        """A drop fault gives the client a transport error, and the next request is served."""
        emulator.admin.fault("drop")
        with pytest.raises(httpx.TransportError):
            _get(emulator)
        assert _get(emulator).status_code == 200

    def test_drop_answer_fault_applies_the_request_and_loses_its_answer(
        self, emulator: EmulatorHandle
    ) -> None:
        """A drop_answer fault on the bulk PATCH applies it, then gives the client a transport error."""
        (activity_id,) = emulator.state.seed(27, 1)
        done = emulator.state.get(activity_id)["done"]
        emulator.admin.fault("drop_answer", method="PATCH", path="/activities")
        with pytest.raises(httpx.TransportError):
            emulator.admin.http.patch(
                f"{emulator.base_url}/activities",
                json={"ids": [activity_id], "done": not done},
                headers=emulator.headers(),
            )
        assert emulator.state.get(activity_id)["done"] is not done
        assert _get(emulator).status_code == 200

    def test_malformed_fault_sends_broken_json(self, emulator: EmulatorHandle) -> None:
        """A malformed fault answers 200 with a body that is not valid JSON."""
        emulator.admin.fault("malformed")
        response = _get(emulator)
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()

    def test_short_page_fault_returns_fewer_records_than_the_limit(
        self, emulator: EmulatorHandle
    ) -> None:
        """A short_page fault answers a find with ``size`` records while total and limit say more."""
        emulator.state.seed(27, 30)
        emulator.admin.fault("short_page", size=3)
        page = _get(emulator, FIND + "&$limit=20").json()
        assert (page["total"], page["limit"], len(page["data"])) == (30, 20, 3)
        assert len(_get(emulator, FIND + "&$limit=20").json()["data"]) == 20

    def test_delay_fault_delays_then_answers(self, emulator: EmulatorHandle) -> None:
        """A delay fault answers normally after the delay."""
        emulator.admin.fault("delay", seconds=0.3)
        started = time.monotonic()
        response = _get(emulator)
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.3

    def test_faults_can_target_a_method_and_path(self, emulator: EmulatorHandle) -> None:
        """A fault limited to PATCH /activities leaves finds alone."""
        emulator.admin.fault("status", status=500, method="PATCH", path="/activities")
        assert _get(emulator).status_code == 200
        response = emulator.admin.http.patch(
            f"{emulator.base_url}/activities",
            json={"ids": [1], "done": True},
            headers=emulator.headers(),
        )
        assert response.status_code == 500
        assert response.json()["name"] == "GeneralError"


class TestAdminOperations:
    def test_seed_reset_and_users_over_http(self, emulator: EmulatorHandle) -> None:
        """/__admin/seed adds activities, /__admin/users replaces who may call, /__admin/reset restores the demo."""
        http, base = emulator.admin.http, emulator.base_url + "/__admin"
        assert (
            http.post(
                f"{base}/seed",
                json={"organization_id": 27, "count": 12, "seed": 2, "anchor": "2030-01-15"},
            ).json()["created"]
            == 12
        )
        assert all(
            "2029-11-01" <= a["start_date"] <= "2030-05-31" for a in emulator.state.activities(27)
        )
        users = {
            "organizations": [{"id": 27, "name": "Acme"}],
            "users": [
                {"id": 7, "full_name": "Seven", "organizations": [27], "token": "token-seven-7"}
            ],
        }
        assert http.put(f"{base}/users", json=users).status_code == 200
        assert _get(emulator).status_code == 401
        assert (
            http.get(
                emulator.base_url + FIND, headers={"Authorization": "Bearer token-seven-7"}
            ).json()["total"]
            == 12
        )
        assert http.put(f"{base}/users", json={"users": []}).status_code == 400
        assert http.post(f"{base}/reset").status_code == 200
        assert _get(emulator).json()["total"] == 0


class TestCounters:
    def test_requests_are_counted_by_route_and_recorded_with_their_query(
        self, emulator: EmulatorHandle
    ) -> None:
        """Counters report totals by method and route, and the recent lines show the decoded query."""
        emulator.admin.reset_counters()
        _get(emulator, FIND + "&start_date%5B%24gte%5D=2025-04-01")
        _get(emulator, "/activities/5")
        _get(emulator, "/activities/6")
        assert emulator.admin.counters() == {
            "total": 3,
            "by_route": {"GET /activities": 1, "GET /activities/:id": 2},
        }
        assert (
            emulator.admin.requests()[0]
            == "GET /activities?organization_id=27&start_date[$gte]=2025-04-01"
        )
        assert emulator.admin.queries()[0] == {
            "organization_id": "27",
            "start_date": {"$gte": "2025-04-01"},
        }
        emulator.admin.reset_counters()
        assert emulator.admin.counters()["total"] == 0


class TestSeeding:
    def test_same_seed_gives_the_same_records(self) -> None:
        """Two states seeded alike hold identical activities."""
        first, second = EmulatorState(), EmulatorState()
        first.seed(27, 200, seed=7)
        second.seed(27, 200, seed=7)
        assert first.activities(27) == second.activities(27)

    def test_seeded_data_covers_what_calendars_must_handle(self) -> None:
        """Seeded activities include every type, timed/all-day/multi-day, geocodes, meeting URLs, unicode, long notes and done ones."""
        state = EmulatorState()
        state.seed(27, 600, seed=1)
        rows = state.activities(27)
        assert {r["activity_type"] for r in rows} == {
            "call",
            "email",
            "meeting",
            "task",
            "customer_training",
        }
        assert any(r["start_time"] and r["end_date"] == r["start_date"] for r in rows)
        assert any(r["start_time"] and r["end_time"] is None and r["duration"] for r in rows)
        assert any(r["start_time"] is None for r in rows)
        assert any(r["end_date"] and r["end_date"] > r["start_date"] for r in rows)
        assert any(r["location_geocoded"] for r in rows)
        assert any(
            r["location"] == "Online - Zoom" and r["location_geocoded"] is None for r in rows
        )
        for host in ("zoom.us", "meet.google.com", "teams.microsoft.com", "webex.com"):
            assert any(host in (r["location"] or "") for r in rows)
        assert any(r["note"] and not r["note"].isascii() for r in rows)
        assert any(r["note"] and len(r["note"]) > 5000 for r in rows)
        assert {r["done"] for r in rows} == {True, False}
        assert len({r["assigned_to_user_id"] for r in rows}) >= 4
        assert any(r["deal_id"] and r["contact_id"] and r["company_id"] for r in rows)
        assert len({r["updated_at"] for r in rows}) < len(rows)


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "apexcal", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Interrupt the emulator and collect the rest of its output."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out, err


class TestCommandLine:
    def test_prints_the_listening_line_and_demo_tokens_and_serves(self) -> None:
        """``apexcal emulator --port 0`` prints one listening line with the real port, the demo tokens, and serves seeded data."""
        process, line = _start_cli("--seed-count", "15")
        try:
            assert line.startswith("apexcal emulator listening on http://127.0.0.1:")
            base_url = line.split(" on ", 1)[1].strip()
            assert not base_url.endswith(":0")
            assert process.stdout is not None
            tokens = [process.stdout.readline() for _ in range(5)]
            assert any("John Doe" in t and "demo-token-john-46" in t for t in tokens)
            response = httpx.get(
                f"{base_url}/activities?organization_id=27",
                headers={"Authorization": "Bearer demo-token-john-46"},
                timeout=10,
            )
            assert response.json()["total"] == 15
        finally:
            _, err = _stop(process)
        assert process.returncode == 130
        assert "Traceback" not in err

    def test_users_file_defines_who_may_call(self, tmp_path: Path) -> None:
        """With --users only that file's tokens work and no tokens are printed."""
        users: dict[str, Any] = {
            "organizations": [{"id": 5, "name": "Five"}],
            "users": [
                {
                    "id": 9,
                    "full_name": "Nine",
                    "email": "nine@example.com",
                    "organizations": [5],
                    "token": "file-token-9",
                }
            ],
        }
        path = tmp_path / "users.json"
        path.write_text(json.dumps(users))
        process, line = _start_cli("--users", str(path), "--seed-org", "5", "--seed-count", "3")
        try:
            base_url = line.split(" on ", 1)[1].strip()
            ok = httpx.get(
                f"{base_url}/activities?organization_id=5",
                headers={"Authorization": "Bearer file-token-9"},
                timeout=10,
            )
            refused = httpx.get(
                f"{base_url}/activities?organization_id=5",
                headers={"Authorization": "Bearer demo-token-john-46"},
                timeout=10,
            )
            assert (ok.json()["total"], refused.status_code) == (3, 401)
        finally:
            out, _ = _stop(process)
        assert out == ""

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            ("{not json", "not valid JSON"),
            (
                '{"organizations": [], "users": [{"id": 1, "full_name": "A", "organizations": [3], "token": "t"}]}',
                "unknown organization 3",
            ),
            ('{"organizations": [{"id": 1, "name": "A"}]}', "users: Field required"),
        ],
    )
    def test_a_bad_users_file_names_the_file_and_the_problem(
        self, tmp_path: Path, content: str, fragment: str
    ) -> None:
        """A users file that is not JSON or breaks the format is refused with the file name and the problem."""
        from apexcal.cli.emulator_cmd import _read_users
        from apexcal.errors import UsageError

        path = tmp_path / "users.json"
        path.write_text(content)
        with pytest.raises(UsageError) as info:
            _read_users(path)
        assert str(path) in str(info.value)
        assert fragment in str(info.value)

    def test_a_bad_users_file_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """The command ends with one stderr line and exit code 2 for an unreadable users file."""
        path = tmp_path / "missing.json"
        result = subprocess.run(
            [sys.executable, "-m", "apexcal", "emulator", "--port", "0", "--users", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "cannot read the users file" in result.stderr
