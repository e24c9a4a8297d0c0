"""Property: applying the mirror's change sets incrementally always reproduces the live mirror."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from apexcal.apex.models import Activity
from apexcal.state import Store

ORG = 27
IDS = st.integers(min_value=1, max_value=12)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _activity(activity_id: int, version: int) -> Activity:
    raw: dict[str, Any] = {
        "id": activity_id,
        "organization_id": ORG,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": (T0 + timedelta(minutes=version)).isoformat(),
        "subject": f"Activity {activity_id} v{version}",
    }
    return Activity.model_validate(raw)


class MirrorChangesMachine(RuleBasedStateMachine):
    """CRM edits, deletions and revivals against targets that catch up at random moments."""

    @initialize()
    def open_store(self) -> None:
        self.store = Store.open("sqlite://")
        self.versions: dict[int, int] = {}
        self.deleted: set[int] = set()
        # Two targets that consume changes at different paces.
        self.seen = {"a": 0, "b": 0}
        self.views: dict[str, dict[int, Activity]] = {"a": {}, "b": {}}

    def teardown(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    def _live(self) -> dict[int, Activity]:
        return {i: _activity(i, v) for i, v in self.versions.items() if i not in self.deleted}

    @rule(ids=st.lists(IDS, max_size=6), edit=st.booleans())
    def pull(self, ids: list[int], edit: bool) -> None:
        """A pull page: some activities new or edited, others re-sent unchanged (overlap)."""
        batch = []
        for i in ids:
            if edit or i not in self.versions:
                self.versions[i] = self.versions.get(i, 0) + 1
            self.deleted.discard(i)
            batch.append(_activity(i, self.versions[i]))
        before = self.store.mirror_seq(ORG)
        result = self.store.upsert_activities(ORG, batch, watermark=None)
        if not result.changed:
            assert self.store.mirror_seq(ORG) == before
        else:
            assert self.store.mirror_seq(ORG) == before + 1

    @rule(ids=st.lists(IDS, max_size=4))
    def reconcile(self, ids: list[int]) -> None:
        """A reconcile sweep finds some activities gone."""
        live_before = set(self.versions) - self.deleted
        count = self.store.mark_deleted(ORG, ids)
        assert count == len(set(ids) & live_before)
        self.deleted |= set(ids) & set(self.versions)

    @rule(name=st.sampled_from(["a", "b"]))
    def cycle(self, name: str) -> None:
        """A target applies the changes since its last cycle to its own copy."""
        changes = self.store.activities_changed_since(ORG, self.seen[name])
        view = self.views[name]
        for item in changes.changed:
            view[item.id] = item
        for i in changes.deleted:
            view.pop(i, None)
        self.seen[name] = changes.seq
        assert view == self._live()
        assert self.store.activities_changed_since(ORG, changes.seq).empty

    @invariant()
    def mirror_matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        assert self.store.live_activity_ids(ORG) == set(self._live())


MirrorChangesMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=15, deadline=None
)


class TestMirrorChangeSets:
    """Wraps the state machine so it runs as a behaviour-named test."""

    test_incremental_changes_reproduce_the_live_mirror = MirrorChangesMachine.TestCase
