"""Feed files built from the state store's mirror, filled by a real pull from the emulator."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream
from icalendar import Calendar

from apexcal.apex.client import ApexClient
from apexcal.config import Config, config_from_dict
from apexcal.feeds import build_all_feeds, build_feed, feed_paths, in_window
from apexcal.feeds.output import DatabaseOutput
from apexcal.ical.feed import etag_for
from apexcal.metrics import Metrics
from apexcal.state import Store
from apexcal.sync.pull import pull
from tests.fixtures.emulator import EmulatorHandle

TODAY = date(2026, 6, 15)
ORG = 27
STAMP = "2026-05-01T10:00:00.000Z"


def day(offset: int) -> str:
    """The ISO date ``offset`` days from :data:`TODAY`."""
    return (TODAY + timedelta(days=offset)).isoformat()


def activity(activity_id: int, **fields: Any) -> dict[str, Any]:
    """An emulator record: a one-hour call today, assigned to user 46, unless ``fields`` say otherwise."""
    record: dict[str, Any] = {
        "id": activity_id,
        "organization_id": ORG,
        "created_by_user_id": 46,
        "assigned_to_user_id": 46,
        "subject": f"Activity {activity_id}",
        "note": None,
        "public_description": None,
        "activity_type": "call",
        "start_date": day(0),
        "start_time": "09:00:00",
        "end_date": day(0),
        "end_time": "10:00:00",
        "done": False,
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    record.update(fields)
    return record


@dataclass(frozen=True, kw_only=True)
class Site:
    """A config, a state store and an API client around one emulator."""

    emulator: EmulatorHandle
    config: Config
    store: Store
    client: ApexClient
    feed_dir: Path

    def pull(self) -> None:
        """Bring the mirror up to date, deletions included."""
        pull(self.config, self.store, self.client, now=datetime.now(UTC), force_reconcile=True)

    def build(self) -> dict[str, Any]:
        """Build every feed for :data:`TODAY`; results by feed name."""
        return {r.name: r for r in build_all_feeds(self.config, self.store, today=TODAY)}

    def feed(self, name: str = "team") -> bytes:
        """The bytes of a feed file."""
        return feed_paths(self.config)[name].read_bytes()


def make_site(
    emulator: EmulatorHandle,
    tmp_path: Path,
    feeds: list[dict[str, Any]],
    geocoder: str = "none",
    **source: Any,
) -> Iterator[Site]:
    feed_dir = tmp_path / "feeds"
    for feed in feeds:
        feed.setdefault("path", str(feed_dir / f"{feed['name']}.ics"))
    config = config_from_dict(
        {
            "source": {
                "base_url": emulator.base_url,
                "token": emulator.token,
                "organization_id": ORG,
                "uid_domain": "example.com",
                **source,
            },
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            # No geocoding unless a test is about it: the offline gazetteer takes seconds to load.
            "mapping": {"geocoder": geocoder},
            "feeds": feeds,
        }
    )
    with (
        Store.open(config.state.url) as store,
        ApexClient(emulator.base_url, emulator.token, ORG) as client,
    ):
        yield Site(emulator=emulator, config=config, store=store, client=client, feed_dir=feed_dir)


@pytest.fixture
def site(emulator: EmulatorHandle, tmp_path: Path) -> Iterator[Site]:
    """One public team feed and one full-privacy feed, over a few hand-made activities."""
    for record in (
        activity(1, note="PRIVATE-NOTE-ONE", public_description="Agenda for the call"),
        activity(
            2,
            subject="Planning",
            activity_type="meeting",
            start_date=day(3),
            start_time=None,
            end_date=day(3),
            end_time=None,
        ),
        activity(10, assigned_to_user_id=47, note="PRIVATE-NOTE-TEN"),
        activity(100, assigned_to_user_id=48, start_date=day(-2), end_date=day(-2)),
    ):
        emulator.state.insert_activity(record)
    yield from make_site(
        emulator,
        tmp_path,
        [
            {
                "name": "team",
                "privacy": "public",
                "calendar_name": "Team",
                "description": "All of us",
                "color": "#3B82F6",
                "refresh_interval": "30m",
            },
            {"name": "full", "privacy": "full"},
        ],
    )


def events(data: bytes) -> dict[str, bytes]:
    """Each VEVENT block of a calendar by its UID."""
    blocks = re.findall(rb"BEGIN:VEVENT\r\n.*?END:VEVENT\r\n", data, flags=re.S)
    return {re.search(rb"\r\nUID:(.*?)\r\n", b).group(1).decode(): b for b in blocks}  # type: ignore[union-attr]


def sequence(block: bytes) -> int:
    return int(re.search(rb"\r\nSEQUENCE:(\d+)\r\n", block).group(1))  # type: ignore[union-attr]


class TestFeedDeterminism:
    def test_rebuild_without_changes_leaves_the_file_untouched(self, site: Site) -> None:
        """A second build over unchanged data writes nothing: same bytes, same mtime, same ETag."""
        site.pull()
        first = site.build()["team"]
        path = site.config.feed("team").path
        before = path.stat()
        body = path.read_bytes()
        second = site.build()["team"]
        after = path.stat()
        assert (first.changed, first.rebuilt) == (True, True)
        assert (second.changed, second.rebuilt) == (False, False)
        assert path.read_bytes() == body
        assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
        assert first.etag == second.etag == etag_for(body)
        assert first.count == 4
        assert first.length == len(body)

    def test_unrelated_change_rebuilds_but_keeps_the_bytes(self, site: Site) -> None:
        """A mirror change the feed does not show (outside its window) rebuilds it, to the same bytes and mtime."""
        site.emulator.state.insert_activity(activity(500, start_date=day(-400), end_date=day(-400)))
        site.pull()
        site.build()
        path = site.config.feed("team").path
        before = path.stat()
        site.client.patch_activity(500, {"subject": "Long ago"})
        site.pull()
        results = site.build()
        assert (results["team"].rebuilt, results["team"].changed) == (True, False)
        assert path.stat().st_mtime_ns == before.st_mtime_ns

    def test_freshness_is_read_from_the_store_alone(self, site: Site) -> None:
        """No build record beside the feed: the store's feed status decides; without it the feed is rebuilt."""
        site.pull()
        site.build()
        path = site.config.feed("team").path
        assert [p.name for p in path.parent.iterdir() if p.name.endswith(".json")] == []
        status = site.store.feed_status("team")
        assert status is not None
        assert (status.parent, status.events) == ("team", 4)
        assert status.signature is not None
        assert site.build()["team"].rebuilt is False
        assert status.etag is not None
        assert status.built_at is not None
        assert status.length is not None
        site.store.set_feed_built("team", status.etag, status.built_at, status.length)  # no inputs
        assert site.build()["team"].rebuilt is True

    def test_file_touched_behind_its_back_is_rebuilt(self, site: Site) -> None:
        """A feed file edited or removed since the last build is written again, even with no data change."""
        site.pull()
        site.build()
        path = site.config.feed("team").path
        body = path.read_bytes()
        path.write_bytes(b"tampered")
        assert site.build()["team"].rebuilt is True
        assert path.read_bytes() == body
        path.unlink()
        assert site.build()["team"].changed is True
        assert path.read_bytes() == body

    def test_build_is_recorded_in_the_store_and_metrics(self, site: Site) -> None:
        """Each build records the feed's ETag and length in the store and counts changed builds."""
        site.pull()
        metrics = Metrics()
        build_all_feeds(site.config, site.store, today=TODAY, metrics=metrics)
        build_all_feeds(site.config, site.store, today=TODAY, metrics=metrics)
        status = site.store.feed_status("team")
        assert status is not None
        assert status.etag == etag_for(site.feed("team"))
        assert status.length == len(site.feed("team"))
        builds = metrics.registry.get_sample_value("apexcal_feed_builds_total", {"feed": "team"})
        assert builds == 1.0

    def test_events_are_sorted_by_uid_not_by_id(self, site: Site) -> None:
        """UIDs appear in string order (…-100@ before …-10@ before …-1@), not id order."""
        site.pull()
        site.build()
        uids = list(events(site.feed()))
        assert uids == sorted(uids)
        assert uids == [f"apexcal-27-{i}@example.com" for i in (100, 10, 1, 2)]

    def test_same_data_in_another_store_gives_the_same_bytes(
        self, site: Site, tmp_path: Path
    ) -> None:
        """Two stores filled from the same API produce byte-identical feeds (no clock, no order leaks)."""
        site.pull()
        site.build()
        other_config = site.config.model_copy(
            update={
                "feeds": [
                    f.model_copy(update={"path": tmp_path / "other" / f"{f.name}.ics"})
                    for f in site.config.feeds
                ],
            }
        )
        with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
            pull(other_config, other, site.client, now=datetime.now(UTC) + timedelta(days=3))
            build_all_feeds(other_config, other, today=TODAY)
        assert (tmp_path / "other" / "team.ics").read_bytes() == site.feed("team")


