"""``apexcal feed url|rotate|revoke|list``: manage the secret URLs of feeds.

Each takes ``--config FILE``, or ``--config-dir DIR --org KEY`` for one
organization of a config directory (``--org`` may be left out when the
directory holds one).

A feed URL embeds a random token; the state store keeps only its hash, so the
URL is shown once, when created, and cannot be shown again: lose it, make a
new one.  Several tokens can open the same feed (one per device), each with a
label, so one can be revoked without disturbing the others.

A URL may be filtered (``--filter type=call,meeting --filter user=46``): it
then serves only that part of the feed (:mod:`apexcal.feeds.views`); the
filter is stored beside the token's hash and shown by ``list``, ``revoke``
and ``rotate``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from apexcal.cli.app import app
from apexcal.clock import utcnow
from apexcal.errors import UsageError
from apexcal.feeds.tokens import FeedUrls, feed_urls, hash_token, new_token
from apexcal.feeds.views import (
    FeedFilter,
    FilterSyntaxError,
    UnknownType,
    parse_filter,
    resolve_types,
)

if TYPE_CHECKING:
    from apexcal.config import Config
    from apexcal.state import FeedToken, Store

feed_app = typer.Typer(
    name="feed",
    help="Manage secret feed URLs (create, rotate, revoke, list).",
    no_args_is_help=True,
)
app.add_typer(feed_app, name="feed")

_PER_USER_NAME = re.compile(r"(?P<feed>.+)-(?P<user>[0-9]+)")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The config file.", dir_okay=False)
]
ConfigDirOption = Annotated[
    Path | None,
    typer.Option("--config-dir", help="A config directory (with --org).", file_okay=False),
]
OrgOption = Annotated[
    str | None, typer.Option("--org", help="The organization (file stem) of --config-dir.")
]
LabelOption = Annotated[
    str | None, typer.Option("--label", help="Which device or person this URL is for.")
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        metavar="KEY=V1,V2",
        help=(
            "Serve only part of the feed (repeatable; keys AND, values OR): "
            "type=call,meeting (activity type keys, names or ids), user=46 (assigned user ids), "
            "done=true|false."
        ),
    ),
]


def resolve_feed_name(config: Config, name: str) -> str:
    """``name`` if it is a configured feed or a per-user feed of one (``<feed>-<user id>``).

    Raises :class:`UsageError` naming the configured feeds otherwise.
    """
    feeds = {feed.name: feed for feed in config.feeds}
    if name in feeds:
        return name
    match = _PER_USER_NAME.fullmatch(name)
    if match is not None:
        base = feeds.get(match["feed"])
        if base is not None and base.per_user:
            return name
    known = ", ".join(sorted(feeds)) or "none"
    raise UsageError(f"unknown feed {name!r} (configured feeds: {known})")


def public_base_url(config: Config) -> str:
    """The base of printed URLs: ``server.public_url``, else the listen address over http."""
    server = config.server
    if server is not None and server.public_url is not None:
        return str(server.public_url)
    listen = server.listen if server is not None else "127.0.0.1:8080"
    print(
        f"warning: [server] public_url is not set; URLs use http://{listen}",
        file=sys.stderr,
    )
    return f"http://{listen}"


@contextmanager
def _opened(
    config_path: Path | None, config_dir: Path | None = None, org: str | None = None
) -> Iterator[tuple[Config, Store]]:
    from apexcal.config.directory import load_one
    from apexcal.log import configure
    from apexcal.state import Store

    config, key = load_one(config_path, config_dir, org)
    # Stdout carries the URLs only; anything worth a warning goes to stderr.
    configure("warning")
    with Store.open(config.state.url) as store:
        yield config, store.for_organization(key)


def _issue(
    store: Store,
    config: Config,
    feed: str,
    label: str | None,
    at: datetime,
    filter_: str | None = None,
) -> FeedUrls:
    """Create a token for ``feed`` (serving the view ``filter_``), store its hash, and return its URLs."""
    token = new_token()
    urls = feed_urls(public_base_url(config), token, feed)
    store.add_feed_token(feed, hash_token(token), label, at, filter_=filter_)
    return urls


def parse_filters(arguments: list[str] | None) -> FeedFilter | None:
    """The ``--filter`` arguments as a filter (type values not resolved yet), ``None`` when none given.

    Raises :class:`UsageError` naming the bad argument and part.
    """
    if not arguments:
        return None
    try:
        return parse_filter(arguments)
    except FilterSyntaxError as exc:
        raise UsageError(str(exc)) from None


def _canonical_filter(config: Config, store: Store, parsed: FeedFilter | None) -> str | None:
    """The stored text of ``parsed`` with its types resolved against the organization's types."""
    if parsed is None:
        return None
    if parsed.types is not None:
        types = store.types(config.source.organization_id).values()
        try:
            parsed = resolve_types(parsed, types)
        except (UnknownType, FilterSyntaxError) as exc:
            hint = "" if types else " (no activity types known yet: run 'apexcal sync' first)"
            raise UsageError(f"{exc}{hint}") from None
    return parsed.canonical()


def _build_view(config: Config, store: Store, feed: str, config_dir: Path | None) -> None:
    """Write a new view's file now from the mirror (files mode), so the URL works at once.

    With a config directory the feeds may live in the database (workers): the
    next build of the feed writes the view there.
    """
    from apexcal.errors import ApexcalError
    from apexcal.feeds import build_feed, feed_today
    from apexcal.feeds.naming import split_user_feed_name

    if config_dir is not None:
        print(
            f"note: the filtered URL is served from the next build of {feed} "
            "('apexcal trigger' builds it now)",
            file=sys.stderr,
        )
        return
    configured = {f.name: f for f in config.feeds}
    split = split_user_feed_name(feed)
    parent = configured.get(feed) or (configured.get(split[0]) if split is not None else None)
    if parent is None:  # pragma: no cover - resolve_feed_name checked it
        return
    try:
        build_feed(parent, config, store, today=feed_today(config))
    except (ApexcalError, OSError) as exc:
        print(
            f"warning: the filtered URL is served from the next build of {feed}: {exc}",
            file=sys.stderr,
        )


