"""What a feed build selects: the activities of each output, and the filtered views asked for.

A build maps every activity of the mirror once and files the components in
groups of a spool (:mod:`apexcal.feeds.spool`): the feed's own output
(:data:`BASE_GROUP`), one group per assigned user for per-user feeds (the
user id), and one per filtered view that an active token asks for
(:mod:`apexcal.feeds.views`).  A view takes the components mapped for its
output, so nothing is mapped twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from apexcal.apex.models import Activity
from apexcal.feeds.naming import split_user_feed_name, user_feed_path
from apexcal.feeds.spool import ComponentSpool
from apexcal.feeds.views import (
    VIEW_SEPARATOR,
    FeedFilter,
    FilterSyntaxError,
    parse_canonical,
    view_id,
    view_name,
    view_path,
)
from apexcal.feeds.window import in_window
from apexcal.filters import matches
from apexcal.ical.mapping import MappingOptions

if TYPE_CHECKING:
    from apexcal.config import FeedConfig

log = structlog.get_logger(__name__)

# The group of a feed's own file in the spool; per-user groups are user ids.
BASE_GROUP = ""
USER_GROUP = re.compile(r"[0-9]+")


@dataclass(frozen=True, kw_only=True)
class FeedView:
    """A filtered view of one output of a feed (the feed's own, or a per-user one)."""

    output: str
    user: int | None
    canonical: str
    filter: FeedFilter

    @property
    def name(self) -> str:
        return view_name(self.output, self.canonical)

    @property
    def group(self) -> str:
        return VIEW_SEPARATOR + self.name


def views_of(feed: FeedConfig, views: Mapping[str, set[str]]) -> list[FeedView]:
    """The views of ``feed``'s outputs that active filtered tokens ask for, in name order."""
    found = []
    for output, filters in views.items():
        user = None
        if output != feed.name:
            split = split_user_feed_name(output)
            if not feed.per_user or split is None or split[0] != feed.name:
                continue
            user = split[1]
        for canonical in filters:
            try:
                parsed = parse_canonical(canonical)
            except FilterSyntaxError as exc:  # stored by another version: skip it, keep building
                log.warning("feed.bad_view", feed=output, error=str(exc))
                continue
            found.append(FeedView(output=output, user=user, canonical=canonical, filter=parsed))
    return sorted(found, key=lambda v: v.name)


def view_file(feed: FeedConfig, view: FeedView) -> Path:
    """Where the file of ``view`` of ``feed`` is written."""
    base = feed.path if view.user is None else user_feed_path(feed.path, view.user)
    return view_path(base, view_id(view.canonical))


@dataclass(kw_only=True)
class FeedJob:
    """One feed being built: its selection, its spool, the users it writes files for, its views."""

    feed: FeedConfig
    options: MappingOptions
    first: date
    last: date
    spool: ComponentSpool
    users: set[int] = field(default_factory=set)
    views: list[FeedView] = field(default_factory=list)
    _base_views: list[FeedView] = field(default_factory=list)
    _user_views: dict[int, list[FeedView]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for view in self.views:
            if view.user is None:
                self._base_views.append(view)
            else:
                self._user_views.setdefault(view.user, []).append(view)

    def groups_of(self, activity: Activity) -> list[tuple[str, str | None]]:
        user = activity.assigned_to_user_id
        if self.feed.per_user and user is not None:
            self.users.add(user)
        window = (self.first, self.last, self.options.default_duration)
        if not in_window(activity, *window) or not matches(activity, self.feed.filter):
            return []
        groups: list[tuple[str, str | None]] = [(BASE_GROUP, None)]
        # A view takes the components mapped for its output: nothing is mapped twice.
        groups.extend((v.group, None) for v in self._base_views if v.filter.matches(activity))
        if self.feed.per_user and user is not None:
            name = activity.assigned_to_user.full_name if activity.assigned_to_user else None
            groups.append((str(user), name))
            for v in self._user_views.get(user, ()):
                if v.filter.matches(activity):
                    groups.append((v.group, None))
        return groups
