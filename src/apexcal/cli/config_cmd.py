"""``apexcal config check FILE|DIR [--secrets]``: validate a config file (or directory) and list every problem."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.config import UnreadableSecrets, load_config
from apexcal.errors import ConfigError, Problem, SecretError

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
    from apexcal.config.directory import load_config_dir

    try:
        if Path(file).is_dir():
            load_config_dir(file, env=os.environ, resolve_secrets=secrets)
        else:
            load_config(file, env=os.environ, resolve_secrets=secrets)
    except ConfigError as exc:
        _report(exc.problems)
    except UnreadableSecrets as exc:
        _report(exc.problems)
    except SecretError as exc:
        _report([Problem(file=file, path=exc.key, message=exc.reason)])
    print("ok")


def _report(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    raise typer.Exit(code=2)
