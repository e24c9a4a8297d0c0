"""Logging set-up: JSON lines, levels, context, and secrets redacted from every logger."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from apexcal.log import REDACTED, SecretRedactor, configure

FEED_TOKEN = "Zm9vYmFyLWZlZWQtdG9rZW4tMDEyMzQ1Njc4OWFi"
API_TOKEN = "api-token-0123456789"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A stream the process's logging writes to; logging is restored afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "sqlalchemy"]
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name in names
        for lg in [logging.getLogger(name)]
    }
    for name in names:
        logging.getLogger(name).disabled = False
    stream = io.StringIO()
    yield stream
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class TestSecretRedactor:
    def test_registered_secret_is_masked_inside_any_string(self) -> None:
        """A registered secret inside a URL or a message is replaced by the mask."""
        redactor = SecretRedactor([API_TOKEN])
        event = redactor(None, "info", {"event": "x", "url": f"http://h/?t={API_TOKEN}&a=1"})
        assert event["url"] == f"http://h/?t={REDACTED}&a=1"

    def test_secret_keys_are_masked_whatever_their_value(self) -> None:
        """Values under keys such as password or token never show, registered or not."""
        redactor = SecretRedactor()
        event = redactor(None, "info", {"event": "x", "password": "p", "Token": "t", "n": 1})
        assert (event["password"], event["Token"], event["n"]) == (REDACTED, REDACTED, 1)

    def test_nested_values_and_exceptions_are_scrubbed(self) -> None:
        """Secrets inside lists, mappings and exception objects are masked too."""
        redactor = SecretRedactor([API_TOKEN])
        event = redactor(
            None,
            "error",
            {
                "event": "x",
                "problems": [f"bad {API_TOKEN}", {"auth": API_TOKEN, "password": "x"}],
                "error": ValueError(API_TOKEN),
            },
        )
        assert API_TOKEN not in json.dumps(event, default=str)
        assert event["problems"][1]["password"] == REDACTED  # type: ignore[index]

    def test_feed_token_in_a_path_is_masked_even_when_unregistered(self) -> None:
        """``/feeds/<token>/`` loses its token segment, whoever issued the token."""
        redactor = SecretRedactor()
        text = redactor.scrub(f'GET /feeds/{FEED_TOKEN}/team.ics HTTP/1.1" 200')
        assert FEED_TOKEN not in text
        assert f"/feeds/{REDACTED}/team.ics" in text

    def test_short_strings_are_not_registered(self) -> None:
        """Secrets shorter than six characters are ignored: masking them would garble logs."""
        redactor = SecretRedactor(["abc"])
        assert redactor.scrub("abcdef") == "abcdef"

    @given(
        secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=6, max_size=40),
        before=st.text(max_size=30),
        after=st.text(max_size=30),
    )
    def test_no_registered_secret_survives_scrubbing(self, secret: str, before: str, after: str) -> None:
        """Whatever surrounds it, a registered secret never appears in the scrubbed text."""
        redactor = SecretRedactor([secret])
        assert secret not in redactor.scrub(before + secret + after + secret)


class TestConfigure:
    def test_json_lines_carry_bound_context_and_level(self, captured: io.StringIO) -> None:
        """Off a TTY every line is one JSON object with the event, its keys, level and context."""
        configure("info", stream=captured)
        log = structlog.get_logger("apexcal.test")
        with structlog.contextvars.bound_contextvars(target="jane", cycle_id="c1", organization_id=27):
            log.info("sync.cycle", created=2)
        log.debug("hidden")
        [line] = lines(captured)
        assert line["event"] == "sync.cycle"
        assert (line["target"], line["cycle_id"], line["organization_id"]) == ("jane", "c1", 27)
        assert line["level"] == "info"
        assert "timestamp" in line

    def test_debug_level_shows_debug_lines(self, captured: io.StringIO) -> None:
        """At debug level, debug events are written."""
        configure("debug", stream=captured)
        structlog.get_logger("apexcal.test").debug("detail", n=1)
        assert [line["event"] for line in lines(captured)] == ["detail"]

    def test_stdlib_loggers_are_json_and_redacted(self, captured: io.StringIO) -> None:
        """Third-party lines (stdlib logging) are JSON and lose registered secrets and feed tokens."""
        from apexcal.log import redactor

        redactor.add(API_TOKEN)
        configure("debug", stream=captured)
        logging.getLogger("httpx").info("HTTP Request: GET http://h/x?t=%s", API_TOKEN)
        # uvicorn.access is disabled outright by the feed server's runner; any
        # stdlib logger shows the same path through our handler.
        logging.getLogger("uvicorn.error").warning('"GET /feeds/%s/team.ics HTTP/1.1" 200', FEED_TOKEN)
        output = captured.getvalue()
        assert API_TOKEN not in output
        assert FEED_TOKEN not in output
        found = lines(captured)
        assert [line["logger"] for line in found] == ["httpx", "uvicorn.error"]

    def test_third_party_chatter_is_quiet_above_debug(self, captured: io.StringIO) -> None:
        """At info level, httpx's per-request INFO lines are not written; its warnings are."""
        configure("info", stream=captured)
        logging.getLogger("httpx").info("HTTP Request: GET http://h/")
        logging.getLogger("httpx").warning("something odd")
        assert [line["event"] for line in lines(captured)] == ["something odd"]

    def test_console_renderer_when_asked(self, captured: io.StringIO) -> None:
        """``json=False`` renders key=value console lines, still redacted."""
        from apexcal.log import redactor

        redactor.add(API_TOKEN)
        configure("info", stream=captured, json=False)
        structlog.get_logger("apexcal.test").info("caldav.put", url=f"http://h/{API_TOKEN}")
        output = captured.getvalue()
        assert "caldav.put" in output
        assert API_TOKEN not in output
        with pytest.raises(json.JSONDecodeError):
            json.loads(output.splitlines()[0])

    def test_internal_traces_stay_quiet_at_debug(self, captured: io.StringIO) -> None:
        """At debug level, SQLAlchemy's statement and row traces are still not written."""
        configure("debug", stream=captured)
        logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
        logging.getLogger("sqlalchemy.engine.Engine").debug("Row (1,)")
        structlog.get_logger("apexcal.test").debug("ours")
        assert [line["event"] for line in lines(captured)] == ["ours"]
