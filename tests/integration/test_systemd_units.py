"""The shipped systemd units verify cleanly and keep the service's exposure low."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("apexcal.service", "apexcal-export.service", "apexcal-export.timer", "apexcal-serve.service")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; ci/install-system-packages installs it)",
)


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """Copies of the units with ExecStart pointed at the apexcal installed in this environment.

    `systemd-analyze verify` checks that the command exists; the units name
    /usr/local/bin/apexcal, which a test machine need not have.
    """
    apexcal = Path(sys.executable).with_name("apexcal")
    assert apexcal.exists(), f"apexcal console script not found beside {sys.executable}"
    for name in UNITS:
        text = (UNITS_DIR / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/local/bin/apexcal", str(apexcal)))
    return tmp_path


class TestUnits:
    def test_units_verify_without_warnings(self, unit_dir: Path) -> None:
        """`systemd-analyze verify` exits 0 and prints nothing about any of the units."""
        assert SYSTEMD_ANALYZE is not None
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", *(str(unit_dir / n) for n in UNITS)],
            capture_output=True,
            text=True,
            check=False,
            cwd=unit_dir,
        )
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0, output
        assert output == "", output

    @pytest.mark.parametrize("unit", ["apexcal.service", "apexcal-serve.service"])
    def test_service_exposure_is_at_most_two(self, unit_dir: Path, unit: str) -> None:
        """The offline security analysis rates each long-running service's exposure at 2.0 or lower."""
        assert SYSTEMD_ANALYZE is not None
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=true", str(unit_dir / unit)],
            capture_output=True,
            text=True,
            check=False,
            cwd=unit_dir,
        )
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", result.stdout)
        assert match, result.stdout + result.stderr
        assert float(match.group(1)) <= 2.0, result.stdout

    def test_service_runs_the_daemon_with_notify_and_watchdog(self) -> None:
        """The service unit is a notify service with a watchdog, reload and credentials."""
        text = (UNITS_DIR / "apexcal.service").read_text()
        for line in (
            "Type=notify",
            "ExecStart=/usr/local/bin/apexcal run --config /etc/apexcal/config.toml",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "StateDirectory=apexcal",
            "DynamicUser=yes",
            "LoadCredential=apex-token:/etc/apexcal/credentials/apex-token",
        ):
            assert line in text.splitlines(), line
        assert re.search(r"^WatchdogSec=\S+", text, re.MULTILINE)

    def test_serve_unit_restarts_always_and_serves_the_config_dir(self) -> None:
        """The stateless server's unit restarts whatever the exit, reloads on SIGHUP and keeps no state."""
        text = (UNITS_DIR / "apexcal-serve.service").read_text()
        for line in (
            "Type=notify",
            "ExecStart=/usr/local/bin/apexcal serve --config-dir /etc/apexcal/conf.d",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=always",
            "DynamicUser=yes",
        ):
            assert line in text.splitlines(), line
        assert "StateDirectory=" not in text
