"""The one exception tree of apexcal.

Every error the program raises on purpose derives from :class:`ApexcalError`.
Library exceptions (httpx, caldav, sqlalchemy, icalendar) are translated at
the adapter that calls the library (``raise OurError(...) from exc``) and do
not travel further.

::

    ApexcalError
    ├── UserError                    operator mistake: one line on stderr, exit 2
    │   ├── ConfigError              bad config file or value (carries problems)
    │   ├── SecretError              a secret file/env/credential is unreadable
    │   └── UsageError               bad command-line argument (date, type name…)
    ├── ApiError                     the AchieveApex API side
    │   ├── ApiTransportError        connect/read failure, timeout (no HTTP answer)
    │   ├── ApiProtocolError         an answer we cannot read (malformed JSON, shape)
    │   └── ApiHTTPError             an HTTP error answer (carries status, name, message)
    │       ├── BadRequest           400
    │       ├── NotAuthenticated     401
    │       ├── Forbidden            403
    │       ├── NotFound             404
    │       ├── RateLimited          429 (carries retry_after)
    │       └── ServerError          5xx
    ├── InvalidRecord                a malformed API record (carries record id)
    ├── ICalError                    the iCalendar side
    │   └── RemoteParseError         a remote object we cannot read (carries href)
    ├── CalDAVError                  the CalDAV side (carries url/href, status)
    │   ├── CalDAVTransportError     no HTTP answer
    │   ├── CalDAVAuthError          401/403 from the server
    │   ├── PreconditionFailed       412 on If-Match / If-None-Match (carries href, etag)
    │   ├── UidConflict              the server refuses a duplicate UID (409 / 412 no-uid-conflict)
    │   ├── InvalidSyncToken         DAV:valid-sync-token precondition
    │   ├── CalendarNotFound         the target's collection is missing and create is off
    │   └── ObjectTooLarge           an object over the sink's size limit (nothing sent)
    ├── StateError                   the state store (database) failed
    └── SyncError                    a cycle could not complete
        ├── MassDeleteRefused        a cycle would delete too much without --force
        └── CycleCancelled           a stop was requested; what was written is recorded

``UserError`` and the operator-facing subclasses of ``ApiHTTPError`` (401/403)
and transport errors are what the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ApexcalError(Exception):
    """Root of every error apexcal raises on purpose."""


# --- operator mistakes --------------------------------------------------------


class UserError(ApexcalError):
    """An operator mistake: reported as one line on stderr with exit code 2."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One problem found in a config file: where and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}: " if self.path else f"{self.file}: "
        return f"{where}{self.message}"


class ConfigError(UserError):
    """The config is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SecretError(UserError):
    """A secret could not be read; ``key`` names the config key, never the value."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class UsageError(UserError):
    """A bad command-line argument."""


# --- the API side -------------------------------------------------------------


class ApiError(ApexcalError):
    """Something went wrong talking to the AchieveApex API."""


class ApiTransportError(ApiError):
    """No HTTP answer: connection refused or dropped, DNS failure, timeout."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: {message}")


class ApiProtocolError(ApiError):
    """An answer that is not what the API documents (malformed JSON, wrong shape)."""

    def __init__(self, message: str, *, method: str, url: str, status: int | None = None) -> None:
        self.method = method
        self.url = url
        self.status = status
        super().__init__(f"{method} {url}: {message}")


class ApiHTTPError(ApiError):
    """An HTTP error answer, usually with a Feathers error body."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        name: str | None = None,
        class_name: str | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        self.method = method
        self.url = url
        self.name = name or type(self).__name__
        self.class_name = class_name
        self.server_message = message
        super().__init__(f"{method} {url}: {self.status} {self.name}: {message}")


class BadRequest(ApiHTTPError):
    status = 400


class NotAuthenticated(ApiHTTPError):
    status = 401


class Forbidden(ApiHTTPError):
    status = 403


class NotFound(ApiHTTPError):
    status = 404


class RateLimited(ApiHTTPError):
    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(ApiHTTPError):
    status = 500


class InvalidRecord(ApexcalError):
    """A record from the API that does not fit its model; it is skipped, not fatal."""

    def __init__(self, kind: str, record_id: object, reason: str) -> None:
        self.kind = kind
        self.record_id = record_id
        self.reason = reason
        super().__init__(f"{kind} {record_id!r}: {reason}")


# --- the iCalendar side -------------------------------------------------------


class ICalError(ApexcalError):
    """An iCalendar problem."""


class RemoteParseError(ICalError):
    """A calendar object on a server that we cannot read."""

    def __init__(self, href: str, reason: str) -> None:
        self.href = href
        self.reason = reason
        super().__init__(f"{href}: {reason}")


# --- the CalDAV side ----------------------------------------------------------


class CalDAVError(ApexcalError):
    """Something went wrong talking to a CalDAV server."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        self.url = url
        self.status = status
        prefix = f"{url}: " if url else ""
        super().__init__(f"{prefix}{message}")


class CalDAVTransportError(CalDAVError):
    """No HTTP answer from the CalDAV server."""


class CalDAVAuthError(CalDAVError):
    """The CalDAV server refused our credentials (401/403)."""


class PreconditionFailed(CalDAVError):
    """412: the object changed (If-Match) or exists (If-None-Match: *)."""

    def __init__(self, href: str, *, etag: str | None = None, status: int = 412) -> None:
        self.href = href
        self.etag = etag
        super().__init__(f"precondition failed (etag {etag!r})", url=href, status=status)


class UidConflict(CalDAVError):
    """The server already holds an object with this UID under another href."""

    def __init__(self, href: str, uid: str, *, status: int, existing_href: str | None = None) -> None:
        self.href = href
        self.uid = uid
        self.existing_href = existing_href
        super().__init__(
            f"UID {uid} already exists on the server"
            + (f" at {existing_href}" if existing_href else ""),
            url=href,
            status=status,
        )


class InvalidSyncToken(CalDAVError):
    """The server no longer accepts our sync token (DAV:valid-sync-token)."""


# --- state and sync -----------------------------------------------------------


class StateError(ApexcalError):
    """The state store failed."""


class SyncError(ApexcalError):
    """A sync cycle could not complete."""


class MassDeleteRefused(SyncError):
    """A cycle would delete more than the configured share of a target's objects."""

    def __init__(self, target: str, would_delete: int, total: int, max_share: float) -> None:
        self.target = target
        self.would_delete = would_delete
        self.total = total
        self.max_share = max_share
        super().__init__(
            f"target {target!r}: refusing to delete {would_delete} of {total} objects "
            f"(more than {max_share:.0%}); run again with --force if this is intended"
        )


# --- raised by the sync layer (sinks and the cycle) ----------------------------


class CalendarNotFound(CalDAVError):
    """The target's calendar collection does not exist and creating it was not asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(
            "calendar does not exist; set create = true to create it", url=url, status=404
        )


class ObjectTooLarge(CalDAVError):
    """A calendar object larger than a sink will send (see ``MAX_OBJECT_BYTES``)."""

    def __init__(self, href: str, size: int, limit: int) -> None:
        self.href = href
        self.size = size
        self.limit = limit
        super().__init__(f"object of {size} bytes exceeds the {limit}-byte limit", url=href)


class CycleCancelled(SyncError):
    """The cycle was asked to stop; what was written so far is recorded."""
