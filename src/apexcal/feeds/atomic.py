"""Atomic writes of .ics files: a reader sees the old file or the new one, never a part.

The bytes go to a temporary file in the destination's own directory (a
rename is atomic only within one file system), which is flushed and fsynced,
then renamed over the destination, and the directory is fsynced so that the
rename itself survives a power cut.  Any failure before the rename —
including ``KeyboardInterrupt`` — removes the temporary file, so an
interrupted write leaves the destination as it was (or absent).

A process killed outright (SIGKILL, power cut) cannot remove its temporary
file; the next write of the same destination removes such leftovers once
they are an hour old (old enough that no live writer still owns them).

With ``only_if_changed`` a write whose bytes equal the destination's is
dropped: the file, its mtime and therefore the feed server's
``Last-Modified`` stay as they were.  The SHA-256 of the body is computed
while writing, so callers get the feed's ETag without holding the body.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = structlog.get_logger(__name__)

_COPY_CHUNK = 1 << 20
#: Age after which a temporary file left beside a destination is a crash's leftover.
STALE_TEMP_SECONDS = 3600
_DEFAULT_UMASK = 0o022


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    """What an atomic write did: whether the destination changed, and the body's hash and size."""

    path: Path
    changed: bool
    sha256: str
    length: int


class _HashingRaw(io.RawIOBase):
    """A raw file that hashes and counts everything written to it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.digest = hashlib.sha256()
        self.length = 0

    def writable(self) -> bool:
        return True

    def write(self, data: WriteableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        written = os.write(self._fd, view)
        self.digest.update(view[:written])
        self.length += written
        return written

    def fileno(self) -> int:
        return self._fd


def _process_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _DEFAULT_UMASK


def _file_sha256(path: Path) -> str | None:
    """The SHA-256 of the file at ``path``, or ``None`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as existing:
            while chunk := existing.read(_COPY_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: Path, *, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove temporary files of writes to ``path`` left by killed processes; how many."""
    prefix = _temp_prefix(path)
    limit = time.time() - older_than
    removed = 0
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        try:
            if entry.lstat().st_mtime < limit:
                entry.unlink()
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("file.stale_temps_removed", path=str(path), count=removed)
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    write: Callable[[BinaryIO], None],
    *,
    only_if_changed: bool = False,
    mode: int | None = None,
) -> WriteResult:
    """Write the file at ``path`` atomically with ``write(stream)``; see the module docstring.

    ``mode`` defaults to the existing file's permissions, else ``0o666`` less
    the umask (what ``open()`` would give).  The parent directory must exist.
    """
    path = Path(path)
    directory = path.parent
    remove_stale_temps(path)
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    temp = Path(temp_name)
    try:
        raw = _HashingRaw(fd)
        with io.BufferedWriter(raw, buffer_size=1 << 16) as stream:
            write(stream)
            stream.flush()
            os.fsync(fd)
        # BufferedWriter.close closed the raw wrapper, not the descriptor.
        os.close(fd)
        fd = -1
        sha256 = raw.digest.hexdigest()
        try:
            current = path.stat()
        except FileNotFoundError:
            current = None
        if (
            only_if_changed
            and current is not None
            and current.st_size == raw.length
            and _file_sha256(path) == sha256
        ):
            temp.unlink()
            return WriteResult(path=path, changed=False, sha256=sha256, length=raw.length)
        if mode is None:
            mode = (
                stat.S_IMODE(current.st_mode) if current is not None else 0o666 & ~_process_umask()
            )
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)
    log.debug("file.written", path=str(path), bytes=raw.length)
    return WriteResult(path=path, changed=True, sha256=sha256, length=raw.length)
