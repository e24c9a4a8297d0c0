"""The light front of the command line: what runs before (and mostly instead of) typer.

A command line waits on its imports: typer alone costs several times the
interpreter's own start-up.  So the console script starts here, in a module
that imports nothing but the standard library:

* ``apexcal --help`` and a bare ``apexcal`` print the top-level help from
  :data:`COMMANDS`, formatted exactly as typer formats it (click's plain help
  formatter; a test compares the two at several widths);
* ``apexcal config check FILE [--secrets]`` runs the check directly (it needs
  the config models, nothing of the command line), in a process spared
  pydantic's plugin discovery and the cyclic garbage collector
  (:func:`lean_process`);
* every other command line goes to the typer application with only the
  module of the command it names imported (:func:`command_modules`), so
  ``apexcal sync`` never imports the export command and its options.

Anything unusual (an option before the command, ``--`` or ``-x`` where a
file name is expected, a misspelt command) takes the typer path, which owns
the usage errors and the help of every command.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

ROOT_HELP = "Calendar sync and export for the AchieveApex CRM."
ROOT_USAGE = "[OPTIONS] COMMAND [ARGS]..."

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("version", "app", "Print the apexcal version."),
    (
        "demo",
        "demo_cmd",
        "Run a self-contained demo: sample CRM data synced into a local CalDAV server and feeds.",
    ),
    ("emulator", "emulator_cmd", "Run the AchieveApex API emulator until interrupted."),
    (
        "export",
        "export_cmd",
        "Export activities from the API to an .ics calendar (standard output by default).",
    ),
    (
        "run",
        "run_cmd",
        "Run the sync daemon: every target and feed on its schedule, and the feed server.",
    ),
    (
        "serve",
        "serve_cmd",
        "Serve the feeds workers build, from the database: any number of stateless instances.",
    ),
    (
        "status",
        "status_cmd",
        "Show each target and feed: last success, last error, objects, pending writebacks, next run.",
    ),
    (
        "sync",
        "sync_cmd",
        "Run exactly one sync cycle of every (or the named) target, then rebuild the feeds.",
    ),
    (
        "worker",
        "worker_cmd",
        "Run one worker: sync targets and build feeds of every organization, sharing the work with other workers.",
    ),
    ("trigger", "trigger_cmd", "Ask the workers to pull and sync now."),
    ("config", "config_cmd", "Inspect and validate configuration files."),
    ("db", "db_cmd", "Manage the state database (schema migrations)."),
    ("feed", "feed_cmd", "Manage secret feed URLs (create, rotate, revoke, list)."),
    (
        "hook",
        "hook_cmd",
        "Manage the secret URLs of the sync webhook (create, rotate, revoke, list).",
    ),
)
"""Every top-level command and group: name, its module under ``apexcal.cli``, the
first paragraph of its help — in the order typer lists them (commands, then groups)."""


def command_modules(argv: list[str]) -> list[str]:
    """The modules under ``apexcal.cli`` typer needs for ``argv``: the named command's, else all."""
    if argv and not argv[0].startswith("-"):
        for name, module, _ in COMMANDS:
            if name == argv[0]:
                return [module]
    return list(dict.fromkeys(module for _, module, _ in COMMANDS))


def sort_commands(app: typer.Typer) -> None:
    """Put ``app``'s commands and groups in :data:`COMMANDS` order, whatever order their modules were imported in."""
    order = {name: i for i, (name, _, _) in enumerate(COMMANDS)}
    app.registered_commands.sort(key=lambda info: order.get(info.name or "", len(order)))
    app.registered_groups.sort(key=lambda info: order.get(info.name or "", len(order)))


def program_name(main: ModuleType | None = None) -> str:
    """The program's name as click shows it in usage lines (``apexcal``, ``python -m apexcal``)."""
    if main is None:
        main = sys.modules["__main__"]
    path = sys.argv[0] if sys.argv else ""
    package = getattr(main, "__package__", None)
    if package in {None, ""}:
        return os.path.basename(path)
    module = package
    name = os.path.splitext(os.path.basename(path))[0]
    if name != "__main__":
        module = f"{module}.{name}"
    return f"python -m {module.lstrip('.')}"


def help_width() -> int:
    """The width click's help formatter uses: the terminal's, at most 78, at least 50."""
    return max(min(shutil.get_terminal_size().columns, 80) - 2, 50)


