"""Object records note the completion of an update in flight (``objects.pending_done``).

Written before the PUTs of a cycle and cleared when each is recorded, so that
after a crash between a PUT and its record the next cycle takes the object it
reads for our own write, not for a completion changed in the calendar.
Existing rows get NULL: nothing in flight.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("objects", sa.Column("pending_done", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("pending_done")
