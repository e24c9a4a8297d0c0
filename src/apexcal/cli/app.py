"""The typer application every command module registers on, and its error boundary.

The console script starts in :mod:`apexcal.cli.front`, which imports this
module (and typer) only for a command line it cannot answer itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import typer

from apexcal.errors import (
    ApexcalError,
    ApiTransportError,
    ConfigError,
    Forbidden,
    NotAuthenticated,
    is_operator_error,
)

app = typer.Typer(
    name="apexcal",
    help="Calendar sync and export for the AchieveApex CRM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: no rich import, and the light front prints the same top-level help.
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Calendar sync and export for the AchieveApex CRM."""

def operator_message(exc: BaseException) -> str:
    """The one line an operator sees for ``exc``."""
    if isinstance(exc, NotAuthenticated):
        return f"error: the API refused the token (401 {exc.name}): {exc.server_message}"
    if isinstance(exc, Forbidden):
        return f"error: the token may not access this organization (403 {exc.name}): {exc.server_message}"
    if isinstance(exc, ApiTransportError):
        return f"error: cannot reach the API: {exc}"
    if isinstance(exc, ConfigError):
        return str(exc)
    return f"error: {exc}"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    print(message.replace("\n", " ") if "\n" not in message else message, file=sys.stderr)
    raise SystemExit(code)


def guarded(func: Callable[[], int | None]) -> int:
    """Run ``func`` turning operator errors into one stderr line and exit 2, SIGINT into 130."""
    try:
        return func() or 0
    except ApexcalError as exc:
        # The tree in apexcal.errors says which errors are the operator's to fix
        # (one line, exit 2); any other is a bug and keeps its traceback.
        if not is_operator_error(exc):
            raise
        print(operator_message(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@app.command("version")
def version_command() -> None:
    """Print the apexcal version."""
    from apexcal import __version__

    print(f"apexcal {__version__}")
