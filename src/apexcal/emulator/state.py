"""The emulator's in-memory data: organizations, users, activities, types and their clock.

Every method takes the state's lock, so the server thread and a test thread may
use one state at once.  Live activities are indexed per organization (a dict
in id order), so a find scans only one organization's live records and never
copies them; only the page that is sent is copied.

The clock stamps every create, patch and delete with a millisecond instant that
is strictly later than the previous stamp, so two separate writes never share
an ``updated_at``; a bulk patch stamps all its rows with one instant.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from apexcal.apex.models import format_timestamp, parse_timestamp, type_key
from apexcal.emulator.faults import FaultQueue, RequestLog
from apexcal.emulator.query import FindQuery, Record, first, order
from apexcal.emulator.records import ACTIVITY_FIELDS, check_dates
from apexcal.emulator.users import (
    DEFAULT_TYPES,
    DEMO_ORG_ID,
    DEMO_OTHER_ORG_ID,
    DEMO_OTHER_TOKEN,
    DEMO_TOKEN,
    DEMO_USERS,
    parse_users,
)
from apexcal.errors import EmulatorQueryError

# The emulator is a peer of the product, not part of it: its clock is its own.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)

__all__ = [
    "DEMO_ORG_ID",
    "DEMO_OTHER_ORG_ID",
    "DEMO_OTHER_TOKEN",
    "DEMO_TOKEN",
    "EmulatorState",
    "parse_users",
]

_FEED_ORDERS = ((("updated_at", 1),), (("updated_at", 1), ("id", 1)))


class EmulatorState:
    """All data of one emulator: thread-safe, in memory, indexed per organization."""

    def __init__(self, *, clock: Clock = utcnow, demo_users: bool = True) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._init()
        if demo_users:
            self.default_users()

    def _init(self) -> None:
        self._last = datetime(1970, 1, 1, tzinfo=UTC)
        self.organizations: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self._tokens: dict[str, int] = {}
        self._activities: dict[int, dict[str, Any]] = {}
        self._live: dict[int, dict[int, dict[str, Any]]] = {}
        # Per organization, the live activities in (updated_at, id) order: the keys
        # and, aligned with them, the records.  Absent or None: (re)built on first use.
        self._feed: dict[int, tuple[list[tuple[str, int]], list[dict[str, Any]]] | None] = {}
        self._types: dict[int, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self._next_activity = 1
        self._next_type = 1
        self._next_ref = 1000
        self.faults = FaultQueue()
        self.requests = RequestLog()

    @property
    def lock(self) -> threading.RLock:
        """The state's (re-entrant) lock, for callers that read several records at once."""
        return self._lock

    # --- set-up ---------------------------------------------------------------

    def reset(self, *, demo_users: bool = True) -> None:
        """Forget everything (data, faults, counters) and reinstall the demo users."""
        with self._lock:
            self._init()
            if demo_users:
                self.default_users()

    def default_users(self) -> list[dict[str, Any]]:
        """Install the demo organizations (27, 28) and users; return the users."""
        self.set_users(DEMO_USERS, replace=False)
        return [dict(u) for u in DEMO_USERS["users"]]

    def set_users(self, doc: Any, *, replace: bool = True) -> None:
        """Install a users document (``ValueError`` if bad): its users replace the old ones
        (unless ``replace`` is false), its organizations are added to the existing ones."""
        parsed = parse_users(doc)
        with self._lock:
            if replace:
                self.users.clear()
                self._tokens.clear()
            for org in parsed.organizations:
                self.add_organization(org.id, org.name)
            for user in parsed.users:
                self.add_user(
                    id=user.id,
                    full_name=user.full_name,
                    email=user.email,
                    organizations=user.organizations,
                    token=user.token,
                )

    def add_organization(self, org_id: int, name: str) -> None:
        """Add an organization with the five default activity types (no-op if it exists)."""
        with self._lock:
            if org_id in self.organizations:
                self.organizations[org_id]["name"] = name
                return
            self.organizations[org_id] = {"id": org_id, "name": name}
            self._live.setdefault(org_id, {})
            for spec in DEFAULT_TYPES:
                self.insert_type(
                    {**spec, "organization_id": org_id, "updated_at": spec["created_at"]}
                )

    def add_user(
        self,
        *,
        id: int,
        full_name: str,
        email: str | None,
        organizations: Sequence[int],
        token: str,
    ) -> None:
        """Add (or replace) a user who may use ``token`` on ``organizations``."""
        with self._lock:
            for org in organizations:
                if org not in self.organizations:
                    self.add_organization(org, f"Organization {org}")
            old = self.users.get(id)
            if old is not None:
                self._tokens.pop(old["token"], None)
            self.users[id] = {
                "id": id,
                "full_name": full_name,
                "email": email,
                "organizations": frozenset(organizations),
                "token": token,
            }
            self._tokens[token] = id

    def user_for_token(self, token: str) -> dict[str, Any] | None:
        """The user a bearer token belongs to, or None."""
        with self._lock:
            user_id = self._tokens.get(token)
            return None if user_id is None else self.users[user_id]

    def add_deal(
        self, *, organization_id: int, name: str, stage: str, id: int | None = None
    ) -> int:
        """Add a deal (joined into activities on get); returns its id."""
        return self._add_ref(
            self.deals, id, organization_id=organization_id, name=name, stage=stage
        )

    def add_contact(
        self, *, organization_id: int, full_name: str, email: str | None, id: int | None = None
    ) -> int:
        """Add a contact; returns its id."""
        return self._add_ref(
            self.contacts, id, organization_id=organization_id, full_name=full_name, email=email
        )

    def add_company(
        self, *, organization_id: int, name: str, website: str | None, id: int | None = None
    ) -> int:
        """Add a company; returns its id."""
        return self._add_ref(
            self.companies, id, organization_id=organization_id, name=name, website=website
        )

    def _add_ref(self, table: dict[int, dict[str, Any]], ref_id: int | None, **fields: Any) -> int:
        with self._lock:
            if ref_id is None:
                ref_id = self._next_ref
            self._next_ref = max(self._next_ref, ref_id + 1)
            table[ref_id] = {"id": ref_id, **fields}
            return ref_id

    # --- the clock --------------------------------------------------------------

    def stamp(self) -> str:
        """A new ``updated_at``: now, or 1 ms after the previous stamp if that is later."""
        with self._lock:
            now = self._clock().astimezone(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if now <= self._last:
                now = self._last + timedelta(milliseconds=1)
            self._last = now
            return format_timestamp(now)

    def _saw(self, stamp: str | None) -> None:
        if stamp:
            self._last = max(self._last, parse_timestamp(stamp))

    # --- direct access (tests, seeding) ----------------------------------------------

    def insert_activity(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store an activity as given (id and timestamps optional), without validation."""
        with self._lock:
            row: dict[str, Any] = {f: record.get(f) for f in ACTIVITY_FIELDS}
            row["id"] = row["id"] or self._next_activity
            row["done"] = bool(row["done"])
            if not row["created_at"]:
                row["created_at"] = self.stamp()
            row["updated_at"] = row["updated_at"] or row["created_at"]
            self._saw(row["updated_at"])
            self._next_activity = max(self._next_activity, row["id"] + 1)
            old = self._activities.get(row["id"])
            if old is not None and old["deleted_at"] is None:
                self._unindex(old)
                self._live.get(old["organization_id"], {}).pop(row["id"], None)
            self._activities[row["id"]] = row
            if row["deleted_at"] is None:
                live = self._live.setdefault(row["organization_id"], {})
                live[row["id"]] = row
                self._index(row)
            return dict(row)

    def _unindex(self, row: Mapping[str, Any]) -> None:
        """Take a live row out of the feed order (before its ``updated_at`` changes)."""
        feed = self._feed.get(row["organization_id"])
        if feed is None:
            return
        keys, rows = feed
        key = (row["updated_at"], row["id"])
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]
            del rows[i]
        else:
            self._feed[row["organization_id"]] = None  # not where expected: rebuild

    def _index(self, row: dict[str, Any]) -> None:
        """Put a live row into the feed order (after its ``updated_at`` changed)."""
        feed = self._feed.get(row["organization_id"])
        if feed is None:
            return
        keys, rows = feed
        key = (row["updated_at"], row["id"])
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            self._feed[row["organization_id"]] = None  # already there: rebuild
        else:
            keys.insert(i, key)
            rows.insert(i, row)

    def _feed_order(
        self, org_id: int, live: Mapping[int, dict[str, Any]]
    ) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
        feed = self._feed.get(org_id)
        if feed is None:
            pairs = sorted(((r["updated_at"], r["id"]), r) for r in live.values())
            feed = ([k for k, _ in pairs], [r for _, r in pairs])
            self._feed[org_id] = feed
        return feed

    def put_raw(self, activity_id: int, **fields: Any) -> None:
        """Change stored fields directly: no validation, no ``updated_at`` bump."""
        with self._lock:
            row = self._activities[activity_id]
            self.insert_activity({**row, **fields})

    def activities(self, org_id: int) -> list[dict[str, Any]]:
        """Copies of the live activities of an organization, in id order."""
        with self._lock:
            return [
                dict(r) for r in sorted(self._live.get(org_id, {}).values(), key=lambda r: r["id"])
            ]

    def get(self, activity_id: int) -> dict[str, Any]:
        """A copy of an activity, soft-deleted ones included (``KeyError`` if unknown)."""
        with self._lock:
            return dict(self._activities[activity_id])

    def activity_record(self, activity_id: int) -> dict[str, Any] | None:
        """The stored record (not a copy) or None; for the app, under its own care."""
        return self._activities.get(activity_id)

    def insert_type(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store an activity type as given, without validation."""
        with self._lock:
            row = {
                "id": record.get("id") or self._next_type,
                "name": record["name"],
                "color": record.get("color"),
                "icon_key": record.get("icon_key"),
                "organization_id": record["organization_id"],
                "created_at": record.get("created_at") or self.stamp(),
                "updated_at": None,
                "deleted_at": record.get("deleted_at"),
            }
            row["updated_at"] = record.get("updated_at") or row["created_at"]
            self._next_type = max(self._next_type, row["id"] + 1)
            self._types[row["id"]] = row
            return dict(row)

    def activity_types(self, org_id: int) -> list[dict[str, Any]]:
        """Copies of the live activity types of an organization, in id order."""
        with self._lock:
            return [
                dict(t)
                for t in sorted(self._types.values(), key=lambda t: t["id"])
                if t["organization_id"] == org_id and t["deleted_at"] is None
            ]

    def get_type(self, type_id: int) -> dict[str, Any]:
        """A copy of an activity type, soft-deleted ones included (``KeyError`` if unknown)."""
        with self._lock:
            return dict(self._types[type_id])

    def live_type_keys(self, org_id: int) -> set[str]:
        """The ``activity_type`` keys usable for new activities of an organization."""
        with self._lock:
            return {
                type_key(t["name"])
                for t in self._types.values()
                if t["organization_id"] == org_id and t["deleted_at"] is None
            }

    def activities_count(self, type_id: int) -> int:
        """Live activities whose ``activity_type`` is the key of this type's name."""
        with self._lock:
            row = self._types[type_id]
            key = type_key(row["name"])
            return sum(
                1
                for a in self._live.get(row["organization_id"], {}).values()
                if a["activity_type"] == key
            )

    def seed(
        self, org_id: int, count: int, *, seed: int = 0, anchor: date | None = None
    ) -> list[int]:
        """Add ``count`` realistic, deterministic activities to an organization; return their ids."""
        from apexcal.emulator.seed import generate

        with self._lock:
            if org_id not in self.organizations:
                self.add_organization(org_id, f"Organization {org_id}")
            records = generate(
                self, org_id, count, seed=seed, anchor=anchor or self._clock().date()
            )
            return [self.insert_activity(r)["id"] for r in records]

    # --- the service operations ---------------------------------------------------

    def find_activities(self, query: FindQuery) -> tuple[int, list[Record]]:
        """``(total, page)`` of live activities matching ``query`` (page records not copied)."""
        with self._lock:
            live = self._live.get(query.organization_id, {})
            in_feed_order = query.sort in _FEED_ORDERS
            end = query.skip + query.limit
            if (query.updated_from is None and not in_feed_order) or len(live) < 256:
                matched = query.select_rows(live.values())
                ordered = first(matched, query.sort, end)
            else:
                # Walk the (updated_at, id) order from the lower bound: the change
                # feed's query then costs what lies after the watermark, unsorted.
                keys, rows = self._feed_order(query.organization_id, live)
                start = 0
                if query.updated_from is not None:
                    op, value = query.updated_from
                    probe = (value,) if op == "$gte" else (value, float("inf"))
                    start = bisect_left(keys, probe) if op == "$gte" else bisect_right(keys, probe)
                matched = query.select_rows(rows[start:])
                ordered = matched if in_feed_order else first(matched, query.sort, end)
        return len(matched), ordered[query.skip : end]

    def create_activity(self, fields: Mapping[str, Any], *, user_id: int) -> dict[str, Any]:
        """Create an activity from validated fields; the creator comes from the token."""
        with self._lock:
            self._check_type_key(fields["organization_id"], fields.get("activity_type"))
            record: dict[str, Any] = dict.fromkeys(ACTIVITY_FIELDS)
            record.update(fields)
            record["id"] = self._next_activity
            record["created_by_user_id"] = user_id
            record["done"] = bool(fields.get("done", False))
            check_dates(record)
            record["created_at"] = record["updated_at"] = self.stamp()
            return self.insert_activity(record)

    def patch_activity(self, activity_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Apply validated fields to a live activity and bump ``updated_at``."""
        with self._lock:
            row = self._activities[activity_id]
            if fields.get("organization_id", row["organization_id"]) != row["organization_id"]:
                raise EmulatorQueryError("organization_id cannot be changed")
            if "activity_type" in fields and fields["activity_type"] != row["activity_type"]:
                self._check_type_key(row["organization_id"], fields["activity_type"])
            merged = {**row, **fields}
            check_dates(merged)
            live = row["deleted_at"] is None
            if live:
                self._unindex(row)
            row.update(fields)
            row["updated_at"] = self.stamp()
            if live:
                self._index(row)
            return dict(row)

    def bulk_patch(
        self, ids: Iterable[int], fields: Mapping[str, Any], *, organizations: frozenset[int]
    ) -> list[int]:
        """Patch every live activity of ``organizations`` among ``ids`` with one stamp."""
        with self._lock:
            rows = []
            for activity_id in dict.fromkeys(ids):
                row = self._activities.get(activity_id)
                if (
                    row is None
                    or row["deleted_at"] is not None
                    or row["organization_id"] not in organizations
                ):
                    continue
                if "activity_type" in fields and fields["activity_type"] != row["activity_type"]:
                    self._check_type_key(row["organization_id"], fields["activity_type"])
                check_dates({**row, **fields})
                rows.append(row)
            if not rows:
                return []
            stamp = self.stamp()
            for row in rows:
                self._unindex(row)
                row.update(fields)
                row["updated_at"] = stamp
                self._index(row)
            return [r["id"] for r in rows]

    def delete_activity(self, activity_id: int) -> dict[str, Any]:
        """Soft-delete a live activity: ``deleted_at`` = ``updated_at`` = a new stamp."""
        with self._lock:
            row = self._activities[activity_id]
            if row["deleted_at"] is None:
                self._unindex(row)
            row["deleted_at"] = row["updated_at"] = self.stamp()
            self._live.get(row["organization_id"], {}).pop(activity_id, None)
            return dict(row)

    def _check_type_key(self, org_id: int, key: Any) -> None:
        if key is not None and key not in self.live_type_keys(org_id):
            raise EmulatorQueryError(f"Unknown activity_type '{key}' for organization {org_id}")

    def find_types(self, query: FindQuery) -> tuple[int, list[Record]]:
        """``(total, page)`` of live activity types matching ``query``."""
        with self._lock:
            matched = query.select_rows(
                t
                for t in self._types.values()
                if t["organization_id"] == query.organization_id and t["deleted_at"] is None
            )
            ordered = order(matched, query.sort)
        return len(ordered), ordered[query.skip : query.skip + query.limit]

    def type_record(self, type_id: int) -> dict[str, Any] | None:
        """The stored type record (not a copy) or None."""
        return self._types.get(type_id)

    def create_type(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create an activity type; its key must not clash with a live type's."""
        with self._lock:
            self._check_unique_name(fields["organization_id"], fields["name"], None)
            stamp = self.stamp()
            return self.insert_type(
                {**fields, "id": self._next_type, "created_at": stamp, "updated_at": stamp}
            )

    def patch_type(self, type_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Apply validated fields to a live activity type and bump ``updated_at``."""
        with self._lock:
            row = self._types[type_id]
            if fields.get("organization_id", row["organization_id"]) != row["organization_id"]:
                raise EmulatorQueryError("organization_id cannot be changed")
            if "name" in fields:
                self._check_unique_name(row["organization_id"], fields["name"], type_id)
            row.update(fields)
            row["updated_at"] = self.stamp()
            return dict(row)

    def delete_type(self, type_id: int) -> dict[str, Any]:
        """Soft-delete an activity type (activities keep their ``activity_type`` key)."""
        with self._lock:
            row = self._types[type_id]
            row["deleted_at"] = row["updated_at"] = self.stamp()
            return dict(row)

    def _check_unique_name(self, org_id: int, name: str, own_id: int | None) -> None:
        key = type_key(name)
        for t in self._types.values():
            if (
                t["organization_id"] == org_id
                and t["deleted_at"] is None
                and t["id"] != own_id
                and type_key(t["name"]) == key
            ):
                raise EmulatorQueryError(f"An activity type with the key '{key}' already exists")
