"""Prometheus metrics of one apexcal process, in a registry of its own.

Each :class:`Metrics` owns a fresh :class:`prometheus_client.CollectorRegistry`
instead of the library's process-global default, so several daemons (or
several tests) in one process never collide.  The daemon, the sync engine and
the adapters call the small methods below; the feed server exposes
:attr:`Metrics.registry` on ``/metrics``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from apexcal.clock import Clock, utcnow

# Cycle durations: a no-change cycle takes well under a second, an initial
# sync of a large calendar several minutes.
CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# Object actions counted per target.
ACTIONS = ("created", "updated", "deleted")

_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


def _endpoint_label(method: str) -> str:
    """A low-cardinality label for an API request: ids and query strings removed.

    ``"GET /activities/123?x=1"`` becomes ``"GET /activities/:id"``; a bare
    HTTP method stays as it is.
    """
    label = method.split("?", 1)[0].strip()
    return _ID_SEGMENT.sub("/:id", label)


def _summary_count(summary: Mapping[str, Any] | object, *keys: str) -> int:
    """The first of ``keys`` present in ``summary`` (a mapping or an object), else 0."""
    for key in keys:
        value = summary.get(key) if isinstance(summary, Mapping) else getattr(summary, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


class Metrics:
    """The metrics of one process: targets, cycles, requests and feeds."""

    def __init__(self, *, clock: Clock = utcnow) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        r = self.registry
        self.target_last_success = Gauge(
            "apexcal_target_last_success_timestamp_seconds",
            "Unix time of the last successful cycle of a target.",
            ["target"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            "apexcal_cycle_duration_seconds",
            "Wall-clock duration of target cycles, successful or not.",
            ["target"],
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.cycles = Counter(
            "apexcal_cycles",
            "Target cycles by outcome (ok or failed).",
            ["target", "outcome"],
            registry=r,
        )
        self.objects = Counter(
            "apexcal_objects",
            "Calendar objects written by a target, by action (created, updated, deleted).",
            ["target", "action"],
            registry=r,
        )
        self.writebacks = Counter(
            "apexcal_writebacks",
            "Completion changes written back to the CRM, by target.",
            ["target"],
            registry=r,
        )
        self.errors = Counter(
            "apexcal_errors",
            "Errors by target and kind (e.g. api_transport, caldav_auth, conflict).",
            ["target", "kind"],
            registry=r,
        )
        self.api_requests = Counter(
            "apexcal_api_requests",
            "Requests to the AchieveApex API by method/endpoint and HTTP status (0: no answer).",
            ["method", "status"],
            registry=r,
        )
        self.caldav_requests = Counter(
            "apexcal_caldav_requests",
            "Requests to CalDAV servers by target, method and HTTP status (0: no answer).",
            ["target", "method", "status"],
            registry=r,
        )
        self.feed_builds = Counter(
            "apexcal_feed_builds",
            "Feed files written (only builds whose bytes changed).",
            ["feed"],
            registry=r,
        )
        self.feed_last_build = Gauge(
            "apexcal_feed_last_build_timestamp_seconds",
            "Unix time of the last feed build (changed or not).",
            ["feed"],
            registry=r,
        )
        self.feed_requests = Counter(
            "apexcal_feed_requests",
            "Requests to the feed server's /feeds/ paths by feed and HTTP status.",
            ["feed", "status"],
            registry=r,
        )

    # --- targets ------------------------------------------------------------

    def cycle_finished(
        self,
        target: str,
        summary: Mapping[str, Any] | object,
        seconds: float,
        *,
        at: datetime | None = None,
    ) -> None:
        """Record a successful cycle of ``target``.

        ``summary`` is the cycle's summary (a mapping or an object with
        ``created``, ``updated``, ``deleted`` and ``written_back`` counts;
        missing counts are zero).  ``at`` defaults to the clock.
        """
        when = at if at is not None else self._clock()
        self.target_last_success.labels(target=target).set(when.timestamp())
        self.cycle_duration.labels(target=target).observe(seconds)
        self.cycles.labels(target=target, outcome="ok").inc()
        self._count_work(target, summary)

    def cycle_failed(
        self,
        target: str,
        kind: str,
        seconds: float,
        *,
        summary: Mapping[str, Any] | object | None = None,
    ) -> None:
        """Record a failed cycle of ``target`` (its duration and the error kind).

        A cycle that failed only for some objects still wrote the others: pass
        its ``summary`` so they are counted too.
        """
        self.cycle_duration.labels(target=target).observe(seconds)
        self.cycles.labels(target=target, outcome="failed").inc()
        self.error(target, kind)
        if summary is not None:
            self._count_work(target, summary)

    def _count_work(self, target: str, summary: Mapping[str, Any] | object) -> None:
        for action in ACTIONS:
            count = _summary_count(summary, action)
            if count:
                self.objects.labels(target=target, action=action).inc(count)
        written = _summary_count(summary, "written_back", "writebacks")
        if written:
            self.writebacks.labels(target=target).inc(written)

    def error(self, target: str, kind: str) -> None:
        """Count one error of ``kind`` for ``target``."""
        self.errors.labels(target=target, kind=kind).inc()

    def writeback(self, target: str, count: int = 1) -> None:
        """Count ``count`` completion writebacks for ``target``."""
        self.writebacks.labels(target=target).inc(count)

    # --- requests -----------------------------------------------------------

    def api_request(self, method: str, status: int) -> None:
        """Count one API request; ``method`` may be ``"GET"`` or ``"GET /activities/12"``."""
        self.api_requests.labels(method=_endpoint_label(method), status=str(status)).inc()

    def caldav_request(self, target: str, method: str, status: int) -> None:
        """Count one CalDAV request of ``target``."""
        self.caldav_requests.labels(target=target, method=method.upper(), status=str(status)).inc()

    def caldav_hook(self, target: str) -> Callable[[str, int], None]:
        """An ``on_request(method, status)`` callback counting ``target``'s CalDAV requests."""

        def on_request(method: str, status: int) -> None:
            self.caldav_request(target, method, status)

        return on_request

    # --- feeds --------------------------------------------------------------

    def feed_built(self, name: str, at: datetime, *, changed: bool = True) -> None:
        """Record a build of feed ``name`` at ``at``; only changed builds are counted."""
        self.feed_last_build.labels(feed=name).set(at.timestamp())
        if changed:
            self.feed_builds.labels(feed=name).inc()

    def feed_request(self, name: str, status: int) -> None:
        """Count one request to a feed URL (``name`` is ``"-"`` when no feed was identified)."""
        self.feed_requests.labels(feed=name, status=str(status)).inc()
