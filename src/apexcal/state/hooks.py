"""Sync webhook secrets: one or more per organization, stored as SHA-256 hex digests only.

They share the feed tokens' table under the reserved name :data:`HOOK` (a
feed name can hold no ``@``, so no feed URL can ever open with a hook
secret, nor a hook with a feed token), and so are created, rotated and
revoked exactly like feed tokens.  The lookup by hash spans every
organization: a hook URL names no organization, its secret does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from apexcal.state.part import StorePart
from apexcal.state.records import FeedToken
from apexcal.state.tables import FeedTokenRow, table_of

HOOK = "@hook"
"""The ``feed`` column of a hook secret's row."""

_F = table_of(FeedTokenRow)


class HooksPart(StorePart):
    """Webhook secrets of the organization in view; the lookup across all of them."""

    def add_hook_secret(self, secret_hash: str, label: str | None, at: datetime) -> int:
        """Store a new hook secret's hash for this organization; return its id."""
        with self._db.write("add hook secret") as conn:
            new_id = conn.execute(
                _F.insert()
                .values(
                    organization=self._org,
                    feed=HOOK,
                    token_hash=secret_hash,
                    label=label,
                    created_at=at,
                )
                .returning(_F.c.id)
            ).scalar_one()
        return int(new_id)

    def revoke_hook_secrets(self, secret_id: int | None = None, *, at: datetime) -> int:
        """Revoke one hook secret of this organization (or all of them); return how many."""
        query = update(_F).where(
            _F.c.organization == self._org, _F.c.feed == HOOK, _F.c.revoked_at.is_(None)
        )
        if secret_id is not None:
            query = query.where(_F.c.id == secret_id)
        with self._db.write("revoke hook secrets") as conn:
            return conn.execute(query.values(revoked_at=at)).rowcount

    def hook_secrets(self) -> list[FeedToken]:
        """Every hook secret of this organization, revoked ones included, by id."""
        with self._db.read("list hook secrets") as conn:
            rows = conn.execute(
                select(_F).where(_F.c.organization == self._org, _F.c.feed == HOOK).order_by(_F.c.id)
            )
            return [
                FeedToken(
                    id=r.id, feed=r.feed, token_hash=r.token_hash, label=r.label,
                    created_at=r.created_at, revoked_at=r.revoked_at,
                )
                for r in rows
            ]

    def hook_organization(self, secret_hash: str) -> tuple[str, str] | None:
        """``(organization, stored hash)`` of the active hook secret with this hash, else ``None``.

        Any organization: the organization this store is scoped to does not matter.
        """
        with self._db.read("look up hook secret") as conn:
            row = conn.execute(
                select(_F.c.organization, _F.c.token_hash).where(
                    _F.c.token_hash == secret_hash,
                    _F.c.feed == HOOK,
                    _F.c.revoked_at.is_(None),
                )
            ).first()
        return None if row is None else (row.organization, row.token_hash)
