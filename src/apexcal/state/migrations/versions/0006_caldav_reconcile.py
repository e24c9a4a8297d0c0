"""Target state notes when the calendar was last reconciled (``target_state.last_caldav_reconcile_at``).

A full href/etag listing of the calendar is compared with the records at
``[sync] caldav_reconcile_interval``; the time of the last one is kept per
target.  Existing rows get NULL: the next cycle reconciles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "target_state",
        sa.Column("last_caldav_reconcile_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("target_state") as batch:
        batch.drop_column("last_caldav_reconcile_at")
