"""``apexcal export`` end to end: the real console script against the emulator over loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from ical.calendar_stream import IcsCalendarStream
from icalendar import Calendar

from tests.fixtures.emulator import EmulatorHandle

APEXCAL = str(Path(sys.executable).with_name("apexcal"))
ANCHOR = date(2026, 6, 15)
ORG = 27
SEED_COUNT = 80


def run(
    emulator: EmulatorHandle,
    *args: str,
    token: str | None = None,
    source: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``apexcal export`` with the token in the environment (and ``--base-url/--org`` unless not ``source``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    full_env["APEXCAL_TOKEN"] = token if token is not None else emulator.token
    full_env.update(env or {})
    command = [APEXCAL, "export"]
    if source:
        command += ["--base-url", emulator.base_url, "--org", str(ORG)]
    return subprocess.run(
        [*command, *args], capture_output=True, env=full_env, timeout=60, check=False
    )


def uids(data: bytes) -> list[str]:
    """The UIDs of the components of a calendar, in file order."""
    return [m.decode() for m in re.findall(rb"\r\nUID:(.*?)\r\n", data)]


def parse_strictly(data: bytes) -> int:
    """Parse with icalendar and the strict ``ical`` package; the number of components."""
    text = data.decode("utf-8")
    loose = Calendar.from_ical(text)
    strict = IcsCalendarStream.calendar_from_ics(text)
    count = len(loose.walk("VEVENT")) + len(loose.walk("VTODO"))
    assert count == len(strict.events) + len(strict.todos)
    return count


def dated(records: Sequence[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> set[str]:
    """UIDs of the seeded activities that ``keep`` selects and that can be events (have a start date)."""
    return {
        f"apexcal-{ORG}-{r['id']}@127.0.0.1"
        for r in records
        if r["start_date"] is not None and keep(r)
    }


@pytest.fixture
def seeded(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    """The emulator seeded with realistic activities around :data:`ANCHOR`; their records."""
    emulator.state.seed(ORG, SEED_COUNT, anchor=ANCHOR)
    emulator.admin.reset_counters()
    return emulator.state.activities(ORG)


FROM, TO = (ANCHOR - timedelta(days=5)).isoformat(), (ANCHOR + timedelta(days=20)).isoformat()

FILTERS: list[tuple[str, list[str], Callable[[dict[str, Any]], bool], dict[str, Any]]] = [
    ("everything", [], lambda r: True, {}),
    (
        "user",
        ["--user", "46"],
        lambda r: r["assigned_to_user_id"] == 46,
        {"assigned_to_user_id": "46"},
    ),
    (
        "types by key and name",
        ["--type", "call", "--type", "CUSTOMER TRAINING"],
        lambda r: r["activity_type"] in ("call", "customer_training"),
        {"activity_type": {"$in": ["call", "customer_training"]}},
    ),
    (
        "date range",
        ["--from", FROM, "--to", TO],
        lambda r: r["start_date"] is not None and FROM <= r["start_date"] <= TO,
        {"start_date": {"$gte": FROM, "$lte": TO}},
    ),
    ("done", ["--done"], lambda r: r["done"], {"done": "true"}),
    (
        "not done, one type",
        ["--not-done", "--type", "Meeting"],
        lambda r: not r["done"] and r["activity_type"] == "meeting",
        {"done": "false", "activity_type": "meeting"},
    ),
]


class TestExportFilters:
    @pytest.mark.parametrize(
        ("args", "keep", "sent"), [f[1:] for f in FILTERS], ids=[f[0] for f in FILTERS]
    )
    def test_filter_matches_the_data_and_travels_in_the_query(
        self,
        emulator: EmulatorHandle,
        seeded: list[dict[str, Any]],
        args: list[str],
        keep: Callable[[dict[str, Any]], bool],
        sent: dict[str, Any],
    ) -> None:
        """Each filter exports exactly the matching activities, and the API query carries it."""
        result = run(emulator, *args)
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
        expected = dated(seeded, keep)
        assert 0 < len(expected) < SEED_COUNT or not args
        assert set(uids(result.stdout)) == expected
        assert parse_strictly(result.stdout) == len(expected)
        queries = emulator.admin.queries("/activities")
        assert queries
        for query in queries:
            for key, value in sent.items():
                assert query[key] == value


class TestExportOutput:
    def test_file_output_is_sorted_by_uid_and_parses_strictly(
        self, emulator: EmulatorHandle, seeded: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """``-o FILE`` writes a calendar sorted by UID that both parsers accept, with nothing left behind."""
        out = tmp_path / "all.ics"
        result = run(emulator, "-o", str(out), "--privacy", "full", "--tasks-as", "todos")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b""
        data = out.read_bytes()
        found = uids(data)
        assert found == sorted(found)
        assert len(found) == len({r["id"] for r in seeded})  # undated tasks are VTODOs here
        parse_strictly(data)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["all.ics"]

    def test_public_export_is_repeatable_and_has_no_private_note(
        self, emulator: EmulatorHandle, seeded: list[dict[str, Any]]
    ) -> None:
        """The default privacy (public) leaves the note out, byte-identically each time; ``full`` puts it in."""
        emulator.state.insert_activity(
            {**seeded[0], "id": 9999, "note": "PRIVATE-NOTE-MARKER", "start_date": "2026-06-16"}
        )
        public = run(emulator)
        again = run(emulator)
        full = run(emulator, "--privacy", "full")
        assert public.returncode == again.returncode == full.returncode == 0
        assert public.stdout == again.stdout
        assert b"PRIVATE-NOTE-MARKER" not in public.stdout
        assert b"PRIVATE-NOTE-MARKER" in full.stdout
        assert b"CLASS:PUBLIC\r\n" in public.stdout

    def test_config_file_supplies_source_token_and_zone(
        self, emulator: EmulatorHandle, seeded: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """With ``--config`` the source, token file and time zone come from the config; no env token needed."""
        token_file = tmp_path / "token"
        token_file.write_text(emulator.token + "\n")
        config = tmp_path / "apexcal.toml"
        config.write_text(
            f"""
