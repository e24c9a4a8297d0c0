"""What the daemon does once at start, before and beside its first jobs: the API access check, warnings, the initial pull.

:func:`check_access` sends one API request per organization before
``READY=1``: a token the API refuses is an operator error.  :func:`prime`
pulls the CRM once, in a thread of its own, so the first cycles do not all
pull everything at once; each organization's jobs wait until it is primed
(:meth:`~apexcal.daemon.jobs.JobRunner.prime`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from apexcal.clock import utcnow
from apexcal.config import Config
from apexcal.daemon.jobs import JobRunner, JobSpec, job_specs
from apexcal.daemon.process import InFlight
from apexcal.metrics import Metrics
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# The API retry budget of the access check at start.
_ACCESS_CHECK_S = 5.0


def check_access(key: str, config: Config, metrics: Metrics, *, qualify: bool) -> None:
    """One API request at start: a refused token is an operator error; an absent API is not.

    401/403 propagate (the CLI prints one line, exit 2); with ``qualify``
    (a config directory) the line names the organization and its file.
    Anything else — the API down, slow or failing — is logged and left to
    the jobs, which back off and recover on their own.
    """
    from apexcal.daemon.jobs import api_client
    from apexcal.errors import ApexcalError, Forbidden, NotAuthenticated

    if not job_specs(config):
        return
    try:
        with api_client(config, metrics, _ACCESS_CHECK_S) as client:
            client.check_access()
    except (NotAuthenticated, Forbidden) as exc:
        if not qualify:
            raise
        # The operator's one line names the organization and its file.
        raise type(exc)(
            f"{exc.server_message} (organization {key}, {config.path})",
            method=exc.method, url=exc.url, status=exc.status, name=exc.name,
            class_name=exc.class_name,
        ) from exc
    except ApexcalError as exc:
        where = {"organization": key} if qualify else {}
        log.warning("daemon.api_unavailable_at_start", kind=type(exc).__name__,
                    error=str(exc), **where)


def prime(
    organizations: Mapping[str, Config],
    *,
    jobs: JobRunner,
    inflight: InFlight,
    metrics: Metrics,
    store_of: Callable[[str], Store],
    qualify: bool,
) -> None:
    """Pull the CRM once before the first cycles, so they do not all pull everything at once."""
    try:
        for key, config in organizations.items():
            if jobs.stopping.is_set():
                return
            if job_specs(config):
                _prime_one(key, config, inflight=inflight, metrics=metrics, store_of=store_of,
                           qualify=qualify)
            jobs.prime(key)
    finally:
        jobs.primed.set()


def _prime_one(
    key: str,
    config: Config,
    *,
    inflight: InFlight,
    metrics: Metrics,
    store_of: Callable[[str], Store],
    qualify: bool,
) -> None:
    from apexcal.daemon.jobs import api_client
    from apexcal.errors import ApexcalError
    from apexcal.sync.pull import pull

    where = {"organization": key} if qualify else {}
    try:
        with inflight.track(), structlog.contextvars.bound_contextvars(
            job="initial-pull", organization_id=config.source.organization_id, **where
        ):
            seconds = min(s.interval for s in job_specs(config)).total_seconds()
            with api_client(config, metrics, seconds) as client:
                result = pull(config, store_of(key), client, now=utcnow())
            log.info("daemon.initial_pull", changed=result.changed, listed=result.listed)
    except ApexcalError as exc:
        # The jobs pull for themselves, and back off if the API stays away.
        log.warning("daemon.initial_pull_failed", kind=type(exc).__name__, error=str(exc),
                    **where)
    except Exception:
        log.exception("daemon.initial_pull_crashed", **where)


def warn_about(config: Config, specs: list[JobSpec]) -> None:
    """Warn about jobs whose interval is not shorter than the feed server's ``stale_after``."""
    server = config.server
    if server is None:
        return
    for spec in specs:
        if spec.interval >= server.stale_after:
            log.warning(
                "config.interval_exceeds_stale_after",
                job=spec.id,
                interval_seconds=spec.interval.total_seconds(),
                stale_after_seconds=server.stale_after.total_seconds(),
            )
