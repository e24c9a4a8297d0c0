"""Feeds built by workers live in the database: ``feed_bodies`` (body, gzip form, ETag, version).

In worker mode ``build_feed`` writes each new version of a feed here instead
of a file, so any number of ``apexcal serve`` instances on any machine serve
the same bytes.  One row per (organization, feed), replaced atomically; the
single-process daemon keeps writing files and leaves the table empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_bodies",
        sa.Column("organization", sa.String(length=100), server_default=sa.text("''"),
                  nullable=False),
        sa.Column("feed", sa.String(length=200), nullable=False),
        sa.Column("parent", sa.String(length=200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("gzip", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("organization", "feed", name=op.f("pk_feed_bodies")),
    )


def downgrade() -> None:
    op.drop_table("feed_bodies")
