"""Writing objects: the size limit, and what a server's answer to a conditional PUT or DELETE means.

:func:`write_result` turns an answer into a :class:`~apexcal.sync.sink.WriteResult`
or the error that says why not: :class:`~apexcal.errors.PreconditionFailed`
(the condition failed: someone else changed it, or something is already
there), :class:`~apexcal.errors.UidConflict` (the server holds the UID under
another href), or :class:`~apexcal.errors.CalDAVError` (the server refuses the
object itself).  Used by :class:`~apexcal.sync.caldav.CalDAVSink`.
"""

from __future__ import annotations

import httpx
import structlog

from apexcal.errors import CalDAVError, ObjectTooLarge, PreconditionFailed, UidConflict
from apexcal.sync.caldav import davxml
from apexcal.sync.caldav.reads import find_uid
from apexcal.sync.caldav.session import DavSession
from apexcal.sync.sink import WriteResult, uid_of

log = structlog.get_logger("apexcal.sync.caldav_sink")

MAX_OBJECT_BYTES = 8 * 1024 * 1024
"""The largest object the adapter sends.  Radicale answers 412 to a body over
its limit (10 MiB by default), indistinguishable from a conflict; refusing
bigger bodies here keeps a 412 meaning "someone else changed it"."""

ICS_TYPE = "text/calendar; charset=utf-8"

REFUSAL_CONDITIONS = frozenset(
    {
        "no-uid-conflict",
        "unique-scheduling-object-resource",
        "supported-calendar-component",
        "supported-calendar-data",
        "valid-calendar-data",
        "valid-calendar-object-resource",
        "max-resource-size",
    }
)
"""CalDAV preconditions (RFC 4791 §5.3.2.1, RFC 6638 §3.2.4.1) by which a server refuses
the object itself; any other body of a 412 is the conditional header failing."""


def check_size(href: str, data: bytes) -> None:
    """Raise :class:`ObjectTooLarge` for a body over :data:`MAX_OBJECT_BYTES` (nothing is sent)."""
    if len(data) > MAX_OBJECT_BYTES:
        raise ObjectTooLarge(href, len(data), MAX_OBJECT_BYTES)


def _holder_of(dav: DavSession, uid: str, href: str) -> str | None:
    """Best effort: the href already holding ``uid`` (servers rarely name it)."""
    if not uid:
        return None
    try:
        holders = [h for h in find_uid(dav, uid) if h != href]
    except CalDAVError as exc:
        log.info("caldav.uid_lookup_failed", uid=uid, error=str(exc))
        return None
    return holders[0] if holders else None


def write_result(
    dav: DavSession, resp: httpx.Response, method: str, href: str, data: bytes, etag: str | None
) -> WriteResult:
    """The result of a PUT or DELETE of ``href``, or the error its answer means."""
    status = resp.status_code
    if 200 <= status < 300:
        log.debug("caldav.write", method=method, href=href, status=status)
        return WriteResult(href=href, etag=resp.headers.get("ETag"), status=status)
    err = davxml.parse_error_body(resp.content)
    uid_condition = next(
        (c for c in ("no-uid-conflict", "unique-scheduling-object-resource") if err.has(c)), None
    )
    if uid_condition is not None:
        # Cyrus (and Fastmail) keep UIDs unique per account and name the
        # holder under CalDAV's unique-scheduling-object-resource.
        uid = uid_of(data)
        existing = err.hrefs.get(uid_condition, ())
        raise UidConflict(
            href,
            uid,
            status=status,
            existing_href=existing[0] if existing else _holder_of(dav, uid, href),
        )
    if status == 404 and method == "PUT" and etag is not None:
        # Some servers answer If-Match on a vanished object with 404, not 412.
        raise PreconditionFailed(href, etag=etag, status=404)
    if status == 412 and not (err.conditions & REFUSAL_CONDITIONS):
        # A 412 to a conditional request is the condition failing, whatever
        # else the body names (DAViCal: DAV:if-match / DAV:if-none-match).
        # Only a CalDAV precondition that means "not this object"
        # (Xandikos: valid-calendar-data, supported-calendar-component…)
        # is the server refusing the object itself.
        raise PreconditionFailed(href, etag=etag, status=412)
    if err.conditions:
        names = ", ".join(sorted(err.conditions))
        desc = f": {err.description}" if err.description else ""
        raise CalDAVError(
            f"{method} refused by the server ({names}){desc}",
            url=dav.url_for(href),
            status=status,
        )
    raise dav.failure(resp, method)
