"""Two-way edits: per-field baselines on object records, and a journal of field writebacks.

``objects.fields`` holds, per editable field (start, end, subject, location),
the hash of the value apexcal last pushed or agreed on, so a cycle can tell
which side changed a field since.  Existing rows get NULL: no remote change
is known for them until their next push records the hashes (nothing is sent
to the CRM from an unknown baseline).

``field_writebacks`` journals calendar edits on their way to the CRM, as
``writebacks`` does completions: the API fields to PATCH, the field hashes
the record takes once the CRM holds them, and the attempt's start (an
attempt whose answer is lost is settled by reading the CRM first).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("objects", sa.Column("fields", sa.JSON(), nullable=True))
    op.create_table(
        "field_writebacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=100), server_default=sa.text("''"), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("uid", sa.String(length=500), nullable=False),
        sa.Column("activity_id", sa.BigInteger(), nullable=False),
        sa.Column("patch", sa.JSON(), nullable=False),
        sa.Column("agreed", sa.JSON(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'superseded')", name=op.f("ck_field_writebacks_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_writebacks")),
    )
    op.create_index(
        op.f("ix_field_writebacks_organization_status_target"),
        "field_writebacks",
        ["organization", "status", "target"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("field_writebacks")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("fields")
