"""The file side of feeds: atomic writes on a real file system and the disk-backed UID sort."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.feeds.atomic import write_atomic
from apexcal.feeds.spool import ComponentSpool


def writer(body: bytes, chunk: int = 4096):  # type: ignore[no-untyped-def]
    """A write callback that writes ``body`` in chunks."""

    def write(out: BinaryIO) -> None:
        for start in range(0, len(body), chunk):
            out.write(body[start : start + chunk])

    return write


class TestAtomicWrite:
    def test_new_file_gets_body_hash_length_and_umask_mode(self, tmp_path: Path) -> None:
        """A new file holds the body, reports its SHA-256 and length, and gets 0666 less the umask."""
        path = tmp_path / "feed.ics"
        body = b"BEGIN:VCALENDAR\r\n" * 1000
        result = write_atomic(path, writer(body))
        assert path.read_bytes() == body
        assert result.changed is True
        assert result.sha256 == hashlib.sha256(body).hexdigest()
        assert result.length == len(body)
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
        assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.ics"]

    def test_unchanged_bytes_are_not_rewritten(self, tmp_path: Path) -> None:
        """With only_if_changed, equal bytes leave the file itself (inode, mtime) untouched."""
        path = tmp_path / "feed.ics"
        write_atomic(path, writer(b"same body"), only_if_changed=True)
        before = path.stat()
        again = write_atomic(path, writer(b"same body"), only_if_changed=True)
        after = path.stat()
        assert again.changed is False
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        changed = write_atomic(path, writer(b"same size"), only_if_changed=True)
        assert changed.changed is True
        assert path.read_bytes() == b"same size"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.ics"]

    def test_existing_mode_is_kept(self, tmp_path: Path) -> None:
        """Rewriting a file keeps the permissions the operator gave it."""
        path = tmp_path / "feed.ics"
        path.write_bytes(b"old")
        path.chmod(0o640)
        write_atomic(path, writer(b"new"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    @pytest.mark.parametrize("error", [KeyboardInterrupt, OSError, ValueError])
    def test_interrupted_write_leaves_the_old_file_and_no_temp(
        self, tmp_path: Path, error: type[BaseException]
    ) -> None:
        """A write that fails half-way (Ctrl-C included) leaves the previous file whole and no temporary file."""
        path = tmp_path / "feed.ics"
        path.write_bytes(b"previous")

        def half(out: BinaryIO) -> None:
            out.write(b"x" * 200_000)
            raise error("stop")

        with pytest.raises(error):
            write_atomic(path, half)
        assert path.read_bytes() == b"previous"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.ics"]

    def test_leftovers_of_a_killed_writer_are_swept_when_old(self, tmp_path: Path) -> None:
        """Temporary files of the same destination older than an hour are removed by the next write; young ones and others stay."""
        path = tmp_path / "feed.ics"
        old = tmp_path / ".feed.ics.abc123.tmp"
        young = tmp_path / ".feed.ics.def456.tmp"
        other = tmp_path / ".other.ics.abc123.tmp"
        for leftover in (old, young, other):
            leftover.write_bytes(b"half a calendar")
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        os.utime(other, (two_hours_ago, two_hours_ago))
        write_atomic(path, writer(b"whole"))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["feed.ics", young.name, other.name]
        )

    def test_reader_never_sees_a_partial_file(self, tmp_path: Path) -> None:
        """While two large bodies replace each other, every read returns one of them whole."""
        path = tmp_path / "feed.ics"
        bodies = (b"A" * 300_000, b"B" * 450_000)
        write_atomic(path, writer(bodies[0]))
        stop = threading.Event()
        seen: set[bytes] = set()
        bad: list[int] = []

        def read() -> None:
            while not stop.is_set():
                data = path.read_bytes()
                if data not in bodies:
                    bad.append(len(data))
                seen.add(data[:1])

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for n in range(150):
                write_atomic(path, writer(bodies[n % 2], chunk=7919))
        finally:
            stop.set()
            reader.join(timeout=10)
        assert bad == []
        assert seen <= {b"A", b"B"}


records = st.lists(
    st.tuples(
        st.sampled_from(["", "45", "46", "470"]),
        st.integers(min_value=1, max_value=300),
        st.binary(min_size=0, max_size=300),
    ),
    max_size=120,
)


class TestComponentSpool:
    @settings(max_examples=60, deadline=None)
    @given(items=records, budget=st.integers(min_value=1, max_value=20_000))
    def test_groups_come_back_sorted_whatever_the_spills(
        self, items: list[tuple[str, int, bytes]], budget: int
    ) -> None:
        """Read back through any number of spilled runs, each group's components are in UID order, each UID once (the first added)."""
        expected: dict[str, dict[str, bytes]] = {}
        with ComponentSpool(budget=budget) as spool:
            spool.touch("empty")
            for group, activity_id, data in items:
                uid = f"apexcal-27-{activity_id}@example.com"
                spool.add(group, uid, data)
                expected.setdefault(group, {}).setdefault(uid, data)
            got = {group: list(components) for group, components in spool.groups()}
            assert len(spool) == sum(len(v) for v in expected.values())
        assert list(got) == sorted({*expected, "empty"})
        assert got.pop("empty") == []
        for group, by_uid in expected.items():
            assert got[group] == [by_uid[uid] for uid in sorted(by_uid)]

    def test_uid_order_is_string_order_of_the_uid(self) -> None:
        """``apexcal-27-100@`` < ``apexcal-27-10@`` < ``apexcal-27-1@`` < ``apexcal-27-2@``, through a spill too."""
        with ComponentSpool(budget=1) as spool:
            for activity_id in (2, 1, 10, 100):
                spool.add("", f"apexcal-27-{activity_id}@x", str(activity_id).encode())
            assert spool.runs == 4
            got = [(group, list(components)) for group, components in spool.groups()]
            assert got == [("", [b"100", b"10", b"1", b"2"])]

    def test_spool_notes_which_groups_need_a_vtimezone(self) -> None:
        """A group with a TZID-bearing component is marked zoned; a group of UTC/all-day ones is not."""
        with ComponentSpool() as spool:
            spool.add("a", "u1", b"DTSTART;TZID=Europe/Berlin:20260101T090000\r\n")
            spool.add("b", "u2", b"DTSTART;VALUE=DATE:20260101\r\n")
            assert spool.zoned == {"a"}
