"""``apexcal run`` refusing to start: operator errors are one stderr line and exit code 2."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_daemon_support import APEXCAL, free_port

CONFIG = """\
[source]
base_url = "http://127.0.0.1:9"
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
           port: int | None = None) -> subprocess.Popen[str]:
    """Start ``apexcal run`` on a config written under ``root`` (the starts run side by side)."""
    root.mkdir()
    config = root / "apexcal.toml"
    config.write_text(CONFIG.format(token=token, state=state or f"sqlite:///{root / 'state.db'}",
                                    dir=root, port=port or free_port()))
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        procs = {
            "config": launch(root / "config", token='token = "x"\nsurprise = 1'),
            "secret": launch(root / "secret", token=f'token_file = "{root / "missing"}"'),
            "store": launch(root / "store", state=f"sqlite:///{blocker / 'sub' / 'state.db'}"),
            "port": launch(root / "port", port=port),
        }
        found: dict[str, Done | int] = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            found[name] = Done(proc.returncode, out, err)
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

    def test_port_in_use(self, results: dict[str, Done | int]) -> None:
        """The feed server's port is taken: one line naming the address, exit 2, no log line."""
        assert_one_line(results["port"], f"127.0.0.1:{results['taken']}")
