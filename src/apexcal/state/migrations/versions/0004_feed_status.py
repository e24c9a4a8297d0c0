"""Feed status holds a feed's freshness and its job's last failure.

The build record (inputs' signature, event count, file mtime, the per-user
file's parent feed) used to be a JSON file beside each feed, and a feed
job's failure a pseudo-target ``feed:<name>``; both now live in
``feed_status``, whose build columns become nullable so a feed that failed
before its first build has a row.  Existing rows keep their values; their
feeds are built once more (no signature yet).  Failures recorded under the
old pseudo-targets are left where they are: the next feed job records anew.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = (
    ("parent", sa.String(length=200)),
    ("signature", sa.String(length=64)),
    ("events", sa.Integer()),
    ("mtime_ns", sa.BigInteger()),
    ("last_error_at", sa.DateTime(timezone=True)),
    ("last_error_kind", sa.String(length=100)),
    ("last_error", sa.Text()),
)
_BUILT = (("etag", sa.Text()), ("built_at", sa.DateTime(timezone=True)), ("length", sa.BigInteger()))


def upgrade() -> None:
    with op.batch_alter_table("feed_status", recreate="auto") as batch:
        for name, type_ in _NEW:
            batch.add_column(sa.Column(name, type_, nullable=True))
        for name, type_ in _BUILT:
            batch.alter_column(name, existing_type=type_, nullable=True)


def downgrade() -> None:
    rows = sa.table("feed_status", sa.column("built_at"))
    op.execute(rows.delete().where(rows.c.built_at.is_(None)))
    with op.batch_alter_table("feed_status", recreate="auto") as batch:
        for name, type_ in _BUILT:
            batch.alter_column(name, existing_type=type_, nullable=False)
        for name, _type in reversed(_NEW):
            batch.drop_column(name)
