"""The apexcal daemon: scheduled sync cycles and feed builds, the feed server, signals, systemd notify.

:func:`run` is ``apexcal run`` (one config file, one organization of a
config directory, or every organization of it in one process);
:class:`Daemon` is the same process for embedding (``apexcal demo`` builds
one from an in-memory config).
"""

from __future__ import annotations

from apexcal.daemon.backoff import JobHealth, backoff_delay
from apexcal.daemon.jobs import JobOutcome, JobSpec, job_specs, retry_policy
from apexcal.daemon.main import run
from apexcal.daemon.process import exit_now
from apexcal.daemon.service import Daemon

__all__ = [
    "Daemon",
    "JobHealth",
    "JobOutcome",
    "JobSpec",
    "backoff_delay",
    "exit_now",
    "job_specs",
    "retry_policy",
    "run",
]
