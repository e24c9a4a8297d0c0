"""The sync webhook: ``POST /hooks/<secret>/sync`` asks for a sync of the secret's organization now.

A CRM automation posts to it after a change, so the change reaches the
calendars within seconds instead of at the next interval.  What a sync is
depends on the process serving it: in ``apexcal run`` every target and feed
of the organization runs at once; under ``apexcal serve`` with workers, a
pull is deferred on the queue as ``apexcal trigger`` does.

* The secret is 256 random bits; the store keeps its SHA-256 only
  (:mod:`apexcal.state.hooks`) and the lookup is by that hash, followed by a
  constant-time comparison, on every path: an unknown, revoked or malformed
  secret gets the same 404 after the same work.
* Answers ``202 Accepted`` at once; the sync starts after a short debounce
  window (:class:`Debouncer`): any number of posts for one organization
  within it make one sync.
* The secret is never logged: uvicorn's access log is off
  (:mod:`apexcal.serve.runner`), and log lines and errors name the
  organization, never the path.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Callable, Collection
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from apexcal.errors import ApexcalError
from apexcal.feeds.tokens import hash_token

log = structlog.get_logger("apexcal.serve.hooks")

DEBOUNCE_S = 2.0
"""Posts for one organization within this many seconds of the first make one sync."""

_HOOK_PATH = re.compile(r"/hooks/(?P<secret>[A-Za-z0-9_-]{22,128})/sync")
# Compared against when a secret is unknown, so that every path does the same comparison.
_NO_HASH = "0" * 64


def hook_path(secret: str) -> str:
    """The server path of the sync webhook of ``secret``."""
    return f"/hooks/{secret}/sync"


def hook_url(public_url: str, secret: str) -> str:
    """The full webhook URL under the server's public base URL."""
    return public_url.rstrip("/") + hook_path(secret)


class HookSecrets(Protocol):
    """Resolves a secret's SHA-256 hex digest to its organization (the state store)."""

    def hook_organization(self, secret_hash: str) -> tuple[str, str] | None:
        """``(organization, stored hash)`` of an active secret with this hash, else ``None``."""
        ...


SyncAction = Callable[[str], None]
"""What a sync of one organization is, in the serving process (runs in a thread)."""


class Debouncer:
    """Runs ``action(key)`` once per window of ``window`` seconds, however often ``key`` is requested.

    The first request of a key opens its window; requests within it join it;
    at its end ``action`` runs in a thread of its own.  The window closes
    before ``action`` starts, so a request arriving while it runs opens the
    next one: a change posted during a sync is never absorbed by it.
    """

    def __init__(self, action: SyncAction, *, window: float = DEBOUNCE_S) -> None:
        self._action = action
        self._window = window
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Timer, int]] = {}
        self._closed = False

    def request(self, key: str) -> bool:
        """Ask for ``action(key)``; ``True`` when this opened a window, ``False`` when it joined one."""
        with self._lock:
            if self._closed:
                return False
            pending = self._pending.get(key)
            if pending is not None:
                self._pending[key] = (pending[0], pending[1] + 1)
                return False
            timer = threading.Timer(self._window, self._fire, args=(key,))
            timer.name = "apexcal-hook"
            timer.daemon = True
            self._pending[key] = (timer, 1)
            timer.start()
            return True

    def _fire(self, key: str) -> None:
        with self._lock:
            _timer, requests = self._pending.pop(key, (None, 0))
            if self._closed:
                return
        log.info("hook.sync", organization=key, requests=requests)
        try:
            self._action(key)
        except ApexcalError as exc:
            log.error("hook.sync_failed", organization=key, kind=type(exc).__name__, error=str(exc))
        except Exception:  # a bug: logged with its traceback; the server lives on
            log.exception("hook.sync_crashed", organization=key)

    def waiting(self) -> int:
        """How many windows are open (organizations whose sync is still to run)."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Drop every open window without running it."""
        with self._lock:
            self._closed = True
            timers = [timer for timer, _ in self._pending.values()]
            self._pending.clear()
        for timer in timers:
            timer.cancel()


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})


class HookEndpoint:
    """The ASGI endpoint under ``/hooks/``.

    ``organizations``, when given, names the organizations this process
    syncs: a secret of any other one is as unknown as a wrong one.
    """

    def __init__(
        self,
        *,
        secrets: HookSecrets,
        debouncer: Debouncer,
        organizations: Callable[[], Collection[str]] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._secrets = secrets
        self._debouncer = debouncer
        self._organizations = organizations
        self._requests = Counter(
            "apexcal_hook_requests",
            "Sync webhook requests by answer (202 accepted, 404 unknown secret, 503 store down).",
            ["status"],
            registry=registry,
        )

    def _resolve(self, secret: str) -> str | None:
        """The organization of an active ``secret``, else ``None`` (blocking: the store)."""
        digest = hash_token(secret)
        found = self._secrets.hook_organization(digest)
        org, stored = found if found is not None else ("", _NO_HASH)
        same = hmac.compare_digest(stored.encode(), digest.encode())
        if found is None or not same:
            return None
        if self._organizations is not None and org not in self._organizations():
            return None
        return org

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        org: str | None = None
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        match = _HOOK_PATH.fullmatch(raw.decode("latin-1"))
        if match is None or scope["path"] != match[0]:
            response = _not_found()
        elif scope["method"] != "POST":
            response = PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": "POST"}
            )
        else:
            try:
                org = await run_in_threadpool(self._resolve, match["secret"])
            except ApexcalError as exc:
                log.warning("hook.lookup_failed", kind=type(exc).__name__)
                response = PlainTextResponse(
                    "Service Unavailable", status_code=503,
                    headers={"Retry-After": "10", "Cache-Control": "no-store"},
                )
            else:
                response = (
                    _not_found() if org is None
                    else JSONResponse(
                        {"status": "accepted"}, status_code=202,
                        headers={"Cache-Control": "no-store"},
                    )
                )
        self._requests.labels(str(response.status_code)).inc()
        await response(scope, receive, send)
        # After the answer, so that a known secret takes no longer to answer than an unknown one.
        if org is not None and response.status_code == 202:
            opened = self._debouncer.request(org)
            log.debug("hook.request", organization=org, debounced=not opened)
