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
    │   │   └── UnreadableSecrets    every unreadable secret at once (carries problems)
    │   ├── UsageError               bad command-line argument (date, type name…)
    │   │   └── UnknownActivityType  --type names no type of the organization
    │   ├── QueryError               a filter the API's query parser would misread
    │   ├── StoreUnavailable         the state store cannot be opened (also a StoreFailure)
    │   ├── ServerStartError         the feed server cannot listen (address in use…)
    │   └── DemoError                the demo cannot start (Radicale missing, no port)
    ├── ApiError                     the AchieveApex API side
    │   ├── ApiTransportError        connect/read failure, timeout (no HTTP answer)  [exit 2]
    │   ├── ApiProtocolError         an answer we cannot read (malformed JSON, shape)  [exit 2]
    │   └── ApiHTTPError             an HTTP error answer (carries status, name, message)
    │       ├── BadRequest           400
    │       ├── NotAuthenticated     401  [exit 2]
    │       ├── Forbidden            403  [exit 2]
    │       ├── NotFound             404
    │       ├── RateLimited          429 (carries retry_after)
    │       └── ServerError          5xx
    ├── InvalidRecord                a malformed API record (carries record id)
    ├── ICalError                    the iCalendar side
    │   ├── RemoteParseError         a remote object we cannot read (carries href)
    │   ├── ContentLineError         data that is not an iCalendar object (carries line)
    │   ├── Unmappable               an activity that cannot become the component (carries id)
    │   ├── TemplateError            a bad summary/URL template (also a ValueError)
    │   ├── TriggerError             a reminder trigger we cannot read (also a ValueError)
    │   └── UnknownTimezone          a zone name tzdata does not know
    ├── CalDAVError                  the CalDAV side (carries url/href, status)
    │   ├── CalDAVTransportError     no HTTP answer
    │   ├── CalDAVAuthError          401/403 from the server
    │   ├── PreconditionFailed       412 on If-Match / If-None-Match (carries href, etag)
    │   ├── UidConflict              the server refuses a duplicate UID (no-uid-conflict; Cyrus: 403 unique-scheduling-object-resource, per account)
    │   ├── InvalidSyncToken         DAV:valid-sync-token precondition
    │   ├── CalendarNotFound         the target's collection is missing and create is off
    │   ├── ObjectTooLarge           an object over the sink's size limit (nothing sent)
    │   └── ObjectsUnread            a read missed objects present on the server (carries found, unread)
    ├── FeedBuildError               some feeds could not be written (carries failures, results)
    ├── EmulatorHTTPError            an error answer of the API emulator, a test peer (carries status)
    │   └── EmulatorQueryError       a query or body the emulated service refuses (400)
    ├── StateError                   the state store (database) failed
    │   ├── StoreFailure             an operation failed (carries operation, reason)
    │   └── TargetBusy               another cycle holds the target's lock
    └── SyncError                    a cycle could not complete
        ├── MassDeleteRefused        a cycle would delete too much without --force
        └── CycleCancelled           a stop was requested; what was written is recorded

Outside the tree are signals that never reach an operator: two plain
``Exception`` subclasses caught by the sync code that raises them,
``SyncUnsupported`` (``apexcal.sync.caldav.changes``: the collection has no
sync-collection, so it is listed by PROPFIND) and ``_NotStarted``
(``apexcal.sync.sink``: a write left unsent because a stop was asked); and two
``ValueError`` subclasses of the pure reading of editable fields
(``apexcal.ical.editable``), ``_Unrepresentable`` and ``NotWritable``: a
calendar value that cannot become the activity's field (the text says why);
and the two ``ValueError`` subclasses of reading a feed URL's filter
(``apexcal.feeds.views``), ``FilterSyntaxError`` and ``UnknownType``, which
``apexcal feed url`` turns into its one line and a feed build skips.

Exit codes: each class says in ``exit_code`` what the CLI does when it ends a
command.  ``UserError`` and the classes marked ``[exit 2]`` above (a refused
token, an unreachable or unreadable API) are the operator's to fix: one line on
stderr, exit code 2.  Every other error has ``exit_code = None``: it is a bug
or a failure the command reports itself, and an unhandled one shows its
traceback.  :func:`is_operator_error` is the one test the CLI and the daemon use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


class ApexcalError(Exception):
    """Root of every error apexcal raises on purpose."""

    #: The CLI's exit code when this error ends a command: 2 for what the operator
    #: must fix; ``None`` when it is not the operator's (a traceback if unhandled).
    exit_code: ClassVar[int | None] = None


def is_operator_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the operator's to fix: one line on stderr, exit code 2."""
    return isinstance(exc, ApexcalError) and exc.exit_code == 2


# --- operator mistakes --------------------------------------------------------


class UserError(ApexcalError):
    """An operator mistake: reported as one line on stderr with exit code 2."""

    exit_code: ClassVar[int | None] = 2


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


