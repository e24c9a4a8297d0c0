"""``apexcal config check FILE|DIR [--secrets]``: validate a config file (or directory) and list every problem.

``apexcal config schema`` prints a complete, commented example config generated
from the schema: every key with its help text and its default (or an example).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from apexcal.cli.app import app

config_app = typer.Typer(
    name="config",
    help="Inspect and validate configuration files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")


@config_app.command("check")
def check_command(
    file: Annotated[
        str,
        typer.Argument(
            help="The config file, or a config directory (every file in it), to validate.",
            show_default=False,
        ),
    ],
    secrets: Annotated[
        bool,
        typer.Option(
            "--secrets",
            help="Also read every secret (token and password files, $CREDENTIALS_DIRECTORY).",
        ),
    ] = False,
) -> None:
    """Validate FILE (or every file of a directory): print every problem to stderr (exit 2), or ``ok`` (exit 0)."""
    from apexcal.cli.config_check import check_config

    code = check_config(file, secrets)
    if code:
        raise typer.Exit(code=code)


@config_app.command("schema")
def schema_command() -> None:
    """Print an example config documenting every key, generated from the schema."""
    from apexcal.config.schema import example_toml

    sys.stdout.write(example_toml())
