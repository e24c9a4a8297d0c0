"""The feed server: secret feed URLs with HTTP caching, health and metrics."""

from __future__ import annotations

from apexcal.serve.app import FeedTokenLookup, ServedFeed, create_app
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
    "health_report",
    "make_server",
    "serve_in_thread",
]
