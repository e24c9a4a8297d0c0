"""Running an ASGI app under uvicorn in a background thread (daemon, demo, tests).

Uvicorn's access log is turned off: feed URLs carry secret tokens, and an
access log line would write them to the journal.  HTTP is parsed by
httptools (uvicorn's C parser), with the request target kept whole in
``raw_path`` when it is not origin-form (``GET http://host/feeds/…``), as
uvicorn's h11 protocol keeps it, so that only a plain ``/feeds/…`` path is a
feed URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from apexcal.errors import ServerStartError

NotModified = Callable[[bytes, bytes, list[tuple[bytes, bytes]]], bytes | None]
"""``(raw path, method, headers)`` → the header block of a 304 answered from memory, else ``None``."""

_STATUS_304 = b"HTTP/1.1 304 Not Modified\r\n"


class _Answered:
    """The request cycle of a request answered by the protocol itself: complete, nothing to wait for."""

    response_complete = True
    disconnected = False

    class message_event:  # what uvicorn sets on a cycle when the connection drops
        @staticmethod
        def set() -> None:
            return None


_ANSWERED = _Answered()


def _http_protocol(not_modified: NotModified | None = None) -> type[asyncio.Protocol] | str:
    """httptools' protocol keeping a target that is not origin-form whole; h11's where httptools is missing.

    With ``not_modified``: a request it answers (a feed revalidation whose
    answer is in memory, :meth:`apexcal.serve.endpoint.FeedEndpoint.not_modified`)
    gets its 304 written by the protocol at once, without an ASGI scope,
    task or messages; every other request goes to the application.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # an environment installed before httptools became a dependency
        return "h11"

    class FeedHttpProtocol(HttpToolsProtocol):
        """Uvicorn's httptools protocol, with a target that is not origin-form left whole in ``raw_path``."""

        # After the protocol's own 304s, one idle timer per connection, re-armed
        # when it finds the connection busy since, instead of a timer per answer.
        _idle: asyncio.TimerHandle | None = None
        _active_at = 0.0

        def data_received(self, data: bytes) -> None:
            self._active_at = self.loop.time()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            target = self.url
            if (
                not_modified is not None
                and target.startswith(b"/feeds/")
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
                and not self.parser.should_upgrade()
                and not self.transport.is_closing()
            ):
                head = not_modified(target.partition(b"?")[0], self.parser.get_method(), self.headers)
                if head is not None:
                    self._answer_not_modified(head)
                    return
            super().on_headers_complete()
            # The request's task is only scheduled, not started: its scope can still change.
            if not target.startswith(b"/"):
                self.scope["raw_path"] = target.partition(b"?")[0]

        def _answer_not_modified(self, head: bytes) -> None:
            """Write the 304 as uvicorn would (its Date first; ``connection: close`` unless kept alive)."""
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            self.transport.write(
                b"".join((
                    _STATUS_304,
                    _default_headers(self.server_state.default_headers),
                    head,
                    b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
                ))
            )
            # A body sent with the request is read and dropped, as after any complete response.
            self.cycle = _ANSWERED  # type: ignore[assignment]
            self.server_state.total_requests += 1
            if not keep_alive:
                self.transport.close()
                return
            if self._idle is None:
                self._idle = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

        def _idle_check(self) -> None:
            """Close the connection once idle for uvicorn's keep-alive timeout (as its own timer would)."""
            self._idle = None
            if self.transport.is_closing() or self.pipeline or not (
                self.cycle is None or self.cycle.response_complete
            ):
                return  # closed, or an answer in progress: uvicorn arms its own timer after it
            left = self._active_at + self.timeout_keep_alive - self.loop.time()
            if left > 0:
                self._idle = self.loop.call_later(left, self._idle_check)
            else:
                self.transport.close()

    return FeedHttpProtocol


_held_defaults: tuple[object, bytes] = (None, b"")


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Uvicorn's default headers (its Date, renewed each second) as written, joined once per list."""
    global _held_defaults
    held, wire = _held_defaults
    if held is not headers:
        wire = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
        _held_defaults = (headers, wire)
    return wire


_HTTP = _http_protocol()


def make_server(app: ASGIApp, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` without access log or signal handlers of its own.

    An ``app`` with a ``not_modified`` method (the feed server's,
    :class:`apexcal.serve.app.FeedServerApp`) answers feed revalidations
    from memory in the protocol itself (:func:`_http_protocol`).
    """
    not_modified = getattr(app, "not_modified", None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="off",
        http=_http_protocol(not_modified) if not_modified is not None else _HTTP,
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


def reuse_port_socket(host: str, port: int, *, first: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` with ``SO_REUSEPORT``: processes bound alike share the port.

    The kernel spreads new connections over every socket bound to the port.
    ``first``: the port must be free (another server bound with
    ``SO_REUSEPORT`` would otherwise be joined, not reported).
    :class:`ServerStartError` when it cannot bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if first and port:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
            except OSError as exc:
                raise ServerStartError(f"cannot listen on {host}:{port}") from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}") from exc
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout: float = 10.0,
    reuse_port: bool = False,
    join: bool = False,
) -> Iterator[str]:
    """Serve ``app`` in a thread; yields the base URL once it accepts connections.

    With ``reuse_port``, the listening socket is bound with ``SO_REUSEPORT``
    (:func:`reuse_port_socket`), so other processes can listen on the same
    port; unless ``join``, the port must be free.  On exit the server stops
    and the thread is joined.
    """
    server = make_server(app, host=host, port=port)
    sockets = [reuse_port_socket(host, port, first=not join)] if reuse_port else None

    def run() -> None:
        # Uvicorn exits (SystemExit) when it cannot bind; end the thread quietly
        # and let the start-up loop below report it.
        with contextlib.suppress(SystemExit):
            server.run(sockets=sockets)

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
        for sock in sockets or ():
            sock.close()
