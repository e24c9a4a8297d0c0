"""The API client against the emulator over real HTTP: paging, change feed, sweeps, CRUD."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from apexcal import USER_AGENT
from apexcal.apex.client import BULK_CHUNK, ApexClient, BulkResult
from apexcal.apex.models import parse_timestamp
from apexcal.apex.retry import NO_RETRY
from apexcal.errors import BadRequest, NotFound, QueryError
from tests.fixtures.emulator import EmulatorHandle

Hook = Callable[[str, int], None]


def make_client(
    emulator: EmulatorHandle, *, on_request: Hook | None = None, **kw: Any
) -> ApexClient:
    """A client for the demo organization of ``emulator``."""
    kw.setdefault("retry", NO_RETRY)
    return ApexClient(
        emulator.base_url, emulator.token, emulator.org_id, on_request=on_request, **kw
    )


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[ApexClient]:
    """A client of the demo organization with no retries."""
    emulator.admin.clear_faults()
    emulator.admin.reset_counters()
    with make_client(emulator) as api:
        yield api


def feed_order(emulator: EmulatorHandle) -> list[int]:
    """Live activity ids of the demo organization in ``(updated_at, id)`` order."""
    rows = emulator.state.activities(emulator.org_id)
    return [
        r["id"] for r in sorted(rows, key=lambda r: (parse_timestamp(r["updated_at"]), r["id"]))
    ]


class TestListing:
    def test_paging_returns_every_activity_exactly_once(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """2,500 activities at 100 a page come back once each, in 25 requests."""
        seeded = emulator.state.seed(emulator.org_id, 2500)
        ids = [a.id for a in client.list_activities()]
        assert len(ids) == 2500
        assert Counter(ids) == Counter(seeded)
        assert emulator.admin.counters()["by_route"]["GET /activities"] == 25

    def test_server_capped_limit_is_followed(self, emulator: EmulatorHandle) -> None:
        """Asking for 1000 a page, the client follows the 100 the server grants."""
        seeded = emulator.state.seed(emulator.org_id, 250)
        emulator.admin.reset_counters()
        with make_client(emulator, page_size=1000) as api:
            ids = [a.id for a in api.list_activities()]
        assert sorted(ids) == sorted(seeded)
        queries = emulator.admin.queries("/activities")
        assert [(q["$limit"], q["$skip"]) for q in queries] == [
            ("1000", "0"),
            ("100", "100"),
            ("100", "200"),
        ]

    def test_short_page_does_not_end_the_listing(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A page shorter than the limit is followed by more pages while total says so."""
        seeded = emulator.state.seed(emulator.org_id, 150)
        emulator.admin.fault("short_page", count=1, size=7)
        ids = [a.id for a in client.list_activities()]
        assert Counter(ids) == Counter(seeded)

    @pytest.mark.parametrize("size", [1, 13])
    @pytest.mark.parametrize(
        "listing",
        ["list_activities", "by_id", "ids", "changes", "refetch"],
    )
    def test_short_pages_everywhere_miss_and_repeat_nothing(
        self, emulator: EmulatorHandle, client: ApexClient, listing: str, size: int
    ) -> None:
        """Every page shorter than its limit while more match: each listing pages on by total and still returns each activity once."""
        seeded = emulator.state.seed(emulator.org_id, 40)
        emulator.admin.fault("short_page", count=1000, size=size, path="/activities")
        read: Callable[[], list[int]] = {
            "list_activities": lambda: [a.id for a in client.list_activities()],
            "by_id": lambda: [a.id for a in client.list_activities_by_id()],
            "ids": lambda: sorted(client.all_activity_ids()),
            "changes": lambda: [a.id for a in client.changes_since(None, overlap=timedelta(0))],
            "refetch": lambda: [a.id for a in client.list_activities(id=seeded)],
        }[listing]
        ids = read()
        assert Counter(ids) == Counter(seeded)
        finds = len(emulator.admin.queries("/activities"))
        assert finds >= 40 // size, "the listing did not page on"

    def test_query_carries_every_filter(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        """Documented filters travel in bracket syntax and select what they say."""
        emulator.state.seed(emulator.org_id, 400)
        window = (date.today() - timedelta(days=20), date.today() + timedelta(days=40))
        found = list(
            client.list_activities(
                assigned_to_user_id=46,
                activity_type=["call", "meeting"],
                done=False,
                start_date={"$gte": window[0], "$lte": window[1]},
                fastJoinForActivityList=True,
            )
        )
        (query,) = emulator.admin.queries("/activities")
        assert query == {
            "organization_id": str(emulator.org_id),
            "assigned_to_user_id": "46",
            "activity_type": {"$in": ["call", "meeting"]},
            "done": "false",
            "start_date": {"$gte": window[0].isoformat(), "$lte": window[1].isoformat()},
            "fastJoinForActivityList": "true",
            "$sort": {"id": "1"},
            "$limit": "100",
            "$skip": "0",
        }
        expected = {
            r["id"]
            for r in emulator.state.activities(emulator.org_id)
            if r["assigned_to_user_id"] == 46
            and r["activity_type"] in ("call", "meeting")
            and not r["done"]
            and r["start_date"] is not None
            and window[0].isoformat() <= r["start_date"] <= window[1].isoformat()
        }
        assert expected
        assert {a.id for a in found} == expected
        assert all(a.assigned_to_user is not None for a in found)

    def test_subject_matches_partially(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        """A subject filter finds activities whose subject contains it, any case."""
        client.create_activity(
            {"subject": "Quarterly Review with ACME", "activity_type": "meeting"}
        )
        client.create_activity({"subject": "Lunch", "activity_type": "meeting"})
        assert [a.subject for a in client.list_activities(subject="review")] == [
            "Quarterly Review with ACME"
        ]

    def test_long_in_list_is_split_into_requests(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A 45-id filter becomes three requests of at most 20 ids that find all 45."""
        seeded = emulator.state.seed(emulator.org_id, 100)
        wanted = seeded[5:50]
        found = [a.id for a in client.list_activities(id=wanted)]
        assert sorted(found) == sorted(wanted)
        sent = [q["id"]["$in"] for q in emulator.admin.queries("/activities")]
        assert [len(chunk) for chunk in sent] == [20, 20, 5]
        assert [int(i) for chunk in sent for i in chunk] == wanted

    def test_custom_sort_ends_with_an_id_tie_break(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A caller's sort is kept and completed with id, so pages cut a total order."""
        seeded = emulator.state.seed(emulator.org_id, 130)
        found = list(client.list_activities(**{"$sort": {"done": -1}}))
        assert Counter(a.id for a in found) == Counter(seeded)
        assert [(not a.done, a.id) for a in found] == sorted((not a.done, a.id) for a in found)
        assert emulator.admin.queries("/activities")[0]["$sort"] == {"done": "-1", "id": "1"}

    def test_reserved_keys_are_refused(self, client: ApexClient) -> None:
        """Paging keys and the organization belong to the client, not to filters."""
        with pytest.raises(QueryError, match=r"\$skip"):
            list(client.list_activities(**{"$skip": 5}))

    def test_malformed_record_is_logged_and_skipped(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A record with a malformed timestamp is counted, logged with its id, and skipped."""
        seeded = emulator.state.seed(emulator.org_id, 30)
        emulator.state.put_raw(seeded[3], created_at="the day before yesterday")
        with capture_logs() as logs:
            ids = [a.id for a in client.list_activities()]
        assert sorted(ids) == sorted(set(seeded) - {seeded[3]})
        assert client.skipped_records == 1
        (warning,) = [e for e in logs if e["event"] == "apex.invalid_record"]
        assert warning["id"] == seeded[3]
        assert warning["kind"] == "activity"
        assert "created_at" in warning["reason"]

    def test_malformed_optional_field_is_dropped_not_the_record(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A bad optional value is nulled and logged; the activity itself still arrives."""
        seeded = emulator.state.seed(emulator.org_id, 30)
        emulator.state.put_raw(seeded[3], location={"not": "text"}, subject="Kept")
        with capture_logs() as logs:
            found = {a.id: a for a in client.list_activities()}
        assert sorted(found) == sorted(seeded)
        assert client.skipped_records == 0
        assert (found[seeded[3]].location, found[seeded[3]].subject) == (None, "Kept")
        (warning,) = [e for e in logs if e["event"] == "apex.field_dropped"]
        assert (warning["id"], warning["field"]) == (seeded[3], "location")


class TestChangeFeed:
    def test_none_watermark_yields_everything_in_keyset_order(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """Without a watermark every activity comes once, ordered by (updated_at, id)."""
        emulator.state.seed(emulator.org_id, 260)
        seen = [a.id for a in client.changes_since(None, overlap=timedelta(0))]
        assert seen == feed_order(emulator)
        queries = emulator.admin.queries("/activities")
        assert len(queries) == 3
        assert all("$skip" not in q for q in queries)
        assert queries[1]["$or"][1]["id"] == {"$gt": str(seen[99])}

    def test_watermark_minus_overlap_bounds_the_feed(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """Only activities updated at or after watermark − overlap are returned."""
        seeded = emulator.state.seed(emulator.org_id, 50)
        watermark = max(parse_timestamp(r["updated_at"]) for r in emulator.state.activities(27))
        patched = [client.patch_activity(i, {"done": True}) for i in seeded[10:13]]
        fresh = [a.id for a in client.changes_since(watermark, overlap=timedelta(0))]
        assert fresh[-3:] == [a.id for a in patched]
        assert set(fresh) <= set(seeded)
        wide = [a.id for a in client.changes_since(watermark, overlap=timedelta(days=3650))]
        assert sorted(wide) == sorted(seeded)

    def test_updates_during_paging_are_neither_missed_nor_duplicated(
        self, emulator: EmulatorHandle
    ) -> None:
        """Records changed between pages are all seen, each latest version at least once."""
        emulator.state.seed(emulator.org_id, 450)
        order = feed_order(emulator)
        # Already-read, not-yet-read, and last records change after the first page.
        touched = order[:5] + order[150:155] + order[-3:]
        pages = 0

        def between_pages(route: str, status: int) -> None:
            nonlocal pages
            if route == "GET /activities" and status == 200:
                pages += 1
                if pages in (1, 3):
                    for activity_id in touched:
                        emulator.state.patch_activity(activity_id, {"subject": f"edit {pages}"})

        with make_client(emulator, on_request=between_pages) as api:
            seen = list(api.changes_since(None, overlap=timedelta(0)))
        versions = Counter((a.id, a.updated_at) for a in seen)
        assert max(versions.values()) == 1
        by_id = Counter(a.id for a in seen)
        assert set(by_id) == set(order)
        assert all(by_id[i] == 1 for i in set(order) - set(touched))
        for row in emulator.state.activities(emulator.org_id):
            assert (row["id"], parse_timestamp(row["updated_at"])) in versions
        keys = [(a.updated_at, a.id) for a in seen]
        assert keys == sorted(set(keys))

    def test_bulk_patch_shares_a_stamp_and_id_tie_break_keeps_paging_exact(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """150 rows stamped alike by a bulk patch are paged 40 at a time, each once."""
        seeded = emulator.state.seed(emulator.org_id, 260)
        targets = seeded[20:170]
        result = client.bulk_patch_activities(targets + targets[:10], {"done": True})
        assert result == BulkResult(updated=150, ids=tuple(targets))
        assert (
            emulator.admin.counters()["by_route"]["PATCH /activities"] == 2 == -(-150 // BULK_CHUNK)
        )
        stamps = {emulator.state.get(i)["updated_at"] for i in targets}
        assert len(stamps) == 2  # one stamp per request
        with make_client(emulator, page_size=40) as api:
            seen = list(api.changes_since(parse_timestamp(min(stamps)), overlap=timedelta(0)))
        assert [a.id for a in seen] == targets
        assert all(a.done for a in seen)

    def test_refused_filter_falls_back_to_full_listing_once(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A 400 on the change feed query gives a full listing, logged once per client."""
        seeded = emulator.state.seed(emulator.org_id, 30)
        emulator.admin.fault("status", count=1, status=400, method="GET", path="/activities")
        with capture_logs() as logs:
            first = [a.id for a in client.changes_since(None, overlap=timedelta(0))]
            second = [a.id for a in client.changes_since(None, overlap=timedelta(0))]
        assert sorted(first) == sorted(second) == sorted(seeded)
        assert [e["event"] for e in logs].count("apex.change_feed_fallback") == 1
        assert "$or" not in emulator.admin.queries("/activities")[-1]

    def test_refused_plain_filter_does_not_switch_the_feed(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A filter the server refuses in any form is an error, and keyset paging stays on."""
        emulator.state.seed(emulator.org_id, 3)
        with pytest.raises(BadRequest), capture_logs() as logs:
            list(client.changes_since(None, overlap=timedelta(0), no_such_field=1))
        assert "apex.change_feed_fallback" not in [e["event"] for e in logs]
        assert len(list(client.changes_since(None, overlap=timedelta(0)))) == 3
        assert emulator.admin.queries("/activities")[-1]["$sort"] == {"updated_at": "1", "id": "1"}


class TestIdSweep:
    def test_ids_only_and_deletions_vanish(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """The sweep asks for ids only and misses exactly the deleted activities."""
        seeded = emulator.state.seed(emulator.org_id, 230)
        for activity_id in seeded[:3]:
            client.delete_activity(activity_id)
        emulator.admin.reset_counters()
        assert client.all_activity_ids() == set(seeded[3:])
        queries = emulator.admin.queries("/activities")
        assert len(queries) == 3
        assert all(q["$select"] == ["id"] for q in queries)

    def test_deletions_during_the_sweep_hide_no_survivor(self, emulator: EmulatorHandle) -> None:
        """Deleting already-swept records mid-sweep cannot make a survivor look absent."""
        seeded = emulator.state.seed(emulator.org_id, 300)
        pages = 0

        def delete_after_first_page(route: str, status: int) -> None:
            nonlocal pages
            pages += 1
            if pages == 1:
                for activity_id in seeded[:50]:
                    emulator.state.delete_activity(activity_id)

        with make_client(emulator, on_request=delete_after_first_page) as api:
            ids = api.all_activity_ids()
        assert set(seeded[50:]) <= ids


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that keeps every request it sends, for header checks."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


class TestHeaders:
    def test_every_request_carries_auth_agent_and_accept(self, emulator: EmulatorHandle) -> None:
        """Bearer token, apexcal User-Agent and JSON Accept go with reads and writes alike."""
        transport = RecordingTransport()
        with make_client(emulator, transport=transport) as api:
            created = api.create_activity({"subject": "Call", "activity_type": "call"})
            api.get_activity(created.id)
            list(api.list_activity_types())
        assert len(transport.sent) == 3
        for request in transport.sent:
            assert request.headers["Authorization"] == f"Bearer {emulator.token}"
            assert request.headers["User-Agent"] == USER_AGENT
            assert request.headers["Accept"] == "application/json"
        assert transport.sent[0].headers["Content-Type"] == "application/json"


class TestActivityCrud:
    def test_create_get_patch_delete(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        """An activity goes through its life cycle; after deletion it is not found."""
        created = client.create_activity(
            {
                "subject": "Onboarding Call",
                "activity_type": "call",
                "start_date": date(2025, 5, 1),
                "start_time": "10:00:00",
                "duration": 30,
            }
        )
        assert created.organization_id == emulator.org_id
        assert created.created_by_user_id == 46
        assert created.start_date == date(2025, 5, 1)
        fetched = client.get_activity(created.id)
        assert fetched.deal is None
        assert fetched.subject == "Onboarding Call"
        patched = client.patch_activity(created.id, {"done": True, "duration": 45})
        assert patched.done
        assert patched.duration == 45
        assert patched.updated_at > created.updated_at
        deleted = client.delete_activity(created.id)
        assert deleted.deleted_at is not None
        with pytest.raises(NotFound):
            client.get_activity(created.id)


class TestActivityTypes:
    def test_list_create_get_patch_delete(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """Types are listed, created, counted, renamed and deleted through the API."""
        names = [t.name for t in client.list_activity_types()]
        assert {"Call", "Meeting", "Task"} <= set(names)
        created = client.create_activity_type(
            {"name": "Site Visit", "color": "#8B5CF6", "icon_key": "map-pin"}
        )
        client.create_activity({"subject": "Visit", "activity_type": "site_visit"})
        fetched = client.get_activity_type(created.id)
        assert fetched.activities_count == 1
        assert [t.name for t in client.list_activity_types(name="visit")] == ["Site Visit"]
        renamed = client.patch_activity_type(created.id, {"color": "#7C3AED"})
        assert renamed.color == "#7C3AED"
        client.delete_activity_type(created.id)
        with pytest.raises(NotFound):
            client.get_activity_type(created.id)
