"""The pure parts behind the feed server: HTTP conditions, feed tokens and URLs, metrics, health."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from apexcal.config import config_from_dict
from apexcal.feeds.naming import user_feed_path
from apexcal.feeds.tokens import GOOGLE_URL_LIMIT, feed_urls, hash_token, is_token_shaped, new_token
from apexcal.metrics import Metrics
from apexcal.serve import HealthSnapshot, health_report, served_feeds
from apexcal.serve.conditional import (
    etag_list,
    http_date,
    none_match,
    not_modified_since,
    parse_http_date,
    wants_gzip,
)

moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
opaque_tags = st.text(
    alphabet=st.characters(min_codepoint=0x23, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=20,
).map(lambda s: f'"{s}"')


class TestHttpDates:
    @given(moments)
    def test_http_date_round_trips_to_the_second(self, moment: datetime) -> None:
        """Formatting then parsing an HTTP date gives the moment without its fraction."""
        assert parse_http_date(http_date(moment)) == moment.replace(microsecond=0)

    @given(moments, st.integers(min_value=-10**6, max_value=10**6))
    def test_not_modified_since_compares_dates(self, moment: datetime, offset: int) -> None:
        """The copy is current exactly when the given date is at or after the modification time."""
        since = moment.replace(microsecond=0) + timedelta(seconds=offset)
        assert not_modified_since(http_date(since), moment) is (offset >= 0)

    @pytest.mark.parametrize("value", ["", "yesterday", "Sun, 99 Foo 2026 10:00:00 GMT", "1700000000"])
    def test_unreadable_dates_never_mean_not_modified(self, value: str) -> None:
        """An If-Modified-Since that is not a date is ignored."""
        assert not_modified_since(value, datetime(2000, 1, 1, tzinfo=UTC)) is False


class TestEntityTags:
    @given(st.lists(opaque_tags, min_size=1, max_size=5), st.booleans())
    def test_list_membership_matches_with_weak_comparison(self, tags: list[str], weak: bool) -> None:
        """A tag anywhere in the list matches, weak or strong."""
        header = ", ".join(("W/" + t) if weak else t for t in tags)
        assert none_match(header, (tags[-1],)) == tags[-1]

    @given(st.lists(opaque_tags, min_size=1, max_size=5), opaque_tags)
    def test_absent_tag_does_not_match(self, tags: list[str], current: str) -> None:
        """A current tag not in the list is no match."""
        if current in tags:
            return
        assert none_match(", ".join(tags), (current,)) is None

    def test_star_matches_the_current_representation(self) -> None:
        """``*`` matches whatever exists."""
        assert none_match("*", ('"a"', '"a-gz"')) == '"a"'

    def test_comma_inside_quotes_stays_in_the_tag(self) -> None:
        """Splitting respects quotes."""
        assert etag_list('"a,b", W/"c"') == ['"a,b"', 'W/"c"']

    def test_either_variant_tag_matches(self) -> None:
        """A client holding the gzip variant matches while asking for identity."""
        assert none_match('"a-gz"', ('"a"', '"a"', '"a-gz"')) == '"a-gz"'


class TestAcceptEncoding:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, False),
            ("", False),
            ("gzip", True),
            ("gzip, deflate, br", True),
            ("GZIP;q=0.5", True),
            ("x-gzip", True),
            ("*", True),
            ("gzip;q=0", False),
            ("gzip;q=0.000", False),
            ("*;q=0, identity", False),
            ("br", False),
            ("identity", False),
            ("gzip;q=0.2, identity;q=0.8", False),
            ("gzip;q=0.8, identity;q=0.2", True),
            ("identity;q=0, gzip", True),
            ("gzip;q=bogus", False),
        ],
    )
    def test_gzip_choice_honours_q_values(self, header: str | None, expected: bool) -> None:
        """gzip is sent when acceptable and not less preferred than identity."""
        assert wants_gzip(header) is expected


class TestFeedTokens:
    def test_tokens_are_long_random_and_url_safe(self) -> None:
        """Tokens carry 256 bits in 43 URL-safe characters and never repeat."""
        tokens = {new_token() for _ in range(200)}
        assert len(tokens) == 200
        assert all(len(t) == 43 and is_token_shaped(t) for t in tokens)

    def test_hash_is_sha256_hex(self) -> None:
        """The stored form is the SHA-256 hex digest of the token."""
        token = new_token()
        assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
        assert token not in hash_token(token)

    def test_urls_for_a_typical_public_url(self) -> None:
        """https, webcal and Google links point at the same feed path; Google's fits its limit."""
        token = new_token()
        urls = feed_urls("https://cal.example.com/", token, "team-46")
        assert urls.https == f"https://cal.example.com/feeds/{token}/team-46.ics"
        assert urls.webcal == f"webcal://cal.example.com/feeds/{token}/team-46.ics"
        google = urlsplit(urls.google)
        assert (google.scheme, google.netloc, google.path) == ("https", "calendar.google.com", "/calendar/r")
        assert parse_qs(google.query)["cid"] == [urls.webcal]
        assert len(urls.google) <= GOOGLE_URL_LIMIT
        assert urls.google_fits

    def test_path_prefix_of_public_url_is_kept(self) -> None:
        """A public_url with a path prefix (reverse proxy) keeps it."""
        token = new_token()
        urls = feed_urls("https://example.com/apexcal", token, "team")
        assert urls.https == f"https://example.com/apexcal/feeds/{token}/team.ics"

    def test_long_public_url_is_flagged(self) -> None:
        """A public_url long enough to push the Google link past 256 characters is reported."""
        urls = feed_urls("https://" + "a" * 200 + ".example.com", new_token(), "team")
        assert not urls.google_fits

    @pytest.mark.parametrize(
        ("public_url", "name"),
        [("ftp://x", "team"), ("https://x", "../team"), ("https://x", "a/b"), ("nope", "team")],
    )
    def test_bad_inputs_are_refused(self, public_url: str, name: str) -> None:
        """URLs are only built from http(s) bases and valid feed names."""
        with pytest.raises(ValueError, match=r"public_url|feed name"):
            feed_urls(public_url, new_token(), name)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestMetrics:
    def test_two_instances_do_not_collide(self) -> None:
        """Each Metrics owns its registry, so two daemons in one process can coexist."""
        one, two = Metrics(), Metrics()
        one.error("jane", "api_transport")
        assert _samples(one)[("apexcal_errors_total", (("kind", "api_transport"), ("target", "jane")))] == 1
        assert ("apexcal_errors_total", (("kind", "api_transport"), ("target", "jane"))) not in _samples(two)

    def test_cycle_finished_records_success_duration_and_counts(self) -> None:
        """A finished cycle sets the last success and adds its object and writeback counts."""
        at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        m = Metrics()
        m.cycle_finished("jane", {"created": 2, "updated": 1, "deleted": 0, "written_back": 4}, 0.3, at=at)
        m.cycle_finished("jane", {"created": 1}, 0.2, at=at + timedelta(minutes=5))
        s = _samples(m)
        assert s[("apexcal_target_last_success_timestamp_seconds", (("target", "jane"),))] == (at + timedelta(minutes=5)).timestamp()
        assert s[("apexcal_objects_total", (("action", "created"), ("target", "jane")))] == 3
        assert s[("apexcal_objects_total", (("action", "updated"), ("target", "jane")))] == 1
        assert s[("apexcal_writebacks_total", (("target", "jane"),))] == 4
        assert s[("apexcal_cycle_duration_seconds_count", (("target", "jane"),))] == 2
        assert s[("apexcal_cycles_total", (("outcome", "ok"), ("target", "jane")))] == 2

    def test_failed_cycle_counts_an_error_and_no_success(self) -> None:
        """A failed cycle counts its error kind and leaves the last success unset."""
        m = Metrics()
        m.cycle_failed("jane", "caldav_auth", 1.0)
        s = _samples(m)
        assert s[("apexcal_errors_total", (("kind", "caldav_auth"), ("target", "jane")))] == 1
        assert ("apexcal_target_last_success_timestamp_seconds", (("target", "jane"),)) not in s

    def test_cycle_with_object_errors_still_counts_what_it_wrote(self) -> None:
        """A cycle that failed for some objects counts as failed and still counts the objects it wrote."""
        m = Metrics()
        m.cycle_failed("jane", "object_errors", 1.0, summary={"created": 5, "written_back": 2})
        s = _samples(m)
        assert s[("apexcal_cycles_total", (("outcome", "failed"), ("target", "jane")))] == 1
        assert s[("apexcal_objects_total", (("action", "created"), ("target", "jane")))] == 5
        assert s[("apexcal_writebacks_total", (("target", "jane"),))] == 2
        assert ("apexcal_target_last_success_timestamp_seconds", (("target", "jane"),)) not in s

    def test_api_request_labels_drop_ids_and_queries(self) -> None:
        """Activity ids and query strings do not become label values."""
        m = Metrics()
        m.api_request("GET /activities/12", 200)
        m.api_request("GET /activities/13?$select[]=id", 200)
        m.api_request("PATCH", 404)
        m.api_request("GET /activity-types/7/", 200)
        s = _samples(m)
        assert s[("apexcal_api_requests_total", (("method", "GET /activities/:id"), ("status", "200")))] == 2
        assert s[("apexcal_api_requests_total", (("method", "PATCH"), ("status", "404")))] == 1

    def test_caldav_and_feed_metrics(self) -> None:
        """CalDAV requests, feed builds and feed requests are counted by their labels."""
        at = datetime(2026, 5, 1, tzinfo=UTC)
        m = Metrics()
        m.caldav_request("jane", "put", 201)
        m.caldav_hook("jane")("PUT", 201)
        m.feed_built("team", at)
        m.feed_built("team", at + timedelta(hours=1), changed=False)
        m.feed_request("team", 304)
        s = _samples(m)
        assert s[("apexcal_caldav_requests_total", (("method", "PUT"), ("status", "201"), ("target", "jane")))] == 2
        assert s[("apexcal_feed_builds_total", (("feed", "team"),))] == 1
        assert s[("apexcal_feed_last_build_timestamp_seconds", (("feed", "team"),))] == (at + timedelta(hours=1)).timestamp()
        assert s[("apexcal_feed_requests_total", (("feed", "team"), ("status", "304")))] == 1


