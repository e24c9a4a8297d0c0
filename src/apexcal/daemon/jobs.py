"""The scheduled jobs of the daemon: one cycle of a target, one build of a feed.

Each job is a function of the config in force when it fires, the state store
and the metrics; it never raises (a scheduler thread must survive anything),
and reports how it went as a :class:`JobOutcome`.  A target job runs
:func:`apexcal.sync.cycle.run_target_cycle` — pull (with the reconcile sweep
when ``sync.reconcile_interval`` is due), detect, write back, plan, apply,
record — with a cooperative ``should_stop`` the engine polls between steps and
objects.  A feed job pulls the CRM's changes itself (so a config with feeds
and no targets stays current, and a change reaches a feed within the feed's
own interval whatever the targets do), then rebuilds that feed from the
mirror; a feed whose pull failed is not rebuilt, so its build time keeps
meaning "current as of".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.retry import RetryPolicy
from apexcal.clock import utcnow
from apexcal.config import Config
from apexcal.errors import ApexcalError, TargetBusy
from apexcal.metrics import Metrics
from apexcal.state import Store

log = structlog.get_logger("apexcal.daemon")

# The API client's retries inside one job never outlast this share of the
# shutdown bound, so SIGTERM is answered in time even during an outage.
_RETRY_SHARE_OF_SHUTDOWN = 1 / 3
_RETRY_MAX_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """How one run of a job went: ``ok``, ``failed`` (back off), ``cancelled`` or ``busy``."""

    kind: str
    name: str
    result: str
    summary: str
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the job should back off."""
        return self.result == "failed"


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One scheduled job: its id, what it runs, and how often."""

    id: str
    kind: str
    name: str
    interval: timedelta


def job_specs(config: Config) -> list[JobSpec]:
    """The jobs a config asks for: one per target, one per feed."""
    specs = [
        JobSpec(id=f"target:{t.name}", kind="target", name=t.name,
                interval=t.interval or config.sync.interval)
        for t in config.targets
    ]
    specs += [
        JobSpec(id=f"feed:{f.name}", kind="feed", name=f.name,
                interval=f.interval or config.sync.interval)
        for f in config.feeds
    ]
    return specs


def retry_policy(config: Config, interval_seconds: float) -> RetryPolicy:
    """API retries for a scheduled job: bounded by the job's interval and the shutdown bound."""
    budget = min(
        interval_seconds,
        config.sync.shutdown_timeout.total_seconds() * _RETRY_SHARE_OF_SHUTDOWN,
        _RETRY_MAX_SECONDS,
    )
    budget = max(budget, 1.0)
    return RetryPolicy(
        attempts=3, timeout=budget, wait_initial=0.2, wait_max=max(0.2, budget / 3), wait_jitter=0.2
    )


def api_client(config: Config, metrics: Metrics, interval_seconds: float) -> ApexClient:
    """A fresh API client for one job run (no state shared between jobs or runs)."""
    return ApexClient.for_source(
        config.source,
        retry=retry_policy(config, interval_seconds),
        on_request=metrics.api_request,
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def run_target(
    config: Config,
    name: str,
    store: Store,
    metrics: Metrics,
    *,
    interval_seconds: float,
    should_stop: Callable[[], bool],
) -> JobOutcome:
    """One cycle of target ``name``; the engine logs the cycle's own lines and summary."""
    from apexcal.errors import CycleCancelled
    from apexcal.sync.cycle import run_target_cycle

    target = config.target(name)
    try:
        with api_client(config, metrics, interval_seconds) as client:
            summary = run_target_cycle(
                config, target, store, client=client, metrics=metrics, should_stop=should_stop
            )
    except CycleCancelled:
        log.info("target.cancelled", target=name)
        return JobOutcome(kind="target", name=name, result="cancelled", summary=f"{name}: stopped")
    except TargetBusy as exc:
        log.info("target.busy", target=name, error=str(exc))
        return JobOutcome(kind="target", name=name, result="busy", summary=f"{name}: busy")
    except ApexcalError as exc:
        # run_target_cycle has recorded and logged the failure (sync.cycle_failed).
        return JobOutcome(
            kind="target", name=name, result="failed",
            summary=f"{name}: failed ({type(exc).__name__})", error=_error_text(exc),
        )
    except Exception as exc:  # a bug: log it with its traceback, keep the daemon alive
        log.exception("target.crashed", target=name)
        metrics.error(name, "crash")
        store_failure(store, name, exc)
        return JobOutcome(
            kind="target", name=name, result="failed",
            summary=f"{name}: crashed ({type(exc).__name__})", error=_error_text(exc),
        )
    return JobOutcome(kind="target", name=name, result="ok", summary=summary.line())


def store_failure(store: Store, name: str, exc: BaseException) -> None:
    """Record an unexpected failure of a target in the store, if the store still answers."""
    try:
        store.record_failure(name, utcnow(), type(exc).__name__, _error_text(exc))
    except ApexcalError:
        log.warning("state.record_failure_failed", target=name)


def run_feed(
    config: Config,
    name: str,
    store: Store,
    metrics: Metrics,
    *,
    interval_seconds: float,
    now: datetime | None = None,
) -> JobOutcome:
    """Pull the CRM's changes, then rebuild feed ``name`` (and its per-user files)."""
    from apexcal.feeds import build_feed, feed_today
    from apexcal.sync.pull import pull

    feed = config.feed(name)
    when = now or utcnow()
    label = f"feed:{name}"
    with structlog.contextvars.bound_contextvars(
        feed=name, organization_id=config.source.organization_id
    ):
        try:
            with api_client(config, metrics, interval_seconds) as client:
                pulled = pull(config, store, client, now=when)
            results = build_feed(feed, config, store, today=feed_today(config))
        except (ApexcalError, OSError) as exc:
            kind = type(exc).__name__
            metrics.error(label, kind)
            log.error("feed.job_failed", kind=kind, error=_error_text(exc))
            # Kept for `apexcal status`; a store that cannot take it is already the error.
            with contextlib.suppress(ApexcalError):
                store.record_feed_failure(name, utcnow(), kind, _error_text(exc))
            return JobOutcome(
                kind="feed", name=name, result="failed",
                summary=f"feed {name}: failed ({kind})", error=_error_text(exc),
            )
        except Exception as exc:  # a bug: log it with its traceback, keep the daemon alive
            log.exception("feed.crashed")
            metrics.error(label, "crash")
            return JobOutcome(
                kind="feed", name=name, result="failed",
                summary=f"feed {name}: crashed ({type(exc).__name__})", error=_error_text(exc),
            )
    changed = 0
    for result in results:
        metrics.feed_built(result.name, utcnow(), changed=result.changed)
        changed += result.changed
    events = sum(r.count for r in results if r.name == name)
    return JobOutcome(
        kind="feed", name=name, result="ok",
        summary=f"feed {name}: ok pulled={pulled.changed} files={len(results)} changed={changed} events={events}",
    )
