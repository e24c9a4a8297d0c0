"""The worker's systemd template unit verifies cleanly, restarts always and keeps exposure low."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "apexcal-worker@.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; .ci/run installs it)",
)


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    """An instance of the template with ExecStart pointed at this environment's apexcal."""
    apexcal = Path(sys.executable).with_name("apexcal")
    path = tmp_path / "apexcal-worker@1.service"
    path.write_text(UNIT.read_text().replace("/usr/local/bin/apexcal", str(apexcal)))
    return path


class TestWorkerUnit:
    def test_unit_verifies_without_warnings(self, instance: Path) -> None:
        """`systemd-analyze verify` on an instance prints nothing and exits 0."""
        assert SYSTEMD_ANALYZE is not None
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", str(instance)], capture_output=True, text=True,
            check=False, cwd=instance.parent,
        )
        assert (result.returncode, (result.stdout + result.stderr).strip()) == (0, "")

    def test_exposure_is_at_most_two(self, instance: Path) -> None:
        """The offline security analysis rates an instance at 2.0 or lower."""
        assert SYSTEMD_ANALYZE is not None
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=true", str(instance)],
            capture_output=True, text=True, check=False, cwd=instance.parent,
        )
        match = re.search(r"Overall exposure level for apexcal-worker@1\.service: ([0-9.]+)", result.stdout)
        assert match, result.stdout + result.stderr
        assert float(match.group(1)) <= 2.0

    def test_unit_runs_a_worker_that_always_restarts_and_stops_in_time(self) -> None:
        """The template runs `apexcal worker --config-dir`, Restart=always, a stop bound above the default shutdown."""
        lines = UNIT.read_text().splitlines()
        for line in (
            "ExecStart=/usr/local/bin/apexcal worker --config-dir /etc/apexcal/conf.d",
            "Restart=always",
            "TimeoutStopSec=45s",
        ):
            assert line in lines, line
