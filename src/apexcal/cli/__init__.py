"""The ``apexcal`` command line.

Each command lives in a module of its own that registers itself on
:data:`apexcal.cli.app.app`; this package imports them all.
"""

from __future__ import annotations

import sys

import typer

from apexcal.cli import app as _app
from apexcal.cli import (  # noqa: F401  (imported for their command registration)
    config_cmd,
    db_cmd,
    demo_cmd,
    emulator_cmd,
    export_cmd,
    feed_cmd,
    run_cmd,
    status_cmd,
    sync_cmd,
)
from apexcal.cli.app import OPERATOR_ERRORS, operator_message

app = _app.app


def main() -> None:
    """Entry point of the ``apexcal`` console script."""
    try:
        code = app(standalone_mode=False)
    except SystemExit:
        raise
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.TyperException as exc:
        # A bad option or argument is an operator error: one line, exit 2,
        # pointing at --help (bare `apexcal` or a bare group still shows help).
        context = getattr(exc, "ctx", None)
        format_message = getattr(exc, "format_message", None)
        if type(exc).__name__ != "NoArgsIsHelpError" and callable(format_message):
            where = f"{context.command_path} " if context is not None else "apexcal "
            print(
                f"error: {format_message()} (see '{where.strip()} --help')",
                file=sys.stderr,
            )
        else:
            show = getattr(exc, "show", None)
            if callable(show):
                show()
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except OPERATOR_ERRORS as exc:
        print(operator_message(exc), file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
