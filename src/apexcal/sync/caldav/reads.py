"""Reading objects from the collection: calendar-multiget in batches, split around failures, and UID lookups.

Functions over a :class:`~apexcal.sync.caldav.session.DavSession`, used by
:meth:`~apexcal.sync.caldav.CalDAVSink.multiget` and
:meth:`~apexcal.sync.caldav.CalDAVSink.find_uid`.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from apexcal.errors import ObjectsUnread
from apexcal.sync.caldav import davxml
from apexcal.sync.caldav.changes import XML_TYPE
from apexcal.sync.caldav.davxml import CALDAV, DAV
from apexcal.sync.caldav.session import DavSession
from apexcal.sync.sink import FetchedObject

log = structlog.get_logger("apexcal.sync.caldav_sink")

MULTIGET_BATCH = 100
"""Hrefs per calendar-multiget REPORT."""

MULTIGET_FAILURES = 32
"""Failed (5xx) calendar-multiget answers one :func:`multiget` call splits
before it gives up: enough to isolate a few bad objects among thousands, few
enough that a server failing every request is not asked once per object."""


def _crlf(text: str) -> bytes:
    """iCalendar text with CRLF line endings, UTF-8 encoded."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def multiget(dav: DavSession, hrefs: Iterable[str]) -> dict[str, FetchedObject]:
    """Read the objects at ``hrefs`` with calendar-multiget, :data:`MULTIGET_BATCH` per REPORT.

    Hrefs missing on the server (a ``404`` response, or nothing found for
    them) are simply absent from the result.  An object the server has
    but does not return is not missing: listed without its
    calendar-data, or failing the read itself (Xandikos answers ``500``
    to a multiget naming an object of invalid UTF-8 in its store).  A
    ``5xx`` answer is split in halves, down to single hrefs, so such an
    object is isolated and the others are read (at most
    :data:`MULTIGET_FAILURES` failed answers per call; then the last
    one is raised).  Those objects end the call with
    :class:`ObjectsUnread`, which carries what was read.
    """
    wanted = list(dict.fromkeys(davxml.normalise_href(h) for h in hrefs))
    found: dict[str, FetchedObject] = {}
    unread: dict[str, tuple[str, str | None]] = {}
    failures = [MULTIGET_FAILURES]
    for start in range(0, len(wanted), MULTIGET_BATCH):
        _multiget(dav, wanted[start : start + MULTIGET_BATCH], found, unread, failures)
    if unread:
        for href, (why, _) in unread.items():
            log.warning("caldav.object_unread", href=href, reason=why)
        raise ObjectsUnread(dav.url, found, unread)
    return found


def _multiget(
    dav: DavSession,
    batch: list[str],
    found: dict[str, FetchedObject],
    unread: dict[str, tuple[str, str | None]],
    failures: list[int],
) -> None:
    resp = dav.request(
        "REPORT",
        dav.path,
        content=davxml.multiget_body(batch),
        headers={"Depth": "1", "Content-Type": XML_TYPE},
    )
    if resp.status_code >= 500 and failures[0] > 0:
        failures[0] -= 1
        if len(batch) == 1:
            unread[batch[0]] = (f"the server answers {resp.status_code} to reading it", None)
            return
        log.info("caldav.multiget_split", url=dav.url, hrefs=len(batch), status=resp.status_code)
        middle = len(batch) // 2
        _multiget(dav, batch[:middle], found, unread, failures)
        _multiget(dav, batch[middle:], found, unread, failures)
        return
    if resp.status_code != 207:
        raise dav.failure(resp, "REPORT calendar-multiget")
    for r in davxml.parse_multistatus(resp.content, url=dav.url).responses:
        if r.status == 404 or not r.props:
            continue  # not there (Radicale, Xandikos: 404; DAViCal leaves it out)
        data = r.text(CALDAV, "calendar-data")
        etag = r.text(DAV, "getetag") or ""
        if data is None:
            unread[r.href] = ("listed without its calendar-data", etag or None)
            continue
        found[r.href] = FetchedObject(href=r.href, etag=etag, data=_crlf(data))


def find_uid(dav: DavSession, uid: str) -> dict[str, str]:
    """The objects (href → etag) whose VEVENT or VTODO has this UID (calendar-query).

    For resolving a :class:`~apexcal.errors.UidConflict`: the object already
    holding the UID can be adopted or removed.  Empty when none is found.
    """
    found: dict[str, str] = {}
    for component in ("VEVENT", "VTODO"):
        resp = dav.request(
            "REPORT",
            dav.path,
            content=davxml.uid_query_body(uid, component),
            headers={"Depth": "1", "Content-Type": XML_TYPE},
        )
        if resp.status_code != 207:
            raise dav.failure(resp, "REPORT calendar-query")
        for r in davxml.parse_multistatus(resp.content, url=dav.url).responses:
            if r.status != 404 and not r.href.endswith("/"):
                found[r.href] = r.text(DAV, "getetag") or ""
        if found:
            break
    return found
