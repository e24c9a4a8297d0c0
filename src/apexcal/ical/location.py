"""Where an activity happens: LOCATION, GEO, Apple's structured location, CONFERENCE.

Rules (pure; the geocode is data, filled in before mapping):

- A physical place: ``LOCATION`` is the location text, followed by the
  geocoded address when the address adds information (``Client Office, New
  York, NY``); with a geocode, ``GEO`` and ``X-APPLE-STRUCTURED-LOCATION``
  whose ``X-TITLE`` equals ``LOCATION`` (Apple shows the map only then) and
  whose ``X-ADDRESS`` is the geocoded address (the LOCATION text when the
  geocode carries none).  A geocode with neither text nor address gives
  ``GEO`` alone.
- A fallback geocode (guessed from the text by :mod:`apexcal.geocode`, not
  the CRM's ``location_geocoded``) never rewrites ``LOCATION``: it adds
  ``GEO`` and the structured location, whose ``X-TITLE`` is the text as
  written.
- A meeting link in the location (Zoom, Google Meet, Microsoft Teams, Webex):
  RFC 7986 ``CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=Join``, the link is
  repeated in DESCRIPTION by the mapping, and there is no ``GEO`` even when a
  geocode exists.  Only the location is searched for links: notes are private
  and descriptions are free text.
- An online location without a link ("Online - Zoom", "Teams call"): the text
  stays in ``LOCATION``; neither ``CONFERENCE`` nor ``GEO``.  "Online" is
  decided narrowly (see :func:`is_online`): "Teams room B" or "Zoom Café"
  are physical places and keep their GEO.
- Any other URL in the location is not a place either: no ``GEO``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apexcal.apex.models import GeoPoint
from apexcal.ical.text import short_line

APPLE_RADIUS = 70.0

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_MEETING_HOSTS = re.compile(
    r"^(?:[a-z0-9-]+\.)*(?:zoom\.us|zoomgov\.com|meet\.google\.com|teams\.microsoft\.com"
    r"|teams\.live\.com|webex\.com)$",
    re.IGNORECASE,
)
_ONLINE_START = re.compile(r"^(?:online|virtual meeting)\b", re.IGNORECASE)
_ONLINE_PHRASES = re.compile(
    r"\b(?:(?:zoom|teams|webex|skype) (?:meeting|call)|google meet|video ?call|conference call"
    r"|web ?conference)\b"
    r"|\b(?:zoom\.us|zoomgov\.com|meet\.google\.com|teams\.microsoft\.com|teams\.live\.com|webex\.com)/",
    re.IGNORECASE,
)


@dataclass(frozen=True, kw_only=True)
class Place:
    """The location properties of one activity, ready to write."""

    location: str | None = None
    geo: tuple[float, float] | None = None
    apple_address: str | None = None
    conference_url: str | None = None


def meeting_url(text: str) -> str | None:
    """The first Zoom/Meet/Teams/Webex URL in ``text``, or ``None``."""
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:)]}")
        host = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split(":", 1)[0]
        if _MEETING_HOSTS.match(host):
            return url
    return None


def is_online(text: str) -> bool:
    """Whether the text names an online place rather than a physical one.

    Deliberately narrow, since an online place loses its GEO: a URL; text
    starting with "Online" or "Virtual meeting"; or a clear phrase ("Zoom
    meeting", "Teams call", "Google Meet", "Webex meeting", "video call",
    "conference call", a bare meeting host such as ``meet.google.com/…``).
    "Teams room B", "Virtual reality lab" and "Zoom Café" are places.
    """
    text = " ".join(text.split())
    return bool(_URL.search(text) or _ONLINE_START.match(text) or _ONLINE_PHRASES.search(text))


def _adds_information(text: str, address: str) -> bool:
    folded = text.casefold()
    return address.casefold() not in folded and folded not in address.casefold()


def place_for(location: str | None, geocode: GeoPoint | None, *, guessed: bool = False) -> Place:
    """The :class:`Place` for a location text and its (optional) geocode.

    ``guessed``: the geocode is our own fallback guess, not the CRM's
    ``location_geocoded``; it may add ``GEO`` and Apple's structured location,
    but ``LOCATION`` stays the text as written (a guess never rewrites it).
    """
    text = short_line(location)
    address = short_line(geocode.address) if geocode is not None else ""
    if text and is_online(text):
        return Place(location=text, conference_url=meeting_url(text))
    if guessed:
        label = text
    elif text and address and _adds_information(text, address):
        label = f"{text}, {address}"
    elif address and (not text or text.casefold() in address.casefold()):
        label = address
    else:
        label = text
    if geocode is None:
        return Place(location=label or None)
    return Place(
        location=label or None,
        geo=(geocode.lat, geocode.lng),
        apple_address=address or label or None,
    )
