"""The config schema documents itself: help text per key, the example file, the generated example."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from apexcal.config import Config, config_from_dict
from apexcal.config.schema import example_toml, schema_keys

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

_HEADER = re.compile(r"^\[\[?([\w.]+)\]\]?\s*(#.*)?$")
# A key, set or left commented out as documentation: `key = …` or `# key = …`.
_KEY = re.compile(r"^(?:# )?([a-z_]+) = (.+)$")


def _documented_keys(text: str) -> set[str]:
    """Every key path an example file sets or shows commented out.

    A table of free keys (``[targets.filter]``) documents its own key; the
    entries inside it are examples of values, not keys of the schema.
    """
    leaves = {key for key in schema_keys() if "." in key}
    keys: set[str] = set()
    table = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header is not None:
            table = header[1]
            if table in leaves:
                keys.add(table)
            continue
        if table in leaves:
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        path = f"{table}.{key[1]}" if table else key[1]
        value = key[2].split(" #")[0]
        if value.startswith("{") and path not in leaves:
            # An inline table of a nested model: its keys are the documented ones.
            inline = tomllib.loads(f"x = {value}")["x"]
            keys.update(f"{path}.{inner}" for inner in inline)
        else:
            keys.add(path)
    return keys


def _fields(model: type[BaseModel]) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name, info in model.model_fields.items():
        found.append((f"{model.__name__}.{name}", info.description))
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found += _fields(arg)
    return found


class TestSchemaHelp:
    """Every option of the schema carries its help text."""

    @pytest.mark.parametrize(
        ("field", "description"),
        [f for f in _fields(Config) if not f[0].startswith("Config.")],
    )
    def test_option_has_a_description(self, field: str, description: object) -> None:
        """Each key of each table says what it does."""
        assert isinstance(description, str), field
        assert description.strip(), field


class TestExampleFile:
    """``config.example.toml`` documents exactly the schema's keys."""

    def test_example_documents_every_key_and_no_other(self) -> None:
        """No key of the schema is missing from the example, and the example shows no unknown key."""
        documented = _documented_keys(EXAMPLE.read_text(encoding="utf-8"))
        assert documented == set(schema_keys())


class TestGeneratedExample:
    """``apexcal config schema`` prints an example built from the schema."""

    def test_generated_example_documents_every_key(self) -> None:
        """The generated example shows every key of the schema, set or commented out."""
        assert _documented_keys(example_toml()) == set(schema_keys())

    def test_generated_example_is_a_valid_config(self) -> None:
        """The generated example, as printed, loads without a problem."""
        config = config_from_dict(tomllib.loads(example_toml()), env={})
        assert config.source.organization_id == 27
        assert [t.name for t in config.targets] == ["jane"]
        assert [f.name for f in config.feeds] == ["team"]

    def test_every_key_carries_its_help_text(self) -> None:
        """Each key line of the generated example follows a comment with the key's description."""
        free_tables = {key for key in schema_keys() if key.endswith((".filter", ".components", ".alarms"))}
        lines = example_toml().splitlines()
        table = ""
        for index, line in enumerate(lines):
            header = _HEADER.match(line)
            if header is not None:
                table = header[1]
            elif _KEY.match(line) and table not in free_tables:
                assert lines[index - 1].startswith("# "), line
