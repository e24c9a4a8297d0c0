"""The server fixtures themselves: servers of two test processes stay independent.

The suite runs in two processes, each with its own session servers; a test
that stops and starts its server must leave the other process's running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.caldav_servers import CalDAVServerHandle, require_system_server
from tests.fixtures.cyrus import cyrus_problem, running_cyrus


@pytest.fixture
def two_cyrus() -> Iterator[tuple[CalDAVServerHandle, CalDAVServerHandle]]:
    """Two Cyrus servers started by this process, as two test processes' fixtures start theirs."""
    require_system_server("Cyrus IMAP", cyrus_problem())
    with running_cyrus() as first, running_cyrus() as second:
        yield first, second


def test_stopping_one_cyrus_leaves_another_serving(
    two_cyrus: tuple[CalDAVServerHandle, CalDAVServerHandle],
) -> None:
    """A Cyrus master shutting down ends the other masters of its process group: each has its own."""
    stopped, other = two_cyrus
    other_process = other._proc
    assert other_process is not None
    assert os.getpgid(other_process.pid) != os.getpgid(0), "the master shares our process group"
    stopped.stop()
    stopped.start()  # long after any signal the stopped master sent has been acted on
    assert other.running, f"the other Cyrus master exited with {other_process.returncode}"
    r = httpx.request("OPTIONS", other.base_url, timeout=10.0)
    assert r.status_code < 500
    assert httpx.request("OPTIONS", stopped.base_url, timeout=10.0).status_code < 500
