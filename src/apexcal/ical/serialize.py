"""Component → bytes, the same bytes as icalendar's ``to_ical()``, in a fraction of its time.

Exports and feeds serialize every component they write; icalendar spends
most of that time folding lines one character at a time (encoding each
character to count its octets), building a ``Contentline`` and an empty
``Parameters`` per property, and re-creating a typed value per date.
:func:`component_bytes` writes the same content lines directly:

- properties in icalendar's order (``sorted_keys``: the canonical ones
  first, then alphabetical), sub-components in place, ``BEGIN``/``END``
  around each;
- the value from the value's own ``to_ical()``, except dates and date-times,
  formatted here the way ``vDate``/``vDatetime`` do (``Z`` exactly when
  icalendar deems the time UTC);
- parameters from icalendar's own ``Parameters.to_ical()``, remembered per
  distinct set of string parameters (a feed repeats ``TZID=Europe/Berlin``
  and ``VALUE=DATE`` thousands of times);
- lines folded on the encoded bytes: at most 74 octets before the first
  fold and after each leading space, never inside a UTF-8 sequence, and a
  ``\\`` or ``^`` that would end a line moved to the next one, so an escape
  is never split (icalendar's rule).

The output is byte-identical to ``component.to_ical()``; a property test
over generated components holds it to that.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any

from icalendar import Component, Parameters, vDDDTypes, vText
from icalendar.timezone.tzid import is_utc, tzid_from_tzinfo

_LIMIT = 74  # octets before a fold: icalendar folds when a character would reach 75
_FOLD = b"\r\n "
_BOM = b"\xef\xbb\xbf"
_BACKSLASH, _CARET = 0x5C, 0x5E


def fold(line: bytes) -> bytes:
    """``line`` (one unfolded content line, UTF-8) folded the way icalendar folds it."""
    size = len(line)
    if size <= _LIMIT:
        return line
    parts = []
    start = 0
    while size - start > _LIMIT:
        end = start + _LIMIT
        while line[end] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
            end -= 1
        if line[end - 1] in (_BACKSLASH, _CARET):  # an escape starts the next line instead
            end -= 1
        parts.append(line[start:end])
        start = end
    parts.append(line[start:])
    return _FOLD.join(parts)


@lru_cache(maxsize=4096)
def _params_bytes(items: tuple[tuple[str, str], ...]) -> bytes:
    # icalendar's own rendering (quoting, RFC 6868 escapes, TZID=UTC left out), once per set.
    return _as_text_bytes(Parameters(dict(items)).to_ical(sorted=True))


def _params(params: Parameters) -> bytes:
    items = tuple(params.items())
    for _, value in items:
        if type(value) is not str:
            return _as_text_bytes(params.to_ical(sorted=True))
    return _params_bytes(items)


def _as_text_bytes(data: bytes | str) -> bytes:
    """``data`` as icalendar's content line holds it: decoded as UTF-8 with a BOM dropped, re-encoded."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if data.isascii():
        return data
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")
    return data


_UTC_BY_ZONE: dict[tzinfo, bool] = {}


def _is_utc(dt: datetime) -> bool:
    """icalendar's ``is_utc``, remembered per zone when the zone alone decides it."""
    zone = dt.tzinfo
    if zone is None:
        return is_utc(dt)
    with suppress(KeyError, TypeError):  # TypeError: an unhashable zone, never remembered
        return _UTC_BY_ZONE[zone]
    tzid = tzid_from_tzinfo(zone)
    if tzid is None:  # icalendar then asks the time itself for its zone's name
        return is_utc(dt)
    if len(_UTC_BY_ZONE) < 1024:
        with suppress(TypeError):
            _UTC_BY_ZONE[zone] = tzid == "UTC"
    return tzid == "UTC"


def _value(value: Any) -> bytes:
    if type(value) is vDDDTypes:
        dt = value.dt
        if type(dt) is datetime:
            text = f"{dt.year:04}{dt.month:02}{dt.day:02}T{dt.hour:02}{dt.minute:02}{dt.second:02}"
            if value.params.get("TZID") == "UTC" or _is_utc(dt):
                text += "Z"
            return text.encode("ascii")
        if type(dt) is date:
            return f"{dt.year:04}{dt.month:02}{dt.day:02}".encode("ascii")
    if hasattr(value, "to_ical"):
        return _as_text_bytes(value.to_ical())
    return _as_text_bytes(vText(value).to_ical())


def _line(name: str, value: Any) -> bytes:
    head = name.encode("utf-8")
    data = _value(value)
    params = getattr(value, "params", None)
    if params:
        rendered = _params(params)
        if rendered:
            head += b";" + rendered
    line = head + b":" + data
    if b"\n" in line:
        raise ValueError(f"{name}: a content line cannot hold an unescaped line break")
    return fold(line)


def _write(component: Component, out: list[bytes]) -> None:
    kind = vText(component.name or "").to_ical()
    out.append(fold(b"BEGIN:" + kind))
    for name in component.sorted_keys():
        values = dict.__getitem__(component, name)  # the stored (upper-case) key: no case folding
        if isinstance(values, list):
            out.extend(_line(name, value) for value in values)
        else:
            out.append(_line(name, values))
    for sub in component.subcomponents:
        _write(sub, out)
    out.append(fold(b"END:" + kind))


def component_bytes(component: Component) -> bytes:
    """``component.to_ical()``, byte for byte, written faster (see the module docstring)."""
    out: list[bytes] = []
    _write(component, out)
    out.append(b"")
    return b"\r\n".join(out)
