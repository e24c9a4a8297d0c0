"""Per-job backoff after failures (pure): how long a failing target or feed waits before trying again.

A job that fails waits its interval after the first failure, then twice that,
four times… up to ``sync.backoff_max`` (never less than the interval), and
goes back to its plain interval on the first success.  The scheduler keeps
firing the job at its interval; a firing before ``not_before`` is skipped, so
the schedule itself never drifts and a reload needs no special case.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


def backoff_delay(interval: timedelta, failures: int, ceiling: timedelta) -> timedelta:
    """The wait after ``failures`` consecutive failures: interval × 2^(failures − 1), capped.

    The cap is ``max(ceiling, interval)``: backing off never makes a job run
    more often than its interval.  No failures, no wait.
    """
    if failures <= 0:
        return timedelta(0)
    cap = max(ceiling, interval).total_seconds()
    # Doubling past the cap only risks overflow: stop at 2**40.
    seconds = interval.total_seconds() * 2.0 ** min(failures - 1, 40)
    return timedelta(seconds=min(cap, seconds))


@dataclass(frozen=True, kw_only=True)
class JobHealth:
    """What the daemon remembers about one job between runs."""

    failures: int = 0
    not_before: datetime | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    last_ok: datetime | None = None

    def due(self, now: datetime) -> bool:
        """Whether a firing at ``now`` should run (False while backing off)."""
        return self.not_before is None or now >= self.not_before

    def failed(
        self, now: datetime, error: str, *, interval: timedelta, ceiling: timedelta
    ) -> JobHealth:
        """The state after a failure at ``now``."""
        failures = self.failures + 1
        return replace(
            self,
            failures=failures,
            not_before=now + backoff_delay(interval, failures, ceiling),
            failing_since=self.failing_since or now,
            last_error=error,
        )

    def succeeded(self, now: datetime) -> JobHealth:
        """The state after a success at ``now`` (backoff reset)."""
        return JobHealth(last_ok=now)
