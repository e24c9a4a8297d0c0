"""Settling a writeback whose answer was lost, from the CRM's state read afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from apexcal.sync.completions import settle_in_doubt

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
OFFSETS = st.integers(min_value=-86_400_000, max_value=86_400_000).map(
    lambda ms: T0 + timedelta(milliseconds=ms)
)


class TestSettleInDoubt:
    @given(done=st.booleans(), updated=OFFSETS)
    def test_the_crm_holding_the_value_means_delivered(self, done: bool, updated: datetime) -> None:
        """Whenever the CRM changed, holding the value sent means nothing is left to send."""
        assert settle_in_doubt(done, T0, done, updated) == "delivered"

    @given(done=st.booleans(), updated=OFFSETS)
    def test_the_other_value_changed_after_the_attempt_is_the_crms(
        self, done: bool, updated: datetime
    ) -> None:
        """The other value: the CRM's own change wins when it came after the attempt, else it is sent."""
        expected = "overridden" if updated > T0 else "unsent"
        assert settle_in_doubt(done, T0, not done, updated) == expected

    @given(done=st.booleans())
    def test_an_activity_not_listed_is_sent_as_before(self, done: bool) -> None:
        """Nothing read: the entry is sent like any pending one (the API skips a vanished id)."""
        assert settle_in_doubt(done, T0, None, None) == "unsent"
