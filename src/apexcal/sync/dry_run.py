"""``apexcal sync --dry-run``: the plan a cycle would apply, with nothing written anywhere.

:func:`preview_target` runs a cycle's pull, detection, mapping, planning and
merging (:meth:`apexcal.sync.cycle.Cycle.preview`) over a sink that reads
the calendar but refuses every write (:class:`ReadOnlySink`: no PUT, DELETE,
MKCALENDAR or PROPPATCH), with an API client that is only asked to read
(completions are listed, never PATCHed), on a store the caller makes
throwaway (:func:`apexcal.state.scratch.scratch_store`), so the calendar, the
CRM and the real state store are left exactly as they were.

What it reports per target (:class:`TargetPreview`): creates (activity, UID,
href), updates (activity, href, the owned properties that change), deletes
(UID, href), adoptions of objects already holding the wanted content,
completions it would send to the CRM (those planned now and those journaled
by earlier cycles and still pending), and the error that stopped planning
(the mass-delete guard, an unreachable server).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import structlog

from apexcal.apex.client import ApexClient
from apexcal.clock import utcnow
from apexcal.config import Config, TargetConfig
from apexcal.ical.ownership import owned_changes
from apexcal.state import Store
from apexcal.sync.caldav import default_sink_factory
from apexcal.sync.cycle import Cycle
from apexcal.sync.fieldwriteback import FieldEdit
from apexcal.sync.plan import Plan
from apexcal.sync.plan_merge import Copy
from apexcal.sync.sink import (
    CalendarInfo,
    FetchedObject,
    Outcome,
    RemoteChanges,
    Sink,
    SinkFactory,
    Write,
    WriteResult,
)


class ReadOnlySink:
    """A sink that reads through to another and refuses every write (a dry run's calendar)."""

    def __init__(self, inner: Sink) -> None:
        self._inner = inner

    def __enter__(self) -> Self:
        self._inner.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        """Close the sink read through."""
        self._inner.close()

    def href_for(self, name: str) -> str:
        """The href of member ``name``."""
        return self._inner.href_for(name)

    def ensure_calendar(self, create: bool = False, *, display_name: str | None = None) -> CalendarInfo:
        """The calendar, as it is: never created."""
        return self._inner.ensure_calendar(create=False, display_name=display_name)

    def changes(self, sync_token: str | None, *, known_hrefs: Collection[str] = ()) -> RemoteChanges:
        """What changed since ``sync_token`` (read through)."""
        return self._inner.changes(sync_token, known_hrefs=known_hrefs)

    def listing(self) -> dict[str, str]:
        """Every href and etag (read through)."""
        return self._inner.listing()

    def multiget(self, hrefs: Iterable[str]) -> dict[str, FetchedObject]:
        """Objects by href (read through)."""
        return self._inner.multiget(hrefs)

    def create(self, name: str, data: bytes) -> WriteResult:
        """Refused: a dry run writes nothing."""
        raise RuntimeError(f"dry run: refusing to create {name}")

    def update(self, href: str, data: bytes, etag: str) -> WriteResult:
        """Refused: a dry run writes nothing."""
        raise RuntimeError(f"dry run: refusing to update {href}")

    def delete(self, href: str, etag: str | None = None) -> WriteResult:
        """Refused: a dry run writes nothing."""
        raise RuntimeError(f"dry run: refusing to delete {href}")

    def apply_many(
        self,
        writes: Iterable[Write],
        *,
        on_result: Callable[[int, Write, Outcome], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Outcome]:
        """Refused: a dry run writes nothing."""
        raise RuntimeError("dry run: refusing writes")


@dataclass(frozen=True, kw_only=True)
class TargetPreview:
    """What one target's cycle would do (see the module docstring); plain data for text or JSON."""

    target: str
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    adopts: list[dict[str, Any]] = field(default_factory=list)
    writebacks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The preview as JSON-ready data (``apexcal sync --dry-run --json``)."""
        return {
            "target": self.target,
            "creates": self.creates,
            "updates": self.updates,
            "deletes": self.deletes,
            "adopts": self.adopts,
            "writebacks": self.writebacks,
            "error": self.error,
        }

    def lines(self) -> list[str]:
        """The preview as text: a summary line, then one line per action."""
        if self.error is not None:
            return [f"{self.target}: would fail: {self.error}".replace("\n", " ")]
        counts = ", ".join(
            f"{len(items)} {label}"
            for label, items in (
                ("to create", self.creates), ("to update", self.updates), ("to delete", self.deletes),
                ("to adopt", self.adopts), ("to write back", self.writebacks),
            )
        )
        out = [f"{self.target}: dry run: {counts}"]
        out += [f"  create activity {c['activity_id']} {c['href']}" for c in self.creates]
        out += [
            f"  update activity {u['activity_id']} {u['href']} ({', '.join(u['changes']) or 'no owned change'})"
            for u in self.updates
        ]
        out += [f"  delete {d['href']} ({d['uid']})" for d in self.deletes]
        out += [f"  adopt activity {a['activity_id']} {a['href']}" for a in self.adopts]
        out += [
            f"  write back activity {w['activity_id']}: {_written_back(w)}"
            + (" (pending from an earlier cycle)" if w["pending"] else "")
            for w in self.writebacks
        ]
        return out


def _written_back(entry: Mapping[str, Any]) -> str:
    """``done=true``, or the CRM fields of a two-way edit (``subject="…", start_date=2026-03-05``)."""
    if "done" in entry:
        return f"done={str(entry['done']).lower()}"
    return ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in entry["fields"].items())


def describe_plan(
    target: str,
    plan: Plan,
    sink: Sink,
    copies: dict[str, Copy],
    pending: Iterable[tuple[int, bool]] = (),
    field_edits: Iterable[FieldEdit] = (),
) -> TargetPreview:
    """A plan (and the completions still pending in the journal) as a :class:`TargetPreview`."""

    def changes(href: str, data: bytes) -> list[str]:
        copy = copies.get(href)
        return owned_changes(copy.data, data) if copy is not None else ["(object not read)"]

    return TargetPreview(
        target=target,
        creates=[
            {"activity_id": c.activity_id, "uid": c.uid, "href": sink.href_for(c.href_name), "kind": c.kind}
            for c in plan.creates
        ],
        updates=[
            {"activity_id": u.activity_id, "uid": u.uid, "href": u.href, "kind": u.kind, "changes": changes(u.href, u.data)}
            for u in plan.updates
        ],
        deletes=[{"uid": d.uid, "href": d.href} for d in plan.deletes],
        adopts=[{"activity_id": a.activity_id, "uid": a.uid, "href": a.href} for a in plan.adopts],
        writebacks=[
            *({"activity_id": a, "done": d, "pending": True} for a, d in pending),
            *({"activity_id": w.activity_id, "done": w.done, "pending": False} for w in plan.writebacks),
            *(
                {"activity_id": e.activity_id, "fields": dict(e.patch), "pending": e.pending}
                for e in sorted(field_edits, key=lambda e: (not e.pending, e.activity_id))
            ),
        ],
    )


def preview_target(
    config: Config,
    target: TargetConfig,
    store: Store,
    *,
    client: ApexClient,
    sink_factory: SinkFactory = default_sink_factory,
    force: bool = False,
    now: datetime | None = None,
) -> TargetPreview:
    """What a cycle of ``target`` would do now; ``store`` must be a scratch store (it is written to).

    Errors that stop the plan (the mass-delete guard, an unreachable
    calendar or API) are raised as in a cycle.
    """
    with structlog.contextvars.bound_contextvars(
        organization=store.organization, target=target.name,
        organization_id=config.source.organization_id, cycle_id=uuid.uuid4().hex[:12],
    ), ReadOnlySink(
        sink_factory(
            target, concurrency=config.sync.concurrency, timeout=config.source.timeout.total_seconds(),
            on_request=None,
        )
    ) as sink:
        cycle = Cycle(config, target, store, client, sink, now=now or utcnow(), force=force)
        plan = cycle.preview()
        pending = [(e.activity_id, e.done) for e in store.pending_writebacks(target.name)]
        return describe_plan(target.name, plan, sink, cycle.copies, pending, cycle.field_previews)
