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
from apexcal.serve.conditional import http_date
from apexcal.serve.tokens import MISS, _Miss


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


Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, kw_only=True)
class HeaderBlocks:
    """The ASGI header lists of one body variant's answers, built once: 200 identity/gzip, 304 per tag."""

    etag_bytes: bytes
    gzip_etag_bytes: bytes
    ok_plain: Headers
    ok_gzip: Headers
    not_modified_plain: Headers
    not_modified_gzip: Headers
    # The 304 blocks as written on the wire ("name: value\r\n" each): the server's fast path.
    not_modified_plain_raw: bytes
    not_modified_gzip_raw: bytes


def header_blocks(
    *, name: str, max_age: int, last_modified: datetime, etag: str, gzip_etag: str,
    length: int, gzip_length: int | None,
) -> HeaderBlocks:
    """The answers' headers for one variant: caching and validators on all, content headers on 200s."""
    common: Headers = [
        (b"cache-control", f"private, max-age={max_age}".encode()),
        (b"last-modified", http_date(last_modified).encode()),
        (b"vary", b"Accept-Encoding"),
    ]

    def ok(tag: str, size: int, gzip: bool) -> Headers:
        headers = [
            *common,
            (b"etag", tag.encode()),
            (b"content-type", b"text/calendar; charset=utf-8"),
            (b"content-disposition", f'inline; filename="{name}.ics"'.encode()),
            (b"content-length", str(size).encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if gzip:
            headers.append((b"content-encoding", b"gzip"))
        return headers

    not_modified_plain = [*common, (b"etag", etag.encode())]
    not_modified_gzip = [*common, (b"etag", gzip_etag.encode())]
    return HeaderBlocks(
        etag_bytes=etag.encode(),
        gzip_etag_bytes=gzip_etag.encode(),
        ok_plain=ok(etag, length, False),
        ok_gzip=ok(gzip_etag, gzip_length, True) if gzip_length is not None else [],
        not_modified_plain=not_modified_plain,
        not_modified_gzip=not_modified_gzip,
        not_modified_plain_raw=_wire(not_modified_plain),
        not_modified_gzip_raw=_wire(not_modified_gzip),
    )


def _wire(headers: Headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


@dataclass(kw_only=True)
class BodyVariant:
    """The body served for one URL, with its own strong ETag and gzip form."""

    body: bytes
    etag: str
    _gzip: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _blocks: dict[tuple[str, int, bool], HeaderBlocks] = field(default_factory=dict, repr=False)

    @property
    def gzip_ready(self) -> bool:
        """Whether the gzip body is made (else :meth:`gzip_body` compresses: call it from a thread)."""
        return self._gzip is not None

    def blocks(self, name: str, max_age: int, last_modified: datetime) -> HeaderBlocks:
        """The header blocks of this variant served as ``name`` with ``max_age``, built once.

        The gzip 200 block is filled in once the gzip body exists.
        """
        key = (name, max_age, self._gzip is not None)
        found = self._blocks.get(key)
        if found is None:
            found = header_blocks(
                name=name, max_age=max_age, last_modified=last_modified, etag=self.etag,
                gzip_etag=self.gzip_etag, length=len(self.body),
                gzip_length=len(self._gzip) if self._gzip is not None else None,
            )
            if len(self._blocks) >= _MAX_VARIANTS:
                self._blocks.clear()
            self._blocks[key] = found
        return found

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

    def held_variant(self, url: str | None) -> BodyVariant | None:
        """The body served at ``url`` if already built (no hashing: for the event loop), else ``None``."""
        if url is None:
            return self._plain
        return self._variants.get(url)

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


def _identity(key: str, st: os.stat_result) -> FileIdentity:
    return FileIdentity(
        path=key, device=st.st_dev, inode=st.st_ino, size=st.st_size,
        mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
    )


class FeedFileCache:
    """The current version of each served feed file, refreshed when the file changes."""

    def __init__(self) -> None:
        self._versions: dict[str, FeedVersion] = {}
        # The stat fields of each held version's identity, compared as a tuple.
        self._stamps: dict[str, tuple[int, int, int, int, int]] = {}
        self._lock = threading.Lock()

    def current(self, path: Path) -> FeedVersion | _Miss | None:
        """The version held for ``path`` if the file is still that one (one ``stat``), else :data:`MISS`.

        ``None`` when the file does not exist.  A file replaced since has
        another identity (inode, mtime, ctime, size): :meth:`load` reads it.
        """
        key = str(path)
        try:
            st = os.stat(key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        stamp = self._stamps.get(key)
        if stamp == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev):
            return self._versions[key]
        return MISS

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
            identity = _identity(key, st)
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
            self._stamps[key] = (
                identity.inode, identity.size, identity.mtime_ns, identity.ctime_ns, identity.device
            )
        return version
