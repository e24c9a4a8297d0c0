"""``apexcal trigger --config-dir DIR [--org KEY] [--target NAME]``: sync now instead of at the next interval.

Defers a pull of every (or one) organization on the workers' queue; the pull
then defers a cycle of every (or the named) target and a build of every feed,
whether due or not.  A pull already requested and not started yet absorbs
the new request (said on stdout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError


@app.command("trigger")
def trigger_command(
    config_dir: Annotated[
        Path,
        typer.Option("--config-dir", help="The config directory of the workers.", file_okay=False),
    ],
    org: Annotated[
        str | None, typer.Option("--org", help="Only this organization (its file stem).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Only this target (needs --org).")
    ] = None,
) -> None:
    """Ask the workers to pull and sync now."""
    from apexcal.config.directory import load_config_dir
    from apexcal.log import configure
    from apexcal.state import Store
    from apexcal.worker.runner import make_app, require_postgresql
    from apexcal.worker.trigger import request_pull

    configs = load_config_dir(config_dir)
    require_postgresql(configs.state_url)
    configure("warning")  # stdout carries the answer; logs go to stderr
    keys = list(configs.organizations)
    if org is not None:
        if org not in configs.organizations:
            raise UsageError(f"--org {org}: no such organization (configured: {', '.join(keys)})")
        keys = [org]
    if target is not None:
        if org is None:
            raise UsageError("--target needs --org")
        names = [t.name for t in configs.organization(org).targets]
        if target not in names:
            raise UsageError(
                f"--target {target}: no such target in {org} (configured: {', '.join(names) or 'none'})"
            )
    with Store.open(configs.state_url, pool_size=1, max_overflow=0) as store:
        schema = store.queue_schema()
    app = make_app(configs.state_url, schema, pool_size=2)
    with app.open():
        for key in keys:
            job_id = request_pull(app, key, target)
            if job_id is None:
                print(f"{key}: already requested")
            else:
                print(f"{key}: pull requested (job {job_id})")
