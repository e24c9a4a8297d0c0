"""Running an ASGI app under uvicorn in a background thread (daemon, demo, tests).

Uvicorn's access log is turned off: feed URLs carry secret tokens, and an
access log line would write them to the journal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from apexcal.errors import ServerStartError


def make_server(app: ASGIApp, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` without access log or signal handlers of its own."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
    )
    # Uvicorn decides per connection whether to write access lines from
    # whether its access logger has handlers (its own or inherited), so turning
    # access_log off is not enough once anyone attaches a handler: disable the
    # logger itself.  Every access line would carry a feed token.
    logging.getLogger("uvicorn.access").disabled = True
    # Uvicorn installs no signal handlers outside the main thread, so the
    # process owner (daemon or test) keeps handling signals.
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (useful with port 0)."""
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server is not listening")


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` in a thread; yields the base URL once it accepts connections.

    On exit the server stops and the thread is joined.
    """
    server = make_server(app, host=host, port=port)

    def run() -> None:
        # Uvicorn exits (SystemExit) when it cannot bind; end the thread quietly
        # and let the start-up loop below report it.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name="apexcal-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive():
            raise ServerStartError(f"cannot listen on {host}:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(start_timeout)
            raise ServerStartError(f"server on {host}:{port} did not start in {start_timeout:.0f} s")
        time.sleep(0.01)
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound_port(server)}"
    finally:
        server.should_exit = True
        thread.join(start_timeout)
