"""Feed files read once per version and kept in memory, with their ETags and gzip bodies.

Feed files are replaced atomically (temp file + rename), so a file opened once
is one complete version for as long as the descriptor is open.  Each request
opens the configured path once and uses that same descriptor for ``fstat`` and
for reading, so the identity (inode, size, mtime) that keys the cache always
describes the very bytes cached under it.  A version is read whole once; the
gzip body is compressed once, on first demand.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from apexcal.feeds.output import compress
from apexcal.ical.feed import etag_for


def gzip_etag(plain_etag: str) -> str:
    """The ETag of the gzip variant of the body tagged ``plain_etag``."""
    return plain_etag[:-1] + '-gz"'


@dataclass(frozen=True, kw_only=True)
class FileIdentity:
    """What identifies one version of a file on disk."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


_CALENDAR_START = b"BEGIN:VCALENDAR\r\n"
# Per-URL variants kept per version: one per device URL of a feed is typical.
_MAX_VARIANTS = 64


def fold_line(line: str) -> bytes:
    """``line`` as an RFC 5545 content line folded at 75 octets (ASCII content), CRLF-ended."""
    data = line.encode("ascii")
    parts = [data[:75]]
    parts.extend(b" " + data[i : i + 74] for i in range(75, len(data), 74))
    return b"\r\n".join(parts) + b"\r\n"


def with_source(body: bytes, url: str) -> bytes:
    """``body`` with a ``SOURCE`` calendar property (RFC 7986) naming ``url``.

    The feed file on disk carries no SOURCE: its URL holds a secret token and a
    feed has one URL per device, so each subscriber gets the URL it used.
    """
    if not body.startswith(_CALENDAR_START):
        return body
    line = fold_line(f"SOURCE;VALUE=URI:{url}")
    return _CALENDAR_START + line + body[len(_CALENDAR_START) :]


@dataclass(kw_only=True)
class BodyVariant:
    """The body served for one URL, with its own strong ETag and gzip form."""

    body: bytes
    etag: str
    _gzip: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def gzip_etag(self) -> str:
        """The ETag of the gzip variant."""
        return gzip_etag(self.etag)

    def gzip_body(self) -> bytes:
        """The gzip-compressed body, compressed once (deterministic: no timestamp)."""
        with self._lock:
            if self._gzip is None:
                self._gzip = compress(self.body)
            return self._gzip


@dataclass(kw_only=True)
class FeedVersion:
    """One version of a feed: its bytes, tags and modification time.

    ``identity`` tells versions apart (a :class:`FileIdentity` for a file; the
    stored version for a body kept in the database); ``gzip``, when given, is
    the body's gzip form already made (stored beside the body by a worker).
    """

    identity: object
    body: bytes
    etag: str
    last_modified: datetime
    gzip: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _plain: BodyVariant | None = field(default=None, repr=False)
    _variants: dict[str, BodyVariant] = field(default_factory=dict, repr=False)

    def for_source(self, url: str | None) -> BodyVariant:
        """The body served at ``url`` (with its SOURCE property; the file as is for ``None``), built once."""
        with self._lock:
            if url is None:
                if self._plain is None:
                    self._plain = BodyVariant(body=self.body, etag=self.etag, _gzip=self.gzip)
                return self._plain
            variant = self._variants.get(url)
        if variant is None:
            body = with_source(self.body, url)
            variant = BodyVariant(body=body, etag=etag_for(body))
            with self._lock:
                if len(self._variants) >= _MAX_VARIANTS:
                    self._variants.pop(next(iter(self._variants)))
                variant = self._variants.setdefault(url, variant)
        return variant

    @property
    def gzip_etag(self) -> str:
        """The ETag of the file's gzip variant."""
        return self.for_source(None).gzip_etag

    def gzip_body(self) -> bytes:
        """The file gzip-compressed, compressed once (deterministic: no timestamp)."""
        return self.for_source(None).gzip_body()


class FeedFileCache:
    """The current version of each served feed file, refreshed when the file changes."""

    def __init__(self) -> None:
        self._versions: dict[str, FeedVersion] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> FeedVersion | None:
        """The current version of the file at ``path``, or ``None`` when it does not exist.

        Blocking (disk I/O): call it from a worker thread.
        """
        key = str(path)
        try:
            fd = os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            identity = FileIdentity(
                path=key,
                device=st.st_dev,
                inode=st.st_ino,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns,
            )
            with self._lock:
                cached = self._versions.get(key)
            if cached is not None and cached.identity == identity:
                return cached
            body = handle.read()
        # The size cannot change under an open descriptor of a file that is only
        # ever replaced by rename; if it did (an in-place writer), the stat no
        # longer describes these bytes, so key the version by what was read.
        if len(body) != identity.size:
            identity = FileIdentity(
                path=key, device=identity.device, inode=identity.inode,
                size=len(body), mtime_ns=-1, ctime_ns=-1,
            )
        version = FeedVersion(
            identity=identity,
            body=body,
            etag=etag_for(body),
            last_modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
        )
        with self._lock:
            self._versions[key] = version
        return version
