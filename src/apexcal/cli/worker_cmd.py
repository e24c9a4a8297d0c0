"""``apexcal worker --config-dir DIR [--concurrency N]``: one worker process of the scaled-out mode.

PostgreSQL only (a SQLite ``[state] url`` is one line and exit 2).  Any
number of workers, on any number of machines, share the organizations of one
config directory through procrastinate's queue; see :mod:`apexcal.worker`.
Runs until SIGTERM or SIGINT (exit 0 within ``[sync] shutdown_timeout``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError
from apexcal.log import LEVELS


@app.command("worker")
def worker_command(
    config_dir: Annotated[
        Path,
        typer.Option(
            "--config-dir", help="The config directory (one file per organization + apexcal.toml).",
            file_okay=False,
        ),
    ],
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", help="Jobs run at once (default: [worker] concurrency).", min=1, max=64),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            "--metrics-listen",
            help="host:port of this worker's /metrics (default: [worker] metrics_listen; off when unset).",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning, error or critical (default: [log] level)."),
    ] = None,
) -> None:
    """Run one worker: sync targets and build feeds of every organization, sharing the work with other workers."""
    from apexcal.config.directory import load_config_dir
    from apexcal.log import configure
    from apexcal.worker.runner import require_postgresql, run_worker

    if log_level is not None and log_level.lower() not in LEVELS:
        raise UsageError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    configs = load_config_dir(config_dir, resolve_secrets=True)
    require_postgresql(configs.state_url)
    shared_log = configs.shared.log
    configure(
        (log_level or shared_log.level).lower(),
        json=None if shared_log.format == "auto" else shared_log.format == "json",
    )
    if metrics_listen is not None:
        from pydantic import TypeAdapter, ValidationError

        from apexcal.config.values import Listen

        try:
            TypeAdapter(Listen).validate_python(metrics_listen)
        except ValidationError:
            raise UsageError(
                f"--metrics-listen {metrics_listen}: not host:port (e.g. 127.0.0.1:9101)"
            ) from None
    code = run_worker(
        configs,
        concurrency=concurrency or configs.shared.worker.concurrency,
        metrics_listen=metrics_listen,
    )
    if code:
        raise typer.Exit(code)
