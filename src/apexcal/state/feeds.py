"""Feed URL tokens (stored as sha256 hex digests only), feed status (last build, last failure)
and, in worker mode, the feed bodies themselves (one current version per feed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite

from apexcal.state._sql import upsert
from apexcal.state.part import StorePart
from apexcal.state.records import FeedBody, FeedStatus, FeedToken, TokenGrant
from apexcal.state.tables import FeedBodyRow, FeedStatusRow, FeedTokenRow, table_of

_F = table_of(FeedTokenRow)
_B = table_of(FeedStatusRow)
_V = table_of(FeedBodyRow)


def _token(row: Row[Any]) -> FeedToken:
    return FeedToken(
        id=row.id,
        feed=row.feed,
        token_hash=row.token_hash,
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        filter=row.filter,
    )


def _status(row: Row[Any]) -> FeedStatus:
    return FeedStatus(
        feed=row.feed,
        etag=row.etag,
        built_at=row.built_at,
        length=row.length,
        parent=row.parent,
        signature=row.signature,
        events=row.events,
        mtime_ns=row.mtime_ns,
        last_error_at=row.last_error_at,
        last_error_kind=row.last_error_kind,
        last_error=row.last_error,
    )


class FeedsPart(StorePart):
    """Feed tokens and feed build status."""

    def add_feed_token(
        self,
        feed: str,
        token_hash: str,
        label: str | None,
        at: datetime,
        *,
        filter_: str | None = None,
    ) -> int:
        """Store a new token's hash for ``feed`` (with the canonical text of its view); return the token id."""
        with self._db.write("add feed token") as conn:
            new_id = conn.execute(
                _F.insert()
                .values(
                    organization=self._org,
                    feed=feed,
                    token_hash=token_hash,
                    label=label,
                    created_at=at,
                    filter=filter_,
                )
                .returning(_F.c.id)
            ).scalar_one()
        self._db.feed_token_writes += 1
        return int(new_id)

    @property
    def feed_token_writes(self) -> int:
        """How many token issues and revocations went through this store's database object (any organization)."""
        return self._db.feed_token_writes

    def feed_for_token_hash(self, token_hash: str) -> str | None:
        """The feed a non-revoked token hash opens, or ``None``."""
        with self._db.read("look up feed token") as conn:
            return conn.execute(
                select(_F.c.feed).where(
                    _F.c.organization == self._org,
                    _F.c.token_hash == token_hash,
                    _F.c.revoked_at.is_(None),
                )
            ).scalar_one_or_none()

    def feed_token_state(self, token_hash: str) -> tuple[str, bool, str | None] | None:
        """The feed a token hash was issued for, whether it is revoked and its filter; ``None`` if unknown.

        Revoked tokens are kept (with ``revoked_at``), so the feed server can
        tell a revoked URL (410 Gone) from one that never existed (404).  The
        filter is the canonical text of the token's view (``None``: the whole feed).
        """
        with self._db.read("look up feed token") as conn:
            row = conn.execute(
                select(_F.c.feed, _F.c.revoked_at, _F.c.filter).where(
                    _F.c.organization == self._org, _F.c.token_hash == token_hash
                )
            ).first()
        return None if row is None else (row.feed, row.revoked_at is not None, row.filter)

    def feed_views(self) -> dict[str, set[str]]:
        """Feed name → the filters (canonical texts) of its active filtered tokens.

        What a feed build writes beside each feed: one view per distinct filter.
        """
        with self._db.read("list feed views") as conn:
            rows = conn.execute(
                select(_F.c.feed, _F.c.filter).where(
                    _F.c.organization == self._org,
                    _F.c.revoked_at.is_(None),
                    _F.c.filter.is_not(None),
                )
            )
            views: dict[str, set[str]] = {}
            for row in rows:
                views.setdefault(row.feed, set()).add(row.filter)
        return views

    def revoke_feed_tokens(
        self, feed: str, token_id: int | None = None, *, at: datetime | None = None
    ) -> int:
        """Revoke one token of ``feed`` (or all of them); return how many were revoked."""
        query = update(_F).where(
            _F.c.organization == self._org, _F.c.feed == feed, _F.c.revoked_at.is_(None)
        )
        if token_id is not None:
            query = query.where(_F.c.id == token_id)
        with self._db.write("revoke feed tokens") as conn:
            revoked: int = conn.execute(query.values(revoked_at=at or self._clock())).rowcount
        self._db.feed_token_writes += 1
        return revoked

    def feed_tokens(self, feed: str) -> list[FeedToken]:
        """Every token of ``feed``, revoked ones included, by id."""
        with self._db.read("list feed tokens") as conn:
            rows = conn.execute(select(_F)
                .where(_F.c.organization == self._org, _F.c.feed == feed)
                .order_by(_F.c.id))
            return [_token(r) for r in rows]

    def set_feed_built(
        self,
        feed: str,
        etag: str,
        built_at: datetime,
        length: int,
        *,
        parent: str | None = None,
        signature: str | None = None,
        events: int | None = None,
        mtime_ns: int | None = None,
    ) -> None:
        """Record a build of ``feed``'s file (its last failure, if any, is kept)."""
        with self._db.write("record feed build") as conn:
            upsert(
                conn,
                _B,
                {
                    "organization": self._org,
                    "feed": feed,
                    "etag": etag,
                    "built_at": built_at,
                    "length": length,
                    "parent": parent,
                    "signature": signature,
                    "events": events,
                    "mtime_ns": mtime_ns,
                },
                keys=("organization", "feed"),
            )

    def record_feed_failure(self, feed: str, at: datetime, kind: str, message: str) -> None:
        """Record that ``feed``'s job failed (its last build, if any, is kept)."""
        with self._db.write("record feed failure") as conn:
            upsert(
                conn,
                _B,
                {
                    "organization": self._org,
                    "feed": feed,
                    "last_error_at": at,
                    "last_error_kind": kind,
                    "last_error": message,
                },
                keys=("organization", "feed"),
            )

    def feed_status(self, feed: str) -> FeedStatus | None:
        """The status of ``feed``, or ``None`` if it was never built nor failed."""
        with self._db.read("read feed status") as conn:
            row = conn.execute(
                select(_B).where(_B.c.organization == self._org, _B.c.feed == feed)
            ).first()
        return None if row is None else _status(row)

    def all_feed_status(self) -> list[FeedStatus]:
        """The status of every feed file, by name."""
        with self._db.read("read feed status") as conn:
            rows = conn.execute(
                select(_B).where(_B.c.organization == self._org).order_by(_B.c.feed)
            )
            return [_status(r) for r in rows]

    def feed_status_everywhere(self) -> list[tuple[str, FeedStatus]]:
        """``(organization, status)`` of every feed of every organization (the stateless server's health)."""
        with self._db.read("read feed status") as conn:
            rows = conn.execute(select(_B).order_by(_B.c.organization, _B.c.feed))
            return [(r.organization, _status(r)) for r in rows]

    def feed_files_status(self, parent: str) -> list[FeedStatus]:
        """The built files of configured feed ``parent`` (its own and its per-user ones), by name."""
        with self._db.read("read feed status") as conn:
            rows = conn.execute(
                select(_B)
                .where(
                    _B.c.organization == self._org,
                    _B.c.parent == parent,
                    _B.c.built_at.is_not(None),
                )
                .order_by(_B.c.feed)
            )
            return [_status(r) for r in rows]

    # --- feed bodies (worker mode) ---------------------------------------------------

    def put_feed_body(
        self, feed: str, *, parent: str, body: bytes, gzip: bytes, etag: str, at: datetime
    ) -> int:
        """Make ``body`` (with its gzip form and ETag) the current version of ``feed``; its version.

        One statement: readers see the previous version until it commits.
        """
        values = {
            "organization": self._org,
            "feed": feed,
            "parent": parent,
            "version": 1,
            "etag": etag,
            "modified_at": at,
            "length": len(body),
            "body": body,
            "gzip": gzip,
        }
        with self._db.write("store feed body") as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(_V).values(values)
            changed = {c: insert.excluded[c] for c in values if c not in ("organization", "feed")}
            changed["version"] = _V.c.version + 1
            return int(
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["organization", "feed"], set_=changed
                    ).returning(_V.c.version)
                ).scalar_one()
            )

    def feed_body_version(self, feed: str) -> tuple[int, str] | None:
        """``(version, etag)`` of ``feed``'s current body, or ``None``; reads no body."""
        with self._db.read("read feed version") as conn:
            row = conn.execute(
                select(_V.c.version, _V.c.etag).where(
                    _V.c.organization == self._org, _V.c.feed == feed
                )
            ).first()
        return None if row is None else (int(row.version), str(row.etag))

    def feed_body(self, feed: str) -> FeedBody | None:
        """The current body of ``feed`` with its gzip form, or ``None`` if never built here."""
        with self._db.read("read feed body") as conn:
            row = conn.execute(
                select(_V).where(_V.c.organization == self._org, _V.c.feed == feed)
            ).first()
        if row is None:
            return None
        return FeedBody(
            feed=row.feed, parent=row.parent, version=int(row.version), etag=row.etag,
            modified_at=row.modified_at, body=bytes(row.body), gzip=bytes(row.gzip),
        )

    def feed_body_names(self, parent: str) -> list[str]:
        """The feeds whose bodies configured feed ``parent`` wrote (its own, per-user ones), by name."""
        with self._db.read("list feed bodies") as conn:
            rows = conn.execute(
                select(_V.c.feed)
                .where(_V.c.organization == self._org, _V.c.parent == parent)
                .order_by(_V.c.feed)
            )
            return [r.feed for r in rows]

    def token_grant(self, token_hash: str) -> TokenGrant | None:
        """What a token hash opens in *any* organization (hashes are unique), or ``None``.

        The stateless feed server knows a token, not its organization.
        """
        with self._db.read("look up feed token") as conn:
            row = conn.execute(
                select(_F.c.organization, _F.c.feed, _F.c.revoked_at, _F.c.filter).where(
                    _F.c.token_hash == token_hash
                )
            ).first()
        if row is None:
            return None
        return TokenGrant(
            organization=row.organization,
            feed=row.feed,
            revoked=row.revoked_at is not None,
            filter=row.filter,
        )
