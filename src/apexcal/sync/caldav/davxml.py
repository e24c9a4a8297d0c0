"""The WebDAV/CalDAV XML the adapter sends and reads: request bodies and multistatus parsing.

Pure functions over bytes, so the protocol details (RFC 4918 multistatus,
RFC 6578 sync-collection, RFC 4791 calendar-multiget and MKCALENDAR) are kept
apart from the HTTP session.  Hrefs are handled in one canonical form: the
percent-decoded absolute path, because servers differ in what they escape
(Radicale sends ``a%40b.ics``, Xandikos ``a@b.ics`` for the same member).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from apexcal.errors import CalDAVError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"

_XML_DECL = b'<?xml version="1.0" encoding="utf-8"?>\n'
# Characters left unescaped in a path: RFC 3986 pchar minus "%" (and "/").
_PATH_SAFE = "/:@!$&'()*+,;=~"
_STATUS_RE = re.compile(r"^\S+\s+(\d{3})")


def clark(namespace: str, name: str) -> str:
    """The ElementTree (Clark notation) name of an XML element."""
    return f"{{{namespace}}}{name}"


def local_name(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def normalise_href(href: str) -> str:
    """The canonical form of an href: its percent-decoded path (scheme and host dropped)."""
    return unquote(urlsplit(href.strip()).path)


def quote_href(path: str) -> str:
    """The wire form of a canonical (decoded) path."""
    return quote(path, safe=_PATH_SAFE)


def parse_xml(body: bytes, *, url: str) -> ET.Element:
    """Parse a server's XML answer; malformed XML becomes a CalDAVError naming the URL.

    The standard parser (expat >= 2.4) neither fetches external entities nor
    expands entity bombs, which is what makes parsing a server's body safe.
    """
    try:
        return ET.fromstring(body)  # noqa: S314 - expat >= 2.4 refuses entity expansion attacks
    except ET.ParseError as exc:
        raise CalDAVError(f"malformed XML in the server's answer ({exc})", url=url) from exc


def parse_status(text: str | None) -> int | None:
    """The code of an HTTP status line such as ``HTTP/1.1 404 Not Found``."""
    if not text:
        return None
    m = _STATUS_RE.match(text.strip())
    return int(m.group(1)) if m else None


@dataclass(frozen=True, kw_only=True)
class DavResponse:
    """One ``DAV:response`` of a multistatus: its href, status and the properties found (200)."""

    href: str
    status: int | None
    props: dict[str, ET.Element] = field(default_factory=dict)

    def text(self, namespace: str, name: str) -> str | None:
        """The text of a found property, or None when absent."""
        el = self.props.get(clark(namespace, name))
        if el is None:
            return None
        return el.text or ""


@dataclass(frozen=True, kw_only=True)
class Multistatus:
    """A parsed ``DAV:multistatus`` body (with the sync token of a sync-collection report)."""

    responses: tuple[DavResponse, ...]
    sync_token: str | None


def parse_multistatus(body: bytes, *, url: str) -> Multistatus:
    """Parse a 207 body; anything but a well-formed ``DAV:multistatus`` is a CalDAVError."""
    root = parse_xml(body, url=url)
    if root.tag != clark(DAV, "multistatus"):
        raise CalDAVError(f"expected a DAV:multistatus, got {local_name(root.tag)}", url=url)
    responses: list[DavResponse] = []
    for resp in root.iterfind(clark(DAV, "response")):
        href_el = resp.find(clark(DAV, "href"))
        if href_el is None or not (href_el.text or "").strip():
            raise CalDAVError("a DAV:response without a DAV:href", url=url)
        props: dict[str, ET.Element] = {}
        for propstat in resp.iterfind(clark(DAV, "propstat")):
            if parse_status(propstat.findtext(clark(DAV, "status"))) != 200:
                continue
            prop = propstat.find(clark(DAV, "prop"))
            if prop is not None:
                for el in prop:
                    props[el.tag] = el
        responses.append(
            DavResponse(
                href=normalise_href(href_el.text or ""),
                status=parse_status(resp.findtext(clark(DAV, "status"))),
                props=props,
            )
        )
    token = root.findtext(clark(DAV, "sync-token"))
    return Multistatus(responses=tuple(responses), sync_token=token.strip() if token else None)


@dataclass(frozen=True, kw_only=True)
class ErrorBody:
    """The preconditions named in a ``DAV:error`` body, and any hrefs inside them."""

    conditions: frozenset[str]
    hrefs: dict[str, tuple[str, ...]]
    description: str | None

    def has(self, name: str) -> bool:
        """Whether the body names this precondition (local name, any namespace)."""
        return name in self.conditions


def parse_error_body(body: bytes) -> ErrorBody:
    """Read a ``DAV:error`` body (RFC 4918 §16); anything else yields no conditions.

    Never raises: an error answer's body is evidence, not a contract, and plain
    text (Radicale's ``Precondition failed.``) is common.
    """
    empty = ErrorBody(conditions=frozenset(), hrefs={}, description=None)
    if not body or not body.lstrip().startswith(b"<"):
        return empty
    try:
        root = ET.fromstring(body)  # noqa: S314 - see parse_xml
    except ET.ParseError:
        return empty
    if root.tag != clark(DAV, "error"):
        return empty
    conditions: set[str] = set()
    hrefs: dict[str, tuple[str, ...]] = {}
    description: str | None = None
    for child in root:
        name = local_name(child.tag)
        if child.tag == clark(DAV, "responsedescription"):
            description = (child.text or "").strip() or None
            continue
        conditions.add(name)
        found = tuple(normalise_href(h.text) for h in child.iter(clark(DAV, "href")) if h.text)
        if found:
            hrefs[name] = found
    return ErrorBody(conditions=frozenset(conditions), hrefs=hrefs, description=description)


# --- request bodies -----------------------------------------------------------


def propfind_body(props: Iterable[tuple[str, str]]) -> bytes:
    """A PROPFIND asking for the named (namespace, name) properties."""
    inner = "".join(f"<C:{n}/>" if ns == CALDAV else f"<D:{n}/>" for ns, n in props)
    return (
        _XML_DECL
        + (
            f'<D:propfind xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop>{inner}</D:prop></D:propfind>'
        ).encode()
    )


def sync_collection_body(token: str | None) -> bytes:
    """An RFC 6578 sync-collection REPORT (sync-level 1, etags only, never a DAV:limit)."""
    tok = f"<D:sync-token>{escape(token)}</D:sync-token>" if token else "<D:sync-token/>"
    return (
        _XML_DECL
        + (
            f'<D:sync-collection xmlns:D="DAV:">{tok}<D:sync-level>1</D:sync-level>'
            "<D:prop><D:getetag/></D:prop></D:sync-collection>"
        ).encode()
    )


def multiget_body(hrefs: Iterable[str]) -> bytes:
    """An RFC 4791 calendar-multiget REPORT for the given canonical hrefs."""
    refs = "".join(f"<D:href>{escape(quote_href(h))}</D:href>" for h in hrefs)
    return (
        _XML_DECL
        + (
            f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{refs}</C:calendar-multiget>"
        ).encode()
    )


def uid_query_body(uid: str, component: str) -> bytes:
    """An RFC 4791 calendar-query REPORT for the objects of one component type with this UID."""
    return (
        _XML_DECL
        + (
            f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/></D:prop>'
            f'<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="{escape(component)}">'
            '<C:prop-filter name="UID"><C:text-match collation="i;octet">'
            f"{escape(uid)}</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter>"
            "</C:filter></C:calendar-query>"
        ).encode()
    )
