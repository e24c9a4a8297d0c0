"""The Sink protocol: what a sync cycle needs from a calendar backend, and the records it speaks.

A :class:`Sink` is one calendar collection.  The cycle asks it to exist
(:meth:`~Sink.ensure_calendar`), what changed since a sync token
(:meth:`~Sink.changes`, a full listing when the token is invalid), every
href and etag (:meth:`~Sink.listing`), objects by href (:meth:`~Sink.multiget`),
and for conditional writes (:meth:`~Sink.create` with ``If-None-Match: *``,
:meth:`~Sink.update`/:meth:`~Sink.delete` with ``If-Match``, many at once with
:meth:`~Sink.apply_many`).  A write refused because the object is not as
expected raises :class:`~apexcal.errors.PreconditionFailed` (a 412); a
duplicate UID under another href :class:`~apexcal.errors.UidConflict`.

Two implementations: :class:`apexcal.sync.caldav.CalDAVSink` (a CalDAV server)
and :class:`apexcal.sync.memory_sink.MemorySink` (in memory: tests, dry runs).
``tests/contract/test_sink_contract.py`` holds both — and every CalDAV server
the test suite runs — to the same behaviour.

Hrefs are canonical: the decoded absolute path of an object
(``/alice/crm/apexcal-27-5@example.com.ics``).  ETags are opaque strings kept
exactly as the sink gave them, ready for ``If-Match``.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from apexcal.config import TargetConfig
from apexcal.errors import CalDAVError
from apexcal.sync.plan_model import Create, Delete, Update, Write

__all__ = [
    "CalendarInfo",
    "ConcurrentWrites",
    "FetchedObject",
    "Outcome",
    "RemoteChanges",
    "Sink",
    "SinkFactory",
    "Write",
    "WriteResult",
    "check_member_name",
    "run_writes",
    "uid_of",
]


@dataclass(frozen=True, kw_only=True)
class CalendarInfo:
    """The calendar collection behind a target, as the backend describes it.

    ``supports_vevent``/``supports_vtodo`` come from
    ``supported-calendar-component-set`` (absent means everything is allowed).
    ``supports_sync`` says whether the server lists the sync-collection report
    (None when it does not say).  ``sync_token`` is the collection's
    ``DAV:sync-token`` as read with the other properties (None when the server
    gives none): equal to the token of the last sync, it means nothing changed.
    """

    url: str
    display_name: str | None
    supports_vevent: bool
    supports_vtodo: bool
    supports_sync: bool | None = None
    created: bool = False
    sync_token: str | None = None


@dataclass(frozen=True, kw_only=True)
class RemoteChanges:
    """What changed in the collection since a sync token.

    ``token`` is the new sync token to store after the caller has processed
    the changes (None when the backend has no sync support: list in full each
    time).  It is always a token the backend issued, never one made up.

    When ``full`` is False, ``changed`` maps every href created or modified
    since the token to its etag, and ``deleted`` holds the hrefs removed since.

    When ``full`` is True (no token, an invalid or expired one, or no sync
    support), ``changed`` lists every object present in the collection, and
    ``deleted`` holds those of ``known_hrefs`` (passed to :meth:`Sink.changes`)
    that are absent.

    An etag may be ``""`` when a server reports a change without one; it never
    equals a recorded etag, so the object is fetched.  An href listed in
    ``changed`` that :meth:`Sink.multiget` then does not return was deleted in
    between.  Our own writes show up in the next ``changed`` like anyone's;
    they are recognised by their etag equalling the one recorded after the
    write.
    """

    token: str | None
    changed: dict[str, str]
    deleted: frozenset[str]
    full: bool


@dataclass(frozen=True, kw_only=True)
class FetchedObject:
    """One calendar object as read from the backend (``data``: iCalendar, CRLF, UTF-8)."""

    href: str
    etag: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    """What the backend answered to a write it accepted.

    ``etag`` is the ETag of the answer when the backend sent one; the cycle
    records a strong one as the etag to match, and reads the others back with
    :meth:`Sink.multiget` (:mod:`apexcal.sync.apply` says why).  ``status`` is the HTTP
    status: for a delete, 404 means the object was already gone.
    """

    href: str
    etag: str | None
    status: int


Outcome = WriteResult | CalDAVError
"""The result of one write of :meth:`Sink.apply_many`: accepted, or why not."""


class Sink(Protocol):
    """One calendar collection a cycle syncs into (see the module docstring)."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None:
        """Release what the sink holds (connections)."""

    def href_for(self, name: str) -> str:
        """The canonical href a member called ``name`` has (or will have); ValueError for a non-name."""
        ...

    def ensure_calendar(
        self, create: bool = False, *, display_name: str | None = None
    ) -> CalendarInfo:
        """Check the collection is a calendar, creating it when asked (else ``CalendarNotFound``)."""
        ...

    def changes(
        self, sync_token: str | None, *, known_hrefs: Collection[str] = ()
    ) -> RemoteChanges:
        """What changed since ``sync_token``; a full listing for None or an invalid token."""
        ...

    def listing(self) -> dict[str, str]:
        """Every object in the collection: href → etag (no sync token involved)."""
        ...

    def multiget(self, hrefs: Iterable[str]) -> dict[str, FetchedObject]:
        """Read the objects at ``hrefs``; missing ones are absent from the result.

        Objects present that the backend does not return end the call with
        :class:`~apexcal.errors.ObjectsUnread`, which carries the others.
        """
        ...

    def create(self, name: str, data: bytes) -> WriteResult:
        """Create member ``name`` only if nothing is there (412 → PreconditionFailed)."""
        ...

    def update(self, href: str, data: bytes, etag: str) -> WriteResult:
        """Replace the object at ``href`` if it still has ``etag`` (else PreconditionFailed)."""
        ...

    def delete(self, href: str, etag: str | None = None) -> WriteResult:
        """Delete the object at ``href`` (``If-Match`` when ``etag``); already gone → status 404."""
        ...

    def apply_many(
        self,
        writes: Iterable[Write],
        *,
        on_result: Callable[[int, Write, Outcome], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Outcome]:
        """Run many writes (see :func:`run_writes` for the contract); one outcome per write sent."""
        ...


class SinkFactory(Protocol):
    """Builds the sink of a target (tests pass their own to inject faults or use memory)."""

    def __call__(
        self,
        target: TargetConfig,
        *,
        concurrency: int,
        timeout: float,
        on_request: Callable[[str, int], None] | None,
    ) -> Sink: ...


AHEAD = 2
"""Writes :func:`run_writes` takes from its iterable ahead of those answered, per concurrent write:
enough that a free connection never waits for the caller to produce the next one."""


class _NotStarted(Exception):
    """A write of :func:`run_writes` that was not sent because a stop was asked."""


def write_one(sink: _Writes, write: Write) -> WriteResult:
    """Send one planned write to ``sink`` with its condition."""
    if isinstance(write, Create):
        return sink.create(write.href_name, write.data)
    if isinstance(write, Update):
        return sink.update(write.href, write.data, write.etag)
    assert isinstance(write, Delete)
    return sink.delete(write.href, write.etag)


def run_writes(
    send: Callable[[Write], WriteResult],
    writes: Iterable[Write],
    *,
    concurrency: int,
    on_result: Callable[[int, Write, Outcome], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Run ``send`` over ``writes``, ``concurrency`` at a time; one outcome per write sent, in order.

    Each outcome is a :class:`WriteResult` or the :class:`CalDAVError` that
    write met, so one failing object never blocks the rest.  ``on_result(index,
    write, outcome)`` is called in the calling thread as soon as each write
    finishes (completion order), so the caller can record each success at once
    with its own database session.  If ``on_result`` raises, writes not yet
    started are cancelled and the exception propagates once the running ones
    end.  ``stop`` is asked before each write starts: once it answers true, no
    further write is sent (those in flight finish), and those not sent have no
    outcome and no ``on_result`` call.

    ``writes`` is iterated lazily, in the calling thread, at most
    :data:`AHEAD` × ``concurrency`` writes ahead of those answered: a
    generator that maps objects as they are asked for overlaps that work with
    the writes in flight (the first write starts as soon as the first object
    exists).  An exception raised by the iteration takes no more writes: those
    sent are answered and reported, then it propagates.
    """
    results: dict[int, Outcome] = {}
    source = enumerate(writes)
    window = AHEAD * concurrency
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="caldav-write") as pool:
        # Each write runs in a copy of the caller's context, so its log lines
        # carry the cycle's bound target, organization and cycle id.
        def run(write: Write) -> WriteResult:
            if stop is not None and stop():
                raise _NotStarted
            return send(write)

        running: dict[Future[WriteResult], tuple[int, Write]] = {}
        failed: list[Exception] = []
        stopped = False

        def fill() -> None:
            while not failed and not stopped and len(running) < window:
                try:
                    item = next(source, None)
                except Exception as exc:  # the writes sent are still answered and reported
                    failed.append(exc)
                    return
                if item is None:
                    return
                running[pool.submit(contextvars.copy_context().run, run, item[1])] = item

        try:
            fill()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, write = running.pop(fut)
                    outcome: Outcome
                    try:
                        outcome = fut.result()
                    except _NotStarted:
                        stopped = True  # no more writes are taken
                        continue
                    except CalDAVError as exc:
                        outcome = exc
                    results[i] = outcome
                    if on_result is not None:
                        on_result(i, write, outcome)
                fill()
        except BaseException:
            for f in running:
                f.cancel()
            raise
    if failed:
        raise failed[0]
    return [results[i] for i in sorted(results)]



class _Writes(Protocol):
    """The conditional writes of a sink: what :func:`write_one` sends."""

    def create(self, name: str, data: bytes) -> WriteResult: ...

    def update(self, href: str, data: bytes, etag: str) -> WriteResult: ...

    def delete(self, href: str, etag: str | None = None) -> WriteResult: ...


class _Writer(_Writes, Protocol):
    """What :class:`ConcurrentWrites` needs of the sink it is part of."""

    concurrency: int


class ConcurrentWrites:
    """:meth:`Sink.apply_many` for a sink with ``concurrency``: its own writes through :func:`run_writes`."""

    def apply_many(
        self: _Writer,
        writes: Iterable[Write],
        *,
        on_result: Callable[[int, Write, Outcome], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Outcome]:
        """Run many writes, ``concurrency`` at a time (:func:`run_writes`)."""
        return run_writes(
            lambda w: write_one(self, w),
            writes,
            concurrency=self.concurrency,
            on_result=on_result,
            stop=stop,
        )

def check_member_name(name: str) -> str:
    """``name`` when it can be a member of a collection (no ``/``, not ``.``/``..``)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a member name: {name!r}")
    return name


_UID_RE = re.compile(rb"^UID[;:](?:[^:\r\n]*:)?([^\r\n]*)", re.MULTILINE)
_FOLD_RE = re.compile(rb"\r?\n[ \t]")


def uid_of(data: bytes) -> str:
    """The first UID in an iCalendar body ("" when there is none)."""
    m = _UID_RE.search(_FOLD_RE.sub(b"", data))
    return m.group(1).decode("utf-8", "replace").strip() if m else ""