[source]
base_url = "{emulator.base_url}"
token_file = "{token_file}"
organization_id = {ORG}
timezone = "Europe/Berlin"
uid_domain = "crm.example.com"

[[targets]]
name = "jane"
url = "https://dav.example.com/jane/"
username = "jane"
password_file = "{tmp_path / "missing-password"}"
"""
        )
        out = tmp_path / "berlin.ics"
        result = run(
            emulator,
            "--config",
            str(config),
            "-o",
            str(out),
            "--user",
            "47",
            source=False,
            token="",
        )
        assert result.returncode == 0, result.stderr
        data = out.read_bytes()
        assert set(uids(data)) == {
            u.replace("127.0.0.1", "crm.example.com")
            for u in dated(seeded, lambda r: r["assigned_to_user_id"] == 47)
        }
        assert b"X-WR-TIMEZONE:Europe/Berlin\r\n" in data
        assert data.count(b"BEGIN:VTIMEZONE") == 1
        parse_strictly(data)

    def test_split_by_user_and_by_type(
        self, emulator: EmulatorHandle, seeded: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """``--split-by`` writes one calendar per user or per type, together holding every event."""
        by_user = run(emulator, "--split-by", "user", "--output-dir", str(tmp_path / "users"))
        by_type = run(emulator, "--split-by", "type", "--output-dir", str(tmp_path / "types"))
        assert by_user.returncode == by_type.returncode == 0, by_user.stderr + by_type.stderr
        users = {p.name: uids(p.read_bytes()) for p in (tmp_path / "users").iterdir()}
        types = {p.name: uids(p.read_bytes()) for p in (tmp_path / "types").iterdir()}
        expected_users = {
            f"user-{r['assigned_to_user_id'] or 'none'}.ics" for r in seeded if r["start_date"]
        }
        assert set(users) == expected_users
        assert set(uids(b"".join((tmp_path / "users" / n).read_bytes() for n in users))) == dated(
            seeded, lambda r: True
        )
        assert set(types["type-call.ics"]) == dated(seeded, lambda r: r["activity_type"] == "call")
        assert "type-customer_training.ics" in types
        assert sum(len(v) for v in types.values()) == sum(len(v) for v in users.values())

    def test_deletions_during_the_listing_make_it_miss_nothing(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """Activities deleted between two pages shift no later record out of the export (paging by id, not offset)."""
        ids = emulator.state.seed(ORG, 300, anchor=ANCHOR)
        emulator.admin.reset_counters()
        emulator.admin.fault("delay", count=10, seconds=0.4, path="/activities", method="GET")
        out = tmp_path / "moving.ics"
        env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
        env["APEXCAL_TOKEN"] = emulator.token
        proc = subprocess.Popen(
            [
                APEXCAL,
                "export",
                "--base-url",
                emulator.base_url,
                "--org",
                "27",
                "--tasks-as",
                "todos",
                "-o",
                str(out),
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            # The second page is asked for (and held by the delay) once two requests arrived.
            while emulator.admin.counters()["by_route"].get("GET /activities", 0) < 2:
                assert time.monotonic() < deadline, "the export never asked for a second page"
                assert proc.poll() is None, "the export ended too early"
                time.sleep(0.01)  # polling interval of a condition with a deadline
            for activity_id in ids[:50]:
                emulator.state.delete_activity(activity_id)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        found = uids(out.read_bytes())
        assert len(found) == len(set(found))
        assert {f"apexcal-{ORG}-{i}@127.0.0.1" for i in ids[50:]} <= set(found)
        queries = emulator.admin.queries("/activities")
        assert [q["id"]["$gt"] for q in queries] == ["0", "100", "200", "300"]

    def test_nothing_matching_gives_an_empty_calendar(self, emulator: EmulatorHandle) -> None:
        """No matching activity is not an error: a valid empty calendar and exit 0."""
        result = run(emulator, "--from", "2040-01-01")
        assert result.returncode == 0
        assert result.stdout.startswith(b"BEGIN:VCALENDAR\r\n")
        assert result.stdout.endswith(b"END:VCALENDAR\r\n")
        assert parse_strictly(result.stdout) == 0


def _one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestExportErrors:
    def test_bad_token_is_one_line_and_exit_2(self, emulator: EmulatorHandle) -> None:
        """A token the API refuses (401) gives one stderr line naming the 401, exit 2."""
        result = run(emulator, token="not-a-valid-token")
        assert result.returncode == 2
        line = _one_line(result)
        assert "401" in line
        assert "not-a-valid-token" not in line
        assert result.stdout == b""

    def test_wrong_organization_is_one_line_and_exit_2(self, emulator: EmulatorHandle) -> None:
        """A token without access to the organization (403) gives one stderr line, exit 2."""
        result = run(emulator, token=emulator.other_token)
        assert result.returncode == 2
        assert "403" in _one_line(result)

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--from", "2026-02-30"], "--from: not a date: '2026-02-30'"),
            (
                ["--type", "Lunch"],
                "unknown activity type 'Lunch'; known types: call (Call), customer_training (Customer Training), email (Email), meeting (Meeting), task (Task)",
            ),
            (["--privacy", "secret"], "--privacy: 'secret' is not one of full, public, busy"),
            (["-o", "/proc/apexcal-export.ics"], "cannot write /proc/apexcal-export.ics: "),
        ],
        ids=["impossible date", "unknown type", "bad privacy", "unwritable output"],
    )
    def test_bad_argument_is_one_line_and_exit_2(
        self, emulator: EmulatorHandle, args: list[str], expected: str
    ) -> None:
        """Bad dates, unknown types and bad choices give their one-line message and exit 2."""
        result = run(emulator, *args)
        assert result.returncode == 2
        assert expected in _one_line(result)
        assert result.stdout == b""

    def test_unreachable_api_is_one_line_and_exit_2(self, emulator: EmulatorHandle) -> None:
        """A refused connection gives one line naming the API's URL (retry logs stay quiet), exit 2."""
        url = f"http://127.0.0.1:{_closed_port()}"
        result = run(emulator, "--base-url", url, "--org", "27", source=False)
        assert result.returncode == 2
        line = _one_line(result)
        assert f"cannot reach the API at {url}" in line

    def test_url_that_is_not_the_api_is_one_line_and_exit_2(self, emulator: EmulatorHandle) -> None:
        """A base URL that answers but is not the API (404 on /activities) gives one line, exit 2."""
        url = emulator.base_url + "/not-the-api"
        result = run(emulator, "--base-url", url, "--org", "27", source=False)
        assert result.returncode == 2
        line = _one_line(result)
        assert f"the API at {url} answered" in line
        assert "404" in line

    def test_missing_token_is_one_line_and_exit_2(self, emulator: EmulatorHandle) -> None:
        """Without a token in the environment or a config, the command says where to put one."""
        result = run(emulator, token="")
        assert result.returncode == 2
        assert "APEXCAL_TOKEN" in _one_line(result)


