"""A worker's own metrics, beside the cycle metrics of :class:`apexcal.metrics.Metrics` (same registry)."""

from __future__ import annotations

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
