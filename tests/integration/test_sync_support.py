"""Shared set-up of the sync engine tests: a harness over the emulator, a real CalDAV server and a store.

No tests live here.  :class:`Harness` builds targets on fresh calendars, runs
cycles with every CalDAV request recorded (and optional hooks that act as
"another client" at an exact moment), reads back what the server holds, and
computes what an uninterrupted sync must have written, independently of the
store.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from apexcal.apex.client import ApexClient
from apexcal.apex.models import Activity, parse_activity_type, type_key
from apexcal.apex.retry import RetryPolicy
from apexcal.config import Config, TargetConfig, config_from_dict
from apexcal.errors import Unmappable
from apexcal.ical.contentlines import Block, parse
from apexcal.ical.mapping import is_hidden, object_for
from apexcal.ical.merge import merge
from apexcal.ical.ownership import canonical_line
from apexcal.ical.remote import read_remote
from apexcal.state import Store
from apexcal.sync.caldav import CalDAVSink
from apexcal.sync.desired import mapping_options
from apexcal.sync.run import run_target_cycle
from apexcal.sync.sink import FetchedObject
from apexcal.sync.summary import CycleSummary
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle

FAST_RETRY = RetryPolicy(attempts=2, timeout=2.0, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0)

Hook = Callable[[str, int], None]


def new_activity(emulator: EmulatorHandle, **fields: Any) -> int:
    """Create an activity in the emulator (a timed meeting of user 46 today by default); return its id."""
    today = datetime.now(UTC).date()
    record: dict[str, Any] = {
        "organization_id": emulator.org_id,
        "subject": "Meeting",
        "activity_type": "meeting",
        "assigned_to_user_id": 46,
        "start_date": today.isoformat(),
        "start_time": "10:00:00",
        "end_date": today.isoformat(),
        "end_time": "11:00:00",
        "duration": 60,
        "done": False,
    }
    record.update(fields)
    return int(emulator.state.create_activity(record, user_id=46)["id"])


def new_task(emulator: EmulatorHandle, **fields: Any) -> int:
    """Create an open task (a VTODO on targets with ``tasks_as = "todos"``); return its id."""
    return new_activity(emulator, **{"activity_type": "task", "subject": "Send the proposal", **fields})


@dataclass(kw_only=True)
class Harness:
    """One test's world: emulator + CalDAV server + SQLite store + targets."""

    emulator: EmulatorHandle
    server: CalDAVServerHandle
    tmp: Path
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=lambda: {"reconcile_interval": "1h"})
    mapping: dict[str, Any] = field(default_factory=lambda: {"geocoder": "none"})
    source: dict[str, Any] = field(default_factory=dict)
    """More ``[source]`` keys (e.g. ``timezone``)."""
    feeds: list[dict[str, Any]] = field(default_factory=list)
    state_url: str | None = None
    """The state store's URL (default: SQLite in ``tmp``)."""
    requests: list[tuple[str, int]] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    api_requests: list[str] = field(default_factory=list)
    _store: Store | None = None
    _client: ApexClient | None = None

    # --- set-up -------------------------------------------------------------

    def add_target(self, name: str = "a", **settings: Any) -> str:
        """A target on a fresh calendar (``url`` in ``settings`` to reuse one); return its URL."""
        url = settings.pop("url", None) or self.server.make_calendar(name)
        entry: dict[str, Any] = {"name": name, "url": url, **settings}
        if self.server.username:
            entry.update(username=self.server.username, password=self.server.password)
        self.targets[name] = entry
        return str(url)

    @property
    def config(self) -> Config:
        """The config of this world (built anew, so edits to ``targets``/``sync`` apply)."""
        return config_from_dict(
            {
                "source": {
                    "base_url": self.emulator.base_url,
                    "token": self.emulator.token,
                    "organization_id": self.emulator.org_id,
                    **self.source,
                },
                "state": {"url": self.database_url},
                "sync": self.sync,
                "mapping": self.mapping,
                "targets": list(self.targets.values()),
            }
        )

    def config_file(self, *, base_url: str | None = None, urls: dict[str, str] | None = None) -> Path:
        """The config written as TOML (secrets in files), for the command line.

        ``base_url`` and ``urls`` (target name → calendar URL) replace the
        emulator's and the targets' URLs, e.g. to put a proxy in between.
        """
        lines = [
            "[source]",
            f'base_url = "{base_url or self.emulator.base_url}"',
            f'token_file = "{self._secret("token", self.emulator.token)}"',
            f"organization_id = {self.emulator.org_id}",
            *(f"{k} = {_toml(v)}" for k, v in self.source.items()),
            "[state]",
            f"url = {_toml(self.database_url)}",
            "[sync]",
            *(f"{k} = {_toml(v)}" for k, v in self.sync.items()),
            "[mapping]",
            *(f"{k} = {_toml(v)}" for k, v in self.mapping.items()),
        ]
        for entry in self.targets.values():
            lines.append("[[targets]]")
            for k, v in entry.items():
                if k == "url" and urls and entry["name"] in urls:
                    lines.append(f"url = {_toml(urls[entry['name']])}")
                elif k == "password":
                    lines.append(f'password_file = "{self._secret(entry["name"], v)}"')
                elif k != "filter":
                    lines.append(f"{k} = {_toml(v)}")
            if entry.get("filter"):
                lines.append("[targets.filter]")
                lines.extend(f"{k} = {_toml(v)}" for k, v in entry["filter"].items())
        for feed in self.feeds:
            lines.append("[[feeds]]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in feed.items())
        path = self.tmp / "apexcal.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _secret(self, name: str, value: str) -> Path:
        path = self.tmp / f"{name}.secret"
        path.write_text(value)
        path.chmod(0o600)
        return path

    @property
    def database_url(self) -> str:
        """The state store's URL."""
        return self.state_url or f"sqlite:///{self.tmp / 'state.db'}"

    @property
    def store(self) -> Store:
        """The state store (opened on first use)."""
        if self._store is None:
            self._store = Store.open(self.database_url)
        return self._store

    @property
    def client(self) -> ApexClient:
        """The API client the cycles use (fast retries; requests recorded)."""
        if self._client is None:
            self._client = ApexClient(
                self.emulator.base_url,
                self.emulator.token,
                self.emulator.org_id,
                retry=FAST_RETRY,
                on_request=lambda route, status: self.api_requests.append(route),
            )
        return self._client

    def close(self) -> None:
        """Release the store and the client."""
        if self._store is not None:
            self._store.close()
        if self._client is not None:
            self._client.close()

    # --- cycles -------------------------------------------------------------

    def _sink_factory(self, target: TargetConfig, *, concurrency: int, timeout: float, on_request: Hook | None) -> CalDAVSink:
        def record(method: str, status: int) -> None:
            self.requests.append((method, status))
            if on_request is not None:
                on_request(method, status)
            for hook in list(self.hooks):
                hook(method, status)

        password = target.password.get_secret_value() if target.password else None
        return CalDAVSink(
            target.url,
            username=target.username,
            password=password,
            timeout=5.0,
            concurrency=concurrency,
            on_request=record,
        )

    def cycle(
        self, name: str = "a", *, force: bool = False, should_stop: Callable[[], bool] | None = None
    ) -> CycleSummary:
        """Run one cycle of target ``name``, recording its CalDAV and API requests afresh."""
        self.requests.clear()
        self.api_requests.clear()
        config = self.config
        return run_target_cycle(
            config,
            config.target(name),
            self.store,
            client=self.client,
            sink_factory=self._sink_factory,
            force=force,
            should_stop=should_stop,
        )

    def count(self, method: str) -> int:
        """How many requests of ``method`` the last cycle sent."""
        return sum(1 for m, _ in self.requests if m == method)

    # --- the server's side ----------------------------------------------------

    def sink(self, name: str = "a") -> CalDAVSink:
        """A fresh CalDAV session on target ``name``'s calendar (a reader independent of the engine)."""
        entry = self.targets[name]
        return CalDAVSink(entry["url"], username=entry.get("username"), password=entry.get("password"))

    def remote(self, name: str = "a") -> dict[str, FetchedObject]:
        """Every object in target ``name``'s calendar, by href."""
        with self.sink(name) as sink:
            listing = sink.changes(None)
            return sink.multiget(listing.changed)

    def remote_by_uid(self, name: str = "a") -> dict[str, list[FetchedObject]]:
        """The calendar's objects grouped by UID (more than one per UID is a duplicate)."""
        out: dict[str, list[FetchedObject]] = {}
        for obj in self.remote(name).values():
            out.setdefault(read_remote(obj.href, obj.data).uid, []).append(obj)
        return out

    def expected(self, name: str = "a") -> dict[str, bytes]:
        """What an uninterrupted sync writes for target ``name``: UID → bytes, from the emulator alone."""
        config = self.config
        target = config.target(name)
        options = mapping_options(config, target)
        org = self.emulator.org_id
        types = {type_key(t["name"]): parse_activity_type(t) for t in self.emulator.state.activity_types(org)}
        out: dict[str, bytes] = {}
        # As the engine pulls them: with the joined names (users, deal, contact, company).
        with ApexClient(self.emulator.base_url, self.emulator.token, org) as client:
            activities: list[Activity] = list(client.list_activities(fastJoinForActivityList=True))
        for activity in activities:
            if not _matches(activity, target.filter) or is_hidden(activity, options):
                continue
            try:
                obj = object_for(activity, types, options)
            except Unmappable:
                continue
            out[obj.uid] = obj.data
        return out

    def assert_converged(self, name: str = "a") -> None:
        """The calendar holds exactly the expected objects, once each: what we own byte for byte, plus what users added."""
        by_uid = self.remote_by_uid(name)
        dups = {uid: len(objs) for uid, objs in by_uid.items() if len(objs) > 1}
        assert not dups, f"duplicate UIDs: {dups}"
        want = self.expected(name)
        assert set(by_uid) == set(want)
        # What a calendar user added is theirs and stays: the object must be our
        # rendering merged into it, i.e. merging it again changes nothing.
        merged = {uid: merge(objs[0].data, want[uid]) for uid, objs in by_uid.items()}
        wrong = [uid for uid, objs in by_uid.items() if _lines(objs[0].data) != _lines(merged[uid])]
        if wrong:
            first = by_uid[wrong[0]][0].data
            diff = "\n".join(
                difflib.unified_diff(
                    _unfold(merged[wrong[0]]).decode().splitlines(),
                    _unfold(first).decode().splitlines(),
                    lineterm="",
                )
            )
            raise AssertionError(f"{len(wrong)} objects differ from an uninterrupted sync:\n{diff}")

    def put_raw(self, name: str, href: str, data: bytes, etag: str | None = None) -> httpx.Response:
        """Write ``data`` at ``href`` as another client would (``If-Match`` when ``etag``)."""
        entry = self.targets[name]
        auth = (entry["username"], entry["password"]) if entry.get("username") else None
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if etag:
            headers["If-Match"] = etag
        with self.sink(name) as sink:
            url = sink.url_for(href)
        return httpx.put(url, content=data, headers=headers, auth=auth, timeout=10)

    def delete_raw(self, name: str, href: str) -> httpx.Response:
        """Delete the object at ``href`` as another client would."""
        entry = self.targets[name]
        auth = (entry["username"], entry["password"]) if entry.get("username") else None
        with self.sink(name) as sink:
            url = sink.url_for(href)
        return httpx.delete(url, auth=auth, timeout=10)

    def object_of(self, name: str, activity_id: int) -> FetchedObject:
        """The object of one activity on target ``name``'s calendar."""
        for obj in self.remote(name).values():
            if f"-{activity_id}@" in read_remote(obj.href, obj.data).uid:
                return obj
        raise KeyError(activity_id)


def _matches(activity: Activity, filter_: dict[str, Any]) -> bool:
    from apexcal.filters import matches

    return matches(activity, filter_)


def _unfold(data: bytes) -> bytes:
    return re.sub(rb"\r?\n[ \t]", b"", data).replace(b"\r\n", b"\n").strip()


def _lines(data: bytes) -> list[str]:
    """The content lines of an object, sorted: servers may reorder properties (Radicale does).

    Each line is compared in :func:`~apexcal.ical.ownership.canonical_line`
    form: servers re-serialise stored objects (Radicale cuts an
    X-APPLE-STRUCTURED-LOCATION value at its comma and unquotes parameters;
    Cyrus re-orders and re-quotes parameters and keeps GEO at 6 decimals)
    without changing what a line says.
    """
    out: list[str] = []

    def walk(block: Block) -> None:
        out.append(f"BEGIN:{block.name}")
        out.extend(repr(canonical_line(line)) for line in block.lines())
        for child in block.blocks():
            walk(child)

    walk(parse(data))
    return sorted(out)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- what other clients write ---------------------------------------------------


def _set_props(data: bytes, drop: set[str], add: list[str]) -> bytes:
    """``data`` with the VTODO's properties in ``drop`` removed and ``add`` lines inserted."""
    lines = _unfold(data).decode().split("\n")
    out: list[str] = []
    in_todo = False
    for line in lines:
        name = re.split("[;:]", line, maxsplit=1)[0].upper()
        if line == "BEGIN:VTODO":
            in_todo = True
        elif line == "END:VTODO":
            out.extend(add)
            in_todo = False
        elif in_todo and name in drop:
            continue
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode()


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def completed_like(data: bytes, client: str, *, at: datetime | None = None) -> bytes:
    """Our VTODO as ``client`` writes it when the user ticks it done.

    ``tasks.org``: STATUS, COMPLETED and PERCENT-COMPLETE; ``thunderbird``:
    COMPLETED and STATUS with X-MOZ-* bookkeeping; ``percent``: only
    ``PERCENT-COMPLETE:100`` (STATUS removed).
    """
    when = _stamp(at or datetime.now(UTC))
    completion = {"STATUS", "COMPLETED", "PERCENT-COMPLETE", "LAST-MODIFIED", "DTSTAMP"}
    if client == "tasks.org":
        add = ["STATUS:COMPLETED", f"COMPLETED:{when}", "PERCENT-COMPLETE:100", f"LAST-MODIFIED:{when}", f"DTSTAMP:{when}", "X-APPLE-SORT-ORDER:123"]
    elif client == "thunderbird":
        add = ["STATUS:COMPLETED", f"COMPLETED:{when}", f"LAST-MODIFIED:{when}", f"DTSTAMP:{when}", f"X-MOZ-LASTACK:{when}", "X-MOZ-GENERATION:2"]
    elif client == "percent":
        add = ["PERCENT-COMPLETE:100", f"LAST-MODIFIED:{when}", f"DTSTAMP:{when}"]
    else:
        raise ValueError(client)
    return _set_props(data, completion, add)


def reopened_like(data: bytes, *, at: datetime | None = None) -> bytes:
    """A completed VTODO unticked by a client: NEEDS-ACTION, no COMPLETED, no PERCENT-COMPLETE."""
    when = _stamp(at or datetime.now(UTC))
    drop = {"STATUS", "COMPLETED", "PERCENT-COMPLETE", "LAST-MODIFIED", "DTSTAMP"}
    return _set_props(data, drop, ["STATUS:NEEDS-ACTION", f"LAST-MODIFIED:{when}", f"DTSTAMP:{when}"])


def edited_like(data: bytes, note: str) -> bytes:
    """An object with a foreign edit: a DESCRIPTION another client wrote."""
    text = _unfold(data).decode().split("\n")
    out: list[str] = []
    for line in text:
        if re.match("(?i)description[;:]", line):
            continue
        if line in ("END:VEVENT", "END:VTODO"):
            out.append(f"DESCRIPTION:{note}")
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode()


@pytest.fixture
def harness(emulator: EmulatorHandle, caldav_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on the emulator and each real CalDAV server."""
    h = Harness(emulator=emulator, server=caldav_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()

