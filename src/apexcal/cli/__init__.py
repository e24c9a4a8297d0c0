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
