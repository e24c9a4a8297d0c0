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
    """Known failures on one CalDAV server are strict xfails there (tests/fixtures/server_defects.py)."""
    mark_known_failures(items)
