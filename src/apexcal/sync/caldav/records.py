"""What the CalDAV adapter returns and accepts: frozen records, and its one extra error.

Every href in these records is a canonical href: the percent-decoded absolute
path of the object on the server (``/alice/crm/apexcal-27-5@example.com.ics``),
the same whatever a server chooses to escape.  ETags are kept exactly as the
server wrote them, quotes included (``"3f2a…"``), ready for ``If-Match``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apexcal.errors import CalDAVError


class CalendarNotFound(CalDAVError):
    """The target's calendar collection does not exist and creating it was not asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(
            "calendar does not exist; set create = true to create it", url=url, status=404
        )


class ObjectTooLarge(CalDAVError):
    """A calendar object larger than the adapter will send (see ``MAX_OBJECT_BYTES``)."""

    def __init__(self, href: str, size: int, limit: int) -> None:
        self.href = href
        self.size = size
        self.limit = limit
        super().__init__(f"object of {size} bytes exceeds the {limit}-byte limit", url=href)


@dataclass(frozen=True, kw_only=True)
class CalendarInfo:
    """The calendar collection behind a target, as the server describes it.

    ``supports_vevent``/``supports_vtodo`` come from
    ``supported-calendar-component-set`` (absent means everything is allowed).
    ``supports_sync`` says whether the server lists the sync-collection report
    (None when it does not say).
    """

    url: str
    display_name: str | None
    supports_vevent: bool
    supports_vtodo: bool
    supports_sync: bool | None = None
    created: bool = False


@dataclass(frozen=True, kw_only=True)
class RemoteChanges:
    """What changed in the collection since a sync token.

    ``token`` is the server's new sync token to store after the caller has
    processed the changes (None when the server has no sync support: list in
    full each time).  It is always a token the server issued, never one made up.

    When ``full`` is False, ``changed`` maps every href created or modified since
    the token to its etag, and ``deleted`` holds the hrefs removed since then.

    When ``full`` is True (no token, an invalid or expired one, or no sync
    support), ``changed`` lists every object present in the collection; every
    recorded href absent from it has been deleted.  ``deleted`` then holds those
    of ``known_hrefs`` (passed to :meth:`CalDAVSink.changes`) that are absent.

    An etag may be ``""`` when a server reports a change without one; it never
    equals a recorded etag, so the object is fetched.  An href listed in
    ``changed`` that :meth:`CalDAVSink.multiget` then does not return was
    deleted in between.

    Our own writes show up in the next ``changed`` like anyone's; they are
    recognised by their etag equalling the one recorded after the write.
    """

    token: str | None
    changed: dict[str, str]
    deleted: frozenset[str]
    full: bool


@dataclass(frozen=True, kw_only=True)
class FetchedObject:
    """One calendar object read with calendar-multiget.

    ``data`` is the server's calendar-data with CRLF line endings (XML
    transport turns them into LF; they are restored), UTF-8 encoded.
    """

    href: str
    etag: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    """A write the server accepted.

    ``etag`` is the ETag header of the answer when the server sent one (both
    Radicale and Xandikos do on PUT); the store should keep the etag of a later
    read (:meth:`CalDAVSink.multiget`) as the one to match, because a server may
    rewrite the object it stores.  ``status`` is the HTTP status: for a delete,
    404 means the object was already gone.
    """

    href: str
    etag: str | None
    status: int


@dataclass(frozen=True, kw_only=True)
class CreateOp:
    """Create ``name`` in the collection with ``If-None-Match: *``."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class UpdateOp:
    """Replace the object at ``href`` with ``If-Match: etag``."""

    href: str
    data: bytes = field(repr=False)
    etag: str


@dataclass(frozen=True, kw_only=True)
class DeleteOp:
    """Delete the object at ``href``, with ``If-Match: etag`` when an etag is known."""

    href: str
    etag: str | None = None


WriteOp = CreateOp | UpdateOp | DeleteOp
"""One operation for :meth:`CalDAVSink.apply_many`."""

Outcome = WriteResult | CalDAVError
"""The result of one operation of :meth:`CalDAVSink.apply_many`: accepted, or why not."""
