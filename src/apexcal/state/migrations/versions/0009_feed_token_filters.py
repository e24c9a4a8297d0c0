"""A feed token may carry a filter: ``feed_tokens.filter`` (the canonical text, or NULL).

``apexcal feed url NAME --filter type=call --filter user=46`` issues a URL
whose feed is that subset of the feed; the filter is kept beside the
token's hash (never the token).  Tokens issued before have none: they serve
the whole feed, as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("feed_tokens", sa.Column("filter", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feed_tokens") as batch:
        batch.drop_column("filter")
