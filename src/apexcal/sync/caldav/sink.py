"""The CalDAV adapter: one calendar collection, conditional writes, sync tokens, multiget.

:class:`CalDAVSink` implements the :class:`~apexcal.sync.sink.Sink` protocol over
a CalDAV server:

* :meth:`~CalDAVSink.ensure_calendar` — check (or MKCALENDAR) the collection;
* :meth:`~CalDAVSink.changes` — what changed since a sync token (RFC 6578),
  falling back to a full listing when the token is invalid;
* :meth:`~CalDAVSink.multiget` — read many objects in few requests (RFC 4791),
  splitting a read the server fails so one bad object cannot fail the rest;
* :meth:`~CalDAVSink.create` / :meth:`~CalDAVSink.update` /
  :meth:`~CalDAVSink.delete` — conditional writes (``If-None-Match: *`` /
  ``If-Match``), and :meth:`~CalDAVSink.apply_many` to run many with bounded
  concurrency;
* :meth:`~CalDAVSink.listing` — every href and etag (PROPFIND).

Two HTTP clients share the work, each where it fits:

* **python-caldav** (``DAVClient``/``Calendar``, in
  :mod:`apexcal.sync.caldav.discovery`) finds the collection and creates it:
  one PROPFIND for its resource type, display name, component set and
  reports, and MKCALENDAR through ``make_calendar`` when it is missing (the
  library follows it with a PROPPATCH of the display name, when one is
  given, for servers that ignore it in MKCALENDAR).  This runs once per
  cycle, is what the library's calendar API is for, and gains nothing from
  hand-written XML.  It is set up to send Basic credentials up
  front (no unauthenticated probe), never to sleep on 429/503, and to do no
  DNS discovery; its exceptions are translated at that boundary, and every
  request it sends is counted through a response hook.
* **httpx** (:mod:`apexcal.sync.caldav.session`) carries the hot paths: PUT
  and DELETE (what their answers mean: :mod:`apexcal.sync.caldav.writes`),
  calendar-multiget (:mod:`apexcal.sync.caldav.reads`) and sync-collection
  (:mod:`apexcal.sync.caldav.changes`).  These run many times per
  cycle, concurrently from :meth:`~CalDAVSink.apply_many` over one bounded,
  thread-safe connection pool (python-caldav's client is not documented as
  safe to share between threads and changes its own auth state while
  running).  They need exact control of the wire: our bytes go out unchanged
  with ``If-Match``/``If-None-Match`` (the library's object helpers parse what
  they save and bump SEQUENCE by default), every status is seen as it came
  (an invalid sync token is a 403 on Radicale and a 412 on Xandikos, where
  the library raises an authorisation error for the former), 423 is retried
  with our own back-off, and a failed attempt is counted like any other.

Either way every request is counted (``on_request``, ``request_count``), and
library errors (httpx, python-caldav, niquests) are translated into
:mod:`apexcal.errors`; passwords never appear in exception text or logs.

Hrefs are canonical (decoded absolute paths, see
:func:`apexcal.sync.caldav.davxml.normalise_href`); :meth:`CalDAVSink.href_for` turns a member
name into one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from types import TracebackType
from typing import Self

import structlog

from apexcal.errors import CalDAVError, CalendarNotFound, InvalidSyncToken
from apexcal.sync.caldav import davxml, reads
from apexcal.sync.caldav.changes import (
    Probe,
    SyncUnsupported,
    list_members,
    sync_collection,
    unless_full_listing,
)
from apexcal.sync.caldav.discovery import CalendarCollection
from apexcal.sync.caldav.session import DavSession
from apexcal.sync.caldav.writes import ICS_TYPE, check_size, write_result
from apexcal.sync.sink import (
    CalendarInfo,
    ConcurrentWrites,
    FetchedObject,
    RemoteChanges,
    WriteResult,
    check_member_name,
)

log = structlog.get_logger("apexcal.sync.caldav_sink")


class CalDAVSink(ConcurrentWrites):
    """A session with one CalDAV calendar collection.

    ``url`` is the collection URL (a trailing ``/`` is added when missing;
    credentials in it are used when ``username`` is not given, and removed
    from it).  ``concurrency`` bounds the requests :meth:`apply_many` runs at
    once (and the connection pool).  ``on_request(method, status)`` is called
    after every request, from the thread that made it, with status 0 when no
    HTTP answer came.  Use as a context manager, or call :meth:`close`.

    Safe to use from several threads at once (the counters are locked and the
    httpx client is thread-safe).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        concurrency: int = 4,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._dav = DavSession(
            url,
            username=username,
            password=password,
            timeout=timeout,
            max_connections=concurrency,
            on_request=on_request,
        )
        self.url = self._dav.url
        self.concurrency = concurrency
        self._sync_supported: bool | None = None
        self._calendar: CalendarCollection | None = None
        self._probe: Probe | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        if self._calendar is not None:
            self._calendar.close()
        self._dav.close()

    @property
    def request_count(self) -> int:
        """How many HTTP requests this sink has sent (answered or not)."""
        return self._dav.request_count

    def href_for(self, name: str) -> str:
        """The canonical href a member called ``name`` has (or will have) in the collection."""
        return self._dav.path + check_member_name(name)

    def url_for(self, href: str) -> str:
        """The absolute URL of a canonical href on this server."""
        return self._dav.url_for(href)

    # --- the collection -----------------------------------------------------

    def ensure_calendar(
        self, create: bool = False, *, display_name: str | None = None
    ) -> CalendarInfo:
        """Check that the collection is a calendar, creating it first when asked.

        A missing collection is created with MKCALENDAR (VEVENT + VTODO) when
        ``create`` is true and reported as :class:`CalendarNotFound` otherwise.
        Reads ``supported-calendar-component-set`` so the caller can fall back to
        events when the calendar cannot hold tasks.
        """
        coll = self._collection()
        info = coll.read()
        if info is None:
            if not create:
                raise CalendarNotFound(self.url)
            coll.create(display_name)
            log.info("caldav.calendar_created", url=self.url)
            made = coll.read()
            if made is None:
                raise CalDAVError("calendar still missing after MKCALENDAR", url=self.url)
            info = replace(made, created=True)
        self._probe = Probe(token=info.sync_token, requests=self._dav.request_count)
        if info.supports_sync is False:
            self._sync_supported = False
        return info

    def _collection(self) -> CalendarCollection:
        if self._calendar is None:
            self._calendar = CalendarCollection(self._dav)
        return self._calendar

    # --- remote changes -------------------------------------------------------

    def changes(
        self, sync_token: str | None, *, known_hrefs: Collection[str] = ()
    ) -> RemoteChanges:
        """What changed since ``sync_token`` (RFC 6578 sync-collection, sync-level 1).

        ``None``, or a token the server rejects (``DAV:valid-sync-token``, whatever
        the status: Radicale 403, Xandikos 412), gives a full listing with
        ``full=True``; ``known_hrefs`` (the caller's recorded hrefs) then lets
        ``deleted`` name the recorded objects that are gone.  A truncated answer
        (507 on the collection) is followed with the new token until complete.
        Never sends ``DAV:limit``; never returns a token the server did not issue.
        When the ``DAV:sync-token`` read by :meth:`ensure_calendar` just before
        (no request since) equals ``sync_token``, nothing changed: no REPORT.
        """
        probe, self._probe = self._probe, None
        if probe is not None and probe.unchanged_since(sync_token, self._dav):
            log.debug("caldav.unchanged", url=self.url)
            return RemoteChanges(token=sync_token, changed={}, deleted=frozenset(), full=False)
        if self._sync_supported is not False:
            try:
                if sync_token is not None:
                    try:
                        changes = sync_collection(
                            self._dav, sync_token, full=False, known_hrefs=known_hrefs
                        )
                        return unless_full_listing(self._dav, changes, known_hrefs)
                    except InvalidSyncToken:
                        log.warning("caldav.sync_token_invalid", url=self.url)
                return sync_collection(self._dav, None, full=True, known_hrefs=known_hrefs)
            except SyncUnsupported:
                log.info("caldav.sync_unsupported", url=self.url)
                self._sync_supported = False
        members = list_members(self._dav)
        deleted = frozenset(h for h in known_hrefs if h not in members)
        return RemoteChanges(token=None, changed=members, deleted=deleted, full=True)

    def listing(self) -> dict[str, str]:
        """Every calendar object in the collection, href → etag (PROPFIND, Depth 1)."""
        return list_members(self._dav)

    # --- reading --------------------------------------------------------------

    def multiget(self, hrefs: Iterable[str]) -> dict[str, FetchedObject]:
        """Read the objects at ``hrefs`` with calendar-multiget (:func:`~apexcal.sync.caldav.reads.multiget`).

        Hrefs missing on the server are absent from the result; objects the
        server has but does not return end the call with :class:`ObjectsUnread`,
        which carries what was read.
        """
        return reads.multiget(self._dav, hrefs)

    def find_uid(self, uid: str) -> dict[str, str]:
        """The objects (href → etag) whose VEVENT or VTODO has this UID (calendar-query).

        For resolving a :class:`UidConflict`: the object already holding the UID
        can be adopted or removed.  Empty when none is found.
        """
        return reads.find_uid(self._dav, uid)

    # --- writing ------------------------------------------------------------

    def create(self, name: str, data: bytes) -> WriteResult:
        """Create member ``name`` with exactly ``data``, only if nothing is there (``If-None-Match: *``).

        Raises :class:`PreconditionFailed` when an object already exists at that
        href (adopt it), :class:`UidConflict` when the server holds the UID under
        another href, :class:`ObjectTooLarge` (nothing sent) over
        :data:`MAX_OBJECT_BYTES`.
        """
        href = self.href_for(name)
        check_size(href, data)
        headers = {"If-None-Match": "*", "Content-Type": ICS_TYPE}
        resp = self._dav.write_request("PUT", href, content=data, headers=headers)
        return write_result(self._dav, resp, "PUT", href, data, None)

    def update(self, href: str, data: bytes, etag: str) -> WriteResult:
        """Replace the object at ``href`` with exactly ``data`` if it still has ``etag`` (``If-Match``).

        Raises :class:`PreconditionFailed` when someone else changed or deleted it.
        """
        href = davxml.normalise_href(href)
        check_size(href, data)
        headers = {"If-Match": etag, "Content-Type": ICS_TYPE}
        resp = self._dav.write_request("PUT", href, content=data, headers=headers)
        return write_result(self._dav, resp, "PUT", href, data, etag)

    def delete(self, href: str, etag: str | None = None) -> WriteResult:
        """Delete the object at ``href`` (``If-Match`` when ``etag`` is given).

        An object already gone is fine (status 404 in the result);
        :class:`PreconditionFailed` when it changed since ``etag``.
        """
        href = davxml.normalise_href(href)
        headers = {"If-Match": etag} if etag else {}
        resp = self._dav.write_request("DELETE", href, headers=headers)
        if resp.status_code == 404:
            return WriteResult(href=href, etag=None, status=404)
        return write_result(self._dav, resp, "DELETE", href, b"", etag)
