"""plan_merge: the updates of a plan carry our rendering merged into the server's copy."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.ical.ownership import owned_hash
from apexcal.sync.plan_merge import Copy, copies_of, merge_updates, merged, to_read
from apexcal.sync.plan_model import Create, Plan, RemoteSeen, Update
from tests.unit.ical.client_shapes import SHAPES, Shape, add_shape
from tests.unit.ical.test_merge import EVENT, TASK, render

HREF = "/cal/apexcal-27-101.ics"


def _update(data: bytes, *, etag: str = '"e1"') -> Update:
    return Update(
        uid="apexcal-27-101@api.achieveapex.com", activity_id=101, href=HREF, etag=etag, data=data,
        content_hash=owned_hash(data), kind="VEVENT", done=False,
    )


class TestMerged:
    """One update merged into one copy."""

    @settings(max_examples=30, deadline=None)
    @given(shape=st.sampled_from(SHAPES), subject=st.text(min_size=1, max_size=30).filter(str.strip))
    def test_client_additions_are_kept_and_owned_content_is_ours(self, shape: Shape, subject: str) -> None:
        """Every line a client added is in what is PUT, byte for byte; the owned hash is the rendering's."""
        act = TASK if shape.name in ("tasks.org", "jtx") else EVENT
        held = add_shape(render(act), shape)
        ours = render(act, subject=subject, updated_at="2025-06-02T08:00:00Z")
        out = merged(_update(ours), Copy(etag='"e1"', data=held))
        for fragment in shape.fragments():
            assert fragment.encode() in out.data
        assert owned_hash(out.data) == owned_hash(ours) == out.content_hash
        assert (out.etag, out.href) == ('"e1"', HREF)

    def test_an_unreadable_copy_gets_the_full_rendering(self) -> None:
        """A copy that is not iCalendar cannot be kept from: the update PUTs our rendering as it is."""
        ours = render(EVENT)
        garbage = b"this is not\r\nan iCalendar object\r\n"
        assert merged(_update(ours), Copy(etag='"e1"', data=garbage)).data == ours

    def test_no_copy_leaves_the_update_alone(self) -> None:
        """An object gone before it could be read keeps the full rendering (its PUT meets 412)."""
        ours = render(EVENT)
        assert merged(_update(ours), None).data == ours


class TestPlanCopies:
    """Which copies a plan needs, and where they come from."""

    def test_updates_without_a_copy_at_their_etag_are_read(self) -> None:
        """A copy read at another etag, or none, means reading it; creates never need one."""
        ours = render(EVENT)
        create = Create(uid="u2", activity_id=2, href_name="u2.ics", data=ours, content_hash="h", kind="VEVENT", done=False)
        the_plan = Plan(updates=(_update(ours),), creates=(create,))
        assert to_read(the_plan, {}) == [HREF]
        assert to_read(the_plan, {HREF: Copy(etag='"e0"', data=ours)}) == [HREF]
        assert to_read(the_plan, {HREF: Copy(etag='"e1"', data=ours)}) == []

    def test_copies_come_from_what_detection_read(self) -> None:
        """Objects read with their bytes are copies; those without bytes are not."""
        data = render(EVENT)
        seen = [
            RemoteSeen(href=HREF, etag='"e1"', uid="u", done=None, data=data),
            RemoteSeen(href="/cal/other.ics", etag='"e2"', uid="v", done=None),
        ]
        assert copies_of(seen) == {HREF: Copy(etag='"e1"', data=data)}

    def test_merge_updates_touches_only_updates(self) -> None:
        """Creates keep their bytes; the update takes the copy's additions."""
        ours = render(EVENT, subject="New")
        held = add_shape(render(EVENT), SHAPES[0])
        create = Create(uid="u2", activity_id=2, href_name="u2.ics", data=ours, content_hash="h", kind="VEVENT", done=False)
        out = merge_updates(Plan(updates=(_update(ours),), creates=(create,)), {HREF: Copy(etag='"e1"', data=held)})
        assert out.creates == (create,)
        assert hashlib.sha256(out.updates[0].data).digest() != hashlib.sha256(ours).digest()
        assert b"X-MOZ-LASTACK" in out.updates[0].data
