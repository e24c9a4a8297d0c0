"""Listing a collection's members: RFC 6578 sync-collection (with 507 truncation) and PROPFIND.

Functions over a :class:`~apexcal.sync.caldav.session.DavSession`, used by
:class:`~apexcal.sync.caldav.CalDAVSink`.  An invalid token is recognised by
the ``DAV:valid-sync-token`` element whatever the status (Radicale 403,
Xandikos 412); ``DAV:limit`` is never sent.

Before any REPORT, the collection's own ``DAV:sync-token`` (read with its
other properties in the cycle's one Depth-0 PROPFIND) is compared with the
stored token (:class:`Probe`): a server's sync token names the state of the
collection, so an equal one means nothing changed since the last sync, and a
no-change cycle costs that one request.  Nothing of the probe is stored: the
stored token is only ever the one a REPORT answered, recorded with the
changes it describes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import structlog

from apexcal.errors import CalDAVError, InvalidSyncToken
from apexcal.sync.caldav import davxml
from apexcal.sync.caldav.davxml import DAV
from apexcal.sync.caldav.session import DavSession
from apexcal.sync.sink import RemoteChanges

log = structlog.get_logger("apexcal.sync.caldav_sink")

XML_TYPE = "application/xml; charset=utf-8"
_MAX_SYNC_PAGES = 10_000


class SyncUnsupported(Exception):
    """The server does not do sync-collection on this collection."""


@dataclass(frozen=True, kw_only=True)
class Probe:
    """The collection's ``DAV:sync-token`` as read, and how many requests the session had sent then."""

    token: str | None
    requests: int

    def unchanged_since(self, stored: str | None, dav: DavSession) -> bool:
        """Whether the collection is known unchanged since ``stored`` (the token of the last sync).

        Only when the server gave a token, it equals the stored one, and this
        session sent nothing since it was read (a write of our own would make
        a state the probe did not see).
        """
        return (
            stored is not None
            and self.token is not None
            and self.token == stored
            and dav.request_count == self.requests
        )


def sync_collection(
    dav: DavSession, token: str | None, *, full: bool, known_hrefs: Collection[str]
) -> RemoteChanges:
    """One sync-collection exchange from ``token`` (None: everything), following 507 truncation.

    Raises :class:`InvalidSyncToken` when the server rejects the token and
    :class:`SyncUnsupported` when it has no sync-collection.
    """
    changed: dict[str, str] = {}
    deleted: set[str] = set()
    current = token
    for _ in range(_MAX_SYNC_PAGES):
        resp = dav.request(
            "REPORT",
            dav.path,
            content=davxml.sync_collection_body(current),
            headers={"Depth": "0", "Content-Type": XML_TYPE},
        )
        if resp.status_code != 207:
            err = davxml.parse_error_body(resp.content)
            if err.has("valid-sync-token"):
                raise InvalidSyncToken("sync token rejected", url=dav.url, status=resp.status_code)
            if err.has("supported-report") or resp.status_code in (405, 501):
                raise SyncUnsupported
            raise dav.failure(resp, "REPORT sync-collection")
        ms = davxml.parse_multistatus(resp.content, url=dav.url)
        truncated = False
        for r in ms.responses:
            if r.href.rstrip("/") == dav.path.rstrip("/"):
                truncated = truncated or r.status == 507
                continue
            if r.href.endswith("/"):
                continue  # a sub-collection, not a calendar object
            if r.status == 404:
                deleted.add(r.href)
                changed.pop(r.href, None)
            else:
                changed[r.href] = r.text(DAV, "getetag") or ""
                deleted.discard(r.href)
        if not truncated:
            if ms.sync_token is None:
                log.info("caldav.sync_without_token", url=dav.url)
            if full:
                deleted = {h for h in known_hrefs if h not in changed}
            return RemoteChanges(
                token=ms.sync_token, changed=changed, deleted=frozenset(deleted), full=full
            )
        if ms.sync_token is None or ms.sync_token == current:
            raise CalDAVError(
                "truncated sync-collection answer without a new token", url=dav.url, status=507
            )
        log.debug("caldav.sync_truncated", url=dav.url, so_far=len(changed))
        current = ms.sync_token
    raise CalDAVError(f"sync-collection still truncated after {_MAX_SYNC_PAGES} pages", url=dav.url)


def list_members(dav: DavSession) -> dict[str, str]:
    """Every calendar object of the collection, href → etag (PROPFIND, Depth 1)."""
    resp = dav.request(
        "PROPFIND",
        dav.path,
        content=davxml.propfind_body(((DAV, "resourcetype"), (DAV, "getetag"))),
        headers={"Depth": "1", "Content-Type": XML_TYPE},
    )
    if resp.status_code != 207:
        raise dav.failure(resp, "PROPFIND")
    ms = davxml.parse_multistatus(resp.content, url=dav.url)
    members: dict[str, str] = {}
    for r in ms.responses:
        if r.href.endswith("/") or r.href.rstrip("/") == dav.path.rstrip("/"):
            continue
        rtype = r.props.get(davxml.clark(DAV, "resourcetype"))
        if rtype is not None and rtype.find(davxml.clark(DAV, "collection")) is not None:
            continue
        members[r.href] = r.text(DAV, "getetag") or ""
    return members


def unless_full_listing(
    dav: DavSession, changes: RemoteChanges, known_hrefs: Collection[str]
) -> RemoteChanges:
    """``changes``, or a full listing when the answer was one in disguise.

    DAViCal answers an unknown or expired token with a plain 207 listing
    every object, no ``DAV:valid-sync-token``.  An answer that names no
    deletion and at least half of the known hrefs is checked against a
    PROPFIND listing: when it names every object there, it is taken for a
    full listing, so the known hrefs absent from it are deleted.  (The echo
    of a cycle that wrote most of the calendar is checked too: one PROPFIND.)
    Only an answer that hid deletions is certainly a listing in disguise
    (``caldav.sync_answer_full`` is a warning then); one that named every
    object and hid nothing may be such an echo, and is logged at info.
    """
    if changes.deleted or not changes.changed or not known_hrefs:
        return changes
    named = sum(1 for h in changes.changed if h in known_hrefs)
    if not named or 2 * named < len(known_hrefs):
        return changes
    members = list_members(dav)
    if not members or not all(h in changes.changed for h in members):
        return changes
    deleted = frozenset(h for h in known_hrefs if h not in members)
    (log.warning if deleted else log.info)(
        "caldav.sync_answer_full", url=dav.url, objects=len(members), hidden_deletions=len(deleted)
    )
    return RemoteChanges(token=changes.token, changed=members, deleted=deleted, full=True)
