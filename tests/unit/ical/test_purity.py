"""The iCalendar package stays pure: no network, database or scheduler libraries."""

from __future__ import annotations

import subprocess
import sys

MODULES = ("fields", "mapping", "feed", "remote", "timezones", "location", "colors", "text")
FORBIDDEN = ("httpx", "caldav", "sqlalchemy", "apscheduler", "structlog")


class TestPurity:
    """Importing apexcal.ical pulls in no I/O library."""

    def test_modules_import_no_io_library(self) -> None:
        """A fresh interpreter importing every ical module has none of the forbidden libraries loaded."""
        imports = "; ".join(f"import apexcal.ical.{m}" for m in MODULES)
        code = f"import sys; {imports}; print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == ""
