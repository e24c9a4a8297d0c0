"""Key targets, object records, the writeback journal, feed tokens and feed status by organization.

Every row written before this revision belongs to the single organization of
a ``--config FILE`` setup, whose key is ``''``: the new column's server
default gives them exactly that key, so an existing store moves over with no
row changed but the key, and its next cycle writes nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (primary key after, primary key before); None: the table keeps its id key.
_KEYED: dict[str, tuple[list[str], list[str]] | None] = {
    "objects": (["organization", "target", "uid"], ["target", "uid"]),
    "target_state": (["organization", "target"], ["target"]),
    "feed_status": (["organization", "feed"], ["feed"]),
    "writebacks": None,
    "feed_tokens": None,
}
# table -> [(index columns before, index columns after)]
_INDEXES: dict[str, list[tuple[list[str], list[str]]]] = {
    "objects": [
        (["target", "activity_id"], ["organization", "target", "activity_id"]),
        (["target", "href"], ["organization", "target", "href"]),
    ],
    "writebacks": [
        (["status", "target"], ["organization", "status", "target"]),
        (["target", "activity_id"], ["organization", "target", "activity_id"]),
    ],
    "feed_tokens": [(["feed"], ["organization", "feed"])],
}


def _index_name(table: str, columns: list[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, keys in _KEYED.items():
        with op.batch_alter_table(table, recreate="auto") as batch:
            for old, _new in _INDEXES.get(table, []):
                batch.drop_index(_index_name(table, old))
            batch.add_column(
                sa.Column(
                    "organization", sa.String(length=100), server_default=sa.text("''"),
                    nullable=False,
                )
            )
            if keys is not None:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", keys[0])
            for _old, new in _INDEXES.get(table, []):
                batch.create_index(_index_name(table, new), new, unique=False)


def downgrade() -> None:
    # Only a single-organization store can go back: rows of other organizations are dropped.
    for table, keys in _KEYED.items():
        rows = sa.table(table, sa.column("organization"))
        op.execute(rows.delete().where(rows.c.organization != ""))
        with op.batch_alter_table(table, recreate="auto") as batch:
            for _old, new in _INDEXES.get(table, []):
                batch.drop_index(_index_name(table, new))
            if keys is not None:
                batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.drop_column("organization")
            if keys is not None:
                batch.create_primary_key(f"pk_{table}", keys[1])
            for old, _new in _INDEXES.get(table, []):
                batch.create_index(_index_name(table, old), old, unique=False)