class TestHealthReport:
    NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def snap(self, **kw: object) -> HealthSnapshot:
        base: dict[str, object] = {
            "now": self.NOW,
            "stale_after": timedelta(minutes=15),
            "started_at": self.NOW - timedelta(minutes=5),
            "feeds": {},
            "targets": {},
        }
        base.update(kw)
        return HealthSnapshot(**base)  # type: ignore[arg-type]

    def test_fresh_start_is_healthy_before_first_success(self) -> None:
        """Nothing has succeeded yet, but the process started within the bound."""
        healthy, doc = health_report(self.snap(targets={"jane": None}, feeds={"team": None}))
        assert healthy
        assert doc["status"] == "ok"

    def test_stale_target_is_unhealthy(self) -> None:
        """A last success older than the bound makes the report unhealthy."""
        healthy, doc = health_report(self.snap(targets={"jane": self.NOW - timedelta(minutes=16), "joe": self.NOW}))
        assert not healthy
        assert doc["targets"]["jane"]["stale"]
        assert not doc["targets"]["joe"]["stale"]

    def test_success_exactly_at_the_bound_is_fresh(self) -> None:
        """The bound itself is still fresh."""
        healthy, _ = health_report(self.snap(feeds={"team": self.NOW - timedelta(minutes=15)}))
        assert healthy


