"""``apexcal status --config FILE | --config-dir DIR``: a table of every target and feed, read from the state store.

With ``--config-dir`` there is one table per organization and, when the
state is in PostgreSQL, a ``queue`` column: whether the workers have a job of
the target or feed running or queued; the organization's pull (the workers'
``pull`` job, once per interval for all its targets) then has a row of its
own once it has run.

Columns: kind, name, last success, last error (only when it is more recent
than the last success), objects (records of a target; size of a feed file),
pending writebacks, next run, failures (consecutive failed runs; ``-`` where
the store keeps no count: a feed under ``apexcal run``).  The daemon's scheduler lives in another
process, so "next run" is computed: the last run (success or error) plus the
job's interval; ``due`` when that is past, ``at start`` when it never ran.
Secrets are not read: the command needs only the state store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apexcal.cli.app import app

if TYPE_CHECKING:
    from rich.console import Console

    from apexcal.config import Config
    from apexcal.state import FeedStatus, Store, TargetState
    from apexcal.worker.queue import QueueState

_MAX_ERROR_CHARS = 80


@dataclass(frozen=True, kw_only=True)
class StatusRow:
    """One line of the status table."""

    kind: str
    name: str
    queue: str = "-"
    last_success: datetime | None
    last_error: str | None
    objects: str
    pending: str
    next_run: str
    failures: str = "-"


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def next_run(last_run: datetime | None, interval: timedelta, now: datetime) -> str:
    """When a job runs next: last run + interval, ``due`` if that is past, ``at start`` if never run."""
    if last_run is None:
        return "at start"
    due = last_run + interval
    return "due" if due <= now else _when(due)


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def _current_error(state: TargetState | FeedStatus) -> str | None:
    """The last error of ``state`` when no success came after it, as one short line."""
    if state.last_error_at is None or (
        state.last_success_at is not None and state.last_error_at <= state.last_success_at
    ):
        return None
    text = " ".join((state.last_error or "").split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 1] + "…"
    return f"{_when(state.last_error_at)}: {state.last_error_kind or 'error'}: {text}"


def _ran(state: TargetState) -> bool:
    return state.last_success_at is not None or state.last_error_at is not None


def status_rows(config: Config, store: Store, now: datetime) -> list[StatusRow]:
    """The rows of the status table for ``config``'s targets and feeds."""
    from apexcal.feeds.naming import split_user_feed_name

    rows: list[StatusRow] = []
    for target in config.targets:
        state = store.target_state(target.name)
        error = _current_error(state)
        rows.append(
            StatusRow(
                kind="target",
                name=target.name,
                last_success=state.last_success_at,
                last_error=error,
                objects=str(store.count_records(target.name)),
                pending=str(
                    store.count_pending_writebacks(target.name)
                    + store.count_pending_field_writebacks(target.name)
                ),
                next_run=next_run(
                    _latest(state.last_success_at, state.last_error_at),
                    target.interval or config.sync.interval,
                    now,
                ),
                failures=str(state.consecutive_failures),
            )
        )
    built = {status.feed: status for status in store.all_feed_status()}
    for feed in config.feeds:
        names = [feed.name]
        if feed.per_user:
            names += sorted(
                n for n in built if (split_user_feed_name(n) or ("",))[0] == feed.name
            )
        # Feed jobs record their failures in the feed's status (per-user files
        # share them); workers record them, with a count, as the state of "feed:<name>".
        feed_state = built.get(feed.name)
        error = _current_error(feed_state) if feed_state else None
        failures = "-"
        worker = store.target_state(f"feed:{feed.name}")
        if _ran(worker):
            error = error or _current_error(worker)
            failures = str(worker.consecutive_failures)
        for name in names:
            status = built.get(name)
            rows.append(
                StatusRow(
                    kind="feed",
                    name=name,
                    failures=failures,
                    last_success=status.built_at if status else None,
                    last_error=error,
                    objects=f"{status.length} bytes" if status and status.length is not None else "-",
                    pending="-",
                    next_run=next_run(
                        status.built_at if status else None,
                        feed.interval or config.sync.interval,
                        now,
                    ),
                )
            )
    return rows


@app.command("status")
def status_command(
    config_path: Annotated[
        Path | None, typer.Option("--config", "-c", help="The config file.", dir_okay=False)
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="A config directory: every organization.", file_okay=False),
    ] = None,
) -> None:
    """Show each target and feed: last success, last error, objects, pending writebacks, next run."""
    from rich.console import Console

    from apexcal.clock import utcnow
    from apexcal.config import load_config
    from apexcal.errors import UsageError
    from apexcal.log import configure
    from apexcal.state import Store

    if (config_path is None) == (config_dir is None):
        raise UsageError("give exactly one of --config FILE or --config-dir DIR")
    configure("warning")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    if config_path is not None:
        config = load_config(config_path)
        with Store.open(config.state.url) as store:
            rows = status_rows(config, store, utcnow())
        if not rows:
            console.print("no targets or feeds configured")
            return
        _print(console, f"apexcal — organization {config.source.organization_id}", rows, queue=False)
        return
    assert config_dir is not None
    from apexcal.config.directory import load_config_dir

    configs = load_config_dir(config_dir)
    with Store.open(configs.state_url) as opened:
        queue = None
        if opened.dialect == "postgresql":
            from apexcal.worker.queue import read_queue

            queue = read_queue(configs.state_url, opened.queue_schema())
        for key, config in configs:
            store = opened.for_organization(key)
            rows = status_rows(config, store, utcnow())
            if queue is not None:
                rows = [
                    replace(row, queue=queue.describe(f"{row.kind}:{key}/{row.name}"))
                    for row in rows
                ]
                pull = _pull_row(key, config, store, queue)
                if pull is not None:
                    rows.insert(0, pull)
            title = f"apexcal — {key} (organization {config.source.organization_id})"
            _print(console, title, rows, queue=queue is not None)


def _pull_row(key: str, config: Config, store: Store, queue: QueueState) -> StatusRow | None:
    """The workers' pull of organization ``key``, once it has run."""
    from apexcal.clock import utcnow
    from apexcal.worker.tasks import PULL_LABEL, pull_lock

    state = store.target_state(PULL_LABEL)
    if not _ran(state):
        return None
    return StatusRow(
        kind="pull",
        name=PULL_LABEL,
        queue=queue.describe(pull_lock(key)),
        last_success=state.last_success_at,
        last_error=_current_error(state),
        objects="-",
        pending="-",
        next_run=next_run(_latest(state.last_success_at, state.last_error_at),
                          config.sync.interval, utcnow()),
        failures=str(state.consecutive_failures),
    )


def _print(console: Console, title: str, rows: list[StatusRow], *, queue: bool) -> None:
    from rich.table import Table

    if not rows:
        console.print(f"{title}: no targets or feeds configured")
        return
    table = Table(title=title)
    columns = ["kind", "name", *(["queue"] if queue else []), "last success", "last error",
               "objects", "pending writebacks", "next run", "failures"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.kind,
            row.name,
            *([row.queue] if queue else []),
            _when(row.last_success),
            row.last_error or "-",
            row.objects,
            row.pending,
            row.next_run,
            row.failures,
        )
    console.print(table)
