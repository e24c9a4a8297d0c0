"""iCalendar objects as content lines, kept exactly as a server holds them.

icalendar's parse → serialise round trip rewrites what it did not create: it
re-folds lines, re-quotes parameters, re-orders properties and normalises
values.  Merging a server's copy with our rendering must leave everything
that is not ours untouched, so it works one level lower: an object is a tree
of :class:`Block` (``BEGIN:X`` … ``END:X``) holding :class:`Line` (one
content line, RFC 5545 §3.1) and nested blocks, each line keeping its raw
physical form (its folding included) next to its unfolded text.
:func:`to_bytes` writes the tree back; an unchanged tree gives back the input
with every line ending as CRLF.

Bytes that are not UTF-8 are carried through unchanged (``surrogateescape``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from apexcal.errors import ContentLineError

_NAME = re.compile(r"[A-Za-z0-9-]+")
CRLF = "\r\n"



@dataclass(frozen=True, slots=True)
class Line:
    """One content line: ``raw`` as held (physical lines joined by CRLF), ``text`` unfolded."""

    raw: str
    text: str
    name: str
    """The property name, upper-cased (``""`` for a line with no name)."""

    @classmethod
    def of(cls, text: str) -> Line:
        """A line built from unfolded text (not folded: for tests and new content)."""
        return cls(raw=text, text=text, name=_name_of(text))

    def split(self) -> tuple[str, list[tuple[str, list[str]]], str]:
        """``(NAME, [(PARAM-NAME, [values unquoted])...], value)`` honouring quoted parameter values."""
        return split_line(self.text)

    def param(self, name: str) -> list[str] | None:
        """The values of one parameter (name case-insensitive), or ``None`` when absent."""
        wanted = name.upper()
        for key, values in self.split()[1]:
            if key == wanted:
                return values
        return None

    @property
    def value(self) -> str:
        """The value after the first unquoted colon."""
        return self.split()[2]


@dataclass(slots=True)
class Block:
    """A component: its BEGIN and END lines as held, and its lines and sub-blocks in order."""

    name: str
    begin: str
    end: str
    items: list[Line | Block] = field(default_factory=list)

    @classmethod
    def new(cls, name: str, items: list[Line | Block] | None = None) -> Block:
        """A fresh block named ``name`` (upper-cased)."""
        upper = name.upper()
        return cls(name=upper, begin=f"BEGIN:{upper}", end=f"END:{upper}", items=list(items or []))

    def lines(self) -> Iterator[Line]:
        """The block's own content lines (not those of sub-blocks)."""
        return (item for item in self.items if isinstance(item, Line))

    def blocks(self, name: str | None = None) -> Iterator[Block]:
        """The direct sub-blocks, all or those named ``name``."""
        wanted = name.upper() if name else None
        return (
            item for item in self.items if isinstance(item, Block) and (wanted is None or item.name == wanted)
        )

    def first(self, name: str) -> Line | None:
        """The first own line named ``name``, or ``None``."""
        wanted = name.upper()
        return next((line for line in self.lines() if line.name == wanted), None)

    def value(self, name: str) -> str | None:
        """The value of the first own line named ``name`` (stripped), or ``None``."""
        line = self.first(name)
        return line.value.strip() if line is not None else None

    def walk(self) -> Iterator[Block]:
        """This block and every block below it, depth first."""
        yield self
        for child in self.blocks():
            yield from child.walk()


def _name_of(text: str) -> str:
    match = _NAME.match(text)
    return match.group(0).upper() if match else ""


def split_line(text: str) -> tuple[str, list[tuple[str, list[str]]], str]:
    """Split an unfolded content line into name, parameters and value (RFC 5545 §3.1).

    Parameter values may be quoted (``X-TITLE="a;b:c"``) and lists
    (``MEMBER="a","b"``); quotes are removed from the returned values.  A
    line with no colon has an empty value.
    """
    name = _name_of(text)
    i = len(name)
    if text[i : i + 1] == ":":
        return name, [], text[i + 1 :]
    params: list[tuple[str, list[str]]] = []
    n = len(text)
    while i < n and text[i] == ";":
        i += 1
        eq = i
        while eq < n and text[eq] not in "=;:":
            eq += 1
        key = text[i:eq].strip().upper()
        values: list[str] = []
        i = eq
        if i < n and text[i] == "=":
            i += 1
            while True:
                if i < n and text[i] == '"':
                    close = text.find('"', i + 1)
                    close = n if close < 0 else close
                    values.append(text[i + 1 : close])
                    i = min(close + 1, n)
                else:
                    start = i
                    while i < n and text[i] not in ",;:":
                        i += 1
                    values.append(text[start:i])
                if i < n and text[i] == ",":
                    i += 1
                    continue
                break
        params.append((key, values))
    if i < n and text[i] == ":":
        return name, params, text[i + 1 :]
    colon = text.find(":", i)
    return name, params, text[colon + 1 :] if colon >= 0 else ""


def parse(data: bytes | str) -> Block:
    """The one VCALENDAR in ``data`` as a tree; :class:`ContentLineError` when it is not one.

    Blank lines and anything before ``BEGIN:VCALENDAR`` (a byte-order mark)
    are skipped; BEGIN/END must nest and match, and nothing but blank lines
    may follow the calendar's END.
    """
    text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")
    physicals = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    logical: list[tuple[int, list[str]]] = []
    for number, physical in enumerate(physicals, start=1):
        if physical[:1] in (" ", "\t") and logical:
            logical[-1][1].append(physical)
        elif physical and not physical.isspace():
            logical.append((number, [physical]))
    stack: list[Block] = []
    root: Block | None = None
    for number, parts in logical:
        if len(parts) == 1:
            raw = unfolded = parts[0]
        else:
            raw = CRLF.join(parts)
            unfolded = parts[0] + "".join(p[1:] for p in parts[1:])
        name = _name_of(unfolded)
        if name == "BEGIN" or name == "END":
            component = unfolded.partition(":")[2].strip().upper()
            if not component:
                raise ContentLineError(number, f"{name} without a component name")
            if name == "BEGIN":
                if root is not None and not stack:
                    raise ContentLineError(number, "more than one VCALENDAR")
                if not stack and component != "VCALENDAR":
                    raise ContentLineError(number, f"BEGIN:{component} outside a VCALENDAR")
                block = Block(name=component, begin=raw, end="")
                if stack:
                    stack[-1].items.append(block)
                else:
                    root = block
                stack.append(block)
                continue
            if not stack or stack[-1].name != component:
                open_name = stack[-1].name if stack else "nothing"
                raise ContentLineError(number, f"END:{component} closes {open_name}")
            stack.pop().end = raw
            continue
        if not stack:
            raise ContentLineError(number, "content outside BEGIN:VCALENDAR … END:VCALENDAR")
        stack[-1].items.append(Line(raw=raw, text=unfolded, name=name))
    if root is None:
        raise ContentLineError(1, "no BEGIN:VCALENDAR")
    if stack:
        raise ContentLineError(len(physicals), f"BEGIN:{stack[-1].name} is never closed")
    return root


def _emit(block: Block, out: list[str]) -> None:
    out.append(block.begin)
    for item in block.items:
        if isinstance(item, Line):
            out.append(item.raw)
        else:
            _emit(item, out)
    out.append(block.end)


def to_bytes(block: Block) -> bytes:
    """The block serialised as held: every line as it was read, CRLF line endings."""
    out: list[str] = []
    _emit(block, out)
    return (CRLF.join(out) + CRLF).encode("utf-8", errors="surrogateescape")
