"""Feed files: the ``[[feeds]]`` of the config written as .ics files from the state store's mirror.

Each feed selects the organization's live activities with its ``filter``
(the API's query parameters, matched locally) *and* its window
(:mod:`apexcal.feeds.window`), and maps them with the feed's ``privacy`` and
``tasks_as`` (feeds default to ``public`` and ``events``: most subscribing
clients ignore VTODO).  Per-user feeds also write one file per user
(:mod:`apexcal.feeds.naming`).

Determinism: components are sorted by UID (through the disk-backed spool of
:mod:`apexcal.feeds.spool`, so a 10,000-event feed is never held in memory),
every value comes from the data, and ``today`` only selects the window;
unchanged data gives byte-identical files.  Outputs are written atomically
and only when the bytes changed, so ``Last-Modified`` and the ETag stay put:
files by default (:mod:`apexcal.feeds.atomic`), or, in worker mode, versioned
rows of the state store (:mod:`apexcal.feeds.output`).  A build whose
inputs did not change since the last one is skipped outright (see
:func:`build_all_feeds`).

Calendar properties: ``NAME``/``X-WR-CALNAME`` (``calendar_name``),
``DESCRIPTION``/``X-WR-CALDESC``, ``REFRESH-INTERVAL``/``X-PUBLISHED-TTL``,
``COLOR``/``X-APPLE-CALENDAR-COLOR``, ``X-WR-TIMEZONE`` and a VTIMEZONE for
the source's zone when a component uses it; no ``METHOD``.  There is no
``SOURCE`` in the file: a feed's only working URL carries its secret token,
which must not be written into a file that is handed around (the server
adds it per request).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from apexcal import __version__
from apexcal.apex.models import ActivityType
from apexcal.clock import Clock, utcnow
from apexcal.config.mapping import mapping_options
from apexcal.errors import FeedBuildError
from apexcal.feeds.naming import user_feed_name, user_feed_path
from apexcal.feeds.output import FeedOutput, FileOutput
from apexcal.feeds.selection import BASE_GROUP, USER_GROUP, FeedJob, FeedView, view_file, views_of
from apexcal.feeds.spool import ComponentSpool, write_spooled
from apexcal.feeds.window import feed_today, feed_window
from apexcal.geocode.policy import Geocoding
from apexcal.ical.feed import CalendarProps, etag_from_sha256
from apexcal.ical.mapping import MappingOptions
from apexcal.parallel import SpoolJob, spool_mapped

if TYPE_CHECKING:
    from apexcal.config import Config, FeedConfig
    from apexcal.metrics import Metrics
    from apexcal.state import Store

log = structlog.get_logger(__name__)

@dataclass(frozen=True, kw_only=True)
class FeedResult:
    """One feed file after a build: whether its bytes changed, its ETag, events and size.

    ``rebuilt`` is false when the build was skipped because nothing the feed
    depends on changed since the last one (see :func:`build_all_feeds`).
    """

    name: str
    path: Path
    changed: bool
    etag: str
    count: int
    length: int
    rebuilt: bool = True



def feed_options(config: Config, feed: FeedConfig) -> MappingOptions:
    """The mapping options of a feed: its privacy, tasks and done events, the config's mapping table."""
    return mapping_options(
        config, privacy=feed.privacy, tasks_as=feed.tasks_as, done_events=feed.done_events, alarms=feed.alarms
    )


def _props(config: Config, feed: FeedConfig, user_label: str | None = None) -> CalendarProps:
    name = feed.calendar_name or feed.name
    if user_label is not None:
        name = f"{name} – {user_label}"
    return CalendarProps(
        name=name,
        description=feed.description,
        color=feed.color,
        refresh_interval=feed.refresh_interval,
        timezone=config.source.timezone,
    )


def build_feed(
    feed: FeedConfig,
    config: Config,
    store: Store,
    *,
    today: date,
    output: FeedOutput | None = None,
) -> list[FeedResult]:
    """Build one feed (and, when ``per_user``, each of its per-user files); see the module docstring.

    ``output`` says where the bytes go: files (the default) or the store
    (:class:`~apexcal.feeds.output.DatabaseOutput`, worker mode).
    """
    return _build(
        config, [feed], store, today=today, clock=utcnow, metrics=None,
        output=output or FileOutput(),
    )


def build_all_feeds(
    config: Config,
    store: Store,
    *,
    today: date | None = None,
    metrics: Metrics | None = None,
    clock: Clock = utcnow,
) -> list[FeedResult]:
    """Build every configured feed in one pass over the mirror; called after each sync cycle.

    ``today`` defaults to today in the source's zone.  A feed whose inputs —
    the mirror's change sequence, the activity types, the window and the
    feed's settings — are those of its last build, and whose files are
    untouched since, is not rebuilt at all (``rebuilt=False``): a cycle that
    changed nothing costs a few reads, not a mapping of every activity.  The
    record of each build — and so the one answer to "is this feed fresh" —
    is the store's feed status (``set_feed_built``), written for every build,
    changed or not, so health checks see fresh feeds too.  A feed that cannot be written
    does not stop the others: :class:`FeedBuildError` is raised at the end,
    carrying both the failures and the results.
    """
    day = today if today is not None else feed_today(config, clock)
    return _build(
        config, list(config.feeds), store, today=day, clock=clock, metrics=metrics,
        output=FileOutput(),
    )


