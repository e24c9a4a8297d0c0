"""Building blocks of the CalDAV adapter: result records and the WebDAV XML we speak.

The adapter itself is :class:`apexcal.sync.caldav_sink.CalDAVSink`; import the
records from there too.
"""
