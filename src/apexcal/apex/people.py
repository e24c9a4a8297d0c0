"""The emails of an activity's assigned user and contact, fetched once per person.

The API's listings (``fastJoinForActivityList``) join users and contacts
with their names only; a single activity (``GET /activities/:id``) joins
them with their emails.  :class:`PeopleEmails` fills the emails in: for the
users and contacts of a batch of activities that it does not know yet, it
reads one activity referencing each (one request covers that activity's
user and contact), remembers every email it saw, and returns the activities
with the emails set.  Known people cost no request, so a cycle makes at most
one request per new person, never one per activity.

A person without an email is remembered as such.  Entries are kept for
``max_age`` (default a day), after which a person is read again; an email
changed in the CRM reaches an object when its activity next changes.
:func:`emails_for` keeps one directory per API and organization for the
process, so cycles of many targets share it.  It is a cache: losing it costs
requests, never correctness.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from apexcal.apex.models import Activity, ContactRef, UserRef
from apexcal.errors import (
    ApiProtocolError,
    BadRequest,
    Forbidden,
    InvalidRecord,
    NotFound,
    ServerError,
)

log = structlog.get_logger(__name__)

_RECORD_ERRORS = (NotFound, Forbidden, BadRequest, ServerError, ApiProtocolError, InvalidRecord)
"""Failures of one read that say nothing about the API as a whole: that person stays unknown for now."""

MAX_FAILED = 5
"""Reads that may fail for their record alone in one :meth:`PeopleEmails.fill` before it stops reading."""

DEFAULT_MAX_AGE = 86400.0
"""Seconds a known email (or a known absence of one) is used before it is read again."""


@dataclass(frozen=True)
class Person:
    """What the API joined for a user or contact: its name and email (either may be unknown)."""

    full_name: str | None
    email: str | None


Fetch = Callable[[int], Activity]
"""Reads one activity with its joined people (``ApexClient.get_activity``)."""


class PeopleEmails:
    """Users' and contacts' emails by id, filled from single-activity reads (thread-safe)."""

    def __init__(self, *, max_age: float = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[int, tuple[float, Person]] = {}
        self._contacts: dict[int, tuple[float, Person]] = {}
        self.requests = 0

    def _fresh(self, table: dict[int, tuple[float, Person]], key: int, now: float) -> Person | None:
        hit = table.get(key)
        if hit is None or now - hit[0] >= self.max_age:
            return None
        return hit[1]

    def _learn(self, activity: Activity, now: float) -> None:
        user, contact = activity.assigned_to_user, activity.contact
        if user is not None and activity.assigned_to_user_id == user.id and user.email is not None:
            self._users[user.id] = (now, Person(user.full_name, user.email))
        if contact is not None and activity.contact_id == contact.id and contact.email is not None:
            self._contacts[contact.id] = (now, Person(contact.full_name, contact.email))

    def _missing(self, activity: Activity, now: float) -> bool:
        user_id, contact_id = activity.assigned_to_user_id, activity.contact_id
        return (user_id is not None and self._fresh(self._users, user_id, now) is None) or (
            contact_id is not None and self._fresh(self._contacts, contact_id, now) is None
        )

    def fill(self, activities: Iterable[Activity], fetch: Fetch) -> list[Activity]:
        """``activities`` with their user's and contact's emails set, where the CRM has them.

        Reads one activity for each user or contact not known yet (emails a
        listing already carries are taken without a request).  A read that
        fails for that record alone (gone, refused, unreadable, a 5xx) teaches
        nothing: its people stay unknown (no attendee line) and are tried
        again in a later call, through another activity of theirs in this
        one; at most :data:`MAX_FAILED` such failures per call, then the rest
        waits.  Transport errors, 401 and 429 propagate: the API as a whole
        is unwell and the cycle fails as its pull would.
        """
        batch = list(activities)
        failed = 0
        with self._lock:
            now = self._clock()
            for activity in batch:
                self._learn(activity, now)
            for activity in batch:
                if failed >= MAX_FAILED:
                    break
                if not self._missing(activity, now):
                    continue
                self.requests += 1
                try:
                    full = fetch(activity.id)
                except _RECORD_ERRORS as exc:
                    failed += 1
                    log.warning("apex.people_unread", activity_id=activity.id, error=type(exc).__name__)
                    continue
                self._learn(full, now)
                # Whatever the read said, these people are known now (without an email if it had none).
                if activity.assigned_to_user_id is not None and self._fresh(
                    self._users, activity.assigned_to_user_id, now
                ) is None:
                    name = full.assigned_to_user.full_name if full.assigned_to_user else None
                    self._users[activity.assigned_to_user_id] = (now, Person(name, None))
                if activity.contact_id is not None and self._fresh(self._contacts, activity.contact_id, now) is None:
                    name = full.contact.full_name if full.contact else None
                    self._contacts[activity.contact_id] = (now, Person(name, None))
            return [self._with_emails(activity, now) for activity in batch]

    def _with_emails(self, activity: Activity, now: float) -> Activity:
        update: dict[str, object] = {}
        user_id, contact_id = activity.assigned_to_user_id, activity.contact_id
        user = self._fresh(self._users, user_id, now) if user_id is not None else None
        if user_id is not None and user is not None and user.email is not None:
            joined = activity.assigned_to_user
            name = (joined.full_name if joined else None) or user.full_name
            update["assigned_to_user"] = UserRef(id=user_id, full_name=name, email=user.email)
        contact = self._fresh(self._contacts, contact_id, now) if contact_id is not None else None
        if contact_id is not None and contact is not None and contact.email is not None:
            joined_contact = activity.contact
            name = (joined_contact.full_name if joined_contact else None) or contact.full_name
            update["contact"] = ContactRef(id=contact_id, full_name=name, email=contact.email)
        return activity.model_copy(update=update) if update else activity


_DIRECTORIES: dict[tuple[str, int], PeopleEmails] = {}
_DIRECTORIES_LOCK = threading.Lock()


def emails_for(base_url: str, organization_id: int) -> PeopleEmails:
    """The process's directory for one API and organization (created on first use)."""
    key = (base_url, organization_id)
    with _DIRECTORIES_LOCK:
        found = _DIRECTORIES.get(key)
        if found is None:
            found = _DIRECTORIES[key] = PeopleEmails()
        return found


def forget_all() -> None:
    """Drop every directory of the process (the next cycles read the people again)."""
    with _DIRECTORIES_LOCK:
        _DIRECTORIES.clear()


__all__ = ["DEFAULT_MAX_AGE", "MAX_FAILED", "Fetch", "PeopleEmails", "Person", "emails_for", "forget_all"]
