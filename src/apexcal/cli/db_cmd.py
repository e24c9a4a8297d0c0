"""``apexcal db upgrade|current``: the state database's schema.

The daemon and ``apexcal sync`` migrate on start anyway; ``db upgrade`` lets
an operator do it on purpose (before a rollout, or with a privileged role).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError

db_app = typer.Typer(
    help="Manage the state database (schema migrations).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file whose [state] url names the database."),
]
ConfigDirOption = Annotated[
    Path | None,
    typer.Option(
        "--config-dir", help="Config directory whose apexcal.toml [state] url names the database.",
        file_okay=False,
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (instead of --config), e.g. sqlite:////path/state.db."),
]


def _state_url(config: Path | None, url: str | None, config_dir: Path | None = None) -> str:
    if sum(x is not None for x in (config, url, config_dir)) != 1:
        raise UsageError("give exactly one of --config FILE, --config-dir DIR or --url URL")
    if url is not None:
        return url
    if config_dir is not None:
        from apexcal.config.directory import load_config_dir

        return load_config_dir(config_dir).state_url
    from apexcal.config import load_config

    assert config is not None
    return load_config(config).state.url


@db_app.command("upgrade")
def upgrade_command(
    config: ConfigOption = None, url: UrlOption = None, config_dir: ConfigDirOption = None
) -> None:
    """Apply every pending schema migration to the state database."""
    from apexcal.state import migrate
    from apexcal.state.database import Database, make_engine

    db = Database(make_engine(_state_url(config, url, config_dir)))
    try:
        before, after = migrate.upgrade(db)
    finally:
        db.dispose()
    if before == after:
        print(f"state database {db.url} is up to date (revision {after})")
    else:
        print(f"state database {db.url} upgraded from {before or 'empty'} to revision {after}")


@db_app.command("current")
def current_command(
    config: ConfigOption = None, url: UrlOption = None, config_dir: ConfigDirOption = None
) -> None:
    """Print the schema revision of the state database and the newest one known."""
    from apexcal.state import migrate
    from apexcal.state.database import Database, make_engine

    db = Database(make_engine(_state_url(config, url, config_dir)))
    try:
        current = migrate.current_revision(db)
    finally:
        db.dispose()
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs upgrade"
    print(f"{db.url}: revision {current or 'empty'} (newest {head}, {state})")
