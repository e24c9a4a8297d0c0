"""A worker's own metrics, beside the cycle metrics of :class:`apexcal.metrics.Metrics` (same registry)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

from apexcal.metrics import Metrics

QUEUE_QUERY = """
SELECT job.task_name, count(*) AS n,
       COALESCE(EXTRACT(EPOCH FROM (now() - min(deferred.at))), 0)::float AS oldest
  FROM procrastinate_jobs job
  LEFT JOIN procrastinate_events deferred
         ON deferred.job_id = job.id AND deferred.type = 'deferred'
 WHERE job.status = 'todo'
 GROUP BY job.task_name
"""


class WorkerMetrics:
    """Jobs by task and outcome, jobs reaped, and the queue's depth and oldest waiting job."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.jobs = Counter(
            "apexcal_worker_jobs", "Jobs this worker ran, by task and outcome.",
            ["task", "outcome"], registry=registry,
        )
        self.reaped = Counter(
            "apexcal_worker_jobs_reaped",
            "Jobs finished as failed by this worker's reaper (dead worker, past twice the maximum duration).",
            ["reason"], registry=registry,
        )
        self.depth = Gauge(
            "apexcal_queue_jobs", "Jobs waiting in the queue, by task.", ["task"], registry=registry
        )
        self.oldest = Gauge(
            "apexcal_queue_oldest_job_seconds", "Age of the oldest waiting job, by task.",
            ["task"], registry=registry,
        )

    def queue(self, rows: list[dict[str, object]], tasks: list[str]) -> None:
        """Set the queue gauges from :data:`QUEUE_QUERY`'s rows (tasks absent from them: 0)."""
        seen = {str(r["task_name"]): r for r in rows}
        for task in tasks:
            row = seen.get(task)
            self.depth.labels(task).set(float(row["n"]) if row else 0.0)  # type: ignore[arg-type]
            self.oldest.labels(task).set(float(row["oldest"]) if row else 0.0)  # type: ignore[arg-type]


class OrganizationMetrics(Metrics):
    """A worker's metrics as one organization's jobs record them: ``target`` and ``feed`` labels read ``<org>/<name>``.

    A worker runs the targets of every organization, and two organizations
    may both have a target ``jane``; the view shares the worker's registry
    and collectors and only qualifies the names (configured names hold no
    ``/``, so a name is qualified once however the methods call each other).
    """

    def __init__(self, parent: Metrics, organization: str) -> None:
        self.__dict__.update(parent.__dict__)
        self._prefix = f"{organization}/"

    def _qualified(self, name: str) -> str:
        return name if "/" in name else self._prefix + name

    def cycle_finished(
        self, target: str, summary: Mapping[str, Any] | object, seconds: float,
        *, at: datetime | None = None,
    ) -> None:
        """As :meth:`Metrics.cycle_finished`, for ``<org>/<target>``."""
        super().cycle_finished(self._qualified(target), summary, seconds, at=at)

    def cycle_failed(
        self, target: str, kind: str, seconds: float,
        *, summary: Mapping[str, Any] | object | None = None,
    ) -> None:
        """As :meth:`Metrics.cycle_failed`, for ``<org>/<target>``."""
        super().cycle_failed(self._qualified(target), kind, seconds, summary=summary)

    def error(self, target: str, kind: str) -> None:
        """As :meth:`Metrics.error`, for ``<org>/<target>``."""
        super().error(self._qualified(target), kind)

    def writeback(self, target: str, count: int = 1) -> None:
        """As :meth:`Metrics.writeback`, for ``<org>/<target>``."""
        super().writeback(self._qualified(target), count)

    def caldav_request(self, target: str, method: str, status: int) -> None:
        """As :meth:`Metrics.caldav_request`, for ``<org>/<target>``."""
        super().caldav_request(self._qualified(target), method, status)

    def feed_built(self, name: str, at: datetime, *, changed: bool = True) -> None:
        """As :meth:`Metrics.feed_built`, for ``<org>/<feed>``."""
        super().feed_built(self._qualified(name), at, changed=changed)
