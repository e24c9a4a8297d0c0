"""What the CRM wants on a target: its mapping options and their fingerprint.

:func:`mapping_options` turns a target's settings and the config's ``[mapping]``
table into the pure mapping's options; :func:`settings_hash` fingerprints
everything that decides a target's bytes and membership, so a change to it
makes the next cycle plan the whole target again.  Geocodes are filled in
before mapping by :class:`apexcal.geocode.policy.Geocoding`.
"""

from __future__ import annotations

import hashlib
import json

from apexcal.config import Config, TargetConfig
from apexcal.config.mapping import mapping_options as config_mapping_options
from apexcal.ical.fields import TasksAs
from apexcal.ical.mapping import MappingOptions


def mapping_options(config: Config, target: TargetConfig, *, tasks_as: str | None = None) -> MappingOptions:
    """The mapping options of a target (its privacy and tasks, the config's mapping table)."""
    tasks: TasksAs = "events" if (tasks_as or target.tasks_as) == "events" else "todos"
    return config_mapping_options(config, privacy=target.privacy, tasks_as=tasks)


def settings_hash(options: MappingOptions, target: TargetConfig) -> str:
    """A fingerprint of what decides a target's bytes and membership: change it, replan everything."""
    doc = {
        "options": repr(options),
        "filter": target.filter,
        "url": target.url,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]
