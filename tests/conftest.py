"""Shared pytest set-up: fixture plugins for the real peers the tests talk to."""

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.caldav_servers",
]
