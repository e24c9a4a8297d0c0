"""Shared pytest set-up: fixture plugins for the real peers the tests talk to."""

import pytest

from tests.fixtures.server_defects import mark_known_failures

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.caldav_servers",
    "tests.fixtures.cyrus",
    "tests.fixtures.davical",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Known failures on one CalDAV server are strict xfails there (tests/fixtures/server_defects.py).

    Files holding a ``slow`` test run first.  The suite's processes take one
    whole file at a time, in this order (``--dist=loadfile
    --no-loadscope-reorder``): the long files start early and the short ones
    fill in around them, instead of one process running a long file alone
    at the end while the other has finished.
    """
    mark_known_failures(items)
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files stay whole and in order
