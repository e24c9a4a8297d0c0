"""``apexcal run --config FILE [--log-level LEVEL]``: the daemon (scheduler + feed server).

Runs until SIGTERM or SIGINT (exit 0 once in-flight cycles have stopped);
SIGHUP reloads the config.  Operator errors at start (bad config, unreadable
secret, unusable state store, a token the API refuses, a port in use) print
one line and exit 2; an API that is down at start is not one: the daemon
starts and its jobs retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError
from apexcal.log import LEVELS


@app.command("run")
def run_command(
    config_path: Annotated[
        Path, typer.Option("--config", "-c", help="The config file.", dir_okay=False)
    ],
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning, error or critical (default: the config's log.level)."),
    ] = None,
) -> None:
    """Run the sync daemon: every target and feed on its schedule, and the feed server."""
    from apexcal.daemon import run

    if log_level is not None and log_level.lower() not in LEVELS:
        raise UsageError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    code = run(config_path, log_level=log_level.lower() if log_level else None)
    if code:
        raise typer.Exit(code)
