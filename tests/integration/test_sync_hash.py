"""The content hash the engine compares: stable under a server's re-serialization, sensitive to content."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, time

from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.apex.models import Activity, GeoPoint
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.sync.detect import legacy_hash, semantic_hash
from apexcal.sync.plan import Desired, ObjectRecord, RemoteState, plan

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
    """``data`` re-serialized the way Radicale does: properties reordered within their component,
    long lines folded anew, quotes dropped from simple parameter values,
    X-APPLE-STRUCTURED-LOCATION cut at its comma."""
    lines = [line for line in _unfolded_lines(data) if line]
    rank = {i: (order.index(i) if i in order else len(order) + i) for i in range(len(lines))}
    reordered: list[bytes] = []
    run: list[int] = []
    for i, line in enumerate([*lines, b"END:"]):
        if line.startswith((b"BEGIN:", b"END:")):
            reordered.extend(lines[k] for k in sorted(run, key=rank.__getitem__))
            run = []
            if i < len(lines):
                reordered.append(line)
        else:
            run.append(i)
    out = []
    for line in reordered:
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


def _as_cyrus_stores_it(data: bytes) -> bytes:
    """``data`` re-serialized the way Cyrus does: GEO at 6 decimals, parameters re-ordered and quoted."""
    out = []
    for line in _unfolded_lines(data):
        if line.startswith(b"GEO:"):
            lat, lng = line[4:].split(b";")
            line = b"GEO:%.6f;%.6f" % (float(lat), float(lng))
        elif b";" in line.split(b":", 1)[0]:
            head, _, value = line.partition(b":")
            name, *params = head.split(b";")
            quoted = [p.split(b"=", 1)[0] + b'="' + p.split(b"=", 1)[1].strip(b'"') + b'"' for p in params]
            line = b";".join([name, *reversed(quoted)]) + b":" + value
        out.append(b"\r\n ".join(line[j : j + 70] for j in range(0, len(line), 70)) or line)
    return b"\r\n".join(out)


class TestCyrusRewrite:
    """Cyrus rewrites what it stores; adopting such objects must not rewrite them."""

    def test_hash_survives_cyrus_rewrite(self) -> None:
        """GEO cut to 6 decimals, parameters re-ordered and quoted: the same hash."""
        activity = Activity(
            id=7, organization_id=27, subject="Site visit", location="Quai d'Orsay",
            location_geocoded=GeoPoint(lat=48.856614123, lng=2.352221987, address="Paris"),
            start_date=date(2026, 3, 2), start_time=time(9, 0), activity_type="meeting", done=False,
            created_at=datetime(2026, 1, 1, tzinfo=UTC), updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        data = object_for(activity, {}, _OPTIONS).data
        rewritten = _as_cyrus_stores_it(data)
        assert b"GEO:48.856614;2.352222" in rewritten.replace(b"\r\n ", b"")
        assert semantic_hash(rewritten) == semantic_hash(data)

    def test_records_of_the_earlier_hash_form_are_not_rewritten(self) -> None:
        """A record holding the earlier hash of the same bytes plans no write."""
        activity = Activity(
            id=8, organization_id=27, subject="Call", start_date=date(2026, 3, 2), start_time=time(9, 0),
            activity_type="call", done=False,
            created_at=datetime(2026, 1, 1, tzinfo=UTC), updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        obj = object_for(activity, {}, _OPTIONS)
        desired = Desired(
            uid=obj.uid, activity_id=8, href_name=obj.href_name, content_hash=semantic_hash(obj.data),
            legacy_hash=legacy_hash(obj.data), data=obj.data, kind="VEVENT", done=False,
        )
        record = ObjectRecord(
            target="a", uid=obj.uid, activity_id=8, href=f"/c/{obj.href_name}", etag='"1"',
            pushed_hash=legacy_hash(obj.data), kind="VEVENT",
        )
        assert legacy_hash(obj.data) != semantic_hash(obj.data)
        assert plan(target="a", desired=[desired], recorded=[record], remote=RemoteState()).writes == ()
        moved = dataclasses.replace(record, pushed_hash=legacy_hash(obj.data.replace(b"SUMMARY:Call", b"SUMMARY:Old")))
        assert len(plan(target="a", desired=[desired], recorded=[moved], remote=RemoteState()).writes) == 1
