"""Targets that share one CalDAV account, and whether their filters can overlap.

Cyrus (and so Fastmail) keeps UIDs unique per account, not per calendar: a
second calendar of the account cannot hold an object whose UID another one
holds, and the server refuses it with ``unique-scheduling-object-resource``.
Two targets in one such account must therefore never want the same activity.
``apexcal config check`` and a target's first cycle warn about pairs of
targets that share an account and whose filters can overlap.

Two targets share an account when they reach the same server (scheme, host,
port) as the same user name, or when their calendars lie in the same
calendar home (the collection above the calendar, i.e. one principal's).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from apexcal.config.calendars import TargetConfig
from apexcal.config.models import Config


def _server(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def collection_path(url_or_href: str) -> str:
    """The decoded path of a collection URL (or href), with one trailing ``/``."""
    return unquote(urlsplit(url_or_href).path).rstrip("/") + "/"


def calendar_home(url: str) -> str:
    """The collection above a calendar's: the calendar home of the principal it belongs to."""
    path = collection_path(url).rstrip("/")
    return path.rsplit("/", 1)[0] + "/"


def user_of(target: TargetConfig) -> str | None:
    """The user name ``target`` signs in as (``username``, else the one in its URL)."""
    return target.username or urlsplit(str(target.url)).username


def shared_account(a: TargetConfig, b: TargetConfig) -> str | None:
    """The account ``a`` and ``b`` share, described for a message, or None when they do not."""
    url_a, url_b = str(a.url), str(b.url)
    if _server(url_a) != _server(url_b):
        return None
    host = urlsplit(url_a).netloc.rpartition("@")[2]
    user = user_of(a)
    if user is not None and user == user_of(b):
        return f"{user}@{host}"
    home = calendar_home(url_a)
    if home != "/" and home == calendar_home(url_b):
        return f"{host}{home}"
    return None


def _values(value: object) -> set[str]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return {str(v) for v in value}
    return {str(value)}


def filters_can_overlap(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    """False only when some key both filters set has disjoint values (then no activity matches both).

    Conservative: operators and ranges are taken as overlapping.
    """
    return not any(_values(a[k]).isdisjoint(_values(b[k])) for k in a.keys() & b.keys())


def shared_account_warnings(config: Config, target: str | None = None) -> list[str]:
    """One line per pair of targets in one CalDAV account whose filters can overlap.

    With ``target``, only the pairs that include it.
    """
    lines: list[str] = []
    targets = list(config.targets)
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            if target is not None and target not in (a.name, b.name):
                continue
            account = shared_account(a, b)
            if account is None:
                continue
            if filters_can_overlap(dict(a.filter or {}), dict(b.filter or {})):
                lines.append(
                    f"targets {a.name!r} and {b.name!r} share the account {account} and their "
                    "filters can overlap; two targets of one Cyrus/Fastmail account must not "
                    "share activities"
                )
    return lines
