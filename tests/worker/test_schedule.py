"""When targets and feeds fall due in worker mode, and what a tick and a pull choose (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from apexcal.config import config_from_dict
from apexcal.state import TargetState
from apexcal.worker.schedule import is_due, phase, slot
from apexcal.worker.tasks import (
    PULL_LABEL,
    cron,
    due_work,
    feed_lock,
    pull_due,
    target_lock,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

CONFIG = config_from_dict(
    {
        "source": {"organization_id": 27, "token": "t"},
        "sync": {"interval": "1m"},
        "targets": [
            {"name": "jane", "url": "http://127.0.0.1:9/jane/"},
            {"name": "bob", "url": "http://127.0.0.1:9/bob/"},
        ],
        "feeds": [{"name": "team", "path": "/tmp/team.ics"}],
    }
)

intervals = st.integers(min_value=1, max_value=86_400).map(lambda s: timedelta(seconds=s))
instants = st.integers(min_value=0, max_value=10**9).map(lambda s: T0 + timedelta(seconds=s))


class TestSlots:
    @given(org=st.text(max_size=20), interval=intervals)
    def test_phase_lies_within_the_interval_and_is_stable(self, org: str, interval: timedelta) -> None:
        """An organization's phase is in [0, interval) and the same every time."""
        assert timedelta(0) <= phase(org, interval) < interval
        assert phase(org, interval) == phase(org, interval)

    @given(interval=intervals, start=instants, steps=st.integers(min_value=1, max_value=100))
    def test_an_item_running_whenever_due_runs_once_per_slot(
        self, interval: timedelta, start: datetime, steps: int
    ) -> None:
        """Checking every tenth of an interval and running when due gives exactly one run per slot."""
        offset = phase("acme", interval)
        last: datetime | None = None
        runs: list[int] = []
        for step in range(steps):
            now = start + interval * step / 10
            if is_due(now, interval=interval, offset=offset, last_run=last):
                runs.append(slot(now, interval, offset))
                last = now
        assert runs == sorted(set(runs))
        assert len(runs) >= (steps - 1) // 10

    def test_failures_back_off(self) -> None:
        """After three failures an item waits four intervals from the last failure."""
        kwargs = {"interval": MINUTE, "offset": timedelta(0), "last_run": T0, "failures": 3, "last_failure": T0}
        assert not is_due(T0 + 3 * MINUTE, **kwargs)  # type: ignore[arg-type]
        assert is_due(T0 + 4 * MINUTE, **kwargs)  # type: ignore[arg-type]


class TestWhatIsDue:
    def test_never_run_items_are_due_unless_a_job_holds_them(self) -> None:
        """A fresh organization has every target and feed due; busy ones are left to their job."""
        work = due_work("acme", CONFIG, {}, {target_lock("acme", "bob")}, T0)
        assert (work.targets, work.feeds) == (("jane",), ("team",))
        assert not due_work("acme", CONFIG, {}, {target_lock("acme", "jane"), target_lock("acme", "bob"), feed_lock("acme", "team")}, T0)

    def test_items_that_ran_in_this_slot_wait_for_the_next(self) -> None:
        """A target that ran in the current slot is not due again until the next one."""
        offset = phase("acme", MINUTE)
        start = T0 + offset  # a slot boundary
        states = {
            "jane": TargetState(target="jane", last_success_at=start + timedelta(seconds=5)),
            "bob": TargetState(target="bob", last_success_at=start - timedelta(seconds=5)),
            "feed:team": TargetState(target="feed:team", last_success_at=start + timedelta(seconds=1)),
        }
        work = due_work("acme", CONFIG, states, set(), start + timedelta(seconds=30))
        assert (work.targets, work.feeds) == (("bob",), ())

    def test_an_organization_pulls_once_per_slot(self) -> None:
        """A pull in the current slot keeps the organization from pulling again until the next."""
        start = T0 + phase("acme", MINUTE)
        pulled = TargetState(target=PULL_LABEL, last_success_at=start + timedelta(seconds=2))
        assert pull_due("acme", CONFIG, None, start)
        assert not pull_due("acme", CONFIG, pulled, start + timedelta(seconds=50))
        assert pull_due("acme", CONFIG, pulled, start + MINUTE)

    def test_a_failing_pull_backs_off(self) -> None:
        """After two failed pulls the organization waits two intervals."""
        failing = TargetState(target=PULL_LABEL, last_error_at=T0, consecutive_failures=2)
        assert not pull_due("acme", CONFIG, failing, T0 + MINUTE)
        assert pull_due("acme", CONFIG, failing, T0 + 2 * MINUTE)


class TestCron:
    def test_periods_become_cron_lines_with_a_seconds_field_when_needed(self) -> None:
        """Sub-minute periods use procrastinate's sixth (seconds) field; minutes the classic form."""
        assert cron(timedelta(seconds=30)) == "* * * * * */30"
        assert cron(MINUTE) == "* * * * *"
        assert cron(5 * MINUTE) == "*/5 * * * *"
