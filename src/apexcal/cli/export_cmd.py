"""``apexcal export``: a one-shot .ics export straight from the API (no state store).

Filters are pushed into the API query (start date range, assignee, type,
done), so only matching activities travel.  The export streams: activities
are mapped as they arrive and sorted by UID through a disk-backed spool, so
memory stays flat whatever the count.  A file output is written atomically
(temporary file + rename): an interrupted export — Ctrl-C exits 130 — leaves
no file, or the previous one, at the output path.  Standard output (the
default, ``-o -``) cannot be atomic; a pipe gets a complete calendar or is
cut off.

Operator errors (bad credentials, wrong organization, unreachable API, bad
date, unknown type) print one line on stderr and exit 2; nothing matching is
not an error: the output is a valid empty calendar.  Without ``--config``,
dates and times are read as UTC and UIDs use the host of ``--base-url``.

Places get GEO only from the API's own ``location_geocoded``: unlike sync
targets and feeds, a one-shot export does not fall back to the geocoder (the
offline gazetteer alone takes seconds and ~80 MiB to load, and there is no
state store to cache answers in).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import (
    ApiHTTPError,
    ApiProtocolError,
    ApiTransportError,
    Forbidden,
    NotAuthenticated,
    UsageError,
)

if TYPE_CHECKING:
    from apexcal.config import Config
    from apexcal.export import ExportProgress, SplitBy
    from apexcal.ical.fields import Privacy, TasksAs
    from apexcal.ical.mapping import MappingOptions

PRIVACY_CHOICES = ("full", "public", "busy")
TASKS_CHOICES = ("events", "todos")
SPLIT_CHOICES = ("user", "type")


def _parse_date(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option}: not a date: {value!r} (expected YYYY-MM-DD)") from None


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    folded = value.strip().lower()
    if folded not in choices:
        raise UsageError(f"{option}: {value!r} is not one of {', '.join(choices)}")
    return folded


def _positive_int(option: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = 0
    if number <= 0:
        raise UsageError(f"{option}: not a positive integer id: {value!r}")
    return number


@contextmanager
def _progress(enabled: bool) -> Iterator[ExportProgress]:
    """A rich progress display on stderr with counts (when ``enabled``), else silent callbacks."""
    from apexcal.export import ExportProgress

    if not enabled:
        yield ExportProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        fetching = progress.add_task("fetching activities", total=None)
        writing: list[TaskID] = []

        def start_writing(total: int) -> None:
            done = progress.tasks[0].completed
            progress.update(fetching, total=done, completed=done)
            writing.append(progress.add_task("writing", total=total))

        yield ExportProgress(
            fetched=lambda: progress.advance(fetching),
            writing=start_writing,
            written=lambda: progress.advance(writing[0]),
        )


def _source(
    config_path: Path | None, base_url: str | None, org: str | None
) -> tuple[Config | None, str, int, str]:
    """``(config, base_url, organization_id, token)`` from the options, config and environment."""
    from apexcal.config import TOKEN_ENV

    config = None
    if config_path is not None:
        from apexcal.config import load_config, resolve_secrets

        config = load_config(config_path)
        # Only the API token is needed: CalDAV passwords are not read (or required).
        config = resolve_secrets(config.model_copy(update={"targets": []}))
    if base_url is None and config is not None:
        base_url = config.source.base_url
    org_id = _positive_int("--org", org) if org is not None else None
    if org_id is None and config is not None:
        org_id = config.source.organization_id
    if base_url is None or org_id is None:
        raise UsageError("give --config FILE, or both --base-url URL and --org ID")
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: not an http(s) URL: {base_url!r}")
    if config is not None:
        token = config.source.require_token()
    else:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise UsageError(f"no API token: set ${TOKEN_ENV} (or use --config)")
    return config, base_url, org_id, token


def _options(config: Config | None, base_url: str, privacy: str, tasks_as: str) -> MappingOptions:
    from urllib.parse import urlsplit

    from apexcal.config.mapping import mapping_options
    from apexcal.ical.mapping import MappingOptions

    mode: Privacy = "full" if privacy == "full" else "busy" if privacy == "busy" else "public"
    tasks: TasksAs = "events" if tasks_as == "events" else "todos"
    if config is None:
        return MappingOptions(
            uid_domain=urlsplit(base_url).hostname or "localhost", privacy=mode, tasks_as=tasks
        )
    return mapping_options(config, privacy=mode, tasks_as=tasks)


@app.command("export")
def export_command(
    config_path: Annotated[
        Path | None,
        typer.Option("--config", "-c", metavar="FILE", help="A config file (source, mapping)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", metavar="URL", help="The API's base URL (overrides the config)."
        ),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option("--org", metavar="ID", help="The organization id (overrides the config)."),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", metavar="FILE", help="The output file, or - for standard output."
        ),
    ] = "-",
    user: Annotated[
        list[str] | None,
        typer.Option("--user", metavar="ID", help="Only activities assigned to this user id."),
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type", metavar="NAME", help="Only this activity type (key or name; repeatable)."
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="DATE", help="Only activities starting on or after this date."
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="DATE", help="Only activities starting on or before this date."
        ),
    ] = None,
    done: Annotated[
        bool | None, typer.Option("--done/--not-done", help="Only done, or only open, activities.")
    ] = None,
    privacy: Annotated[
        str,
        typer.Option(
            "--privacy", metavar="full|public|busy", help="full, public (no private notes) or busy."
        ),
    ] = "public",
    tasks_as: Annotated[
        str, typer.Option("--tasks-as", metavar="events|todos", help="events (default) or todos.")
    ] = "events",
    split_by: Annotated[
        str | None,
        typer.Option("--split-by", metavar="user|type", help="One file per user or per type."),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", metavar="DIR", help="Where --split-by writes its files."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level", metavar="LEVEL", help="debug, info, warning or error (default)."
        ),
    ] = None,
) -> None:
    """Export activities from the API to an .ics calendar (standard output by default)."""
    from apexcal.export import run_export
    from apexcal.log import configure

    # Quiet by default: stderr is for the one line of an operator error (and the progress bar).
    configure(log_level or "error")
    start_from = _parse_date("--from", from_)
    start_to = _parse_date("--to", to)
    if start_from and start_to and start_from > start_to:
        raise UsageError(f"--from {start_from} is after --to {start_to}")
    privacy = _choice("--privacy", privacy, PRIVACY_CHOICES)
    tasks_as = _choice("--tasks-as", tasks_as, TASKS_CHOICES)
    split: SplitBy | None = None
    if split_by is not None:
        split = "user" if _choice("--split-by", split_by, SPLIT_CHOICES) == "user" else "type"
        if output_dir is None:
            raise UsageError("--split-by needs --output-dir DIR")
        if output != "-":
            raise UsageError("--split-by writes into --output-dir; do not give --output")
    elif output_dir is not None:
        raise UsageError("--output-dir needs --split-by user|type")
    user_ids = tuple(_positive_int("--user", u) for u in user or ())
    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"--output: no such directory: {target.parent}")
    if target is not None and target.is_dir():
        raise UsageError(f"--output: {target} is a directory")
    config, url, org_id, token = _source(config_path, base_url, org)
    options = _options(config, url, privacy, tasks_as)

    try:
        with _progress(sys.stderr.isatty()) as progress:
            run_export(
                config=config,
                base_url=url,
                org_id=org_id,
                token=token,
                options=options,
                requested_types=tuple(type_ or ()),
                user_ids=user_ids,
                start_from=start_from,
                start_to=start_to,
                done=done,
                target=target,
                split=split,
                output_dir=output_dir,
                progress=progress,
            )
    except ApiTransportError as exc:
        # Name the host: the error itself knows only the request's path.
        raise UsageError(f"cannot reach the API at {url}: {exc}") from None
    except (NotAuthenticated, Forbidden):
        raise
    except (ApiHTTPError, ApiProtocolError) as exc:
        # A wrong --base-url (404, HTML), a proxy error or a server that keeps
        # failing after the retries: the operator's to look at, in one line.
        raise UsageError(f"the API at {url} answered: {exc}") from None
