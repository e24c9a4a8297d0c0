"""The feed server: secret feed URLs with HTTP caching, health and metrics."""

from __future__ import annotations

from apexcal.serve.app import FeedTokenLookup, ServedFeed, create_app
from apexcal.serve.feedmap import feeds_source, served_feeds
from apexcal.serve.health import (
    HealthSnapshot,
    HealthSource,
    HealthStore,
    StoreHealth,
    health_report,
)
from apexcal.serve.runner import make_server, serve_in_thread

__all__ = [
    "FeedTokenLookup",
    "HealthSnapshot",
    "HealthSource",
    "HealthStore",
    "ServedFeed",
    "StoreHealth",
    "create_app",
    "feeds_source",
    "health_report",
    "make_server",
    "serve_in_thread",
    "served_feeds",
]
