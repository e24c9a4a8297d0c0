"""Feed files: built from the state store's mirror, written atomically, served under secret URLs.

- :mod:`~apexcal.feeds.build`: one pass over the mirror builds every feed,
  skipping feeds whose inputs did not change (freshness).
- :mod:`~apexcal.feeds.window`: which activities a feed's window holds.
- :mod:`~apexcal.feeds.naming`: feed names and files, per-user ones included.
- :mod:`~apexcal.feeds.spool`: the sorted, disk-spilling component spool
  (shared with ``apexcal export``).
- :mod:`~apexcal.feeds.output`: where a build's bytes go: files, or the
  state store (worker mode, served by ``apexcal serve``).
- :mod:`~apexcal.feeds.atomic`: atomic file writes that hash while writing.
- :mod:`~apexcal.feeds.tokens`: secret feed URL tokens and the URLs handed out.

The names below are loaded on first use, so importing one light module of
the package (``tokens``, ``naming``) does not load the builder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apexcal.feeds.build import (
        FeedResult,
        build_all_feeds,
        build_feed,
        feed_options,
    )
    from apexcal.feeds.naming import feed_paths, user_feed_name, user_feed_path
    from apexcal.feeds.window import feed_today, feed_window, in_window

_WHERE = {
    "FeedResult": "apexcal.feeds.build",
    "build_all_feeds": "apexcal.feeds.build",
    "build_feed": "apexcal.feeds.build",
    "feed_options": "apexcal.feeds.build",
    "feed_paths": "apexcal.feeds.naming",
    "user_feed_name": "apexcal.feeds.naming",
    "user_feed_path": "apexcal.feeds.naming",
    "feed_today": "apexcal.feeds.window",
    "feed_window": "apexcal.feeds.window",
    "in_window": "apexcal.feeds.window",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
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
