"""Reading a config: TOML file → environment overrides → validation → one list of problems.

Every problem found is reported at once, each naming the file and the key
path with 0-based indexes (``config.toml: targets[0].url: not a valid URL``),
because an operator fixing a config one error per run loses patience fast.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from apexcal.config.models import Config
from apexcal.config.secrets import resolve_secrets as _resolve_secrets
from apexcal.config.values import FILTER_KEYS, DateRange
from apexcal.errors import ConfigError, Problem

ENV_PREFIX = "APEXCAL_"
_SECRET_KEYS = frozenset({"token", "password"})
_LIST_SECTIONS = ("targets", "feeds")
# Relative paths in a config file are read relative to the file's directory.
_RELATIVE_PATHS = (("source", "token_file"), ("targets", "password_file"), ("feeds", "path"))

Loc = tuple[str | int, ...]


def load_config(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = False,
) -> Config:
    """Read and validate the config file at ``path``.

    ``env`` (default: ``os.environ``) supplies ``APEXCAL_<SECTION>__<KEY>``
    overrides and the secret sources.  With ``resolve_secrets`` the token and
    passwords are read now (``SecretError`` naming the key when one cannot be).
    Raises ``ConfigError`` listing every problem.
    """
    file = str(path)
    env = os.environ if env is None else env
    raw = _read_toml(Path(path), file)
    config = _validate(raw, file=file, env=env, base_dir=Path(path).parent)
    config._path = Path(path)
    if resolve_secrets:
        config = _resolve_secrets(config, env=env, file=file)
    return config


def config_from_dict(
    data: Mapping[str, Any], *, file: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate an in-memory config (same rules as a file); ``file`` names it in problems.

    ``env`` defaults to an empty mapping here, not ``os.environ``, so that code
    building a config in memory gets exactly what it wrote.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(file=file, path="", message="a config must be a table")])
    return _validate(copy.deepcopy(dict(data)), file=file, env=env or {}, base_dir=None)


# --- reading ------------------------------------------------------------------


def _read_toml(path: Path, file: str) -> dict[str, Any]:
    def fail(message: str) -> ConfigError:
        return ConfigError([Problem(file=file, path="", message=message)])

    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a config file") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(_toml_message(str(exc))) from None


def _toml_message(message: str) -> str:
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if match:
        what, line, column = match.groups()
        return f"invalid TOML at line {line}, column {column}: {_lowercase_first(what)}"
    return f"invalid TOML: {_lowercase_first(message)}"


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# --- environment overrides ----------------------------------------------------


def env_value(key: str, raw: str) -> Any:
    """An override's value: a TOML value when it parses as one, else the text itself.

    Secrets and values that TOML reads as dates or times stay text; quote a
    value (``'"123"'``) to force a string.
    """
    if key in _SECRET_KEYS or "\n" in raw or "\r" in raw:
        return raw
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    return raw if isinstance(value, date | time) else value


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str], file: str
) -> tuple[dict[Loc, str], list[Problem]]:
    """Apply ``APEXCAL_<SECTION>__<KEY>`` overrides to ``data`` in place.

    Returns where each override landed (for problem messages) and the
    overrides that name nothing.  List entries are addressed by index or name:
    ``APEXCAL_TARGETS__0__URL``, ``APEXCAL_TARGETS__JANE__URL``.
    """
    origins: dict[Loc, str] = {}
    problems: list[Problem] = []
    for name in sorted(env):
        rest = name[len(ENV_PREFIX) :] if name.startswith(ENV_PREFIX) else ""
        if "__" not in rest:
            continue
        parts = rest.lower().split("__")
        if not all(parts):
            problems.append(Problem(file=file, path=name, message="empty key in variable name"))
            continue
        node: Any = data
        loc: list[str | int] = []
        for part in parts[:-1]:
            if isinstance(node, list):
                index = _list_index(node, part)
                if index is None:
                    problems.append(
                        Problem(file=file, path=name, message=f"{_path(loc)} has no entry {part!r}")
                    )
                    break
                loc.append(index)
                node = node[index]
            elif isinstance(node, dict):
                loc.append(part)
                node = node.setdefault(part, [] if loc == [part] and part in _LIST_SECTIONS else {})
            else:
                break  # the file's own value is wrong; validation reports it
        else:
            if isinstance(node, dict):
                node[parts[-1]] = env_value(parts[-1], env[name])
                origins[(*loc, parts[-1])] = name
            elif isinstance(node, list):
                problems.append(
                    Problem(file=file, path=name, message=f"{_path(loc)} is a list: name an entry")
                )
    return origins, problems


def _list_index(entries: list[Any], part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(entries) else None
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and str(entry.get("name", "")).lower() == part:
            return index
    return None


def _resolve_relative(data: dict[str, Any], base_dir: Path) -> None:
    for section, key in _RELATIVE_PATHS:
        node = data.get(section)
        entries = node if isinstance(node, list) else [node]
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get(key), str) and entry[key].strip():
                value = Path(entry[key]).expanduser()
                if not value.is_absolute():
                    entry[key] = str(base_dir / value)


# --- validation ---------------------------------------------------------------


def _validate(
    data: dict[str, Any], *, file: str, env: Mapping[str, str], base_dir: Path | None
) -> Config:
    origins, problems = _apply_env(data, env, file)
    if base_dir is not None:
        _resolve_relative(data, base_dir)
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"env": env})
    except ValidationError as exc:
        problems = [_problem(error, file, origins) for error in exc.errors()] + problems
    problems.extend(_cross_checks(data, file))
    if problems or config is None:
        raise ConfigError(_unique(problems))
    return config


def _cross_checks(data: Mapping[str, Any], file: str) -> list[Problem]:
    """Checks across entries: names unique over targets, feeds and per-user feeds; feed paths unique."""
    problems: list[Problem] = []
    names: dict[str, str] = {}
    paths: dict[str, str] = {}
    for section in _LIST_SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            where = f"{section}[{index}]"
            name = entry.get("name")
            if isinstance(name, str):
                if name in names:
                    problems.append(
                        Problem(
                            file=file,
                            path=f"{where}.name",
                            message=f"duplicate name {name!r}: already used by {names[name]}",
                        )
                    )
                else:
                    names[name] = where
            path = entry.get("path") if section == "feeds" else None
            if isinstance(path, str):
                key = os.path.normpath(path)
                if key in paths:
                    problems.append(
                        Problem(
                            file=file,
                            path=f"{where}.path",
                            message=f"duplicate path: {paths[key]} already writes {path}",
                        )
                    )
                else:
                    paths[key] = where
    feeds = data.get("feeds")
    for index, entry in enumerate(feeds if isinstance(feeds, list) else []):
        if (
            isinstance(entry, Mapping)
            and entry.get("per_user") is True
            and isinstance(entry.get("name"), str)
        ):
            pattern = re.compile(re.escape(entry["name"]) + r"-[0-9]+")
            for name, where in names.items():
                if pattern.fullmatch(name):
                    problems.append(
                        Problem(
                            file=file,
                            path=f"{where}.name",
                            message=f"{name!r} collides with the per-user feeds of feeds[{index}]",
                        )
                    )
    return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _path(loc: Loc | list[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _problem(error: ErrorDetails, file: str, origins: Mapping[Loc, str]) -> Problem:
    loc = tuple(error["loc"])
    message = _message(error)
    for length in range(len(loc), 0, -1):
        if loc[:length] in origins:
            message += f" (from {origins[loc[:length]]})"
            break
    return Problem(file=file, path=_path(loc), message=message)


_SIMPLE = {
    "missing": "missing required key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a path (a string)",
    "finite_number": "must be a finite number",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "extra_forbidden":
        return _unknown_key(tuple(error["loc"]))
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {expected}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    bounds = {
        "greater_than": "greater than",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "less_than_equal": "at most",
    }
    if kind in bounds:
        return f"must be {bounds[kind]} {next(iter(ctx.values()), '?')}"
    return _lowercase_first(error["msg"])


def _unknown_key(loc: Loc) -> str:
    import difflib  # only for an unknown key: a config check of a good file never needs it

    key = str(loc[-1])
    known = _keys_at(loc[:-1])
    is_filter = any(part == "filter" for part in loc[:-1])
    message = "unknown filter key" if is_filter else "unknown key"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if is_filter:
        message += "; allowed: " + ", ".join(known)
    return message


def _keys_at(loc: Loc) -> list[str]:
    """The keys a table at ``loc`` accepts, for did-you-mean hints."""
    node: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if part == "filter":
            node = FILTER_KEYS
        elif part == "start_date" and node == FILTER_KEYS:
            node = tuple(DateRange.__annotations__)
        elif isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = _model_in(node.model_fields[part].annotation)
        else:
            return []
    if isinstance(node, tuple):
        return list(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
