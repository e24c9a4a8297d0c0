"""The CalDAV sink: :class:`CalDAVSink` over an HTTP session, WebDAV XML and python-caldav discovery.

:mod:`~apexcal.sync.caldav.sink` holds the sink itself,
:mod:`~apexcal.sync.caldav.changes` sync-collection and PROPFIND listings,
:mod:`~apexcal.sync.caldav.session` the httpx session, :mod:`~apexcal.sync.caldav.davxml`
the XML, and :mod:`~apexcal.sync.caldav.discovery` the collection itself.
Log events of all of them use the logger ``apexcal.sync.caldav_sink``.
"""

from apexcal.errors import CalendarNotFound, ObjectTooLarge
from apexcal.sync.caldav.sink import MAX_OBJECT_BYTES, MULTIGET_BATCH, CalDAVSink

__all__ = ["MAX_OBJECT_BYTES", "MULTIGET_BATCH", "CalDAVSink", "CalendarNotFound", "ObjectTooLarge"]
