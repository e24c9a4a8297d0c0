"""Mapping on every core gives the bytes of mapping in process, and stops cleanly."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date
from io import BytesIO
from pathlib import Path

import pytest

from apexcal.apex.models import Activity, ActivityType, parse_activity, parse_activity_type
from apexcal.emulator import EmulatorState
from apexcal.feeds.spool import ComponentSpool, SpoolCounts, spool_activities, whole, write_spooled
from apexcal.ical.feed import CalendarProps
from apexcal.ical.mapping import MappingOptions
from apexcal.parallel import SpoolJob, spool_mapped

ORG = 27


@pytest.fixture(scope="module")
def records() -> tuple[list[Activity], dict[str, ActivityType]]:
    """623 realistic activities (20 without a start date, 3 read twice) and their types."""
    emulator = EmulatorState()
    emulator.seed(ORG, 600, anchor=date(2026, 6, 15))
    activities = [parse_activity(r) for r in emulator.activities(ORG)]
    activities += activities[100:103]  # a listing paged by offset can repeat records
    activities += [  # events cannot be made of these
        a.model_copy(update={"id": 10_000 + a.id, "start_date": None, "end_date": None}) for a in activities[:20]
    ]
    types = {t.key: t for t in (parse_activity_type(r) for r in emulator.activity_types(ORG))}
    return activities, types


def by_user(activity: Activity) -> Sequence[tuple[str, str | None]]:
    user = activity.assigned_to_user_id
    return (("", None), (f"user-{user}", None)) if user is not None else (("", None),)


def written(spool: ComponentSpool) -> dict[str, bytes]:
    """Every group of a spool written as a calendar."""
    files = {}
    for group, components in spool.groups():
        out = BytesIO()
        write_spooled(out, components, CalendarProps(name=group or "all"), zoned=group in spool.zoned)
        files[group] = out.getvalue()
    return files


def both(
    activities: Sequence[Activity], types: dict[str, ActivityType], **kwargs: int
) -> tuple[list[dict[str, bytes]], list[SpoolCounts]]:
    """Two jobs (a split feed with reminders, a busy-only calendar) filled by ``spool_mapped``: files and counts."""
    jobs = [
        SpoolJob(
            spool=ComponentSpool(),
            options=MappingOptions(timezone="Europe/Berlin", tasks_as="events", alarms=(("default", ("-PT15M", "PT0S")),)),
            group_of=by_user,
        ),
        SpoolJob(spool=ComponentSpool(budget=64 * 1024), options=MappingOptions(privacy="busy", done_events="hide")),
    ]
    counts = spool_mapped(activities, jobs, types=types, **kwargs)
    files = [written(job.spool) for job in jobs]
    for job in jobs:
        job.spool.close()
    return files, counts


class TestOrderAndBytes:
    @pytest.mark.parametrize("other_thread", [False, True], ids=["forked", "fork-server"])
    def test_pool_output_is_byte_identical_to_in_process(
        self, records: tuple[list[Activity], dict[str, ActivityType]], other_thread: bool
    ) -> None:
        """Two workers on small batches give every file byte for byte, and the same counts, as one process.

        With another thread running, the workers come from the fork server instead of a plain fork.
        """
        activities, types = records
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        if other_thread:
            thread.start()
        try:
            pooled = both(activities, types, workers=2, min_parallel=0, batch_size=37)
        finally:
            stop.set()
            if other_thread:
                thread.join()
        alone = both(activities, types, workers=1)
        assert pooled == alone
        files, counts = pooled
        assert counts[0].read == len(activities)
        assert counts[0].skipped > 0  # events need a start date
        assert len(files[0]) > 2  # the whole calendar and per-user ones
        assert b"BEGIN:VALARM" in files[0][""]

    def test_in_process_matches_mapping_one_activity_at_a_time(
        self, records: tuple[list[Activity], dict[str, ActivityType]]
    ) -> None:
        """The batched path fills a spool exactly as ``spool_activities`` does."""
        activities, types = records
        options = MappingOptions(timezone="America/New_York")
        with ComponentSpool() as ours, ComponentSpool() as theirs:
            (counts,) = spool_mapped(activities, [SpoolJob(spool=ours, options=options)], types=types, workers=1)
            expected = spool_activities(activities, theirs, types=types, options=options, group_of=whole)
            assert counts == expected
            assert written(ours) == written(theirs)


class Exploding(dict[str, ActivityType]):
    """Activity types whose lookup fails: a bug inside a worker."""

    def get(self, key: str, default: object = None) -> ActivityType | None:  # type: ignore[override]
        raise RuntimeError(f"lookup of {key!r} failed")


class TestShutdown:
    def test_interrupted_reader_stops_the_workers(
        self, records: tuple[list[Activity], dict[str, ActivityType]]
    ) -> None:
        """Ctrl-C while reading (after the pool started) goes on as KeyboardInterrupt, and no worker is left."""
        activities, types = records
        running = set(multiprocessing.active_children())

        def interrupted() -> Iterator[Activity]:
            yield from activities[:300]
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt), ComponentSpool() as spool:
            spool_mapped(interrupted(), [SpoolJob(spool=spool, options=MappingOptions())], types=types, workers=2, min_parallel=0, batch_size=20)
        assert set(multiprocessing.active_children()) <= running

    def test_a_failing_worker_raises_in_the_caller(
        self, records: tuple[list[Activity], dict[str, ActivityType]]
    ) -> None:
        """An error inside a worker reaches the caller as itself, and the pool is gone."""
        activities, types = records
        running = set(multiprocessing.active_children())
        with pytest.raises(RuntimeError, match="lookup of"), ComponentSpool() as spool:
            spool_mapped(activities, [SpoolJob(spool=spool, options=MappingOptions())], types=Exploding(types), workers=2, min_parallel=0, batch_size=20)
        assert set(multiprocessing.active_children()) <= running

    @pytest.mark.parametrize("other_thread", [False, True], ids=["forked", "fork-server"])
    def test_sigint_to_the_process_group_does_not_reach_the_workers(self, tmp_path: Path, other_thread: bool) -> None:
        """A Ctrl-C the caller handles itself (the daemon finishes its cycle) leaves the workers mapping: nothing is lost."""
        ready = tmp_path / "ready"
        script = textwrap.dedent(
            f"""
            import signal, sys, threading, time
            from datetime import date
            from pathlib import Path
            from apexcal.apex.models import parse_activity, parse_activity_type
            from apexcal.emulator import EmulatorState
            from apexcal.feeds.spool import ComponentSpool
            from apexcal.ical.mapping import MappingOptions
            from apexcal.parallel import SpoolJob, spool_mapped

            def main():
                if {other_thread!r}:  # a running thread makes the pool use the fork server
                    threading.Thread(target=threading.Event().wait, daemon=True).start()
                interrupted = []
                signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
                emulator = EmulatorState()
                emulator.seed({ORG}, 200, anchor=date(2026, 6, 15))
                activities = [parse_activity(r) for r in emulator.activities({ORG})]
                types = {{t.key: t for t in map(parse_activity_type, emulator.activity_types({ORG}))}}

                def rounds():
                    for n in range(8):
                        for a in activities:
                            yield a.model_copy(update={{"id": a.id + 1000 * n}})
                        if n == 2:  # the workers are mapping by now: have the group interrupted
                            Path({str(ready)!r}).write_text("ready")
                            deadline = time.monotonic() + 30
                            while not interrupted and time.monotonic() < deadline:
                                time.sleep(0.01)  # polling interval of a condition with a deadline

                with ComponentSpool() as spool:
                    spool_mapped(rounds(), [SpoolJob(spool=spool, options=MappingOptions())],
                                 types=types, workers=2, min_parallel=0, batch_size=50)
                    print(len(interrupted), sum(1 for _ in spool.sorted_records()))

            if __name__ == "__main__":
                main()
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.02)  # polling interval of a condition with a deadline
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 0, stderr
        assert stdout.split()[-2:] == ["1", "1600"], stdout
        assert "Traceback" not in stderr, stderr