def _signature(
    config: Config,
    feed: FeedConfig,
    seq: int,
    types: Mapping[str, ActivityType],
    window: tuple[date, date],
    views: list[FeedView],
) -> str:
    """A hash of everything a feed's files depend on: data (mirror sequence, types), window, settings, views."""
    doc = {
        "views": [[v.output, v.canonical] for v in views],
        "version": __version__,
        "organization_id": config.source.organization_id,
        "seq": seq,
        "types": sorted(t.content_hash() for t in types.values()),
        "window": [d.isoformat() for d in window],
        "feed": feed.model_dump(mode="json"),
        "options": repr(feed_options(config, feed)),
        "geocoder": config.mapping.geocoder,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _unchanged(
    store: Store, feed: FeedConfig, signature: str, output: FeedOutput, views: list[FeedView]
) -> list[FeedResult] | None:
    """The outputs of the last build when it had this signature and they are untouched since, else None.

    The store's feed status is the record: every output of the feed (its
    own, each per-user one, each view) must have been built from these
    inputs and still be what that build left (for a file: its size and mtime).
    """
    recorded = {status.feed: status for status in store.feed_files_status(feed.name)}
    results = []
    outputs = [*output.outputs(feed), *((v.name, view_file(feed, v)) for v in views)]
    for name, path in outputs:
        status = recorded.get(name)
        if status is None or status.signature != signature or status.etag is None:
            return None
        if not output.intact(name, path, status):
            return None
        results.append(
            FeedResult(
                name=name,
                path=path,
                changed=False,
                etag=status.etag,
                count=status.events or 0,
                length=status.length or 0,
                rebuilt=False,
            )
        )
    return results


def _record(
    store: Store,
    feed: FeedConfig,
    signature: str,
    results: list[FeedResult],
    *,
    clock: Clock,
    metrics: Metrics | None,
    output: FeedOutput,
) -> None:
    """Record each output's build (changed or not, so health checks see fresh feeds) and its inputs."""
    for r in results:
        at = clock()
        mtime_ns = output.stamp(r.name, r.path)  # None when gone: the next build rebuilds it
        store.set_feed_built(
            r.name,
            r.etag,
            at,
            r.length,
            parent=feed.name,
            signature=signature,
            events=r.count,
            mtime_ns=mtime_ns,
        )
        if metrics is not None:
            metrics.feed_built(r.name, at, changed=r.changed)
        log.info(
            "feed.built",
            feed=r.name,
            changed=r.changed,
            rebuilt=r.rebuilt,
            events=r.count,
            bytes=r.length,
        )


def _build(
    config: Config,
    feeds: list[FeedConfig],
    store: Store,
    *,
    today: date,
    clock: Clock,
    metrics: Metrics | None,
    output: FeedOutput,
) -> list[FeedResult]:
    if not feeds:
        return []
    org = config.source.organization_id
    seq = store.mirror_seq(org)
    types: dict[str, ActivityType] = store.types(org)
    all_views = store.feed_views()
    results: list[FeedResult] = []
    jobs: list[FeedJob] = []
    signatures: dict[str, str] = {}
    failures: dict[str, str] = {}
    try:
        for feed in feeds:
            first, last = feed_window(feed, today)
            views = views_of(feed, all_views)
            signature = _signature(config, feed, seq, types, (first, last), views)
            kept = _unchanged(store, feed, signature, output, views)
            if kept is not None:
                _record(store, feed, signature, kept, clock=clock, metrics=metrics, output=output)
                results.extend(kept)
                continue
            signatures[feed.name] = signature
            jobs.append(
                FeedJob(
                    feed=feed,
                    options=feed_options(config, feed),
                    first=first,
                    last=last,
                    spool=ComponentSpool(),
                    views=views,
                )
            )
        if jobs:
            geocoding = Geocoding.for_config(config, store, network=False)
            spool_mapped(
                store.iter_activities(org),
                [SpoolJob(spool=job.spool, options=job.options, group_of=job.groups_of) for job in jobs],
                types=types,
                geocode=geocoding.point,
            )
        for job in jobs:
            try:
                written = _write_job(config, job, output)
            except OSError as exc:
                failures[job.feed.name] = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
                log.error("feed.failed", feed=job.feed.name, error=failures[job.feed.name])
                continue
            _record(
                store, job.feed, signatures[job.feed.name], written,
                clock=clock, metrics=metrics, output=output,
            )
            results.extend(written)
    finally:
        for job in jobs:
            job.spool.close()
    if failures:
        raise FeedBuildError(failures, results)
    return results


def _write_job(config: Config, job: FeedJob, output: FeedOutput) -> list[FeedResult]:
    feed, spool = job.feed, job.spool
    spool.touch(BASE_GROUP)
    if feed.per_user:
        for user in job.users | output.users(feed):
            spool.touch(str(user))
    views = {view.group: view for view in job.views}
    for group in views:
        spool.touch(group)  # an empty view is an empty calendar, not a missing one
    results: list[FeedResult] = []
    for group, components in spool.groups():
        if group == BASE_GROUP:
            name, path, props = feed.name, feed.path, _props(config, feed)
        elif USER_GROUP.fullmatch(group):
            user = int(group)
            name = user_feed_name(feed.name, user)
            path = user_feed_path(feed.path, user)
            props = _props(config, feed, spool.labels.get(group) or f"user {user}")
        elif group in views:
            view = views[group]
            name, path = view.name, view_file(feed, view)
            label = None
            if view.user is not None:
                label = spool.labels.get(str(view.user)) or f"user {view.user}"
            props = _props(config, feed, label)
        else:  # pragma: no cover - groups are only ever the base, user ids and views
            raise AssertionError(f"unexpected feed group {group!r}")
        zoned = group in spool.zoned
        written = output.write(
            name, path, parent=feed.name,
            write=partial(write_spooled, components=components, props=props, zoned=zoned),
        )
        results.append(
            FeedResult(
                name=name,
                path=path,
                changed=written.changed,
                etag=etag_from_sha256(written.sha256),  # hashed while writing
                count=spool.counts.get(group, 0),
                length=written.length,
            )
        )
    return results
