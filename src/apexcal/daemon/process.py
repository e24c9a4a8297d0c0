"""Process plumbing of the daemon: running-job accounting, quiet loggers, signals, hard exit."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class InFlight:
    """Counts running jobs so shutdown can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the block as a running job."""
        with self._cond:
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()

    @property
    def count(self) -> int:
        """How many jobs run now."""
        with self._cond:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs, at most ``timeout`` seconds; return whether none does."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout=max(timeout, 0.0))


class DropOverlapWarnings(logging.Filter):
    """Drops APScheduler's warning for a firing skipped because the job still runs.

    With ``max_instances=1`` that is the designed behaviour of a slow cycle;
    the daemon logs it itself at debug level (``job.still_running``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def quiet_overlap_warnings() -> None:
    """Install :class:`DropOverlapWarnings` on APScheduler's logger (once)."""
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, DropOverlapWarnings) for f in scheduler_log.filters):
        scheduler_log.addFilter(DropOverlapWarnings())


@contextmanager
def muted(name: str) -> Iterator[None]:
    """Silence the stdlib logger ``name`` for the block."""
    logger = logging.getLogger(name)
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def ignore_signal(signum: int, frame: FrameType | None) -> None:
    """A Python-level handler that does nothing: the wakeup fd carries the signal."""


def exit_now(code: int) -> None:
    """Flush logs and standard streams, then end the process without waiting for threads."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
