"""Benchmark: map + serialize N activities, beside the bare icalendar floor.

Generates realistic activities deterministically (seeded), then times
``object_for`` (Activity → complete one-object VCALENDAR bytes, VTIMEZONE
included) against the floor: building and serializing, with plain icalendar,
an event holding exactly the same properties and values, measured in the same
run.  Prints µs per activity and the ratio.

    .venv/bin/python bench/mapping.py [--count 10000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import random
import statistics
import time
from datetime import date, datetime, timedelta
from typing import Any

from icalendar import Event, Todo

from apexcal.apex.models import Activity, ActivityType, parse_activity, parse_activity_type
from apexcal.ical.mapping import MappingOptions, map_activity, object_for

ORG = 27
TYPES_RAW = [("Meeting", "#3B82F6", "users"), ("Call", "#10B981", "phone"), ("Task", "#F59E0B", "check"), ("Email", "#EF4444", "mail"), ("Customer Training", "#8B5CF6", "school")]
SUBJECTS = ["Quarterly review", "Discovery call", "Send proposal", "Contract negotiation", "Onboarding session", "Follow-up on pricing", "Demo for the Überprüfung team", "Kick-off 会议"]
LOCATIONS = [None, "Client Office", "HQ, Room 4", "Online - Zoom", "https://us02web.zoom.us/j/8123456789", "https://meet.google.com/abc-defg-hij", "Café Central, Wien"]
CITIES = [(40.7128, -74.006, "New York, NY"), (52.52, 13.405, "Berlin, Germany"), (30.2672, -97.7431, "Austin, TX")]


def types() -> dict[str, ActivityType]:
    """The organization's activity types keyed by type key."""
    result = {}
    for i, (name, color, icon) in enumerate(TYPES_RAW, 1):
        t = parse_activity_type({"id": i, "organization_id": ORG, "name": name, "color": color, "icon_key": icon, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"})
        result[t.key] = t
    return result


def activities(count: int, seed: int = 42) -> list[Activity]:
    """``count`` realistic activities, the same for the same seed."""
    rng = random.Random(seed)
    result = []
    for i in range(1, count + 1):
        start = date(2025, 1, 1) + timedelta(days=rng.randrange(365))
        hour = rng.randrange(7, 19)
        timed = rng.random() < 0.85
        location = rng.choice(LOCATIONS)
        geo = None
        if location in ("Client Office", "HQ, Room 4") and rng.random() < 0.7:
            lat, lng, address = rng.choice(CITIES)
            geo = {"lat": lat, "lng": lng, "address": address}
        updated = datetime(2025, 1, 1) + timedelta(seconds=rng.randrange(30_000_000))
        result.append(
            parse_activity(
                {
                    "id": i,
                    "organization_id": ORG,
                    "subject": rng.choice(SUBJECTS),
                    "note": "Talked about next steps. " * rng.randrange(0, 20) or None,
                    "public_description": rng.choice([None, "Agenda: pricing, timeline and next steps."]),
                    "location": location,
                    "location_geocoded": geo,
                    "start_date": start.isoformat(),
                    "start_time": f"{hour:02d}:{rng.choice([0, 15, 30, 45]):02d}:00" if timed else None,
                    "end_date": start.isoformat(),
                    "end_time": f"{hour + 1:02d}:00:00" if timed else None,
                    "activity_type": rng.choice(["meeting", "call", "task", "email", "customer_training"]),
                    "done": rng.random() < 0.4,
                    "deal": {"id": i, "name": f"Deal {i % 97}"} if rng.random() < 0.5 else None,
                    "contact": {"id": i, "full_name": "Jo Martin"} if rng.random() < 0.5 else None,
                    "created_at": "2024-12-01T00:00:00Z",
                    "updated_at": updated.isoformat() + "Z",
                }
            )
        )
    return result


def floor_inputs(mapped: list[Event | Todo]) -> list[tuple[type[Event] | type[Todo], list[tuple[str, Any, dict[str, str]]]]]:
    """Each mapped component's properties as (name, python value, parameters), to rebuild bare."""
    result = []
    for component in mapped:
        props = []
        for name, value in component.property_items(recursive=False, sorted=False):
            if name in ("BEGIN", "END"):
                continue
            params = {k: v for k, v in value.params.items() if k != "TZID"} if hasattr(value, "params") else {}
            props.append((name, component.decoded(name) if name not in ("CATEGORIES", "CONFERENCE") and not name.startswith("X-") else value, params))
        result.append((type(component), props))
    return result


def run_floor(inputs: list[tuple[type[Event] | type[Todo], list[tuple[str, Any, dict[str, str]]]]]) -> float:
    """Seconds to build and serialize every bare component."""
    started = time.perf_counter()
    for cls, props in inputs:
        component = cls()
        for name, value, params in props:
            component.add(name, value, parameters=params or None)
        component.to_ical()
    return time.perf_counter() - started


def run_mapping(items: list[Activity], kinds: dict[str, ActivityType], options: MappingOptions) -> float:
    """Seconds to map and serialize every activity into a complete object."""
    started = time.perf_counter()
    for activity in items:
        object_for(activity, kinds, options)
    return time.perf_counter() - started


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    kinds = types()
    items = activities(args.count)
    options = MappingOptions(timezone="America/New_York", privacy="full", tasks_as="todos")
    mapped = [map_activity(a, kinds, options) for a in items]
    inputs = floor_inputs(mapped)
    properties = statistics.mean(len(props) for _, props in inputs)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_mapping, items, kinds, options)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return
    # Interleaved in chunks of 500, best of ``rounds`` per chunk, so a change in
    # machine load hits both sides alike instead of whichever ran at that moment.
    chunk = 500
    floor = ours = 0.0
    for at in range(0, args.count, chunk):
        floor_runs, ours_runs = [], []
        for _ in range(args.rounds):
            floor_runs.append(run_floor(inputs[at : at + chunk]))
            ours_runs.append(run_mapping(items[at : at + chunk], kinds, options))
        floor += min(floor_runs)
        ours += min(ours_runs)
    print(f"machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"activities: {args.count}, mean properties per component: {properties:.1f}")
    print(f"floor (bare icalendar build + serialize): {floor / args.count * 1e6:8.1f} µs/activity")
    print(f"apexcal map + serialize (object_for):     {ours / args.count * 1e6:8.1f} µs/activity")
    print(f"ratio: {ours / floor:.2f}× the floor")


if __name__ == "__main__":
    main()
