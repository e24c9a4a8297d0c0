"""A CalDAV server from the system's packages that cannot run skips its tests on a dev box and fails them in CI."""

from __future__ import annotations

import pytest

from tests.fixtures.caldav_servers import require_system_server


class TestRequireSystemServer:
    def test_missing_server_skips_with_its_reason(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without CI, the tests skip and say what is missing and how to get it."""
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(
            pytest.skip.Exception, match=r"Cyrus IMAP cannot run here: not installed \(ci/"
        ):
            require_system_server("Cyrus IMAP", "not installed")

    @pytest.mark.parametrize("value", ["true", "1", "yes"])
    def test_missing_server_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """With CI set, a missing server is an error, not a skip."""
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="DAViCal cannot run here"):
            require_system_server("DAViCal", "no PostgreSQL")

    @pytest.mark.parametrize("value", ["false", "0", ""])
    def test_ci_switched_off_still_skips(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """CI=false (or 0, or empty) counts as a dev box."""
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception):
            require_system_server("DAViCal", "no PostgreSQL")

    def test_runnable_server_neither_skips_nor_fails(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No problem: nothing happens, in CI or not."""
        monkeypatch.setenv("CI", "true")
        require_system_server("Cyrus IMAP", None)
