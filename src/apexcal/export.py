"""The one-shot export: what to read from the API and how to split it into files.

The components are mapped on every core (:mod:`apexcal.parallel`) into the
sorted spool of :mod:`apexcal.feeds.spool` (shared with the feed files);
this module holds what only ``apexcal export`` needs: the filters pushed
into the API query (read by id with
:meth:`~apexcal.apex.client.ApexClient.list_activities_by_id`), ``--type``
resolution, the split into one file per user or type, and
:func:`run_export`, which reads, maps and writes (the command line only
parses options and shows progress).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity, ActivityType, type_key
from apexcal.apex.retry import RetryPolicy
from apexcal.errors import UnknownActivityType, UsageError
from apexcal.feeds.spool import (
    ComponentSpool,
    GroupOf,
    whole,
    write_file,
    write_spooled,
)
from apexcal.ical.feed import CalendarProps
from apexcal.ical.fields import SUMMARY_FIELDS
from apexcal.parallel import SpoolJob, spool_mapped

if TYPE_CHECKING:
    from apexcal.config import Config
    from apexcal.ical.mapping import MappingOptions

log = structlog.get_logger(__name__)

# Characters kept in file names made from type keys (which come from the CRM).
_FILE_UNSAFE = re.compile(r"[^\w.-]")

SplitBy = Literal["user", "type"]


# --- what to export ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExportFilters:
    """The selection of an export, pushed into the API query.

    ``start_from``/``start_to`` are inclusive bounds on ``start_date``;
    empty tuples and ``None`` mean "no condition".
    """

    user_ids: tuple[int, ...] = ()
    type_keys: tuple[str, ...] = ()
    start_from: date | None = None
    start_to: date | None = None
    done: bool | None = None

    def api_query(self) -> dict[str, Any]:
        """The API query parameters for :meth:`ApexClient.list_activities`."""
        query: dict[str, Any] = {}
        if self.user_ids:
            ids = sorted(set(self.user_ids))
            query["assigned_to_user_id"] = ids[0] if len(ids) == 1 else ids
        if self.type_keys:
            keys = list(dict.fromkeys(self.type_keys))
            query["activity_type"] = keys[0] if len(keys) == 1 else keys
        bounds: dict[str, date] = {}
        if self.start_from is not None:
            bounds["$gte"] = self.start_from
        if self.start_to is not None:
            bounds["$lte"] = self.start_to
        if bounds:
            query["start_date"] = bounds
        if self.done is not None:
            query["done"] = self.done
        return query


def resolve_type_keys(requested: Iterable[str], types: Iterable[ActivityType]) -> tuple[str, ...]:
    """The ``activity_type`` keys named by ``requested`` (keys or names, case-insensitive).

    Raises :class:`UnknownActivityType` for the first name that matches no type.
    """
    known = sorted(types, key=lambda t: t.key)
    keys: list[str] = []
    for name in requested:
        wanted = name.strip().casefold()
        as_key = type_key(name)
        for t in known:
            if wanted in (t.key.casefold(), t.name.strip().casefold()) or as_key == t.key:
                keys.append(t.key)
                break
        else:
            raise UnknownActivityType(name, known)
    return tuple(dict.fromkeys(keys))


def types_by_key(types: Iterable[ActivityType]) -> dict[str, ActivityType]:
    """Activity types keyed the way the mapping looks them up (``type_key(name)``)."""
    return {t.key: t for t in types}


def split_group(split_by: SplitBy) -> GroupOf:
    """The grouping of a split export: by assigned user id, or by type key (``none`` when unset)."""

    def by_user(activity: Activity) -> Sequence[tuple[str, str | None]]:
        user = activity.assigned_to_user_id
        name = activity.assigned_to_user.full_name if activity.assigned_to_user else None
        return ((f"user-{user}" if user is not None else "user-none", name),)

    def by_type(activity: Activity) -> Sequence[tuple[str, str | None]]:
        raw = activity.activity_type
        key = _FILE_UNSAFE.sub("_", type_key(raw)).lstrip(".") if raw and raw.strip() else ""
        return ((f"type-{key or 'none'}", raw),)

    return by_user if split_by == "user" else by_type


# --- running an export ------------------------------------------------------------

#: The calendar name of an export (``– <user or type>`` is added per split file).
CALENDAR_NAME = "AchieveApex activities"


@dataclass(frozen=True, kw_only=True)
class ExportProgress:
    """Callbacks of the progress display: one activity fetched, writing starts, one component written."""

    fetched: Callable[[], None] = lambda: None
    writing: Callable[[int], None] = lambda total: None
    written: Callable[[], None] = lambda: None

    def counted(self, components: Iterable[bytes]) -> Iterator[bytes]:
        """``components``, reporting each as written."""
        for component in components:
            yield component
            self.written()


def needs_joins(options: MappingOptions) -> bool:
    """Whether the mapping shows joined names (deal, contact, company, assignee)."""

    if options.privacy == "busy":
        return False
    if options.privacy == "full":
        return True
    joined = SUMMARY_FIELDS - {"subject", "type"}
    return any(f"{{{name}}}" in options.summary_template for name in joined)


def _write_stdout(write: Callable[[Any], None]) -> None:
    try:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours, and nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None


def _to_file(
    path: Path,
    components: Iterable[bytes],
    props: CalendarProps,
    *,
    zoned: bool,
    mkdir: bool = False,
) -> None:
    """Write one calendar file atomically; a file system refusal is the operator's to fix."""

    try:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, components, props, zoned=zoned)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def run_export(
    *,
    config: Config | None,
    base_url: str,
    org_id: int,
    token: str,
    options: MappingOptions,
    requested_types: tuple[str, ...],
    user_ids: tuple[int, ...],
    start_from: date | None,
    start_to: date | None,
    done: bool | None,
    target: Path | None,
    split: SplitBy | None,
    output_dir: Path | None,
    progress: ExportProgress,
) -> None:
    """Read the selection from the API, map it through the spool, write one calendar per group.

    ``target`` ``None`` (and no split) writes to standard output; a file is
    written atomically, and one that cannot be written is the operator's
    to fix (:class:`UsageError`).
    """
    page_size = config.source.page_size if config is not None else 100
    timeout = config.source.timeout.total_seconds() if config is not None else 30.0
    # A one-shot command run by a person: retry briefly, then say what is wrong.
    retry = RetryPolicy(attempts=3, timeout=15.0, wait_initial=0.2, wait_max=2.0, wait_jitter=0.3)
    with (
        ApexClient(
            base_url, token, org_id, page_size=page_size, timeout=timeout, retry=retry
        ) as client,
        ComponentSpool() as spool,
    ):
        types = list(client.list_activity_types())
        filters = ExportFilters(
            user_ids=user_ids,
            type_keys=resolve_type_keys(requested_types, types),
            start_from=start_from,
            start_to=start_to,
            done=done,
        )
        query = filters.api_query()
        if needs_joins(options):
            query["fastJoinForActivityList"] = True
        (counts,) = spool_mapped(
            client.list_activities_by_id(**query),
            [SpoolJob(spool=spool, options=options, group_of=split_group(split) if split else whole)],
            types=types_by_key(types),
            on_activity=progress.fetched,
        )
        if split is None:
            spool.touch("")
        progress.writing(len(spool))
        written: list[str] = []
        for group, spooled in spool.groups():
            components = progress.counted(spooled)
            label = spool.labels.get(group) or group
            props = CalendarProps(
                name=f"{CALENDAR_NAME} – {label}" if split else CALENDAR_NAME,
                timezone=options.timezone,
            )
            zoned = group in spool.zoned
            if split is not None and output_dir is not None:
                path = output_dir / f"{group}.ics"
                _to_file(path, components, props, zoned=zoned, mkdir=True)
                written.append(str(path))
            elif target is not None:
                _to_file(target, components, props, zoned=zoned)
            else:
                _write_stdout(
                    partial(write_spooled, components=components, props=props, zoned=zoned)
                )
        log.info(
            "export.done",
            read=counts.read,
            exported=len(spool),
            skipped=counts.skipped,
            files=len(written),
            spilled_runs=spool.runs,
        )
