"""The server fixtures themselves: servers of two test processes stay independent.

The suite runs in two processes, each with its own session servers; a test
that stops and starts its server must leave the other process's running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.caldav_servers import (
    CalDAVServerHandle,
    require_system_server,
    service_dir,
    start_on_free_port,
)
from tests.fixtures.cyrus import _DIR_PREFIX, cyrus_handle, cyrus_problem


@pytest.fixture
def two_cyrus() -> Iterator[tuple[CalDAVServerHandle, CalDAVServerHandle]]:
    """Two Cyrus servers started by this process, as two test processes' fixtures start theirs."""
    require_system_server("Cyrus IMAP", cyrus_problem())
    bases = [service_dir(_DIR_PREFIX), service_dir(_DIR_PREFIX)]
    handles: list[CalDAVServerHandle] = []
    try:
        for base in bases:
            handles.append(start_on_free_port(cyrus_handle, base))
        yield handles[0], handles[1]
    finally:
        for handle in handles:
            handle.stop()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


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
