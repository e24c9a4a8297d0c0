"""Query-string parsing the way Node's ``qs`` does it (as a Feathers server sees a URL).

Bracket syntax nests (``a[b][c]=1`` → ``{"a": {"b": {"c": "1"}}}``); ``a[]=x`` and
``a[0]=x`` build arrays; repeated plain keys combine into an array.  Two limits of
``qs`` matter to clients and are reproduced on purpose:

- ``arrayLimit`` 20: an index above 20, or an array that would hold more than 20
  items, becomes an object keyed by the index strings (so a long ``$in`` list
  silently stops being a list: clients must chunk);
- ``depth`` 5: at most five bracket segments are expanded; the rest of the key is
  kept as one literal key (``a[b][c][d][e][f][g][h]`` → ``…["f"]["[g][h]"]``).

Values are always strings; sparse indexes are compacted (``a[1]=x&a[5]=y`` → ``["x", "y"]``).
Only the first 1000 parameters are read (``parameterLimit``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

ARRAY_LIMIT = 20
DEPTH = 5
PARAMETER_LIMIT = 1000

_SEGMENT = re.compile(r"\[[^\[\]]*\]")


class _Indexed(dict[int, Any]):
    """An array under construction from ``a[i]`` / ``a[]`` keys (index → value)."""


def parse_query(query: str) -> dict[str, Any]:
    """Parse a raw (still percent-encoded) query string into nested dicts, lists and strings."""
    root: dict[str, Any] = {}
    pairs = [p for p in query.split("&") if p][:PARAMETER_LIMIT]
    for pair in pairs:
        raw_key, sep, raw_value = pair.partition("=")
        key = unquote_plus(raw_key)
        value = unquote_plus(raw_value) if sep else ""
        if not key:
            continue
        _assign(root, _split_key(key), value)
    result: dict[str, Any] = _finish(root)
    return result


def _split_key(key: str) -> list[str]:
    """``a[b][c]`` → ``["a", "[b]", "[c]"]`` with at most ``DEPTH`` bracket segments."""
    first = key.find("[")
    if first <= 0 or "]" not in key[first:]:
        return [key]
    parts = [key[:first]]
    pos = first
    while len(parts) <= DEPTH:
        match = _SEGMENT.match(key, pos)
        if match is None:
            break
        parts.append(match.group())
        pos = match.end()
    if pos < len(key):
        # qs keeps whatever lies beyond the depth limit as one literal key.
        parts.append("[" + key[pos:] + "]")
    return parts


def _assign(container: dict[Any, Any], parts: list[str], value: str) -> None:
    head = parts[0]
    name: Any = head[1:-1] if head.startswith("[") else head
    if isinstance(container, _Indexed):
        name = _index_of(container, name)
    rest = parts[1:]
    if not rest:
        _put(container, name, value)
        return
    child = container.get(name)
    wants_array = rest[0] == "[]" or _is_index(rest[0][1:-1])
    if child is None:
        child = _Indexed() if wants_array else {}
        container[name] = child
    elif isinstance(child, str):
        # A scalar followed by a nested key: qs combines them into an array.
        merged = _Indexed({0: child})
        container[name] = merged
        child = merged
        if not wants_array:
            nested: dict[Any, Any] = {}
            merged[1] = nested
            child = nested
    elif isinstance(child, _Indexed) and not wants_array:
        as_object = {str(i): v for i, v in sorted(child.items())}
        container[name] = as_object
        child = as_object
    _assign(child, rest, value)


def _index_of(container: _Indexed, name: str) -> int | str:
    if name == "":
        return max(container, default=-1) + 1 if container else 0
    return int(name)


def _put(container: dict[Any, Any], name: Any, value: str) -> None:
    if name in container:
        existing = container[name]
        if isinstance(existing, _Indexed):
            existing[max(existing, default=-1) + 1] = value
        elif isinstance(existing, str):
            container[name] = _Indexed({0: existing, 1: value})
        # A scalar after an object for the same key is dropped, as qs does.
        return
    container[name] = value


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit() and str(int(text)) == text


def _finish(node: Any) -> Any:
    if isinstance(node, _Indexed):
        items = sorted(node.items())
        if len(items) > ARRAY_LIMIT or any(i > ARRAY_LIMIT for i, _ in items):
            return {str(i): _finish(v) for i, v in items}
        return [_finish(v) for _, v in items]
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    return node
