"""Filtered views of a feed: the subset one feed URL serves (``apexcal feed url NAME --filter …``).

A token may carry a filter: ``type=call,meeting user=46`` — activity types
(``activity_type`` keys), assigned users, done or not.  Keys combine with
AND, the values of one key with OR.  Its feed URL then serves only the
matching part of the feed it was issued for, so one feed definition serves
many saved views.

The filter is stored beside the token's hash in its *canonical* text (keys
sorted, values sorted and unique, types as keys), so equal filters are equal
strings.  Each distinct filter of a feed is one more output of the feed's
build, written from the components already mapped for the feed (nothing is
mapped twice): output name ``<feed>~<view id>`` (never part of a URL), file
``<stem>.view-<view id><suffix>`` beside the feed's file, where the view id
is a hash of the canonical text.  Its bytes, and so its ETag, are its own.

This module is pure: parsing, the canonical form, matching and naming.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from apexcal.apex.keys import type_key
from apexcal.apex.models import Activity, ActivityType

#: The keys a filter may use, with what each selects.
KEYS: Mapping[str, str] = {
    "type": "activity types: keys, names (case-insensitive) or ids",
    "user": "assigned user ids",
    "done": "done activities (true) or open ones (false)",
}

VIEW_SEPARATOR = "~"
_VIEW_ID_LENGTH = 16
_VALUE = re.compile(r"[^\s,=]+")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


class FilterSyntaxError(ValueError):
    """A ``--filter`` argument that is not ``KEY=V1,V2``, or names an unknown key or a bad value."""


@dataclass(frozen=True, kw_only=True)
class FeedFilter:
    """What a filtered feed URL serves: activities matching every key given (``None``: any).

    ``types`` are ``activity_type`` keys once resolved (:func:`resolve_types`);
    as parsed they are what the person typed.
    """

    types: frozenset[str] | None = None
    users: frozenset[int] | None = None
    done: frozenset[bool] | None = None

    def matches(self, activity: Activity) -> bool:
        """Whether ``activity`` is in the view (AND across keys, OR within one)."""
        if self.types is not None and activity.activity_type not in self.types:
            return False
        if self.users is not None and activity.assigned_to_user_id not in self.users:
            return False
        return self.done is None or activity.done in self.done

    @property
    def empty(self) -> bool:
        """True when no key is given (the whole feed)."""
        return self.types is None and self.users is None and self.done is None

    def canonical(self) -> str:
        """The stored text: ``done=false type=call,meeting user=46`` (keys and values sorted)."""
        parts = []
        if self.done is not None:
            parts.append("done=" + ",".join("true" if d else "false" for d in sorted(self.done)))
        if self.types is not None:
            parts.append("type=" + ",".join(sorted(self.types)))
        if self.users is not None:
            parts.append("user=" + ",".join(str(u) for u in sorted(self.users)))
        return " ".join(parts)


def _values(key: str, raw: str, argument: str) -> list[str]:
    values = [v.strip() for v in raw.split(",")]
    for value in values:
        if not value:
            raise FilterSyntaxError(f"filter {argument!r}: an empty value for {key!r}")
        if "=" in value:
            raise FilterSyntaxError(f"filter {argument!r}: bad value {value!r} for {key!r}")
    return values


def parse_filter(arguments: Iterable[str]) -> FeedFilter:
    """The filter of ``--filter KEY=V1,V2`` arguments (type values as typed, not yet resolved).

    Raises :class:`FilterSyntaxError` naming the argument and the bad part:
    no ``=``, an unknown key, a key given twice, an empty or malformed value,
    a user id that is not a positive number, a done value not true/false.
    """
    found: dict[str, list[str]] = {}
    for argument in arguments:
        key, equals, raw = argument.partition("=")
        key = key.strip().casefold()
        if not equals:
            raise FilterSyntaxError(f"filter {argument!r} is not KEY=VALUE[,VALUE…]")
        if key not in KEYS:
            known = ", ".join(KEYS)
            raise FilterSyntaxError(f"filter {argument!r}: unknown key {key!r} (known keys: {known})")
        if key in found:
            raise FilterSyntaxError(
                f"filter key {key!r} given twice; list its values once: {key}=A,B"
            )
        found[key] = _values(key, raw, argument)
    users = None
    if "user" in found:
        bad = [v for v in found["user"] if not v.isascii() or not v.isdigit() or int(v) == 0]
        if bad:
            raise FilterSyntaxError(f"filter user: {bad[0]!r} is not a user id (a positive number)")
        users = frozenset(int(v) for v in found["user"])
    done = None
    if "done" in found:
        flags = set()
        for value in found["done"]:
            if value.casefold() in _TRUE:
                flags.add(True)
            elif value.casefold() in _FALSE:
                flags.add(False)
            else:
                raise FilterSyntaxError(f"filter done: {value!r} is not true or false")
        done = frozenset(flags)
    types = frozenset(found["type"]) if "type" in found else None
    return FeedFilter(types=types, users=users, done=done)


def parse_canonical(text: str) -> FeedFilter:
    """The filter stored as ``text`` (:meth:`FeedFilter.canonical`)."""
    return parse_filter(text.split())


class UnknownType(ValueError):
    """A ``type=`` value that names no activity type of the organization."""

    def __init__(self, requested: str, known: Sequence[ActivityType]) -> None:
        self.requested = requested
        listing = ", ".join(f"{t.key} ({t.name}, id {t.id})" for t in known) or "none known yet"
        super().__init__(f"filter type: unknown activity type {requested!r}; known types: {listing}")


def resolve_types(filter_: FeedFilter, types: Iterable[ActivityType]) -> FeedFilter:
    """``filter_`` with each type value (key, name case-insensitive, or id) as its ``activity_type`` key.

    Raises :class:`UnknownType` for the first value that names no type.
    """
    if filter_.types is None:
        return filter_
    known = sorted(types, key=lambda t: t.key)
    keys = set()
    for value in sorted(filter_.types):
        wanted = value.casefold()
        for t in known:
            if wanted in (t.key.casefold(), t.name.strip().casefold(), str(t.id)) or (
                type_key(value) == t.key
            ):
                keys.add(t.key)
                break
        else:
            raise UnknownType(value, known)
    bad = [k for k in keys if _VALUE.fullmatch(k) is None]
    if bad:
        raise FilterSyntaxError(f"filter type: type key {bad[0]!r} cannot be filtered on")
    return FeedFilter(types=frozenset(keys), users=filter_.users, done=filter_.done)


def view_id(canonical: str) -> str:
    """The id of the view with this canonical filter: a hash, so equal filters share one output."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_VIEW_ID_LENGTH]


def view_name(output: str, canonical: str) -> str:
    """The internal name of the view of ``output`` (a feed or per-user feed): ``<output>~<view id>``."""
    return f"{output}{VIEW_SEPARATOR}{view_id(canonical)}"


def split_view_name(name: str) -> tuple[str, str] | None:
    """``(output, view id)`` of a view's internal name, else ``None``."""
    output, separator, vid = name.partition(VIEW_SEPARATOR)
    return (output, vid) if separator else None


def view_path(path: Path, vid: str) -> Path:
    """The file of view ``vid`` of the output at ``path``: ``<stem>.view-<vid><suffix>`` beside it."""
    return path.with_name(f"{path.stem}.view-{vid}{path.suffix}")
