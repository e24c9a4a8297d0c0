"""The calendar collection itself, through python-caldav: read its properties, create it.

Discovery and creation happen once per cycle and are what python-caldav's
``DAVClient``/``Calendar`` API is made for, so they go through it (the hot
paths — writes, multiget, sync-collection — stay on httpx in
:mod:`apexcal.sync.caldav.sink`).  This module is the boundary: every
python-caldav or niquests exception is translated here into
:mod:`apexcal.errors`, with messages we write ourselves, so neither library's
exceptions nor a password can leak out.  Each request the library sends is
counted on the :class:`~apexcal.sync.caldav.session.DavSession` through a
niquests response hook, and failed ones (no answer) where they fail.
"""

from __future__ import annotations

from typing import Any, NoReturn

import structlog
from caldav.collection import Calendar, CalendarSet
from caldav.davclient import DAVClient
from caldav.elements import cdav, dav
from caldav.lib import error as dav_error
from caldav.lib.http_sync import requests as dav_http

from apexcal import USER_AGENT
from apexcal.errors import CalDAVAuthError, CalDAVError, CalDAVTransportError
from apexcal.sync.caldav import davxml
from apexcal.sync.caldav.davxml import CALDAV, DAV
from apexcal.sync.caldav.session import DavSession
from apexcal.sync.sink import CalendarInfo

log = structlog.get_logger("apexcal.sync.caldav_sink")

COMPONENTS = ("VEVENT", "VTODO")
"""What a calendar we create holds."""

_CALENDAR_PROPS = (
    dav.ResourceType(),
    dav.DisplayName(),
    cdav.SupportedCalendarComponentSet(),
    dav.SupportedReportSet(),
    dav.SyncToken(),
)


class CalendarCollection:
    """python-caldav's client for the one collection a :class:`DavSession` points at.

    Sends Basic credentials up front (``auth_type="basic"``: no unauthenticated
    probe), never sleeps on 429/503 (``rate_limit_handle=False``: the caller's
    back-off decides), does no DNS discovery, and counts every request on
    ``session``.  Not thread-safe; the sink uses it from one call at a time.
    """

    def __init__(self, session: DavSession) -> None:
        self._session = session
        creds = session.credentials()
        self._client = DAVClient(
            url=session.url,
            username=creds[0] if creds else None,
            password=creds[1] if creds else None,
            auth_type="basic" if creds else None,
            headers={"User-Agent": USER_AGENT},
            enable_rfc6764=False,
            rate_limit_handle=False,
        )
        # niquests takes float seconds; caldav's annotation says int.
        self._client.timeout = session.timeout  # type: ignore[assignment]
        self._client.session.hooks["response"].append(self._on_response)

    def close(self) -> None:
        """Close the library's connections."""
        self._client.close()

    def _on_response(self, response: Any, **_: Any) -> None:
        self._session.count(str(response.request.method), int(response.status_code))

    def read(self) -> CalendarInfo | None:
        """The collection as the server describes it (one PROPFIND, depth 0); None when missing.

        The same PROPFIND reads the collection's ``DAV:sync-token``: the sink
        compares it with the stored token to skip the sync-collection REPORT
        of a collection that has not changed.

        Xandikos answers a missing path with 207 + a 404 inside; python-caldav
        reports both that and a plain 404 as ``NotFoundError``.
        """
        url = self._session.url
        calendar = Calendar(client=self._client, url=url)
        try:
            props = calendar.get_properties(list(_CALENDAR_PROPS), parse_props=False)
        except dav_error.NotFoundError:
            return None
        except Exception as exc:
            self._translate(exc, "PROPFIND")
        if not isinstance(props, dict):
            raise CalDAVError("PROPFIND answer does not describe the collection", url=url)
        rtype = props.get(davxml.clark(DAV, "resourcetype"))
        if rtype is None or rtype.find(davxml.clark(CALDAV, "calendar")) is None:
            raise CalDAVError("not a calendar collection", url=url)
        comps_el = props.get(davxml.clark(CALDAV, "supported-calendar-component-set"))
        if comps_el is None:
            comps = set(COMPONENTS)  # absent: the server accepts every component (RFC 4791 5.2.3)
        else:
            comps = {
                (c.get("name") or "").upper() for c in comps_el.iter(davxml.clark(CALDAV, "comp"))
            }
        reports_el = props.get(davxml.clark(DAV, "supported-report-set"))
        supports_sync: bool | None = None
        if reports_el is not None:
            supports_sync = (
                reports_el.find(f".//{davxml.clark(DAV, 'sync-collection')}") is not None
            )
        name_el = props.get(davxml.clark(DAV, "displayname"))
        token_el = props.get(davxml.clark(DAV, "sync-token"))
        return CalendarInfo(
            url=url,
            display_name=(name_el.text or None) if name_el is not None else None,
            supports_vevent="VEVENT" in comps,
            supports_vtodo="VTODO" in comps,
            supports_sync=supports_sync,
            sync_token=((token_el.text or "").strip() or None) if token_el is not None else None,
        )

    def create(self, display_name: str | None) -> None:
        """MKCALENDAR the collection (VEVENT + VTODO), named ``display_name`` when given.

        python-caldav follows MKCALENDAR with a PROPPATCH of the display name
        (for servers that ignore it in MKCALENDAR), so a named creation costs
        two requests.  It creates a calendar as a member of its parent collection,
        so the collection URL is split into parent and member name; a server
        that put the calendar anywhere else is an error.
        """
        url = self._session.url
        parent_path, _, member = self._session.path.rstrip("/").rpartition("/")
        if not member:
            raise CalDAVError("cannot create a calendar at the server root", url=url)
        parent = CalendarSet(client=self._client, url=self._session.url_for(parent_path + "/"))
        try:
            made = parent.make_calendar(
                name=display_name,
                cal_id=davxml.quote_href(member),
                supported_calendar_component_set=list(COMPONENTS),
                method="mkcalendar",
            )
        except Exception as exc:
            self._translate(exc, "MKCALENDAR", "could not create the calendar")
        if not isinstance(made, Calendar) or made.url is None:
            raise CalDAVError("the CalDAV library did not create the calendar", url=url)
        if davxml.normalise_href(str(made.url)).rstrip("/") != self._session.path.rstrip("/"):
            raise CalDAVError("the server created the calendar somewhere else", url=url)

    def _translate(self, exc: Exception, method: str, what: str = "") -> NoReturn:
        """Raise the :mod:`apexcal.errors` form of a python-caldav or niquests failure."""
        url = self._session.url
        if isinstance(exc, dav_http.exceptions.Timeout):
            self._session.count(method, 0)
            raise CalDAVTransportError(
                f"{method} timed out ({type(exc).__name__})", url=url
            ) from exc
        if isinstance(exc, dav_http.exceptions.RequestException):
            self._session.count(method, 0)
            raise CalDAVTransportError(f"{method} failed ({type(exc).__name__})", url=url) from exc
        if isinstance(exc, dav_error.AuthorizationError):
            status = exc.status
            who = f" for user {self._session.username!r}" if self._session.username else ""
            raise CalDAVAuthError(
                f"{method} refused{who}: {status}", url=url, status=status
            ) from exc
        if isinstance(exc, dav_error.DAVError):
            detail = f" ({what})" if what else ""
            raise CalDAVError(
                f"{method} answered {exc.status}{detail}", url=url, status=exc.status
            ) from exc
        raise CalDAVError(
            f"{method} failed in the CalDAV library ({type(exc).__name__})", url=url
        ) from exc