class TestServedFeeds:
    def test_config_feeds_and_per_user_files_are_served(self, tmp_path: Path) -> None:
        """Configured paths are served by name; per-user files beside a per_user feed's path too."""
        for name in ("team.ics", "team-46.ics", "team-7.ics", "team-x.ics", "team-46.ics.tmp", "office-3.ics"):
            (tmp_path / name).write_bytes(b"x")
        config = config_from_dict(
            {
                "source": {"organization_id": 27},
                "feeds": [
                    {"name": "team", "path": str(tmp_path / "team.ics"), "per_user": True, "refresh_interval": "2h"},
                    {"name": "office", "path": str(tmp_path / "office.ics")},
                ],
            }
        )
        served = served_feeds(config.feeds)
        assert sorted(served) == ["office", "team", "team-46", "team-7"]
        assert served["team-46"].path == user_feed_path(tmp_path / "team.ics", 46)
        assert served["team-7"].max_age == 7200
        assert served["office"].max_age == 3600
        assert served["office"].path == tmp_path / "office.ics"


class TestFeedFileCache:
    def test_a_version_is_read_and_compressed_once(self, tmp_path: Path) -> None:
        """Loading an unchanged file returns the same version; its gzip body is compressed once."""
        from apexcal.serve.files import FeedFileCache

        path = tmp_path / "team.ics"
        path.write_bytes(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n" * 50)
        cache = FeedFileCache()
        first = cache.load(path)
        assert first is not None
        assert cache.load(path) is first
        assert first.for_source(None) is first.for_source(None)
        assert first.gzip_body() is first.gzip_body()
        assert first.for_source("https://x.example/a") is first.for_source("https://x.example/a")