class TestFeedChanges:
    def test_changed_activity_raises_only_its_own_sequence(self, site: Site) -> None:
        """Editing one activity changes the bytes, and only that event's SEQUENCE rises."""
        site.pull()
        site.build()
        before = events(site.feed())
        site.client.patch_activity(2, {"subject": "Planning (moved)"})
        site.pull()
        result = site.build()["team"]
        after = events(site.feed())
        changed_uid = "apexcal-27-2@example.com"
        assert result.changed is True
        assert sequence(after[changed_uid]) > sequence(before[changed_uid])
        assert b"SUMMARY:Planning (moved)" in after[changed_uid]
        assert {uid: b for uid, b in after.items() if uid != changed_uid} == {
            uid: b for uid, b in before.items() if uid != changed_uid
        }

    def test_deleted_activity_is_gone_from_the_feed(self, site: Site) -> None:
        """An activity deleted in the CRM disappears from the feed after the next pull and build."""
        site.pull()
        site.build()
        site.client.delete_activity(10)
        site.pull()
        result = site.build()["team"]
        assert result.changed is True
        assert "apexcal-27-10@example.com" not in events(site.feed())
        assert result.count == 3


class TestFeedPrivacy:
    def test_public_feed_never_contains_a_note(self, site: Site) -> None:
        """The private note is absent from a public feed and present in a full one."""
        site.pull()
        site.build()
        assert b"PRIVATE-NOTE" not in site.feed("team")
        assert b"Agenda for the call" in site.feed("team")
        full = site.feed("full")
        assert b"PRIVATE-NOTE-ONE" in full
        assert b"PRIVATE-NOTE-TEN" in full

    def test_seeded_public_feed_has_no_note_text(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """Over realistic seeded data (long and unicode notes), no note line reaches a public feed."""
        emulator.state.seed(ORG, 120, anchor=TODAY)
        notes = {a["note"] for a in emulator.state.activities(ORG) if a["note"]} - {
            a["public_description"] for a in emulator.state.activities(ORG)
        }
        for s in make_site(emulator, tmp_path, [{"name": "pub"}]):
            s.pull()
            s.build()
            unfolded = Calendar.from_ical(s.feed("pub"))
            descriptions = "\n".join(str(e.get("DESCRIPTION", "")) for e in unfolded.walk("VEVENT"))
            assert len(unfolded.walk("VEVENT")) > 50
            for note in notes:
                assert note.strip()[:40] not in descriptions


class TestFeedCalendar:
    def test_calendar_properties_and_no_method_or_source(self, site: Site) -> None:
        """The feed names itself, its colour and refresh hint, and carries no METHOD or SOURCE."""
        site.pull()
        site.build()
        data = site.feed()
        cal = Calendar.from_ical(data)
        assert str(cal["NAME"]) == str(cal["X-WR-CALNAME"]) == "Team"
        assert str(cal["DESCRIPTION"]) == str(cal["X-WR-CALDESC"]) == "All of us"
        assert b"REFRESH-INTERVAL;VALUE=DURATION:PT30M\r\n" in data
        assert b"X-PUBLISHED-TTL:PT30M\r\n" in data
        assert b"X-APPLE-CALENDAR-COLOR:#3B82F6\r\n" in data
        assert b"\r\nCOLOR:" in data
        assert b"X-WR-TIMEZONE:UTC\r\n" in data
        assert b"METHOD" not in data
        assert b"SOURCE" not in data
        assert str(cal["PRODID"]).startswith("-//apexcal//")

    def test_zoned_feed_carries_its_vtimezone_and_parses_strictly(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """A feed in Europe/Berlin has one VTIMEZONE for the TZID its events use, and both parsers accept it."""
        emulator.state.seed(ORG, 60, anchor=TODAY)
        for s in make_site(
            emulator,
            tmp_path,
            [{"name": "berlin", "tasks_as": "todos", "privacy": "full"}],
            timezone="Europe/Berlin",
        ):
            s.pull()
            s.build()
            data = s.feed("berlin")
            assert data.count(b"BEGIN:VTIMEZONE") == 1
            assert b"TZID:Europe/Berlin\r\n" in data
            assert b";TZID=Europe/Berlin:" in data
            assert b"X-WR-TIMEZONE:Europe/Berlin\r\n" in data
            strict = IcsCalendarStream.calendar_from_ics(data.decode())
            assert len(strict.events) + len(strict.todos) == s.build()["berlin"].count

    def test_feed_without_timed_events_has_no_vtimezone(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """All-day events only: no VTIMEZONE is written, since no TZID is used."""
        emulator.state.insert_activity(activity(5, start_time=None, end_time=None))
        for s in make_site(emulator, tmp_path, [{"name": "allday"}], timezone="America/New_York"):
            s.pull()
            s.build()
            assert b"VTIMEZONE" not in s.feed("allday")
            assert b"DTSTART;VALUE=DATE:20260615" in s.feed("allday")

    def test_empty_feed_is_a_valid_calendar(self, emulator: EmulatorHandle, tmp_path: Path) -> None:
        """A feed with nothing to show is still a complete calendar both parsers accept."""
        for s in make_site(emulator, tmp_path, [{"name": "empty"}]):
            s.pull()
            assert s.build()["empty"].count == 0
            data = s.feed("empty")
            assert data.endswith(b"END:VCALENDAR\r\n")
            IcsCalendarStream.calendar_from_ics(data.decode())
            assert Calendar.from_ical(data).walk("VEVENT") == []


class TestFeedGeocoding:
    def test_physical_location_without_geocode_gets_geo_like_sync_targets(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """A place the API left without a point gets GEO from the offline gazetteer (cached); online places get none."""
        emulator.state.insert_activity(activity(1, location="Client Office, Berlin, Germany"))
        emulator.state.insert_activity(activity(2, location="Online - Zoom"))
        for s in make_site(emulator, tmp_path, [{"name": "geo"}], geocoder="offline"):
            s.pull()
            s.build()
            blocks = events(s.feed("geo"))
            assert b"\r\nGEO:52.5" in blocks["apexcal-27-1@example.com"]
            assert b"X-APPLE-STRUCTURED-LOCATION" in blocks["apexcal-27-1@example.com"]
            assert b"GEO" not in blocks["apexcal-27-2@example.com"]
            hit, point = s.store.geocode_get("client office, berlin, germany", datetime.now(UTC))
            assert hit
            assert point is not None

    def test_no_geocoder_means_no_geo(self, emulator: EmulatorHandle, tmp_path: Path) -> None:
        """With ``geocoder = "none"`` a place without a point stays without GEO."""
        emulator.state.insert_activity(activity(1, location="Client Office, Berlin"))
        for s in make_site(emulator, tmp_path, [{"name": "geo"}], geocoder="none"):
            s.pull()
            s.build()
            assert b"GEO" not in s.feed("geo")
            assert b"LOCATION:Client Office\\, Berlin" in s.feed("geo")


class TestFeedSelection:
    def test_window_keeps_overlapping_activities_only(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """Activities overlapping [today − past, today + future] are in; those outside, and undated ones, are out."""
        for record in (
            activity(1, start_date=day(-11), end_date=day(-11)),  # before the window
            activity(2, start_date=day(-20), end_date=day(-9)),  # multi-day, ends inside
            activity(3, start_date=day(-10), end_date=day(-10)),  # first day of the window
            activity(4, start_date=day(20), end_date=day(20)),  # last day of the window
            activity(5, start_date=day(21), end_date=day(21)),  # after the window
            activity(6, start_date=day(-30), end_date=day(30)),  # spans the whole window
            activity(
                7, start_date=day(-11), end_date=None, start_time="23:30:00", end_time="00:30:00"
            ),  # crosses midnight into the window
            activity(
                8,
                activity_type="task",
                start_date=None,
                start_time=None,
                end_date=None,
                end_time=None,
            ),  # undated
        ):
            emulator.state.insert_activity(record)
        feed = {"name": "win", "window": {"past_days": 10, "future_days": 20}}
        for s in make_site(emulator, tmp_path, [feed]):
            s.pull()
            s.build()
            ids = sorted(int(uid.split("-")[2].split("@")[0]) for uid in events(s.feed("win")))
            assert ids == [2, 3, 4, 6, 7]

    def test_filter_selects_by_type_and_done(self, site: Site) -> None:
        """A feed's filter (the API's query parameters) selects from the mirror."""
        site.emulator.state.insert_activity(activity(3, activity_type="meeting", done=True))
        cfg = site.config.model_copy(
            update={
                "feeds": [
                    site.config.feeds[0].model_copy(
                        update={
                            "name": "meetings",
                            "path": site.feed_dir / "m.ics",
                            "filter": {"activity_type": ["meeting"], "done": False},
                        }
                    )
                ]
            }
        )
        site.pull()
        (result,) = build_feed(cfg.feeds[0], cfg, site.store, today=TODAY)
        assert list(events(result.path.read_bytes())) == ["apexcal-27-2@example.com"]

    def test_default_window_and_today_in_source_zone(self) -> None:
        """The default window is 30 days back and 365 ahead, inclusive at both ends."""
        from apexcal.apex.models import parse_activity
        from apexcal.feeds import feed_window

        config = config_from_dict(
            {"source": {"organization_id": 27}, "feeds": [{"name": "f", "path": "/tmp/f.ics"}]}
        )
        first, last = feed_window(config.feeds[0], TODAY)
        assert (first, last) == (TODAY - timedelta(days=30), TODAY + timedelta(days=365))
        inside = parse_activity(activity(1, start_date=last.isoformat(), end_date=None))
        outside = parse_activity(
            activity(1, start_date=(last + timedelta(days=1)).isoformat(), end_date=None)
        )
        assert in_window(inside, first, last)
        assert not in_window(outside, first, last)


class TestPerUserFeeds:
    def test_one_file_per_user_with_only_their_activities(self, site: Site) -> None:
        """A per-user feed writes the team file and one file per assigned user, each with only their events."""
        cfg = site.config.model_copy(
            update={"feeds": [site.config.feeds[0].model_copy(update={"per_user": True})]}
        )
        site.pull()
        results = {r.name: r for r in build_all_feeds(cfg, site.store, today=TODAY)}
        assert sorted(results) == ["team", "team-46", "team-47", "team-48"]
        assert results["team-46"].path == site.feed_dir / "team-46.ics"
        assert sorted(events(results["team-46"].path.read_bytes())) == [
            "apexcal-27-1@example.com",
            "apexcal-27-2@example.com",
        ]
        assert list(events(results["team-47"].path.read_bytes())) == ["apexcal-27-10@example.com"]
        assert results["team"].count == 4
        data = results["team-47"].path.read_bytes()
        # The mirror holds the joined user, so the calendar is named after the person.
        assert "NAME:Team – María García\r\n".encode() in data
        paths = feed_paths(cfg)
        assert paths["team-48"] == site.feed_dir / "team-48.ics"
        assert set(paths) == {"team", "team-46", "team-47", "team-48"}
        assert {s.feed for s in site.store.all_feed_status()} >= {"team-46", "team-47", "team-48"}

    def test_user_left_without_activities_keeps_an_empty_feed(self, site: Site) -> None:
        """When a user's last activity is deleted, their feed stays served, empty, instead of vanishing."""
        cfg = site.config.model_copy(
            update={"feeds": [site.config.feeds[0].model_copy(update={"per_user": True})]}
        )
        site.pull()
        build_all_feeds(cfg, site.store, today=TODAY)
        site.client.delete_activity(10)
        site.pull()
        results = {r.name: r for r in build_all_feeds(cfg, site.store, today=TODAY)}
        assert results["team-47"].count == 0
        assert results["team-47"].changed is True
        assert events(results["team-47"].path.read_bytes()) == {}
        assert "team-47" in feed_paths(cfg)


class TestFeedFailures:
    def test_unwritable_feed_does_not_stop_the_others(self, site: Site) -> None:
        """A feed whose file cannot be written is reported, with the other feeds written and returned."""
        from apexcal.errors import FeedBuildError

        broken = site.config.feeds[1].model_copy(update={"path": Path("/proc/apexcal-feed.ics")})
        cfg = site.config.model_copy(update={"feeds": [broken, site.config.feeds[0]]})
        site.pull()
        with pytest.raises(FeedBuildError) as failed:
            build_all_feeds(cfg, site.store, today=TODAY)
        assert set(failed.value.failures) == {"full"}
        assert [r.name for r in failed.value.results] == ["team"]
        assert site.config.feeds[0].path.read_bytes().startswith(b"BEGIN:VCALENDAR")
        assert site.store.feed_status("full") is None


class TestFeedServed:
    def test_feed_server_serves_built_files_with_the_builders_etag(self, site: Site) -> None:
        """The feed server, given ``feed_paths``, serves each built file (per-user ones too) with the build's ETag and 304s it."""
        import httpx
        from prometheus_client import CollectorRegistry

        from apexcal.feeds.tokens import feed_path, hash_token, new_token
        from apexcal.serve import HealthSnapshot, create_app, serve_in_thread

        cfg = site.config.model_copy(
            update={"feeds": [site.config.feeds[0].model_copy(update={"per_user": True})]}
        )
        site.pull()
        results = {r.name: r for r in build_all_feeds(cfg, site.store, today=TODAY)}
        token = new_token()
        site.store.add_feed_token("team-47", hash_token(token), "phone", datetime.now(UTC))

        class Healthy:
            def snapshot(self) -> HealthSnapshot:
                now = datetime.now(UTC)
                return HealthSnapshot(
                    now=now, stale_after=timedelta(hours=1), started_at=now, feeds={}, targets={}
                )

        app = create_app(
            feeds=lambda: feed_paths(cfg),
            tokens=site.store,
            health=Healthy(),
            metrics_registry=CollectorRegistry(),
        )
        with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            full = http.get(feed_path(token, "team-47"), headers={"Accept-Encoding": "identity"})
            again = http.get(
                feed_path(token, "team-47"),
                headers={"Accept-Encoding": "identity", "If-None-Match": full.headers["ETag"]},
            )
            other = http.get(feed_path(token, "team-46"))
        assert full.status_code == 200
        assert full.content == results["team-47"].path.read_bytes()
        assert full.headers["ETag"] == results["team-47"].etag
        assert again.status_code == 304
        assert other.status_code == 404


class TestWindowProperty:
    @settings(max_examples=150, deadline=None)
    @example(  # an end time past midnight on the same end date, with the duration to match
        start=date(2026, 6, 14),
        end_offset=0,
        start_time=time(23, 30),
        end_time=time(0, 30),
        duration=60,
        window=(1, 0),
    )
    @example(  # the same without a duration: a slip, not a night, so the day after is not reached
        start=date(2026, 6, 14),
        end_offset=0,
        start_time=time(23, 30),
        end_time=time(0, 30),
        duration=None,
        window=(0, 0),
    )
    @given(
        start=st.dates(min_value=date(2026, 5, 1), max_value=date(2026, 7, 31)),
        end_offset=st.none() | st.integers(min_value=-3, max_value=10),
        start_time=st.none() | st.times(),
        end_time=st.none() | st.times(),
        duration=st.none() | st.integers(min_value=0, max_value=3000),
        window=st.tuples(
            st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=40)
        ),
    )
    def test_window_agrees_with_the_mapped_event(
        self,
        start: date,
        end_offset: int | None,
        start_time: time | None,
        end_time: time | None,
        duration: int | None,
        window: tuple[int, int],
    ) -> None:
        """An activity is in the window exactly when the days of its mapped DTSTART..DTEND overlap it."""
        from apexcal.apex.models import parse_activity
        from apexcal.ical.mapping import MappingOptions, map_activity
        from apexcal.ical.times import last_day

        record = activity(
            1,
            start_date=start.isoformat(),
            end_date=None
            if end_offset is None
            else (start + timedelta(days=end_offset)).isoformat(),
            start_time=None
            if start_time is None
            else start_time.replace(microsecond=0).isoformat(),
            end_time=None if end_time is None else end_time.replace(microsecond=0).isoformat(),
            duration=duration,
        )
        parsed = parse_activity(record)
        event = map_activity(parsed, {}, MappingOptions(tasks_as="events"))
        begin, end = event.start, event.end
        if isinstance(begin, datetime):
            days = (begin.date(), (end - timedelta(microseconds=1)).date())
        else:
            days = (begin, end - timedelta(days=1))
        assert last_day(parsed) == days[1]
        first, last = TODAY - timedelta(days=window[0]), TODAY + timedelta(days=window[1])
        assert in_window(parsed, first, last) == (days[0] <= last and days[1] >= first)


def _serve(site: Site, cfg: Config, feed: str) -> tuple[Any, str]:
    """The feed server over ``cfg``'s feeds (with their cache lifetimes) and a token for ``feed``."""
    from prometheus_client import CollectorRegistry

    from apexcal.feeds.tokens import hash_token, new_token
    from apexcal.serve import HealthSnapshot, create_app
    from apexcal.serve.feedmap import served_feeds

    token = new_token()
    site.store.add_feed_token(feed, hash_token(token), None, datetime.now(UTC))

    class Healthy:
        def snapshot(self) -> HealthSnapshot:
            now = datetime.now(UTC)
            return HealthSnapshot(
                now=now, stale_after=timedelta(hours=1), started_at=now, feeds={}, targets={}
            )

    app = create_app(
        feeds=lambda: served_feeds(cfg.feeds),
        tokens=site.store,
        health=Healthy(),
        metrics_registry=CollectorRegistry(),
        public_url="https://cal.example.com",
    )
    return app, token


class TestServedCalendarProperties:
    def test_refresh_name_description_and_colour_reach_the_subscriber(self, site: Site) -> None:
        """Over HTTP: REFRESH-INTERVAL and X-PUBLISHED-TTL from refresh_interval (also the max-age), names, colour."""
        import httpx

        from apexcal.feeds.tokens import feed_path
        from apexcal.serve import serve_in_thread

        site.pull()
        site.build()
        app, token = _serve(site, site.config, "team")
        with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            r = http.get(feed_path(token, "team"))
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "private, max-age=1800"
        data = r.content
        cal = Calendar.from_ical(data)
        assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT30M\r\n" in data
        assert b"\r\nX-PUBLISHED-TTL:PT30M\r\n" in data
        assert str(cal["NAME"]) == str(cal["X-WR-CALNAME"]) == "Team"
        assert str(cal["DESCRIPTION"]) == str(cal["X-WR-CALDESC"]) == "All of us"
        assert str(cal["COLOR"]) == "dodgerblue"
        assert str(cal["X-APPLE-CALENDAR-COLOR"]) == "#3B82F6"
        assert str(cal["SOURCE"]) == "https://cal.example.com" + feed_path(token, "team")


DONE_RECORDS = (
    activity(1, subject="Open call"),
    activity(2, subject="Done call", done=True),
    activity(3, subject="Done meeting", activity_type="meeting", done=True),
    activity(4, subject="Done task", activity_type="task", done=True),
    activity(5, subject="Open task", activity_type="task"),
)


def _summaries(data: bytes) -> dict[str, str]:
    """SUMMARY by X-APEX-ACTIVITY-ID of every component."""
    cal = Calendar.from_ical(data)
    return {
        str(c["X-APEX-ACTIVITY-ID"]): str(c["SUMMARY"])
        for c in cal.walk()
        if c.name in ("VEVENT", "VTODO")
    }


class TestDoneEvents:
    @pytest.mark.parametrize(
        ("done_events", "tasks_as", "expected"),
        [
            (
                "keep",
                "events",
                {"1": "Open call", "2": "Done call", "3": "Done meeting", "4": "Done task", "5": "Open task"},
            ),
            (
                "check",
                "events",
                {
                    "1": "Open call",
                    "2": "✓ Done call",
                    "3": "✓ Done meeting",
                    "4": "✓ Done task",
                    "5": "Open task",
                },
            ),
            # A done task shown as a VTODO says so with STATUS:COMPLETED, not a mark.
            (
                "check",
                "todos",
                {"1": "Open call", "2": "✓ Done call", "3": "✓ Done meeting", "4": "Done task", "5": "Open task"},
            ),
            ("hide", "events", {"1": "Open call", "4": "Done task", "5": "Open task"}),
            ("hide", "todos", {"1": "Open call", "4": "Done task", "5": "Open task"}),
        ],
    )
    def test_done_events_over_http(
        self,
        emulator: EmulatorHandle,
        tmp_path: Path,
        done_events: str,
        tasks_as: str,
        expected: dict[str, str],
    ) -> None:
        """keep leaves done events alone, check marks them "✓ ", hide leaves done non-tasks out."""
        import httpx

        from apexcal.feeds.tokens import feed_path
        from apexcal.serve import serve_in_thread

        for record in DONE_RECORDS:
            emulator.state.insert_activity(record)
        feeds = [{"name": "team", "done_events": done_events, "tasks_as": tasks_as}]
        for s in make_site(emulator, tmp_path, feeds):
            s.pull()
            s.build()
            app, token = _serve(s, s.config, "team")
            with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as http:
                r = http.get(feed_path(token, "team"))
            assert r.status_code == 200
            assert _summaries(r.content) == expected

    def test_switching_done_events_rebuilds_the_feed(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """Changing done_events changes the feed's inputs: the next build writes the new summaries."""
        for record in DONE_RECORDS:
            emulator.state.insert_activity(record)
        for s in make_site(emulator, tmp_path, [{"name": "team"}]):
            s.pull()
            s.build()
            assert _summaries(s.feed())["2"] == "Done call"
            checked = s.config.model_copy(
                update={"feeds": [s.config.feeds[0].model_copy(update={"done_events": "check"})]}
            )
            results = build_all_feeds(checked, s.store, today=TODAY)
            assert [r.rebuilt for r in results] == [True]
            assert _summaries(s.feed())["2"] == "✓ Done call"

    def test_unknown_value_is_refused_naming_the_key(self, emulator: EmulatorHandle, tmp_path: Path) -> None:
        """A value other than keep, check, hide is a config error that names done_events."""
        from apexcal.errors import ConfigError

        with pytest.raises(ConfigError, match=r"feeds\[0\]\.done_events: must be one of: keep, check, hide"):
            next(make_site(emulator, tmp_path, [{"name": "team", "done_events": "strike"}]))


class TestFeedsInTheDatabase:
    def test_worker_build_stores_the_bytes_the_file_build_writes(self, site: Site) -> None:
        """Built into the store (worker mode), every feed and per-user feed holds the very bytes of its file."""
        cfg = site.config.model_copy(
            update={"feeds": [site.config.feeds[0].model_copy(update={"per_user": True})]}
        )
        site.pull()
        files = {r.name: r for r in build_all_feeds(cfg, site.store, today=TODAY)}
        acme = site.store.for_organization("acme")
        stored = {
            r.name: r
            for r in build_feed(cfg.feeds[0], cfg, acme, today=TODAY, output=DatabaseOutput(acme))
        }
        assert sorted(stored) == sorted(files) == ["team", "team-46", "team-47", "team-48"]
        for name, result in files.items():
            body = acme.feed_body(name)
            assert body is not None
            assert body.body == result.path.read_bytes()
            assert body.etag == result.etag == stored[name].etag
            assert (body.version, gzip.decompress(body.gzip)) == (1, body.body)
        again = build_feed(cfg.feeds[0], cfg, acme, today=TODAY, output=DatabaseOutput(acme))
        assert {r.rebuilt for r in again} == {False}

        site.client.delete_activity(10)
        site.pull()
        changed = {
            r.name: r.changed
            for r in build_feed(cfg.feeds[0], cfg, acme, today=TODAY, output=DatabaseOutput(acme))
        }
        assert changed == {"team": True, "team-46": False, "team-47": True, "team-48": False}
        versions = {name: acme.feed_body_version(name) for name in changed}
        assert {name: v[0] for name, v in versions.items() if v} == {
            "team": 2, "team-46": 1, "team-47": 2, "team-48": 1,
        }
        emptied = acme.feed_body("team-47")
        assert emptied is not None
        assert events(emptied.body) == {}
