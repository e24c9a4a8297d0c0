"""The contract every feed output keeps (files; versioned rows of the state store, SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from apexcal.feeds.output import DatabaseOutput, FeedOutput, FileOutput
from apexcal.state import FeedStatus, Store
from apexcal.state.records import FeedBody
from tests.integration.test_state_store import pg_url

__all__ = ["pg_url"]  # fixture shared with the store tests

T0 = datetime(2026, 6, 15, 9, tzinfo=UTC)


@dataclass(frozen=True)
class Feed:
    name: str
    path: Path
    per_user: bool = True


def writer(data: bytes) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        out.write(data)

    return write


@dataclass
class Subject:
    output: FeedOutput
    store: Store | None

    def read(self, name: str, path: Path) -> bytes:
        if self.store is None:
            return path.read_bytes()
        body = self.store.feed_body(name)
        assert body is not None
        return body.body

    def body(self, name: str) -> FeedBody | None:
        return None if self.store is None else self.store.feed_body(name)


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """Each output, on a fresh directory or store."""
    if request.param == "file":
        yield Subject(FileOutput(), None)
        return
    url = f"sqlite:///{tmp_path}/state.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Store.open(url) as store:
        view = store.for_organization("acme")
        yield Subject(DatabaseOutput(view, clock=lambda: T0), view)


class TestFeedOutputContract:
    def test_unchanged_bytes_keep_the_old_version(self, subject: Subject, tmp_path: Path) -> None:
        """A write of the same bytes changes nothing; other bytes replace them."""
        path = tmp_path / "team.ics"
        first = subject.output.write("team", path, parent="team", write=writer(b"one"))
        stamp = subject.output.stamp("team", path)
        again = subject.output.write("team", path, parent="team", write=writer(b"one"))
        assert (first.changed, again.changed) == (True, False)
        assert first.sha256 == again.sha256 == hashlib.sha256(b"one").hexdigest()
        assert subject.output.stamp("team", path) == stamp
        other = subject.output.write("team", path, parent="team", write=writer(b"two"))
        assert (other.changed, other.length) == (True, 3)
        assert subject.read("team", path) == b"two"

    def test_outputs_list_the_feed_then_its_users(self, subject: Subject, tmp_path: Path) -> None:
        """A per-user feed's outputs are its own and one per user written so far, by user id."""
        feed = Feed("team", tmp_path / "team.ics")
        for name, user in (("team", None), ("team-47", 47), ("team-46", 46)):
            path = feed.path if user is None else tmp_path / f"team-{user}.ics"
            subject.output.write(name, path, parent="team", write=writer(name.encode()))
        assert subject.output.users(feed) == {46, 47}
        assert list(subject.output.outputs(feed)) == [
            ("team", feed.path), ("team-46", tmp_path / "team-46.ics"), ("team-47", tmp_path / "team-47.ics"),
        ]
        assert subject.output.users(Feed("other", tmp_path / "other.ics")) == set()

    def test_intact_until_written_again(self, subject: Subject, tmp_path: Path) -> None:
        """The output the build recorded is intact until something else is written there."""
        path = tmp_path / "team.ics"
        written = subject.output.write("team", path, parent="team", write=writer(b"one"))
        status = FeedStatus(
            feed="team", etag=f'"{written.sha256}"', length=written.length,
            mtime_ns=subject.output.stamp("team", path),
        )
        assert subject.output.intact("team", path, status)
        subject.output.write("team", path, parent="team", write=writer(b"other bytes"))
        assert not subject.output.intact("team", path, status)


class TestDatabaseOutput:
    def test_each_change_is_a_version_with_its_gzip_form(self, tmp_path: Path) -> None:
        """A stored body carries its ETag, a gzip form of it and a version that grows on change only."""
        with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
            output = DatabaseOutput(store, clock=lambda: T0)
            output.write("team", tmp_path / "t.ics", parent="team", write=writer(b"one"))
            output.write("team", tmp_path / "t.ics", parent="team", write=writer(b"one"))
            body = store.feed_body("team")
            assert body is not None
            assert (body.version, body.etag, body.modified_at) == (1, f'"{hashlib.sha256(b"one").hexdigest()}"', T0)
            assert gzip.decompress(body.gzip) == b"one"
            output.write("team", tmp_path / "t.ics", parent="team", write=writer(b"two"))
            assert store.feed_body_version("team") == (2, f'"{hashlib.sha256(b"two").hexdigest()}"')
            assert not (tmp_path / "t.ics").exists()
