"""HTTP content negotiation and conditional requests for feeds (pure functions).

RFC 9110 §13 (conditional requests) and §12.5.3 (Accept-Encoding), reduced to
what a feed server needs: entity-tag lists with weak comparison, dates
compared as dates, and a gzip-or-identity choice honouring q-values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime


def http_date(moment: datetime) -> str:
    """``moment`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date as an aware datetime, or ``None`` when it cannot be read."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 850 / asctime forms carry no zone; HTTP dates are always GMT.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _opaque(tag: str) -> str:
    """The opaque part of an entity tag, for weak comparison (``W/"x"`` → ``"x"``)."""
    tag = tag.strip()
    if tag.startswith(("W/", "w/")):
        tag = tag[2:]
    return tag


def etag_list(header: str) -> list[str]:
    """The entity tags of an If-None-Match / If-Match value (``*`` stays ``*``).

    Splits on commas outside quotes, so a tag containing a comma survives.
    """
    tags: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            tags.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    tags.append("".join(current).strip())
    return [tag for tag in tags if tag]


def none_match(header: str, current: tuple[str, ...]) -> str | None:
    """The tag of ``current`` that ``If-None-Match: header`` matches, or ``None``.

    Weak comparison (RFC 9110 §13.1.2: If-None-Match uses the weak comparison
    function).  ``*`` matches the first current tag, since the representation
    exists.  ``current`` lists the tags of every variant of the same content
    (plain and gzip), so a client holding either variant gets its 304.
    """
    wanted = etag_list(header)
    if "*" in wanted:
        return current[0]
    opaque_wanted = {_opaque(tag) for tag in wanted}
    for tag in current:
        if _opaque(tag) in opaque_wanted:
            return tag
    return None


def not_modified_since(header: str, last_modified: datetime) -> bool:
    """Whether ``If-Modified-Since: header`` says the client's copy is current.

    True when the header is a valid date and the representation was last
    modified at or before it (compared to the second, as HTTP dates are);
    false for an older date and for a header that is not a date (ignored).
    """
    since = parse_http_date(header)
    if since is None:
        return False
    return last_modified.replace(microsecond=0) <= since


def _qvalue(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return min(max(q, 0.0), 1.0)
    return 1.0


def wants_gzip(accept_encoding: str | None) -> bool:
    """Whether to send gzip for this ``Accept-Encoding`` value.

    gzip is chosen when its q-value (explicit, via ``x-gzip``, or via ``*``) is
    above zero and not below an explicitly stated identity preference.  No
    header means identity.
    """
    if not accept_encoding:
        return False
    q: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = item.split(";")
        name = coding.strip().lower()
        if name:
            q[name] = _qvalue(params)
    star = q.get("*", 0.0)
    gzip_q = q.get("gzip", q.get("x-gzip", star))
    # Identity is acceptable by default but carries no preference unless named
    # (directly or through "*"): "gzip;q=0.5" alone still means gzip.
    identity_q = q.get("identity", star)
    return gzip_q > 0.0 and gzip_q >= identity_q
