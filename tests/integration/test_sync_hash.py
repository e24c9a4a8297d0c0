"""The content hash the engine compares: stable under a server's re-serialization, sensitive to content."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.apex.models import Activity, GeoPoint
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.sync.detect import semantic_hash

_OPTIONS = MappingOptions(timezone="Europe/Berlin", uid_domain="example.com")
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


@st.composite
def activities(draw: st.DrawFn) -> Activity:
    """Activities with free text, places and coordinates (what servers rewrite most)."""
    day = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)))
    geo = draw(
        st.none()
        | st.builds(
            GeoPoint,
            lat=st.floats(-89, 89, allow_nan=False),
            lng=st.floats(-179, 179, allow_nan=False),
            address=st.none() | _TEXT,
        )
    )
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    return Activity(
        id=draw(st.integers(1, 10**6)),
        organization_id=27,
        subject=draw(_TEXT),
        note=draw(st.none() | _TEXT),
        location=draw(st.none() | _TEXT),
        location_geocoded=geo,
        start_date=day,
        start_time=draw(st.none() | st.times(max_value=time(22, 0)).map(lambda t: t.replace(microsecond=0))),
        activity_type=draw(st.sampled_from(["call", "meeting", "task"])),
        done=draw(st.booleans()),
        created_at=stamp,
        updated_at=stamp,
    )


def _unfolded_lines(data: bytes) -> list[bytes]:
    return re.sub(rb"\r?\n[ \t]", b"", data).split(b"\r\n")


def _as_radicale_stores_it(data: bytes, order: list[int]) -> bytes:
    """``data`` re-serialized the way Radicale does: lines reordered, long lines folded anew,
    quotes dropped from simple parameter values, X-APPLE-STRUCTURED-LOCATION cut at its comma."""
    lines = [line for line in _unfolded_lines(data) if line]
    out = []
    for i in order[: len(lines)] + list(range(len(order), len(lines))):
        line = lines[i % len(lines)]
        line = re.sub(rb'="([^";:,]*)"', rb"=\1", line)
        if line.startswith(b"X-APPLE-STRUCTURED-LOCATION"):
            head, _, value = line.rpartition(b":")
            line = head + b":" + value.split(b",")[0]
        folded = b"\r\n ".join(line[j : j + 60] for j in range(0, len(line), 60)) or line
        out.append(folded)
    return b"\r\n".join(out) + b"\r\n"


class TestSemanticHash:
    """``semantic_hash`` decides whether an object on a server is ours unchanged."""

    @settings(max_examples=60, deadline=None)
    @given(activities(), st.permutations(list(range(80))))
    def test_hash_survives_reserialization(self, activity: Activity, order: list[int]) -> None:
        """Reordered, refolded, unquoted bytes of one object hash like the original."""
        data = object_for(activity, {}, _OPTIONS).data
        lines = [line for line in _unfolded_lines(data) if line]
        perm = [i for i in order if i < len(lines)]
        rewritten = _as_radicale_stores_it(data, perm)
        assert semantic_hash(rewritten) == semantic_hash(data)

    @settings(max_examples=60, deadline=None)
    @given(activities(), _TEXT)
    def test_hash_changes_with_content(self, activity: Activity, subject: str) -> None:
        """A different subject is a different hash."""
        data = object_for(activity, {}, _OPTIONS).data
        other = object_for(activity.model_copy(update={"subject": subject}), {}, _OPTIONS).data
        assert (semantic_hash(other) == semantic_hash(data)) == (other == data)
