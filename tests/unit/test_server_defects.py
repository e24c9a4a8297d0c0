"""The lists of known per-server failures name tests that exist."""

from __future__ import annotations

import importlib

import pytest

from tests.fixtures.caldav_servers import SERVER_KINDS
from tests.fixtures.server_defects import KNOWN_DEFECTS, SERVER_QUIRKS


@pytest.mark.parametrize(("test", "server"), sorted({**KNOWN_DEFECTS, **SERVER_QUIRKS}))
def test_entry_names_an_existing_test_and_server(test: str, server: str) -> None:
    """Each entry's node id resolves to a test function, and its server is one of the suite's."""
    path, *names = test.split("::")
    target: object = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    for name in names:
        target = getattr(target, name)
    assert callable(target)
    assert server in SERVER_KINDS
