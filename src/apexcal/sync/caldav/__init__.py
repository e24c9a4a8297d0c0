"""The CalDAV sink: :class:`CalDAVSink` over an HTTP session, WebDAV XML and python-caldav discovery.

:mod:`~apexcal.sync.caldav.sink` holds the sink itself,
:mod:`~apexcal.sync.caldav.changes` sync-collection and PROPFIND listings,
:mod:`~apexcal.sync.caldav.reads` calendar-multiget and UID lookups,
:mod:`~apexcal.sync.caldav.writes` what the answer to a conditional write means,
:mod:`~apexcal.sync.caldav.session` the httpx session, :mod:`~apexcal.sync.caldav.davxml`
the XML, and :mod:`~apexcal.sync.caldav.discovery` the collection itself.
Log events of all of them use the logger ``apexcal.sync.caldav_sink``.
"""

from collections.abc import Callable

from apexcal.config import TargetConfig
from apexcal.errors import CalendarNotFound, ObjectTooLarge
from apexcal.sync.caldav.reads import MULTIGET_BATCH
from apexcal.sync.caldav.sink import CalDAVSink
from apexcal.sync.caldav.writes import MAX_OBJECT_BYTES

__all__ = [
    "MAX_OBJECT_BYTES",
    "MULTIGET_BATCH",
    "CalDAVSink",
    "CalendarNotFound",
    "ObjectTooLarge",
    "default_sink_factory",
]


def default_sink_factory(
    target: TargetConfig,
    *,
    concurrency: int,
    timeout: float,
    on_request: Callable[[str, int], None] | None,
) -> CalDAVSink:
    """A :class:`CalDAVSink` for the target's URL and credentials."""
    password = target.password.get_secret_value() if target.password is not None else None
    return CalDAVSink(
        target.url,
        username=target.username,
        password=password,
        timeout=timeout,
        concurrency=concurrency,
        on_request=on_request,
    )
