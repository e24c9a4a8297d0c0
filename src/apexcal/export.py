"""The one-shot export: what to read from the API and how to split it into files.

The components go through the sorted spool of :mod:`apexcal.feeds.spool`
(shared with the feed files); this module holds what only ``apexcal
export`` needs: the filters pushed into the API query, the id-keyset
listing, ``--type`` resolution and the split into one file per user or type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any, Literal, Protocol

import structlog

from apexcal.apex.models import Activity, ActivityType, type_key
from apexcal.apex.query import normalize_filters, split_in
from apexcal.errors import UnknownActivityType
from apexcal.feeds.spool import GroupOf

log = structlog.get_logger(__name__)

# Characters kept in file names made from type keys (which come from the CRM).
_FILE_UNSAFE = re.compile(r"[^\w.-]")

SplitBy = Literal["user", "type"]


# --- what to export ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExportFilters:
    """The selection of an export, pushed into the API query.

    ``start_from``/``start_to`` are inclusive bounds on ``start_date``;
    empty tuples and ``None`` mean "no condition".
    """

    user_ids: tuple[int, ...] = ()
    type_keys: tuple[str, ...] = ()
    start_from: date | None = None
    start_to: date | None = None
    done: bool | None = None

    def api_query(self) -> dict[str, Any]:
        """The API query parameters for :meth:`ApexClient.list_activities`."""
        query: dict[str, Any] = {}
        if self.user_ids:
            ids = sorted(set(self.user_ids))
            query["assigned_to_user_id"] = ids[0] if len(ids) == 1 else ids
        if self.type_keys:
            keys = list(dict.fromkeys(self.type_keys))
            query["activity_type"] = keys[0] if len(keys) == 1 else keys
        bounds: dict[str, date] = {}
        if self.start_from is not None:
            bounds["$gte"] = self.start_from
        if self.start_to is not None:
            bounds["$lte"] = self.start_to
        if bounds:
            query["start_date"] = bounds
        if self.done is not None:
            query["done"] = self.done
        return query


class ActivityLister(Protocol):
    """What a paged listing needs of the API client (:class:`apexcal.apex.client.ApexClient`)."""

    def list_activities(self, **filters: Any) -> Iterator[Activity]:
        """Every activity matching ``filters``, ordered by id."""
        ...


def list_by_id(
    client: ActivityLister, query: Mapping[str, Any], *, page_size: int
) -> Iterator[Activity]:
    """Every activity matching ``query``, read in rounds of ``page_size`` by id (``id > last``).

    A long listing read by offset (``$skip``) repeats or misses records when
    others are created or deleted meanwhile; each round here starts after the
    last id seen, so nothing that exists throughout is missed or repeated.
    The listing ends with one empty round.  A query the client must split
    into several (an ``$in`` list longer than the API parses) is read as a
    plain listing, each part in id order.
    """
    if "id" in query or len(split_in(normalize_filters(query))) != 1:
        yield from client.list_activities(**query)
        return
    last = 0
    while True:
        page = client.list_activities(**query, id={"$gt": last})
        got = 0
        try:
            for activity in islice(page, page_size):
                got += 1
                last = activity.id
                yield activity
        finally:
            close = getattr(page, "close", None)
            if close is not None:
                close()
        if got == 0:
            return


def resolve_type_keys(requested: Iterable[str], types: Iterable[ActivityType]) -> tuple[str, ...]:
    """The ``activity_type`` keys named by ``requested`` (keys or names, case-insensitive).

    Raises :class:`UnknownActivityType` for the first name that matches no type.
    """
    known = sorted(types, key=lambda t: t.key)
    keys: list[str] = []
    for name in requested:
        wanted = name.strip().casefold()
        as_key = type_key(name)
        for t in known:
            if wanted in (t.key.casefold(), t.name.strip().casefold()) or as_key == t.key:
                keys.append(t.key)
                break
        else:
            raise UnknownActivityType(name, known)
    return tuple(dict.fromkeys(keys))


def types_by_key(types: Iterable[ActivityType]) -> dict[str, ActivityType]:
    """Activity types keyed the way the mapping looks them up (``type_key(name)``)."""
    return {t.key: t for t in types}


def split_group(split_by: SplitBy) -> GroupOf:
    """The grouping of a split export: by assigned user id, or by type key (``none`` when unset)."""

    def by_user(activity: Activity) -> Sequence[tuple[str, str | None]]:
        user = activity.assigned_to_user_id
        name = activity.assigned_to_user.full_name if activity.assigned_to_user else None
        return ((f"user-{user}" if user is not None else "user-none", name),)

    def by_type(activity: Activity) -> Sequence[tuple[str, str | None]]:
        raw = activity.activity_type
        key = _FILE_UNSAFE.sub("_", type_key(raw)).lstrip(".") if raw and raw.strip() else ""
        return ((f"type-{key or 'none'}", raw),)

    return by_user if split_by == "user" else by_type


