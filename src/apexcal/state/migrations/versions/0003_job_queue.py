"""The job queue of ``apexcal worker``: procrastinate 3.10's schema in a PostgreSQL schema of its own.

PostgreSQL only (SQLite stores have no workers: nothing to do).  See
:mod:`apexcal.state.queue` for where the schema lives.  When the pinned
procrastinate version moves, add a revision that applies the files of
``procrastinate/sql/migrations`` newer than 3.10 in that schema, in order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from apexcal.state.queue import create_queue_schema, drop_queue_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        create_queue_schema(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        drop_queue_schema(conn)
