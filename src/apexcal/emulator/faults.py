"""Fault injection and request recording for the emulator (driven through ``/__admin/``).

A fault applies to the next ``count`` requests that match its optional ``method``
and ``path`` prefix (admin requests never match).  Kinds:

- ``status``      answer with ``status`` (default 503) and a Feathers error body;
- ``rate_limit``  answer 429 TooManyRequests with ``Retry-After: retry_after`` (default 1);
- ``delay``       wait ``seconds`` (default 1.0), then answer normally;
- ``drop``        close the connection without any answer (the request is not served);
- ``drop_answer`` serve the request (a write is applied), then close the connection
                  without its answer: the client cannot tell whether it was applied;
- ``malformed``   answer 200 with a truncated JSON body;
- ``short_page``  a find answers at most ``size`` records (default 1) although more
                  match and ``limit`` says more (only find requests match this kind).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

KINDS = frozenset(
    {"status", "rate_limit", "delay", "drop", "drop_answer", "malformed", "short_page"}
)


@dataclass(kw_only=True)
class Fault:
    """One queued fault and how many more requests it applies to."""

    kind: str
    remaining: int
    status: int = 503
    retry_after: float = 1
    seconds: float = 1.0
    size: int = 1
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str, *, find: bool) -> bool:
        """Whether this fault applies to a request."""
        if self.method and self.method.upper() != method:
            return False
        if self.path and not path.startswith(self.path):
            return False
        return find if self.kind == "short_page" else True


def make_fault(spec: Any) -> Fault:
    """Build a fault from an admin request body; ``ValueError`` on a bad one."""
    if not isinstance(spec, dict):
        raise ValueError("the body must be a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(sorted(KINDS))})")
    count = spec.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive integer")
    known = {"kind", "count", "status", "retry_after", "seconds", "size", "method", "path"}
    extra = set(spec) - known
    if extra:
        raise ValueError(f"unknown fault parameter {sorted(extra)[0]!r}")
    fault = Fault(kind=kind, remaining=count)
    for key in ("status", "size"):
        if key in spec:
            if not isinstance(spec[key], int):
                raise ValueError(f"{key} must be an integer")
            setattr(fault, key, spec[key])
    for key in ("retry_after", "seconds"):
        if key in spec:
            if not isinstance(spec[key], int | float) or spec[key] < 0:
                raise ValueError(f"{key} must be a non-negative number")
            setattr(fault, key, spec[key])
    for key in ("method", "path"):
        if key in spec:
            setattr(fault, key, str(spec[key]))
    if fault.kind == "status" and not 400 <= fault.status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    return fault


class FaultQueue:
    """Pending faults, consumed in the order they were queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, *, find: bool) -> Fault | None:
        """The first fault matching a request (its count decremented), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, find=find):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def pending(self) -> list[dict[str, Any]]:
        """The pending faults, for the admin endpoint."""
        with self._lock:
            return [dict(vars(f)) for f in self._faults]


class RequestLog:
    """Counts of requests (total, by route) and the most recent request lines."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.total = 0
        self.by_route: Counter[str] = Counter()
        self.recent: deque[dict[str, str]] = deque(maxlen=keep)

    def record(self, *, method: str, path: str, route: str, query: str) -> None:
        """Count one request; ``query`` is the raw query string."""
        from urllib.parse import unquote_plus

        with self._lock:
            self.total += 1
            self.by_route[f"{method} {route}"] += 1
            line = f"{method} {path}" + (f"?{unquote_plus(query)}" if query else "")
            self.recent.append({"method": method, "path": path, "query": query, "line": line})

    def clear(self) -> None:
        """Zero the counters and forget the recent requests."""
        with self._lock:
            self.total = 0
            self.by_route.clear()
            self.recent.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"total", "by_route", "recent"}`` as JSON-ready data."""
        with self._lock:
            return {
                "total": self.total,
                "by_route": dict(self.by_route),
                "recent": list(self.recent),
            }
