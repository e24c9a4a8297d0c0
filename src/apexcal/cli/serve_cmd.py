"""``apexcal serve --config-dir DIR [--listen HOST:PORT]``: a stateless feed server of the scaled-out mode.

Serves the feeds ``apexcal worker`` keeps in PostgreSQL (a SQLite ``[state]
url`` is one line and exit 2); run any number of instances behind a load
balancer.  See :mod:`apexcal.serve.stateless`.  Runs until SIGTERM or SIGINT
(exit 0); SIGHUP reads the config directory again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError
from apexcal.log import LEVELS


@app.command("serve")
def serve_command(
    config_dir: Annotated[
        Path,
        typer.Option(
            "--config-dir", help="The config directory (one file per organization + apexcal.toml).",
            file_okay=False,
        ),
    ],
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="host:port to listen on (default: [server] listen)."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning, error or critical (default: [log] level)."),
    ] = None,
) -> None:
    """Serve the feeds workers build, from the database: any number of stateless instances."""
    from apexcal.config.directory import load_config_dir
    from apexcal.log import configure
    from apexcal.serve.stateless import parse_listen, require_postgresql, run_serve

    if log_level is not None and log_level.lower() not in LEVELS:
        raise UsageError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    if listen is not None:
        parse_listen(listen)
    configs = load_config_dir(config_dir)
    require_postgresql(configs.state_url)
    shared_log = configs.shared.log
    configure(
        (log_level or shared_log.level).lower(),
        json=None if shared_log.format == "auto" else shared_log.format == "json",
    )
    code = run_serve(configs, listen=listen, log_level=log_level)
    if code:
        raise typer.Exit(code)
