"""The command line's light front: fast help and config check that say exactly what typer would."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import apexcal.cli
from apexcal.cli import front
from apexcal.cli.app import app

APEXCAL = str(Path(sys.executable).with_name("apexcal"))
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

_MODULES_AFTER_HELP = """
import json, sys
from apexcal.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _all_commands() -> typer.main.TyperGroup:
    for info in pkgutil.iter_modules(apexcal.cli.__path__):
        importlib.import_module(f"apexcal.cli.{info.name}")
    front.sort_commands(app)
    group = typer.main.get_command(app)
    assert isinstance(group, typer.main.TyperGroup)
    return group


class TestHelpImports:
    def test_help_imports_no_heavy_library(self) -> None:
        """`apexcal --help` in a fresh interpreter loads no database, calendar, HTTP or CLI framework."""
        done = subprocess.run(
            [sys.executable, "-c", _MODULES_AFTER_HELP, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "Commands:" in done.stdout
        loaded = {name.split(".")[0] for name in json.loads(done.stderr.splitlines()[-1])}
        heavy = {"sqlalchemy", "alembic", "icalendar", "httpx", "typer", "rich", "pydantic", "structlog"}
        assert loaded & heavy == set()

    def test_config_check_imports_no_heavy_library(self) -> None:
        """A plain `config check` loads pydantic and the config, not the calendar, HTTP, database or CLI libraries."""
        done = subprocess.run(
            [sys.executable, "-c", _MODULES_AFTER_HELP, "config", "check", str(EXAMPLE)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout == "ok\n"
        loaded = set(json.loads(done.stderr.splitlines()[-1]))
        heavy = {"sqlalchemy", "alembic", "icalendar", "httpx", "typer", "rich", "structlog"}
        assert {name.split(".")[0] for name in loaded} & heavy == set()
        assert "apexcal.apex.models" not in loaded
        assert "importlib.metadata" not in loaded  # pydantic's plugin discovery skipped
        assert "apexcal.config" in loaded

    def test_pydantic_asks_the_lean_loader_for_plugins(self) -> None:
        """After lean_process, building a model asks the replaced plugin loader (so discovery is really skipped)."""
        code = (
            "import sys\n"
            "from apexcal.cli.front import lean_process\n"
            "lean_process()\n"
            "calls = []\n"
            "loader = sys.modules['pydantic.plugin._loader']\n"
            "loader.get_plugins = lambda: calls.append(1) or ()\n"
            "from apexcal.config import load_config\n"
            f"load_config({str(EXAMPLE)!r})\n"
            "print(len(calls) > 0, 'importlib.metadata' in sys.modules)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout.split() == ["True", "False"]


class TestRootHelp:
    @pytest.mark.parametrize("columns", ["40", "60", "80", "100", "200"])
    def test_same_as_typer(self, columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """The front's top-level help is the one typer renders, at every terminal width."""
        monkeypatch.setenv("COLUMNS", columns)
        group = _all_commands()
        expected = group.get_help(typer.Context(group, info_name="apexcal"))
        assert front.root_help("apexcal", front.help_width()) == expected

    def test_commands_listed_with_their_module_and_help(self) -> None:
        """COMMANDS names every command typer has, in its order, with its module and first paragraph."""
        group = _all_commands()
        assert [name for name, _, _ in front.COMMANDS] == list(group.commands)
        for name, module, text in front.COMMANDS:
            command = group.commands[name]
            help_text = " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())
            assert text == help_text, name
            callbacks = [command.callback] if command.callback else []
            if isinstance(command, typer.main.TyperGroup):
                callbacks += [sub.callback for sub in command.commands.values() if sub.callback]
            assert callbacks, name
            assert all(c.__module__ == f"apexcal.cli.{module}" for c in callbacks), name

    def test_help_and_bare_command(self) -> None:
        """`--help` prints it on stdout (exit 0); no arguments print it on stderr (exit 2), as typer did."""
        helped = subprocess.run([APEXCAL, "--help"], capture_output=True, text=True, timeout=60, check=False)
        bare = subprocess.run([APEXCAL], capture_output=True, text=True, timeout=60, check=False)
        assert (helped.returncode, helped.stderr) == (0, "")
        assert (bare.returncode, bare.stdout) == (2, "")
        assert helped.stdout == bare.stderr
        assert helped.stdout.startswith("Usage: apexcal [OPTIONS] COMMAND [ARGS]...\n")


    @pytest.mark.parametrize("args", [["--help"], ["config", "check", str(EXAMPLE)]])
    def test_closed_output_exits_1_quietly(self, args: list[str]) -> None:
        """A reader that went away (`apexcal --help | head -1`) gets no traceback: exit 1, as click does."""
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run([APEXCAL, *args], stdout=write, stderr=subprocess.PIPE, timeout=60, check=False)
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (1, b"")


class TestConfigCheckFastPath:
    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["config", "check", "a.toml"], ("a.toml", False)),
            (["config", "check", "a.toml", "--secrets"], ("a.toml", True)),
            (["config", "check", "--secrets", "a.toml"], ("a.toml", True)),
            (["config", "check"], None),
            (["config", "check", "--", "a.toml"], None),
            (["config", "check", "a.toml", "b.toml"], None),
            (["config", "check", "a.toml", "--secrets", "--secrets"], None),
            (["config", "check", "a.toml", "--help"], None),
            (["config", "check", "-"], None),
            (["sync", "check", "a.toml"], None),
        ],
    )
    def test_only_plain_command_lines(self, argv: list[str], expected: tuple[str, bool] | None) -> None:
        """Only a plain `config check FILE [--secrets]` skips typer; anything else is typer's to parse."""
        assert front.config_check_args(argv) == expected

    @pytest.mark.parametrize("content", ["good", "bad", "missing"])
    def test_same_outcome_as_typer(self, content: str, tmp_path: Path) -> None:
        """The fast path and the typer path (reached through `--`) print and exit alike."""
        path = tmp_path / "apexcal.toml"
        if content == "good":
            path.write_text(EXAMPLE.read_text())
        elif content == "bad":
            path.write_text('[source]\nbase_url = 7\n[[targets]]\nname = "x"\n')
        fast = subprocess.run(
            [APEXCAL, "config", "check", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        slow = subprocess.run(
            [APEXCAL, "config", "check", "--", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
        assert fast.returncode == (0 if content == "good" else 2)


class TestCommandModules:
    def test_named_command_imports_its_module_only(self) -> None:
        assert front.command_modules(["sync", "--config", "x"]) == ["sync_cmd"]
        assert front.command_modules(["version"]) == ["app"]

    @pytest.mark.parametrize("argv", [[], ["nope"], ["--bogus", "sync"]])
    def test_anything_else_imports_every_module(self, argv: list[str]) -> None:
        assert sorted(front.command_modules(argv)) == sorted({module for _, module, _ in front.COMMANDS})
