"""What the workers' queue holds, for ``apexcal status``: jobs waiting and running per lock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from apexcal.worker.runner import make_app

_COUNTS = """
SELECT lock, status::text AS status, count(*) AS n FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND lock IS NOT NULL
 GROUP BY lock, status
"""


@dataclass(frozen=True, kw_only=True)
class QueueState:
    """Jobs waiting (``todo``) and running (``doing``) by lock (``target:<org>/<name>``, …)."""

    waiting: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)

    def describe(self, lock: str) -> str:
        """``running``, ``queued``, ``running, queued`` or ``-`` for one item."""
        parts = (["running"] if self.running[lock] else []) + (
            ["queued"] if self.waiting[lock] else []
        )
        return ", ".join(parts) or "-"


def read_queue(url: str, queue_schema: str) -> QueueState:
    """The queue's state in the database at ``url``."""
    app = make_app(url, queue_schema, pool_size=1)
    with app.open():
        rows = app.connector.get_sync_connector().execute_query_all(query=_COUNTS)
    state = QueueState()
    for row in rows:
        (state.running if row["status"] == "doing" else state.waiting)[row["lock"]] += row["n"]
    return state