def _print_urls(urls: FeedUrls) -> None:
    print(urls.https)
    print(urls.webcal)
    print(urls.google)
    if not urls.google_fits:
        print(
            f"warning: the Google link is {len(urls.google)} characters, over Google's limit of 256; "
            "add the https URL in Google Calendar under 'From URL' instead",
            file=sys.stderr,
        )


@feed_app.command("url")
def url_command(
    name: Annotated[str, typer.Argument(help="Feed name (per-user feeds: <feed>-<user id>).")],
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    label: LabelOption = None,
    filters: FilterOption = None,
) -> None:
    """Create a new secret URL for a feed and print it (https, webcal, Google link).

    The URL is shown only now: only a hash of its token is stored.  With
    --filter the URL serves only the matching part of the feed, e.g.
    --filter type=call,meeting --filter user=46 (calls and meetings of user 46).
    """
    parsed = parse_filters(filters)
    with _opened(config, config_dir, org) as (cfg, store):
        feed = resolve_feed_name(cfg, name)
        canonical = _canonical_filter(cfg, store, parsed)
        urls = _issue(store, cfg, feed, label, utcnow(), canonical)
        if canonical is not None:
            _build_view(cfg, store, feed, config_dir)
            print(f"filter: {canonical}", file=sys.stderr)
        _print_urls(urls)


@feed_app.command("rotate")
def rotate_command(
    name: Annotated[str, typer.Argument(help="Feed name (per-user feeds: <feed>-<user id>).")],
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    label: LabelOption = None,
    filters: FilterOption = None,
) -> None:
    """Revoke every URL of a feed and print a new one (with --filter: a filtered one)."""
    parsed = parse_filters(filters)
    with _opened(config, config_dir, org) as (cfg, store):
        feed = resolve_feed_name(cfg, name)
        canonical = _canonical_filter(cfg, store, parsed)
        at = utcnow()
        active = [t for t in store.feed_tokens(feed) if t.active]
        revoked = store.revoke_feed_tokens(feed, None, at=at)
        urls = _issue(store, cfg, feed, label, at, canonical)
        if canonical is not None:
            _build_view(cfg, store, feed, config_dir)
            print(f"filter: {canonical}", file=sys.stderr)
        _print_urls(urls)
        _print_revoked(store, feed, active, sys.stderr)
        print(f"revoked {revoked} earlier URL(s) of {feed}", file=sys.stderr)


@feed_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="Feed name (per-user feeds: <feed>-<user id>).")],
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    token_id: Annotated[
        int | None, typer.Option("--token-id", help="The id shown by 'apexcal feed list'.")
    ] = None,
    all_tokens: Annotated[bool, typer.Option("--all", help="Revoke every URL of the feed.")] = False,
) -> None:
    """Revoke one URL of a feed (--token-id N) or all of them (--all)."""
    if (token_id is None) == (not all_tokens):
        raise UsageError("give exactly one of --token-id N or --all")
    with _opened(config, config_dir, org) as (cfg, store):
        feed = resolve_feed_name(cfg, name)
        active = [
            t for t in store.feed_tokens(feed) if t.active and token_id in (None, t.id)
        ]
        revoked = store.revoke_feed_tokens(feed, token_id, at=utcnow())
        if token_id is not None and revoked == 0:
            raise UsageError(f"feed {feed!r} has no active URL with token id {token_id}")
        _print_revoked(store, feed, active, sys.stdout)
        print(f"revoked {revoked} URL(s) of {feed}")


def _print_revoked(store: Store, feed: str, before: list[FeedToken], out: TextIO) -> None:
    """One line per token of ``before`` now revoked: id, label, filter."""
    now_revoked = {t.id for t in store.feed_tokens(feed) if not t.active}
    for token in before:
        if token.id in now_revoked:
            print(
                f"revoked\t{token.id}\t{token.label or '-'}\t{token.filter or '-'}",
                file=out,
            )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@feed_app.command("list")
def list_command(
    config: ConfigOption = None,
    name: Annotated[
        str | None, typer.Argument(help="Only this feed (default: every feed).")
    ] = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
) -> None:
    """List the URLs of feeds: token id, label, created, revoked, filter (never the tokens)."""
    with _opened(config, config_dir, org) as (cfg, store):
        if name is not None:
            names = [resolve_feed_name(cfg, name)]
        else:
            # Per-user feed names are not in the config; those built so far are
            # in the store's build status.
            built = {status.feed for status in store.all_feed_status()}
            configured = {feed.name for feed in cfg.feeds}
            per_user = {feed.name for feed in cfg.feeds if feed.per_user}
            names = sorted(
                configured
                | {
                    n
                    for n in built
                    if (m := _PER_USER_NAME.fullmatch(n)) is not None and m["feed"] in per_user
                }
            )
        print("id\tfeed\tlabel\tcreated\trevoked\tfilter")
        for feed in names:
            for token in store.feed_tokens(feed):
                print(
                    f"{token.id}\t{token.feed}\t{token.label or '-'}\t"
                    f"{_when(token.created_at)}\t{_when(token.revoked_at)}\t{token.filter or '-'}"
                )
