"""An in-memory :class:`~apexcal.sync.sink.Sink`: one calendar collection held in a dict.

It behaves like the CalDAV servers the contract test holds it to
(``tests/contract/test_sink_contract.py``): every stored version gets a new
etag; ``If-None-Match: *`` on an existing href and ``If-Match`` with another
etag (or on a missing object) raise :class:`~apexcal.errors.PreconditionFailed`;
a second href for a UID raises :class:`~apexcal.errors.UidConflict`; sync
tokens name a position in a change log, report deletions, and an unknown or
expired token gives a full listing.  For tests and dry runs: what "another
client" does is :meth:`MemorySink.put_unconditionally` and
:meth:`MemorySink.remove`, :meth:`MemorySink.expire_tokens` makes every
issued token invalid, and :meth:`MemorySink.make_unservable` an object the
backend lists but cannot return.  Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from apexcal.errors import CalendarNotFound, ObjectsUnread, PreconditionFailed, UidConflict
from apexcal.sync.sink import (
    CalendarInfo,
    ConcurrentWrites,
    FetchedObject,
    RemoteChanges,
    WriteResult,
    check_member_name,
    uid_of,
)

_TOKEN_PREFIX = "memory-sync-"  # noqa: S105  (a sync token, not a secret)


@dataclass(frozen=True, kw_only=True)
class _Stored:
    data: bytes
    etag: str
    uid: str


class MemorySink(ConcurrentWrites):
    """One in-memory calendar collection at ``path`` (see the module docstring).

    ``exists=False`` starts without a collection (``ensure_calendar(create=True)``
    makes it); ``supports_vtodo=False`` describes an events-only calendar.
    ``request_count`` counts every call that a server would answer.
    """

    def __init__(
        self,
        path: str = "/calendars/memory/",
        *,
        exists: bool = True,
        supports_vtodo: bool = True,
        concurrency: int = 1,
    ) -> None:
        self.path = path if path.endswith("/") else path + "/"
        self.url = "memory:" + self.path
        self.concurrency = concurrency
        self._exists = exists
        self._supports_vtodo = supports_vtodo
        self._display_name: str | None = None
        self._objects: dict[str, _Stored] = {}
        self._unservable: dict[str, bool] = {}
        self._changed_at: dict[str, int] = {}
        self._seq = 0
        self._oldest_token = 0
        self._etags = 0
        self._lock = threading.RLock()
        self.request_count = 0

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
        """Nothing to release."""

    def href_for(self, name: str) -> str:
        """``path`` + ``name``."""
        return self.path + check_member_name(name)

    # --- the collection -------------------------------------------------------

    def ensure_calendar(
        self, create: bool = False, *, display_name: str | None = None
    ) -> CalendarInfo:
        """The calendar's description; created first when missing and ``create``."""
        with self._lock:
            self.request_count += 1
            created = False
            if not self._exists:
                if not create:
                    raise CalendarNotFound(self.url)
                self._exists = True
                self._display_name = display_name
                created = True
            return CalendarInfo(
                url=self.url,
                display_name=self._display_name,
                supports_vevent=True,
                supports_vtodo=self._supports_vtodo,
                supports_sync=True,
                created=created,
                sync_token=f"{_TOKEN_PREFIX}{self._seq}",
            )

    # --- reading --------------------------------------------------------------

    def changes(
        self, sync_token: str | None, *, known_hrefs: Collection[str] = ()
    ) -> RemoteChanges:
        """Changes since ``sync_token``; a full listing when it is None, unknown or expired."""
        with self._lock:
            self._check_exists()
            self.request_count += 1
            since = self._position(sync_token)
            token = f"{_TOKEN_PREFIX}{self._seq}"
            if since is None:
                changed = {h: o.etag for h, o in self._objects.items()}
                deleted = frozenset(h for h in known_hrefs if h not in changed)
                return RemoteChanges(token=token, changed=changed, deleted=deleted, full=True)
            moved = [h for h, at in self._changed_at.items() if at > since]
            changed = {h: self._objects[h].etag for h in moved if h in self._objects}
            gone = frozenset(h for h in moved if h not in self._objects)
            return RemoteChanges(token=token, changed=changed, deleted=gone, full=False)

    def _position(self, token: str | None) -> int | None:
        if token is None or not token.startswith(_TOKEN_PREFIX):
            return None
        try:
            at = int(token[len(_TOKEN_PREFIX) :])
        except ValueError:
            return None
        return at if self._oldest_token <= at <= self._seq else None

    def listing(self) -> dict[str, str]:
        """Every object: href → etag."""
        with self._lock:
            self._check_exists()
            self.request_count += 1
            return {h: o.etag for h, o in self._objects.items()}

    def multiget(self, hrefs: Iterable[str]) -> dict[str, FetchedObject]:
        """The objects at ``hrefs`` that exist."""
        with self._lock:
            self._check_exists()
            self.request_count += 1
            out: dict[str, FetchedObject] = {}
            unread: dict[str, tuple[str, str | None]] = {}
            for href in hrefs:
                obj = self._objects.get(href)
                if obj is not None and href in self._unservable:
                    with_etag = self._unservable[href]
                    why = "listed without its calendar-data" if with_etag else "the backend fails to read it"
                    unread[href] = (why, obj.etag if with_etag else None)
                elif obj is not None:
                    out[href] = FetchedObject(href=href, etag=obj.etag, data=obj.data)
            if unread:
                raise ObjectsUnread(self.url, out, unread)
            return out

    # --- writing --------------------------------------------------------------

    def create(self, name: str, data: bytes) -> WriteResult:
        """Store ``data`` at ``name`` if nothing is there (else PreconditionFailed)."""
        href = self.href_for(name)
        with self._lock:
            self._check_exists()
            self.request_count += 1
            if href in self._objects:
                raise PreconditionFailed(href, etag=None, status=412)
            return self._store(href, data, status=201)

    def update(self, href: str, data: bytes, etag: str) -> WriteResult:
        """Replace the object at ``href`` if it has ``etag`` (else PreconditionFailed)."""
        with self._lock:
            self._check_exists()
            self.request_count += 1
            current = self._objects.get(href)
            if current is None or current.etag != etag:
                raise PreconditionFailed(href, etag=etag, status=412)
            return self._store(href, data, status=204)

    def delete(self, href: str, etag: str | None = None) -> WriteResult:
        """Delete the object at ``href`` if it has ``etag``; status 404 when it is gone."""
        with self._lock:
            self._check_exists()
            self.request_count += 1
            current = self._objects.get(href)
            if current is None:
                return WriteResult(href=href, etag=None, status=404)
            if etag is not None and current.etag != etag:
                raise PreconditionFailed(href, etag=etag, status=412)
            self._drop(href)
            return WriteResult(href=href, etag=None, status=204)

    # --- another client -------------------------------------------------------

    def put_unconditionally(self, href: str, data: bytes) -> str:
        """Another client writes ``data`` at ``href`` with no condition; returns the new etag."""
        with self._lock:
            return self._store(href, data, status=201, check_uid=False).etag or ""

    def remove(self, href: str) -> None:
        """Another client deletes the object at ``href`` (nothing when absent)."""
        with self._lock:
            if href in self._objects:
                self._drop(href)

    def make_unservable(self, href: str, *, with_etag: bool = False) -> None:
        """The object at ``href`` stays listed but :meth:`multiget` cannot return it.

        As a server whose store holds it corrupt: the read fails for it
        (:class:`~apexcal.errors.ObjectsUnread`, no etag), or, ``with_etag``,
        it is answered with its etag and no calendar-data.  Until it is
        written again or removed.
        """
        with self._lock:
            self._unservable[href] = with_etag

    def expire_tokens(self) -> None:
        """Every sync token issued so far becomes invalid (the server forgot its history)."""
        with self._lock:
            self._oldest_token = self._seq + 1

    # --- internals --------------------------------------------------------------

    def _check_exists(self) -> None:
        if not self._exists:
            raise CalendarNotFound(self.url)

    def _store(self, href: str, data: bytes, *, status: int, check_uid: bool = True) -> WriteResult:
        uid = uid_of(data)
        if check_uid and uid:
            holder = next(
                (h for h, o in self._objects.items() if o.uid == uid and h != href), None
            )
            if holder is not None:
                raise UidConflict(href, uid, status=409, existing_href=holder)
        self._etags += 1
        etag = f'"m{self._etags}"'
        self._objects[href] = _Stored(data=data, etag=etag, uid=uid)
        self._touch(href)
        return WriteResult(href=href, etag=etag, status=status)

    def _drop(self, href: str) -> None:
        del self._objects[href]
        self._touch(href)

    def _touch(self, href: str) -> None:
        self._unservable.pop(href, None)
        self._seq += 1
        self._changed_at[href] = self._seq
