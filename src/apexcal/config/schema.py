"""The config schema as documentation: every key with its help text, and a documented example.

The pydantic models of :mod:`apexcal.config.models` are the schema: each option
carries its type, its default, its help text (``description``) and, where the
default is no good example, an example value.  :func:`schema_keys` lists every
key path; :func:`example_toml` writes a commented example config from it (what
``apexcal config schema`` prints).  A test checks that ``config.example.toml``
documents exactly these keys.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import PurePath
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from apexcal.config.durations import format_duration
from apexcal.config.models import Config

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_WIDTH = 88


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside ``annotation`` (``X``, ``X | None``, ``list[X]``) and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin is None:
        return None, False
    for arg in get_args(annotation):
        model, _ = _model_of(arg)
        if model is not None:
            return model, origin is list
    return None, False


def schema_keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[str]:
    """Every key path of the schema (``source.base_url``, ``feeds.window.past_days``).

    Tables of free keys (``targets.filter``, ``mapping.components``) are one key.
    """
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        inner, _ = _model_of(info.annotation)
        if inner is None:
            yield path
        else:
            yield from schema_keys(inner, f"{path}.")


def _default(info: FieldInfo) -> Any:
    if info.default is not PydanticUndefined:
        return info.default
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return PydanticUndefined


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def toml_value(value: Any) -> str:
    """``value`` written as TOML (durations as their text, e.g. ``"5m"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, str | PurePath):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH - 2, initial_indent="# ", subsequent_indent="# ")


def _table(model: type[BaseModel], header: str, note: str | None) -> list[str]:
    """One table of the example: its docstring, then each key with its help text."""
    doc = " ".join((model.__doc__ or "").split()).replace("``", "")
    lines = [*_comment(f"{doc} {note or ''}".strip()), header]
    tables: list[str] = []
    for name, info in model.model_fields.items():
        help_lines = _comment(info.description or "")
        default = _default(info)
        example = info.examples[0] if info.examples else PydanticUndefined
        if isinstance(default, dict):
            # A table of free keys: written as a sub-table after the plain keys.
            entries: dict[Any, Any] = example if isinstance(example, dict) else default
            tables += ["", *help_lines, f"[{header.strip('[]')}.{name}]"]
            tables += [f"{_key(str(k))} = {toml_value(v)}" for k, v in entries.items()]
            continue
        if example is not PydanticUndefined:
            commented = default is None  # optional: shown, but left off
            line = f"{name} = {toml_value(example)}"
            lines += [*help_lines, f"# {line}" if commented else line]
        elif default is None or default is PydanticUndefined:
            lines += [*help_lines, f'# {name} = "…"']
        else:
            lines += [*help_lines, f"{name} = {toml_value(default)}"]
    return lines + tables


def example_toml() -> str:
    """A complete, commented example config generated from the schema (valid as it is)."""
    lines = [
        "# apexcal configuration: every key with its help text, generated from the schema",
        "# (`apexcal config schema`).  Keys left commented out are optional and unset by default.",
        '# Durations are written "30s", "5m", "1h30m", "2d" (or whole seconds: 300).',
    ]
    for name, info in Config.model_fields.items():
        model, is_list = _model_of(info.annotation)
        if model is None:
            raise TypeError(f"top-level key {name} is not a table")
        lines.append("")
        lines += _table(model, f"[[{name}]]" if is_list else f"[{name}]", info.description)
    return "\n".join(lines) + "\n"
