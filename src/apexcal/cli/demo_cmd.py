"""``apexcal demo``: the emulator, Radicale, the daemon and the feed server on loopback, no config."""

from __future__ import annotations

from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError
from apexcal.log import LEVELS


@app.command("demo")
def demo_command(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error or critical.")
    ] = "info",
    activities: Annotated[
        int, typer.Option("--activities", help="How many sample activities to seed.")
    ] = 240,
) -> None:
    """Run a self-contained demo: sample CRM data synced into a local CalDAV server and feeds."""
    from apexcal.demo import run_demo

    if log_level.lower() not in LEVELS:
        raise UsageError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    if not 1 <= activities <= 5000:
        raise UsageError("--activities must be between 1 and 5000")
    code = run_demo(log_level=log_level.lower(), activities=activities)
    if code:
        raise typer.Exit(code)
