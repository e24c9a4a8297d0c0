"""Logging set-up: structlog, JSON lines off a TTY, console on a TTY, secrets redacted.

Logging is configured once, by the CLI.  Library code only calls
``structlog.get_logger()`` and logs events (``log.info("caldav.put", href=...)``).

Every line, ours and third-party (httpx, caldav, uvicorn, sqlalchemy — through
the standard library's ``logging``), goes through one handler whose
:class:`structlog.stdlib.ProcessorFormatter` runs the same processors, the
:class:`SecretRedactor` among them: the API token, CalDAV passwords and feed
tokens registered with :data:`redactor` never reach the output at any level,
and the token segment of any ``/feeds/<token>/`` path is masked whether or not
the token was registered (an access line may name a token this process never
issued).  Both structlog and the standard library write through that one
handler, so lines from different threads never interleave.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

import structlog

REDACTED = "***"

# Keys whose values are secret whatever they contain.
_SECRET_KEYS = frozenset(
    {"token", "password", "authorization", "feed_token", "secret", "api_token", "bearer"}
)

# The token segment of a feed URL path (apexcal.feeds.tokens.TOKEN_PATTERN).
_FEED_TOKEN_PATH = re.compile(r"(/feeds/)[A-Za-z0-9_-]{22,128}(?=/|\b)")

# Third-party loggers that chatter at INFO: they log at WARNING unless the
# process runs at debug level, and then at INFO (httpx's one line per request).
NOISY_LOGGERS = ("httpx", "caldav", "urllib3", "niquests", "uvicorn", "uvicorn.error",
                 "alembic", "apscheduler", "radicale")
# Loggers whose DEBUG/INFO output is a trace of internals (SQL statements and
# result rows, socket events): WARNING at every level.
TRACE_LOGGERS = ("sqlalchemy", "httpcore", "hpack", "asyncio", "h11")

# Loggers that libraries configure with handlers of their own (uvicorn's default
# log config): their lines must reach our handler, and so our redaction, instead.
_OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

LEVELS = ("debug", "info", "warning", "error", "critical")


class SecretRedactor:
    """A structlog processor that removes secret values from every event.

    Values under secret-looking keys are replaced, every registered secret
    string is masked wherever it appears in any string value (URLs, messages,
    exception text, nested lists and mappings), and feed URL paths lose their
    token segment.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register more secret strings (short strings are ignored: they would mask noise)."""
        fresh = {s for s in secrets if s and len(s) >= 6}
        if fresh - self._secrets:
            with self._lock:
                self._secrets = frozenset(self._secrets | fresh)

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret and every feed token in a path masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "/feeds/" in text:
            text = _FEED_TOKEN_PATH.sub(r"\1" + REDACTED, text)
        return text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, BaseException):
            return self.scrub(repr(value))
        if isinstance(value, Mapping):
            return {
                k: (REDACTED if str(k).lower() in _SECRET_KEYS and v is not None else self._value(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v) for v in value]
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        return value

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if key.startswith("_"):
                continue  # structlog's own bookkeeping (_record, _from_structlog)
            if key.lower() in _SECRET_KEYS and value is not None:
                event[key] = REDACTED
            else:
                event[key] = self._value(value)
        return event


redactor = SecretRedactor()


def level_number(level: str) -> int:
    """The ``logging`` number of a level name (``"debug"`` → 10); INFO for unknown names."""
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


def _shared_processors() -> list[Any]:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure(level: str = "info", *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging once for the process.

    ``json`` None picks JSON lines when ``stream`` (default stderr) is not a
    TTY, the coloured console renderer when it is.  Calling it again (a
    reloaded config with another level) replaces the previous set-up.
    """
    out = stream or sys.stderr
    tty = out.isatty()
    use_json = (not tty) if json is None else json
    numeric = level_number(level)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            *_shared_processors(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, "_apexcal", False):
            old.close()
    handler._apexcal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    third_party = logging.INFO if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(third_party)
    for name in TRACE_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in _OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *_shared_processors(),
            structlog.processors.format_exc_info,
            # Redact here too: handlers other than ours (tests, embedding
            # programs) see the event dict before our formatter does.
            redactor,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


class LogSettings(Protocol):
    """The ``[log]`` table of a config: a level name and ``auto``, ``json`` or ``console``."""

    @property
    def level(self) -> str: ...
    @property
    def format(self) -> str: ...


def configure_from(settings: LogSettings, level: str | None = None) -> None:
    """Configure logging from a config's ``[log]`` table; ``level`` (the command line's) wins."""
    fmt = settings.format
    configure(level or settings.level, json=None if fmt == "auto" else fmt == "json")


@contextmanager
def held_back(*, drop_if: Callable[[BaseException], bool]) -> Iterator[None]:
    """Hold every log line of the block back: written when it ends, dropped if it raises what ``drop_if`` names.

    Start-up uses it so that an operator error (a port in use, an unusable
    store) is reported as exactly one line, not after the log lines of the
    steps that succeeded before it; any other outcome writes them in order.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    memory = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(memory)
    dropped = False
    try:
        yield
    except BaseException as exc:
        dropped = drop_if(exc)
        raise
    finally:
        root.removeHandler(memory)
        for handler in handlers:
            root.addHandler(handler)
        if not dropped:
            for record in memory.buffer:
                for handler in handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
        memory.buffer.clear()
        memory.close()
