"""What the CRM wants on a target: its mapping options and their fingerprint.

:func:`mapping_options` turns a target's settings and the config's ``[mapping]``
table into the pure mapping's options; :func:`settings_hash` fingerprints
everything that decides a target's bytes and membership, so a change to it
makes the next cycle plan the whole target again.  Geocodes are filled in
before mapping by :class:`apexcal.geocode.policy.Geocoding`.
:class:`DesiredObjects` is the cycle's map step: each activity mapped at most
once per cycle; on a target with ``attendees`` it first fills in the
emails of the activities' users and contacts (:mod:`apexcal.apex.people`,
one request per person not known yet).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity, ActivityType
from apexcal.apex.people import Fetch, PeopleEmails, emails_for
from apexcal.config import Config, TargetConfig
from apexcal.config.mapping import mapping_options as config_mapping_options
from apexcal.errors import Unmappable
from apexcal.filters import matches
from apexcal.geocode.policy import Geocoding
from apexcal.ical.fields import TasksAs
from apexcal.ical.mapping import MappingOptions, component_kind, is_hidden, object_for
from apexcal.state import Store
from apexcal.sync.detect import legacy_hash, semantic_hash
from apexcal.sync.plan import Desired

log = structlog.get_logger(__name__)


def mapping_options(config: Config, target: TargetConfig, *, tasks_as: str | None = None) -> MappingOptions:
    """The mapping options of a target (its privacy and tasks, the config's mapping table)."""
    tasks: TasksAs = "events" if (tasks_as or target.tasks_as) == "events" else "todos"
    return config_mapping_options(
        config,
        privacy=target.privacy,
        tasks_as=tasks,
        done_events=target.done_events,
        alarms=target.alarms,
        attendees=target.attendees,
    )


def settings_hash(options: MappingOptions, target: TargetConfig) -> str:
    """A fingerprint of what decides a target's bytes and membership: change it, replan everything."""
    doc = {
        "options": repr(options),
        "filter": target.filter,
        "url": target.url,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


class DesiredObjects:
    """The map step of a cycle: activities → the objects a target wants, each mapped at most once.

    An activity is wanted when it is live and matches the target's filter.
    Mapped objects are kept by activity id and ``updated_at``, so a cycle that
    needs an activity again (a re-plan after a 412, an adoption) reuses the
    object, and only an activity that changed since (a writeback's answer) is
    mapped anew.  Activities the mapping refuses are logged and counted.
    """

    def __init__(
        self,
        *,
        target: TargetConfig,
        types: Mapping[str, ActivityType],
        options: MappingOptions,
        geocoding: Geocoding | None,
        people: tuple[PeopleEmails, Fetch] | None = None,
    ) -> None:
        self._target = target
        self._people = people if options.attendees else None
        self._types = types
        self.options = options
        self._geocoding = geocoding
        self._cache: dict[int, tuple[datetime, Desired | None]] = {}
        self.mapped = 0
        self.unmappable = 0

    @classmethod
    def for_target(
        cls,
        config: Config,
        target: TargetConfig,
        store: Store,
        options: MappingOptions,
        *,
        client: ApexClient | None = None,
    ) -> DesiredObjects:
        """The map step of ``target`` with ``options``, the store's types and the config's geocoder.

        With ``attendees`` on, ``client`` reads the people's emails (the
        process's directory for the source caches them); without a client
        only emails the records already carry are used.
        """
        geocoding = (
            Geocoding.for_config(config, store, network=True)
            if config.mapping.geocoder != "none"
            else None
        )
        org = config.source.organization_id
        people = None
        if options.attendees and client is not None:
            people = (emails_for(str(config.source.base_url), org), client.get_activity)
        return cls(target=target, types=store.types(org), options=options, geocoding=geocoding, people=people)

    def wants(self, activity: Activity) -> bool:
        """Whether the target wants an object for ``activity`` (live, inside its filter, not hidden as done)."""
        return (
            activity.deleted_at is None
            and matches(activity, self._target.filter)
            and not is_hidden(activity, self.options)
        )

    def is_todo(self, activity: Activity) -> bool:
        """Whether ``activity`` is written as a VTODO on this target (no mapping needed)."""
        return component_kind(activity, self.options) == "todo"

    def of(self, activities: Iterable[Activity]) -> list[Desired]:
        """The objects wanted for ``activities``, mapped once each per version."""
        wanted = [a for a in activities if self.wants(a)]
        if self._people is not None:
            directory, fetch = self._people
            todo = [a for a in wanted if not self._cached(a)]
            filled = {a.id: a for a in directory.fill(todo, fetch)} if todo else {}
            wanted = [filled.get(a.id, a) for a in wanted]
        out: list[Desired] = []
        for activity in wanted:
            hit = self._cache.get(activity.id)
            if hit is not None and hit[0] == activity.updated_at:
                desired = hit[1]
            else:
                desired = self._map(activity)
                self._cache[activity.id] = (activity.updated_at, desired)
            if desired is not None:
                out.append(desired)
        return out

    def _cached(self, activity: Activity) -> bool:
        hit = self._cache.get(activity.id)
        return hit is not None and hit[0] == activity.updated_at

    def _map(self, activity: Activity) -> Desired | None:
        self.mapped += 1
        geocode = self._geocoding.point(activity) if self._geocoding else None
        try:
            obj = object_for(activity, self._types, self.options, geocode=geocode)
        except Unmappable as exc:
            self.unmappable += 1
            log.info("sync.unmappable", activity_id=activity.id, reason=str(exc))
            return None
        return Desired(
            uid=obj.uid,
            activity_id=activity.id,
            href_name=obj.href_name,
            content_hash=semantic_hash(obj.data),
            legacy_hash=legacy_hash(obj.data),
            data=obj.data,
            kind="VTODO" if obj.component_kind == "todo" else "VEVENT",
            done=activity.done,
            updated_at=activity.updated_at,
        )
