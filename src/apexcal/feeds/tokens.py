"""Secret feed URLs: token generation, hashing, and the URLs handed to people.

A feed URL carries a random token (256 bits from :mod:`secrets`).  The state
store keeps only its SHA-256 hash, so a leaked database does not leak working
URLs; the token itself is shown once, when the URL is created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

# token_urlsafe(32) gives 43 characters; accept a little either way so a
# shorter or longer token made by a future version still routes.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")
FEED_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")

# Google Calendar refuses "add by URL" links longer than this.
GOOGLE_URL_LIMIT = 256


@dataclass(frozen=True, kw_only=True)
class FeedUrls:
    """The three ways to subscribe to one feed with one token."""

    https: str
    webcal: str
    google: str

    @property
    def google_fits(self) -> bool:
        """Whether the Google link is short enough for Google Calendar to accept."""
        return len(self.google) <= GOOGLE_URL_LIMIT


def new_token() -> str:
    """A fresh feed token: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which ``token`` is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_shaped(token: str) -> bool:
    """Whether ``token`` could be a token we issued (cheap check before any lookup)."""
    return TOKEN_PATTERN.fullmatch(token) is not None


def feed_path(token: str, name: str) -> str:
    """The server path of feed ``name`` under ``token``: ``/feeds/<token>/<name>.ics``."""
    return f"/feeds/{token}/{name}.ics"


def feed_urls(public_url: str, token: str, name: str) -> FeedUrls:
    """The https, webcal:// and Google "add by URL" links of feed ``name`` under ``token``.

    ``public_url`` is the server's externally visible base URL (scheme, host,
    optional path prefix).  The webcal URL is the https URL with its scheme
    swapped, which calendar apps open as a subscription.  Callers should check
    :attr:`FeedUrls.google_fits` and warn when a long ``public_url`` pushes the
    Google link past :data:`GOOGLE_URL_LIMIT` (Google then rejects it; the
    https URL can still be pasted into "From URL" by hand).
    """
    if not is_token_shaped(token):
        raise ValueError("not a feed token")
    if FEED_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"not a valid feed name: {name!r}")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"public_url must be an http(s) URL: {public_url!r}")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    https = base + feed_path(token, name)
    webcal = "webcal://" + https.split("://", 1)[1]
    google = "https://calendar.google.com/calendar/r?cid=" + quote(webcal, safe="")
    return FeedUrls(https=https, webcal=webcal, google=google)