def short_help(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters the way click shortens a command's help."""
    end = text.find("\n\n")
    if end != -1:
        text = text[:end]
    words = text.split()
    if not words:
        return ""
    if words[0] == "\b":
        words = words[1:]
    total = 0
    last = len(words) - 1
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word[-1] == ".":
            return " ".join(words[: i + 1])
        if total == limit and i != last:
            break
    else:
        return " ".join(words)
    total += len("...")
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return " ".join(words[:i]) + "..."


def _fill(text: str, width: int, first: str = "", rest: str = "") -> str:
    return textwrap.TextWrapper(
        width, initial_indent=first, subsequent_indent=rest, replace_whitespace=False
    ).fill(text)


def _definitions(rows: list[tuple[str, str]], width: int, indent: int = 2) -> str:
    """Rows as click's ``HelpFormatter.write_dl`` writes them."""
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    out = []
    for first, second in rows:
        line = " " * indent + first
        if len(first) <= first_col - 2:
            line += " " * (first_col - len(first))
        else:
            line += "\n" + " " * (first_col + indent)
        lines = _fill(second, max(width - first_col - 2, 10)).splitlines()
        out.append(line + lines[0] + "\n")
        out.extend(" " * (first_col + indent) + more + "\n" for more in lines[1:])
    return "".join(out)


def root_help(prog: str, width: int) -> str:
    """The top-level help, as typer prints it for ``prog`` at ``width`` (no final newline)."""
    prefix = f"Usage: {prog} "
    if width >= len(prefix) + 20:
        usage = _fill(ROOT_USAGE, width, prefix, " " * len(prefix))
    else:
        indent = " " * (len("Usage: ") + 4)
        usage = prefix + "\n" + _fill(ROOT_USAGE, width, indent, indent)
    limit = width - 6 - max(len(name) for name, _, _ in COMMANDS)
    commands = [(name, short_help(text, limit)) for name, _, text in COMMANDS]
    return (
        usage
        + "\n\n"
        + _fill(ROOT_HELP, width, "  ", "  ")
        + "\n\nOptions:\n"
        + _definitions([("--help", "Show this message and exit.")], width)
        + "\nCommands:\n"
        + _definitions(commands, width)
    ).rstrip("\n")


def config_check_args(argv: list[str]) -> tuple[str, bool] | None:
    """``(FILE, secrets)`` when ``argv`` is a plain ``config check FILE [--secrets]``, else None."""
    if argv[:2] != ["config", "check"]:
        return None
    rest = argv[2:]
    secrets = "--secrets" in rest
    files = [arg for arg in rest if arg != "--secrets"]
    if len(files) != 1 or len(rest) != len(files) + secrets or files[0].startswith("-"):
        return None
    return files[0], secrets


def fast_path(argv: list[str]) -> int | None:
    """Answer ``argv`` without typer when it can be; the exit code, or None for the typer path."""
    if not argv or argv == ["--help"]:
        text = root_help(program_name(), help_width())
        if argv:
            print(text, flush=True)
            return 0
        print(text, file=sys.stderr)  # no arguments: the help, as a usage error
        return 2
    check = config_check_args(argv)
    if check is not None:
        lean_process()
        from apexcal.cli.config_check import check_config

        return check_config(*check)
    return None


def lean_process() -> None:
    """Spare a short-lived process that validates one config two costs it does not need.

    * pydantic's plugin discovery: building the first model imports
      ``importlib.metadata`` and reads every installed distribution's entry
      points to find plugins that would observe validation (about half the
      interpreter's own start-up).  apexcal uses none: the check runs as with
      ``PYDANTIC_DISABLE_PLUGINS=__all__``, which pydantic reads only after
      that import.  A test keeps pydantic asking this loader for its plugins.
    * the cyclic garbage collector, whose passes walk the objects the imports
      create; the process exits after the check.

    Call it before pydantic is imported (it leaves an imported pydantic as it is).
    """
    import gc

    gc.disable()
    if "pydantic" not in sys.modules:
        loader = ModuleType("pydantic.plugin._loader", "pydantic's plugin loader, finding no plugins.")
        loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
        sys.modules[loader.__name__] = loader


def _no_plugins() -> tuple[()]:
    return ()
