"""Initial schema: activity and type mirror, per-target records and state, writeback
journal, geocode cache, feed tokens and feed build status.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("organization_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("assigned_to_user_id", sa.BigInteger(), nullable=True),
        sa.Column("activity_type", sa.String(length=200), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("done", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id > 0", name=op.f("ck_activities_positive_id")),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_activities")),
    )
    op.create_index(
        op.f("ix_activities_organization_id_activity_type"),
        "activities",
        ["organization_id", "activity_type"],
        unique=False,
    )
    op.create_index(
        op.f("ix_activities_organization_id_assigned_to_user_id"),
        "activities",
        ["organization_id", "assigned_to_user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_activities_organization_id_change_seq"),
        "activities",
        ["organization_id", "change_seq"],
        unique=False,
    )
    op.create_index(
        op.f("ix_activities_organization_id_start_date"),
        "activities",
        ["organization_id", "start_date"],
        unique=False,
    )
    op.create_table(
        "activity_types",
        sa.Column("organization_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("vanished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_activity_types")),
    )
    op.create_table(
        "feed_status",
        sa.Column("feed", sa.String(length=200), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("feed", name=op.f("pk_feed_status")),
    )
    op.create_table(
        "feed_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("feed", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_feed_tokens_token_hash")),
    )
    op.create_index(op.f("ix_feed_tokens_feed"), "feed_tokens", ["feed"], unique=False)
    op.create_table(
        "geocode_cache",
        sa.Column("query_hash", sa.String(length=64), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lng", sa.Double(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("query_hash", name=op.f("pk_geocode_cache")),
    )
    op.create_table(
        "mirror_state",
        sa.Column("organization_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reconcile_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_mirror_state")),
    )
    op.create_table(
        "objects",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("uid", sa.String(length=500), nullable=False),
        sa.Column("activity_id", sa.BigInteger(), nullable=False),
        sa.Column("href", sa.String(length=1000), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("pushed_hash", sa.String(length=64), nullable=True),
        sa.Column("pushed_done", sa.Boolean(), nullable=True),
        sa.Column("done_seen", sa.Boolean(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "uid", name=op.f("pk_objects")),
    )
    op.create_index(
        op.f("ix_objects_target_activity_id"), "objects", ["target", "activity_id"], unique=False
    )
    op.create_index(op.f("ix_objects_target_href"), "objects", ["target", "href"], unique=False)
    op.create_table(
        "target_state",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("mirror_seq_seen", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_summary", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=200), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_target_state")),
    )
    op.create_table(
        "writebacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("activity_id", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'superseded')", name=op.f("ck_writebacks_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writebacks")),
    )
    op.create_index(
        op.f("ix_writebacks_status_target"), "writebacks", ["status", "target"], unique=False
    )
    op.create_index(
        op.f("ix_writebacks_target_activity_id"),
        "writebacks",
        ["target", "activity_id"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in (
        "writebacks",
        "target_state",
        "objects",
        "mirror_state",
        "geocode_cache",
        "feed_tokens",
        "feed_status",
        "activity_types",
        "activities",
    ):
        op.drop_table(table)
