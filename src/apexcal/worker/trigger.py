"""Asking the workers for a sync now: one pull of an organization, forced, on the queue.

Used by ``apexcal trigger`` and by the sync webhook of ``apexcal serve``.  The
pull carries a queueing lock of its own (``trigger:<org>``): a request not
started yet absorbs the next ones, while it may wait beside a scheduled pull.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

import structlog
from procrastinate import App, exceptions
from prometheus_client import CollectorRegistry

from apexcal.errors import StoreFailure
from apexcal.serve.hooks import Debouncer, HookEndpoint, HookSecrets
from apexcal.worker.runner import make_app
from apexcal.worker.tasks import PULL, pull_lock, trigger_lock

log = structlog.get_logger("apexcal.worker")


def request_pull(app: App, org: str, target: str | None = None) -> int | None:
    """Defer a forced pull of ``org`` (only ``target``, if named); the job id, ``None`` if one waits already."""
    deferrer = app.configure_task(PULL, lock=pull_lock(org), queueing_lock=trigger_lock(org))
    try:
        return deferrer.defer(org=org, force=True, target=target)
    except exceptions.AlreadyEnqueued:
        return None


class PullRequester:
    """Defers forced pulls from a long-running process (the webhook's sync action); thread-safe.

    The queue's connection pool opens on first use and stays open until
    :meth:`close`.
    """

    def __init__(self, url: str, queue_schema: str) -> None:
        self._app = make_app(url, queue_schema, pool_size=2)
        self._lock = threading.Lock()
        self._open = False

    def __call__(self, org: str) -> None:
        """Defer a forced pull of ``org``; raise :class:`StoreFailure` when the queue is away."""
        with self._lock:
            if not self._open:
                try:
                    self._app.open()
                except exceptions.ConnectorException as exc:
                    raise StoreFailure("open the job queue", type(exc).__name__) from exc
                self._open = True
        try:
            job_id = request_pull(self._app, org)
        except exceptions.ConnectorException as exc:
            raise StoreFailure("defer a pull", type(exc).__name__) from exc
        log.info("worker.pull_requested", organization=org, job_id=job_id)

    def close(self) -> None:
        """Close the queue's connections."""
        with self._lock:
            if self._open:
                self._app.close()
                self._open = False


def worker_hooks(
    *, url: str, queue_schema: str, secrets: HookSecrets,
    organizations: Callable[[], Collection[str]], registry: CollectorRegistry | None = None,
) -> tuple[HookEndpoint, Callable[[], None]]:
    """The sync webhook of a server in worker mode and the function that closes it.

    A post defers a forced pull of the secret's organization on the queue at
    ``url`` (debounced, and absorbed by a requested pull not started yet).
    """
    requester = PullRequester(url, queue_schema)
    debouncer = Debouncer(requester)

    def close() -> None:
        debouncer.close()
        requester.close()

    endpoint = HookEndpoint(
        secrets=secrets, debouncer=debouncer, organizations=organizations, registry=registry
    )
    return endpoint, close
