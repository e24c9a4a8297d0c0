"""The ``apexcal`` command line.

Each command lives in a module of its own that registers itself on
:data:`apexcal.cli.app.app` when imported.  The console script starts in
:func:`main`, which imports only the standard library until it knows what
it has to run: the top-level help and a plain ``config check`` are answered
by :mod:`apexcal.cli.front` without typer, and any other command line
imports typer and the one command module it names (all of them when it names
none it knows, so that typer's errors and suggestions stay whole).
"""

from __future__ import annotations

import os
import sys

from apexcal.cli.front import command_modules, fast_path, sort_commands


def main() -> None:
    """Entry point of the ``apexcal`` console script."""
    argv = sys.argv[1:]
    try:
        code = fast_path(argv)
        if code is None:
            code = _run_typer(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:
        # The reader went away (`apexcal --help | head -1`): exit 1 quietly, as click does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except Exception as exc:
        from apexcal.cli.app import operator_message
        from apexcal.errors import is_operator_error

        if not is_operator_error(exc):
            raise
        print(operator_message(exc), file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


def _run_typer(argv: list[str]) -> int:
    """Run ``argv`` through the typer application with the modules it needs; the exit code."""
    import importlib

    import typer

    from apexcal.cli.app import app

    for module in command_modules(argv):
        importlib.import_module(f"apexcal.cli.{module}")
    sort_commands(app)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        return 130
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
        return int(getattr(exc, "exit_code", 2))
    return code if isinstance(code, int) else 0