class UnreadableSecrets(SecretError):
    """One or more secrets could not be read; ``problems`` lists them all (key, file)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        suffix = f" (and {more} more unreadable secret{'s' if more > 1 else ''})" if more else ""
        super().__init__(first.path, first.message + suffix)


class UsageError(UserError):
    """A bad command-line argument."""


class _NamedType(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...


class UnknownActivityType(UsageError):
    """``--type`` named no activity type of the organization."""

    def __init__(self, requested: str, known: Sequence[_NamedType]) -> None:
        self.requested = requested
        listing = ", ".join(f"{t.key} ({t.name})" for t in known) or "none"
        super().__init__(f"unknown activity type {requested!r}; known types: {listing}")


class QueryError(UserError, ValueError):
    """A query that the API's query-string parser would silently misread."""


class ServerStartError(UserError):
    """The server could not listen (address in use, permission denied)."""


class DemoError(UserError):
    """The demo could not start (Radicale missing or not starting, no free port)."""


# --- the API side -------------------------------------------------------------


class ApiError(ApexcalError):
    """Something went wrong talking to the AchieveApex API."""

    maybe_applied: bool = True
    """Whether the request may have taken effect all the same (a write whose answer was
    lost).  The API session clears it when no attempt can have done anything."""


class ApiTransportError(ApiError):
    """No HTTP answer: connection refused or dropped, DNS failure, timeout."""

    exit_code: ClassVar[int | None] = 2

    def __init__(self, message: str, *, method: str, url: str) -> None:
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: {message}")


class ApiProtocolError(ApiError):
    """An answer that is not what the API documents (malformed JSON, wrong shape)."""

    exit_code: ClassVar[int | None] = 2

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
    exit_code: ClassVar[int | None] = 2


class Forbidden(ApiHTTPError):
    status = 403
    exit_code: ClassVar[int | None] = 2


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


class ContentLineError(ICalError):
    """Data that is not an iCalendar object: names the line (1-based) and what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


class Unmappable(ICalError):
    """An activity that cannot become the requested component (e.g. an event with no start date)."""

    def __init__(self, activity_id: int, reason: str) -> None:
        self.activity_id = activity_id
        self.reason = reason
        super().__init__(f"activity {activity_id}: {reason}")


class TemplateError(ICalError, ValueError):
    """A summary or URL template that names an unknown field or is malformed."""

    def __init__(self, template: str, reason: str) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template {template!r}: {reason}")


class TriggerError(ICalError, ValueError):
    """A reminder trigger that cannot be read: names the text and what is wrong."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"reminder {text!r}: {reason}")


class UnknownTimezone(ICalError):
    """The name is not an IANA time zone known to tzdata."""

    def __init__(self, tzid: str) -> None:
        self.tzid = tzid
        super().__init__(f"unknown time zone {tzid!r}")


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


# --- feeds ----------------------------------------------------------------------


class FeedBuildError(ApexcalError):
    """Some feeds could not be written; ``results`` holds the feeds that were."""

    def __init__(self, failures: Mapping[str, str], results: Sequence[Any]) -> None:
        self.failures = dict(failures)
        self.results = list(results)
        first, reason = next(iter(self.failures.items()))
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(f"feed {first}: {reason}{more}")


# --- the API emulator (a test peer) -------------------------------------------


class EmulatorHTTPError(ApexcalError):
    """An error answer of the emulated API: ``status`` and the Feathers ``message``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class EmulatorQueryError(EmulatorHTTPError):
    """A query or record body the emulated service refuses (answered 400 BadRequest)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


# --- state and sync -----------------------------------------------------------


class StateError(ApexcalError):
    """The state store failed."""


class StoreFailure(StateError):
    """A state store operation failed; ``operation`` names it, ``reason`` says why."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"state store: {operation}: {reason}")


class StoreUnavailable(StoreFailure, UserError):
    """The store cannot be opened (bad URL, unreachable server, unwritable path): an operator error."""


class TargetBusy(StateError):
    """Another cycle of the same target holds its lock."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"target {target!r} is already being synced by another worker")


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


class ObjectsUnread(CalDAVError):
    """A read that could not return some objects present on the server.

    ``found``: the objects read (href → :class:`~apexcal.sync.sink.FetchedObject`);
    ``unread``: href → (what went wrong, the etag the server gave or None).
    The unread ones are neither gone nor seen: whoever reads must not take
    them for deleted, nor for unchanged, and must read them again later.
    """

    def __init__(
        self, url: str, found: Mapping[str, Any], unread: Mapping[str, tuple[str, str | None]]
    ) -> None:
        self.found = dict(found)
        self.unread = dict(unread)
        first = next(iter(self.unread), "")
        why = self.unread[first][0] if first else ""
        super().__init__(f"{len(self.unread)} object(s) not read, {first}: {why}", url=url)


class CycleCancelled(SyncError):
    """The cycle was asked to stop; what was written so far is recorded."""
