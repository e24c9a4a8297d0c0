"""Feed files: built from the state store's mirror, written atomically, served under secret URLs.

- :mod:`~apexcal.feeds.build`: one pass over the mirror builds every feed,
  skipping feeds whose inputs did not change (freshness).
- :mod:`~apexcal.feeds.window`: which activities a feed's window holds.
- :mod:`~apexcal.feeds.naming`: feed names and files, per-user ones included.
- :mod:`~apexcal.feeds.spool`: the sorted, disk-spilling component spool
  (shared with ``apexcal export``).
- :mod:`~apexcal.feeds.atomic`: atomic file writes that hash while writing.
- :mod:`~apexcal.feeds.tokens`: secret feed URL tokens and the URLs handed out.
"""

from __future__ import annotations

from apexcal.errors import FeedBuildError
from apexcal.feeds.build import (
    FeedResult,
    build_all_feeds,
    build_feed,
    feed_options,
)
from apexcal.feeds.naming import feed_paths, user_feed_name, user_feed_path
from apexcal.feeds.window import feed_today, feed_window, in_window

__all__ = [
    "FeedBuildError",
    "FeedResult",
    "build_all_feeds",
    "build_feed",
    "feed_options",
    "feed_paths",
    "feed_today",
    "feed_window",
    "in_window",
    "user_feed_name",
    "user_feed_path",
]
