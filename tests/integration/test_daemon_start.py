"""``apexcal run`` refusing to start: operator errors are one stderr line and exit code 2."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from tests.integration.test_daemon_support import APEXCAL, free_port

CONFIG = """\
[source]
base_url = "{api}"
{token}
organization_id = 27

[state]
url = "{state}"

[[feeds]]
name = "team"
path = "{dir}/team.ics"

[server]
listen = "127.0.0.1:{port}"
"""


TOKEN_LINE = 'token = "tok-0123456789"'


def launch(root: Path, *, token: str = TOKEN_LINE, state: str | None = None,
           port: int | None = None, api: str = "http://127.0.0.1:9") -> subprocess.Popen[str]:
    """Start ``apexcal run`` on a config written under ``root`` (the starts run side by side)."""
    root.mkdir()
    config = root / "apexcal.toml"
    config.write_text(CONFIG.format(token=token, state=state or f"sqlite:///{root / 'state.db'}",
                                    dir=root, port=port or free_port(), api=api))
    return subprocess.Popen([APEXCAL, "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | int]:
    """Every failing start of this module, run concurrently; the taken port under ``"port"``."""
    root = tmp_path_factory.mktemp("start")
    blocker = root / "file"
    blocker.write_text("")
    with serve_in_thread(create_app(EmulatorState())) as api, socket.socket(
        socket.AF_INET, socket.SOCK_STREAM
    ) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        procs = {
            "config": launch(root / "config", token='token = "x"\nsurprise = 1'),
            "secret": launch(root / "secret", token=f'token_file = "{root / "missing"}"'),
            "store": launch(root / "store", state=f"sqlite:///{blocker / 'sub' / 'state.db'}"),
            "port": launch(root / "port", port=port),
            "refused": launch(root / "refused", api=api),
            "down": launch(root / "down"),
        }
        found: dict[str, Done | int] = {}
        for name, proc in procs.items():
            if name == "down":
                continue
            out, err = proc.communicate(timeout=60)
            found[name] = Done(proc.returncode, out, err)
        # An API that is down at start is not an operator error: the daemon runs.
        down = procs["down"]
        deadline = time.monotonic() + 30
        seen = ""
        while down.poll() is None and time.monotonic() < deadline:
            assert down.stderr is not None
            line = down.stderr.readline()
            seen += line
            if '"daemon.ready"' in line:
                break
        running = down.poll() is None
        down.send_signal(signal.SIGTERM)
        out, err = down.communicate(timeout=30)
        found["down"] = Done(0 if running else down.returncode, out, seen + err)
    found["taken"] = port
    return found


def assert_one_line(done: Done | int, *needles: str) -> None:
    assert isinstance(done, Done)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]


class TestOperatorErrorsAtStart:
    def test_invalid_config_names_file_and_key(self, results: dict[str, Done | int]) -> None:
        """A config that does not validate: the file and key path on one line, exit 2."""
        assert_one_line(results["config"], "apexcal.toml", "source.surprise")

    def test_unreadable_secret_names_the_key(self, results: dict[str, Done | int]) -> None:
        """A token file that cannot be read: the key, never a value, exit 2."""
        assert_one_line(results["secret"], "source.token_file")

    def test_unusable_state_store(self, results: dict[str, Done | int]) -> None:
        """A state URL whose directory cannot be created: one line, exit 2."""
        assert_one_line(results["store"], "state store")

    def test_token_the_api_refuses(self, results: dict[str, Done | int]) -> None:
        """A token the API answers 401 to: one line saying so, exit 2."""
        assert_one_line(results["refused"], "401")

    def test_api_down_at_start_is_not_an_operator_error(self, results: dict[str, Done | int]) -> None:
        """With nothing listening at the API's address the daemon still starts (and says why it waits)."""
        done = results["down"]
        assert isinstance(done, Done)
        assert done.returncode == 0, done.stderr
        assert '"daemon.api_unavailable_at_start"' in done.stderr

    def test_port_in_use(self, results: dict[str, Done | int]) -> None:
        """The feed server's port is taken: one line naming the address, exit 2, no log line."""
        assert_one_line(results["port"], f"127.0.0.1:{results['taken']}")
