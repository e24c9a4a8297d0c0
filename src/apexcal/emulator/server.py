"""Serving the emulator with uvicorn: in a background thread (tests) or in the foreground (CLI).

The listening socket is bound before uvicorn starts, so port 0 yields a real
free port that is known before the first request, and "ready" means uvicorn
has finished its start-up on that socket.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then,
    # and without it Nagle plus delayed ACKs add 40 ms to every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once its sockets serve."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_ready is not None and not self.should_exit:
            self._on_ready()


def _config(app: ASGIApp) -> uvicorn.Config:
    # log_config/log_level None: uvicorn must not reconfigure the process's logging
    # (the emulator often runs inside a test process or beside the daemon).
    return uvicorn.Config(
        app, log_config=None, log_level=None, lifespan="off", timeout_graceful_shutdown=2
    )


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a thread; yield its base URL once it answers; stop it cleanly on exit."""
    sock = bind(host, port)
    server = _Server(_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="apexcal-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.005)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(app: ASGIApp, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` in this thread until SIGINT/SIGTERM; ``on_ready`` once serving."""
    _Server(_config(app), on_ready).run(sockets=[sock])
