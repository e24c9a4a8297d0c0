"""The AchieveApex API client: auth, paging, the change feed, bulk patch, retries, errors.

One synchronous :class:`ApexClient` per organization and token.  Every
request carries the bearer token, ``User-Agent: apexcal/<version>`` and
timeouts; answers are checked for shape and turned into models, and every
failure becomes one exception of :mod:`apexcal.errors`, whose text names the
method and the URL path and query — never the token.

Listing follows the ``{total, limit, skip, data}`` envelope with ``$skip``,
honouring the ``limit`` the server reports (servers cap ``$limit``).  The
change feed and the id sweep page by key instead (``(updated_at, id)`` and
``id``), because ``$skip`` paging misses or repeats records that move while
the pages are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import structlog

from apexcal import USER_AGENT
from apexcal.apex.models import (
    Activity,
    ActivityType,
    parse_activity,
    parse_activity_type,
)
from apexcal.apex.paging import Pager, is_int, present_id, with_id_tiebreak
from apexcal.apex.query import normalize_filters, split_in
from apexcal.apex.retry import RetryPolicy
from apexcal.apex.session import ApiSession
from apexcal.errors import (
    ApiProtocolError,
    BadRequest,
    InvalidRecord,
    QueryError,
)
from apexcal.log import redactor
from apexcal.tls import tls_context

if TYPE_CHECKING:
    from apexcal.config import SourceConfig

log = structlog.get_logger(__name__)

#: Ids per bulk PATCH request (they travel in the JSON body, which qs does not parse).
BULK_CHUNK = 100

# The client owns paging; these cannot come in as filters.
_RESERVED = frozenset({"organization_id", "$limit", "$skip"})

R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class BulkResult:
    """The answer of bulk PATCH requests: how many rows changed, and which."""

    updated: int
    ids: tuple[int, ...]


class ApexClient:
    """A synchronous client of the AchieveApex API for one organization.

    ``on_request(route, status)`` is called after every HTTP attempt (retries
    included) with a low-cardinality route such as ``"GET /activities/:id"``
    and the status code, ``0`` when no answer came; metrics count requests
    with it.  ``skipped_records`` counts malformed records that were logged
    and skipped instead of stopping a listing.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        organization_id: int,
        *,
        page_size: int = 100,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.organization_id = organization_id
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.skipped_records = 0
        self._keyset_refused = False
        redactor.add(token)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            verify=tls_context(),
        )
        self._request = ApiSession(
            self._http, token=token, retry=self.retry, on_request=on_request
        ).request
        self._pages = Pager(lambda path, query: self._request("GET", path, query=query), page_size)

    # --- life cycle -------------------------------------------------------------

    @classmethod
    def for_source(
        cls,
        source: SourceConfig,
        *,
        retry: RetryPolicy | None = None,
        on_request: Callable[[str, int], None] | None = None,
    ) -> ApexClient:
        """A client for the ``[source]`` of a loaded config (its secrets resolved)."""
        return cls(
            source.base_url,
            source.require_token(),
            source.organization_id,
            page_size=source.page_size,
            timeout=source.timeout.total_seconds(),
            retry=retry,
            on_request=on_request,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ApexClient({str(self._http.base_url)!r}, organization_id={self.organization_id})"

    # --- activities -------------------------------------------------------------

    def list_activities(self, **filters: Any) -> Iterator[Activity]:
        """Every activity matching ``filters`` (the API's query parameters), all pages.

        A list value means "any of" (``activity_type=["call", "task"]``);
        ``start_date={"$gte": date(...), "$lte": date(...)}`` is a range;
        ``fastJoinForActivityList=True`` asks for the joined objects.  Long
        ``$in`` lists are split into several requests (ordered within each).
        Pages are ordered by ``$sort`` if given, always ending with ``id`` so
        that ``$skip`` paging is exact.
        """
        query = self._find_query(filters)
        query["$sort"] = with_id_tiebreak(query.get("$sort"))
        for raw in self._pages.by_skip("/activities", query):
            activity = self._parse(parse_activity, raw)
            if activity is not None:
                yield activity

    def get_activity(self, activity_id: int) -> Activity:
        """One activity by id (``NotFound`` when absent or deleted)."""
        raw = self._request("GET", f"/activities/{int(activity_id)}", route="/activities/:id")
        return self._parse_one(parse_activity, raw)

    def create_activity(self, data: Mapping[str, Any]) -> Activity:
        """Create an activity in the client's organization; the server's record comes back."""
        body = {"organization_id": self.organization_id, **data}
        raw = self._request("POST", "/activities", body=body)
        return self._parse_one(parse_activity, raw)

    def patch_activity(self, activity_id: int, data: Mapping[str, Any]) -> Activity:
        """Set fields of one activity to the given (absolute) values."""
        raw = self._request(
            "PATCH", f"/activities/{int(activity_id)}", body=dict(data), route="/activities/:id"
        )
        return self._parse_one(parse_activity, raw)

    def delete_activity(self, activity_id: int) -> Activity:
        """Soft-delete an activity; the deleted record (with ``deleted_at``) comes back."""
        raw = self._request("DELETE", f"/activities/{int(activity_id)}", route="/activities/:id")
        return self._parse_one(parse_activity, raw)

    def bulk_patch_activities(self, ids: Iterable[int], data: Mapping[str, Any]) -> BulkResult:
        """Set the same absolute values on many activities (``PATCH /activities`` with ``ids``).

        Ids are deduplicated and sent :data:`BULK_CHUNK` at a time; the result
        sums the answers.  The server stamps one ``updated_at`` per request.
        """
        unique = list(dict.fromkeys(int(i) for i in ids))
        updated = 0
        done: list[int] = []
        for start in range(0, len(unique), BULK_CHUNK):
            chunk = unique[start : start + BULK_CHUNK]
            raw = self._request("PATCH", "/activities", body={**data, "ids": chunk})
            count, changed = self._bulk_answer(raw, "PATCH", "/activities")
            updated += count
            done.extend(changed)
        return BulkResult(updated=updated, ids=tuple(done))

    def changes_since(
        self, watermark: datetime | None, *, overlap: timedelta, **filters: Any
    ) -> Iterator[Activity]:
        """Every activity with ``updated_at ≥ watermark − overlap``, ordered by ``(updated_at, id)``.

        Pages by key: after each page the next asks for records after the
        last one seen (``updated_at > t``, or ``= t`` with a greater id), so a
        record that changes while the pages are read moves behind the cursor
        and is seen again later in the pass — never missed, and never
        repeated otherwise.  The id tie-break keeps paging exact through a
        bulk patch, which stamps many rows with one ``updated_at``.  ``None``
        means everything.  Long ``$in`` filters are split into several passes,
        each in that order.  If the server refuses the query (400), the feed
        falls back, for the life of the client, to a full listing (logged once).
        """
        query = self._find_query(filters)
        for key in ("updated_at", "$or", "$sort"):
            if key in query:
                raise QueryError(f"the change feed sets {key} itself")
        if watermark is not None:
            query["updated_at"] = {"$gte": watermark - overlap}
        refusal: BadRequest | None = None
        if not self._keyset_refused:
            try:
                for chunk in split_in(query):
                    for raw in self._pages.by_change("/activities", chunk):
                        activity = self._parse(parse_activity, raw)
                        if activity is not None:
                            yield activity
                return
            except BadRequest as exc:
                refusal = exc
        listing = self.list_activities(**filters)
        # The first page of the listing is fetched before the fallback is recorded:
        # if the plain filters are refused too, the fault is theirs, not the feed's.
        head = next(listing, None)
        if refusal is not None and not self._keyset_refused:
            self._keyset_refused = True
            log.warning("apex.change_feed_fallback", reason=refusal.server_message)
        if head is not None:
            yield head
            yield from listing

    def list_activities_by_id(self, **filters: Any) -> Iterator[Activity]:
        """Every activity matching ``filters`` in id order, read by key (``id > last``).

        A long listing read by offset (``$skip``) repeats or misses records
        when others are created or deleted meanwhile; each page here starts
        after the last id seen (0 first), so nothing that exists throughout is
        missed or repeated.  The listing ends with one empty page.
        """
        query = self._find_query(filters)
        if "id" in query:
            raws: Iterable[Any] = self._pages.by_skip("/activities", {**query, "$sort": {"id": 1}})
        else:
            raws = self._pages.by_id("/activities", query, after=0, until_empty=True)
        for raw in raws:
            activity = self._parse(parse_activity, raw)
            if activity is not None:
                yield activity

    def all_activity_ids(self, **filters: Any) -> set[int]:
        """The ids of every activity matching ``filters``, asking for ids only (``$select``).

        Pages by id (``id > last``) so that creations and deletions during the
        sweep cannot make an existing activity look absent.  An id written as
        a numeric string counts as present: the record is malformed (and
        reported when it is read), but it is there, and an unparseable record
        must never look deleted.
        """
        query = self._find_query(filters)
        query["$select"] = ["id"]
        ids: set[int] = set()
        if "id" in query:
            raws: Iterable[Any] = self._pages.by_skip("/activities", {**query, "$sort": {"id": 1}})
        else:
            raws = self._pages.by_id("/activities", query)
        for raw in raws:
            record_id = present_id(raw)
            if record_id is None:
                self._skip("activity", raw, "no valid id")
            else:
                ids.add(record_id)
        return ids

    # --- activity types ---------------------------------------------------------

    def check_access(self) -> None:
        """One cheap request: may this token read the organization?

        Raises ``NotAuthenticated`` (401) or ``Forbidden`` (403) when it may
        not, and any other :class:`~apexcal.errors.ApiError` as it comes
        (the API down, slow or failing): what that means is the caller's call.
        """
        next(iter(self.list_activity_types()), None)

    def list_activity_types(self, **filters: Any) -> Iterator[ActivityType]:
        """Every activity type matching ``filters`` (e.g. ``name``, partial), all pages."""
        query = self._find_query(filters)
        query["$sort"] = with_id_tiebreak(query.get("$sort"))
        for raw in self._pages.by_skip("/activity-types", query):
            activity_type = self._parse(parse_activity_type, raw)
            if activity_type is not None:
                yield activity_type

    def get_activity_type(self, type_id: int) -> ActivityType:
        """One activity type by id, with ``activities_count``."""
        raw = self._request("GET", f"/activity-types/{int(type_id)}", route="/activity-types/:id")
        return self._parse_one(parse_activity_type, raw)

    def create_activity_type(self, data: Mapping[str, Any]) -> ActivityType:
        """Create an activity type in the client's organization."""
        body = {"organization_id": self.organization_id, **data}
        raw = self._request("POST", "/activity-types", body=body)
        return self._parse_one(parse_activity_type, raw)

    def patch_activity_type(self, type_id: int, data: Mapping[str, Any]) -> ActivityType:
        """Set fields of an activity type to the given values."""
        raw = self._request(
            "PATCH", f"/activity-types/{int(type_id)}", body=dict(data), route="/activity-types/:id"
        )
        return self._parse_one(parse_activity_type, raw)

    def delete_activity_type(self, type_id: int) -> ActivityType:
        """Soft-delete an activity type."""
        raw = self._request(
            "DELETE", f"/activity-types/{int(type_id)}", route="/activity-types/:id"
        )
        return self._parse_one(parse_activity_type, raw)

    def _find_query(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        reserved = _RESERVED.intersection(filters)
        if reserved:
            raise QueryError(f"the client sets {', '.join(sorted(reserved))} itself")
        return {"organization_id": self.organization_id, **normalize_filters(filters)}

    # --- records ----------------------------------------------------------------

    def _skip(self, kind: str, raw: object, reason: str) -> None:
        self.skipped_records += 1
        record_id = raw.get("id") if isinstance(raw, Mapping) else None
        log.warning("apex.invalid_record", kind=kind, id=record_id, reason=reason)

    def _parse(self, parser: Callable[[object], R], raw: object) -> R | None:
        try:
            return self._parse_own(parser, raw)
        except InvalidRecord as exc:
            self.skipped_records += 1
            log.warning("apex.invalid_record", kind=exc.kind, id=exc.record_id, reason=exc.reason)
            return None

    def _parse_one(self, parser: Callable[[object], R], raw: object) -> R:
        try:
            return self._parse_own(parser, raw)
        except InvalidRecord as exc:
            log.warning("apex.invalid_record", kind=exc.kind, id=exc.record_id, reason=exc.reason)
            raise

    def _parse_own(self, parser: Callable[[object], R], raw: object) -> R:
        """``parser(raw)``, and a record of another organization is invalid too (it must never reach this one's store)."""
        record = parser(raw)
        org = getattr(record, "organization_id", self.organization_id)
        if org != self.organization_id:
            kind = "activity type" if parser is parse_activity_type else "activity"
            raise InvalidRecord(
                kind, getattr(record, "id", None),
                f"organization_id: {org}, not this organization's {self.organization_id}",
            )
        return record

    def _bulk_answer(self, raw: object, method: str, url: str) -> tuple[int, list[int]]:
        if isinstance(raw, dict):
            updated, ids = raw.get("updated"), raw.get("ids")
            if is_int(updated) and isinstance(ids, list) and all(is_int(i) for i in ids):
                return updated, ids  # type: ignore[return-value]
        raise ApiProtocolError("the bulk answer lacks updated/ids", method=method, url=url)

