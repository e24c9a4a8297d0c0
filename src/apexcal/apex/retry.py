"""When to retry an API request, and how long to wait first.

Retries are bounded twice: in attempts and in total time.  The decision is a
pure function of the error, the HTTP method, the attempt number and the time
left, so it is tested without a server; :mod:`apexcal.apex.client` runs it
inside a ``stamina`` retry loop, which adds the attempt/time stop and the
retry instrumentation.

What is retried:

* **429 Too Many Requests**, whatever the method: the server refused the
  request without acting on it.  ``Retry-After`` (seconds or an HTTP date) is
  honoured; when it asks for longer than the time budget has left, we give up
  at once rather than knock again too early.
* **502, 503, 504** and transport failures (connection refused or dropped,
  timeouts) for **idempotent** requests: GET, DELETE and PATCH.  Our PATCH
  bodies set absolute values (``{"done": true}``, never "increment"), so
  applying one twice leaves the record as applying it once does — only
  ``updated_at`` moves again, and a re-read sees the same content.
* **POST** (create) is not idempotent: a retried create after a lost answer
  makes a duplicate.  It is retried only when the connection could not be
  opened at all (connect error or connect/pool timeout), which proves that
  no byte of the request left this process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from apexcal.errors import ApiHTTPError, ApiTransportError, RateLimited, ServerError

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})

# Failures that happen before the request is written: nothing reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to retry: at most ``attempts`` tries within ``timeout`` seconds in total.

    Waits grow exponentially from ``wait_initial`` up to ``wait_max`` seconds,
    plus a random jitter of up to ``wait_jitter`` seconds so that clients do
    not retry in lockstep.  A wait never extends past the time budget, so a
    request gives up within ``timeout`` plus the duration of one attempt
    (itself bounded by the client's per-request timeouts).
    """

    attempts: int = 5
    timeout: float = 60.0
    wait_initial: float = 0.2
    wait_max: float = 10.0
    wait_jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout <= 0 or self.wait_initial < 0 or self.wait_max < 0 or self.wait_jitter < 0:
            raise ValueError("timeout must be positive and waits not negative")

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jitter included."""
        base: float = min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1))
        return base + self.wait_jitter * rng()


NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def may_retry(exc: BaseException, method: str) -> bool:
    """Whether a request with ``method`` that failed with ``exc`` may be sent again."""
    if isinstance(exc, RateLimited):
        return True
    idempotent = method.upper() in IDEMPOTENT_METHODS
    if isinstance(exc, ServerError):
        return idempotent and exc.status in RETRYABLE_STATUSES
    if isinstance(exc, ApiTransportError):
        return idempotent or isinstance(exc.__cause__, _NOT_SENT)
    return False


def may_have_applied(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` may have taken effect on the server.

    Not when the server answered with a refusal (4xx, 429 included) or with
    503 (it could not take the request), nor when the connection never opened.
    A lost answer (dropped, timed out), another 5xx (a gateway's 502 or 504
    says nothing of what the API did) or an unreadable answer may each follow
    an applied write.
    """
    if isinstance(exc, ApiHTTPError):
        return exc.status >= 500 and exc.status != 503
    if isinstance(exc, ApiTransportError):
        return not isinstance(exc.__cause__, _NOT_SENT)
    return True


def retry_delay(
    exc: BaseException,
    *,
    method: str,
    attempt: int,
    policy: RetryPolicy,
    remaining: float,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying after ``exc``, or ``None`` to give up now.

    ``attempt`` is the 1-based number of the attempt that failed and
    ``remaining`` the seconds left of the policy's time budget.
    """
    if attempt >= policy.attempts or remaining <= 0 or not may_retry(exc, method):
        return None
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        if exc.retry_after > remaining:
            return None
        return exc.retry_after
    return min(policy.backoff(attempt, rng), remaining)
