"""Paging through the API's ``{total, limit, skip, data}`` envelope: by offset, by id, by change.

``$skip`` paging honours the ``limit`` the server reports (servers cap
``$limit``) and is exact only for listings that do not change meanwhile.  A
listing that may change while it is read pages by key instead: by ``id``
(``id > last``) for a sweep, by ``(updated_at, id)`` for the change feed, so a
record that exists throughout is neither missed nor repeated.  Every pager
splits long ``$in`` lists first (:func:`apexcal.apex.query.split_in`) and
yields raw records; the client turns them into models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from apexcal.apex.models import parse_timestamp
from apexcal.apex.query import encode_query, split_in
from apexcal.errors import ApiProtocolError, QueryError

GetJson = Callable[[str, Mapping[str, Any]], Any]
"""``GET path?query`` → the decoded JSON answer (the client's request, retries included)."""


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of a listing."""

    total: int
    limit: int
    skip: int
    data: list[Any]


class Pager:
    """Reads every page of a listing through ``get``, ``page_size`` records at a time at most."""

    def __init__(self, get: GetJson, page_size: int) -> None:
        self._get = get
        self.page_size = page_size

    def page(self, path: str, query: Mapping[str, Any]) -> Page:
        """One page; ``ApiProtocolError`` when the answer is not a page envelope."""
        raw = self._get(path, query)
        url = f"{path}?{encode_query(query)}"
        if not isinstance(raw, dict):
            raise ApiProtocolError("the answer is not a page object", method="GET", url=url)
        total, limit, skip, data = (raw.get(k) for k in ("total", "limit", "skip", "data"))
        if not (is_int(total) and is_int(limit) and is_int(skip) and isinstance(data, list)):
            raise ApiProtocolError(
                "the page lacks integer total/limit/skip or a data list", method="GET", url=url
            )
        return Page(total=total, limit=limit, skip=skip, data=data)  # type: ignore[arg-type]

    def by_skip(self, path: str, query: Mapping[str, Any]) -> Iterator[Any]:
        """Raw records of every page of every ``$in`` chunk of ``query``, by ``$skip``."""
        for chunk in split_in(query):
            skip = 0
            limit = self.page_size
            while True:
                page = self.page(path, {**chunk, "$limit": limit, "$skip": skip})
                yield from page.data
                skip += len(page.data)
                if not page.data or skip >= page.total:
                    break
                # Ask for no more than the server said it gives.
                limit = _capped(limit, page)

    def by_id(
        self,
        path: str,
        query: Mapping[str, Any],
        *,
        after: int | None = None,
        until_empty: bool = False,
    ) -> Iterator[Any]:
        """Raw records of every page of ``query``, keyset-paged on ``id``.

        ``after`` is the id the first page starts after (None: no bound).  The
        listing ends with the page that holds the rest (``total``), or with
        ``until_empty`` at the first empty page: one more round, that also sees
        records created behind the cursor's path while it was read.
        """
        for chunk in split_in(query):
            last_id = after
            limit = self.page_size
            while True:
                paged = {**chunk, "$sort": {"id": 1}, "$limit": limit}
                if last_id is not None:
                    paged["id"] = {"$gt": last_id}
                page = self.page(path, paged)
                yield from page.data
                if not page.data or (not until_empty and len(page.data) >= page.total):
                    break
                next_id = max((i for i in map(present_id, page.data) if i is not None), default=None)
                if next_id is None or (last_id is not None and next_id <= last_id):
                    raise _stuck(path, paged)
                last_id = next_id
                limit = _capped(limit, page)

    def by_change(self, path: str, query: Mapping[str, Any]) -> Iterator[Any]:
        """Raw records of one ``$in`` chunk of ``query`` in ``(updated_at, id)`` order, keyset-paged."""
        cursor: tuple[str, int] | None = None
        limit = self.page_size
        while True:
            paged = {**query, "$sort": {"updated_at": 1, "id": 1}, "$limit": limit}
            if cursor is not None:
                stamp, last_id = cursor
                paged["$or"] = [
                    {"updated_at": {"$gt": stamp}},
                    {"updated_at": stamp, "id": {"$gt": last_id}},
                ]
            page = self.page(path, paged)
            yield from page.data
            if not page.data or len(page.data) >= page.total:
                return
            next_cursor = _change_cursor(page.data)
            if next_cursor is None or next_cursor == cursor:
                raise _stuck(path, paged)
            cursor = next_cursor
            limit = _capped(limit, page)


def is_int(value: object) -> bool:
    """Whether ``value`` is an int (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def present_id(raw: object) -> int | None:
    """The id a record is present under (deletion sweep, keyset cursors): a positive int, or a positive numeric string's value.

    Such a string makes the record invalid when it is parsed (and reported),
    but the record is there: the sweep must not take it for a deleted
    activity, and a page of them must not stop a listing.
    """
    value = raw.get("id") if isinstance(raw, Mapping) else None
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        value = int(value)
    return value if is_int(value) and value > 0 else None  # type: ignore[operator]


def with_id_tiebreak(sort: object) -> dict[str, Any]:
    """``sort`` ending with ``id``, so ``$skip`` pages cut a total order (no repeats, no gaps)."""
    if sort is None:
        return {"id": 1}
    if not isinstance(sort, Mapping):
        raise QueryError("$sort must map field names to 1 or -1")
    return {**sort, "id": sort.get("id", 1)}


def _capped(limit: int, page: Page) -> int:
    return min(limit, page.limit) if page.limit > 0 else limit


def _stuck(path: str, query: Mapping[str, Any]) -> ApiProtocolError:
    return ApiProtocolError(
        "cannot page past records without a valid id and updated_at",
        method="GET",
        url=f"{path}?{encode_query(query)}",
    )


def _change_cursor(data: list[Any]) -> tuple[str, int] | None:
    """``(updated_at as the server wrote it, id)`` of the last record that has both valid.

    An id written as a numeric string counts for the cursor (the server
    orders by its value): a page of such records is reported record by
    record, not a listing that cannot go on.
    """
    for raw in reversed(data):
        record_id = present_id(raw)
        stamp = raw.get("updated_at") if isinstance(raw, Mapping) else None
        if record_id is None or not isinstance(stamp, str):
            continue
        try:
            parse_timestamp(stamp)
        except ValueError:
            continue
        return stamp, record_id
    return None