class TestExportInterrupt:
    def test_sigint_mid_stream_exits_130_and_leaves_no_file(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """Ctrl-C while pages are streaming exits 130; the output path keeps its old content, no temp file stays."""
        emulator.state.seed(ORG, 1000, anchor=ANCHOR)
        emulator.admin.reset_counters()
        emulator.admin.fault("delay", count=100, seconds=0.2, path="/activities", method="GET")
        out = tmp_path / "big.ics"
        fresh = tmp_path / "fresh.ics"
        out.write_bytes(b"previous export\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
        env["APEXCAL_TOKEN"] = emulator.token
        procs = [
            subprocess.Popen(
                [
                    APEXCAL,
                    "export",
                    "--base-url",
                    emulator.base_url,
                    "--org",
                    "27",
                    "-o",
                    str(path),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for path in (out, fresh)
        ]
        try:
            deadline = time.monotonic() + 30
            # Both processes are mid-stream once several pages have been asked for.
            while emulator.admin.counters()["by_route"].get("GET /activities", 0) < 6:
                assert time.monotonic() < deadline, "the exports never started paging"
                assert all(p.poll() is None for p in procs), (
                    "an export ended before it was interrupted"
                )
                time.sleep(0.02)  # polling interval of a condition with a deadline
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            results = [proc.communicate(timeout=30) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert [p.returncode for p in procs] == [130, 130], results
        assert all(b"Traceback" not in stderr for _, stderr in results), results
        assert out.read_bytes() == b"previous export\n"
        assert not fresh.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.ics"]


class TestExportProgress:
    def test_progress_bar_on_a_terminal_with_counts(
        self, emulator: EmulatorHandle, seeded: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """With stderr on a terminal, a progress display counts the activities fetched; the file is unaffected."""
        import pty

        master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
        env.update({"APEXCAL_TOKEN": emulator.token, "COLUMNS": "120", "TERM": "xterm"})
        out = tmp_path / "tty.ics"
        proc = subprocess.Popen(
            [APEXCAL, "export", "--base-url", emulator.base_url, "--org", "27", "-o", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        shown = b""
        try:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end of the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            os.close(master)
            proc.wait(timeout=60)
        assert proc.returncode == 0
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode("utf-8", "replace")
        assert "fetching activities" in text
        assert f"{SEED_COUNT}/{SEED_COUNT}" in text
        assert "writing" in text
        assert out.read_bytes().startswith(b"BEGIN:VCALENDAR")
