"""``apexcal run --config FILE | --config-dir DIR [--org KEY] [--log-level LEVEL]``: the daemon (scheduler + feed server).

With ``--config-dir`` it runs every organization of the directory in this
one process (one scheduler, one state store keyed per organization, one feed
server for every organization's feeds and sync webhooks), or with ``--org``
just that one.  SIGHUP re-reads the directory: organizations added or
removed get their jobs added or removed; one whose file is broken keeps its
previous config while the others take their new one.  Many processes on
many machines are the workers' job (``apexcal worker``).

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
        Path | None, typer.Option("--config", "-c", help="The config file.", dir_okay=False)
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="A config directory: every organization, or --org's.",
                     file_okay=False),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Run only this organization (file stem) of --config-dir."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning, error or critical (default: the config's log.level)."),
    ] = None,
) -> None:
    """Run the sync daemon: every target and feed on its schedule, and the feed server."""
    from apexcal.daemon import run

    if log_level is not None and log_level.lower() not in LEVELS:
        raise UsageError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    if config_path is None and config_dir is None:
        raise UsageError(
            "Missing option '--config' FILE (or '--config-dir' DIR) (see 'apexcal run --help')"
        )
    code = run(
        config_path, log_level=log_level.lower() if log_level else None,
        config_dir=config_dir, org=org,
    )
    if code:
        raise typer.Exit(code)
