"""A fault-injecting reverse proxy for CalDAV (or any HTTP) traffic, on loopback, in the test process.

Put it between apexcal and a real server (``FaultProxy(upstream=...)``, then
``proxy.rewrite(url)`` for the URL apexcal is given) and tell it which
requests to hurt, and how:

* ``ERROR``: answer a 5xx (503 by default) without forwarding;
* ``RESET``: reset the connection (TCP RST) without forwarding;
* ``DROP_AFTER``: forward the request, let the server apply it, then close
  the connection without answering: the write happened, the client never
  hears of it;
* ``DELAY``: wait ``delay_s`` before forwarding;
* ``TRUNCATE``: forward, then send only the first ``keep`` bytes of the
  answer's body (at most all but one) and close (the declared
  ``Content-Length`` is the full one: the client sees the connection die
  mid-body);
* ``CUT``: forward, then send the first ``keep`` bytes as a complete answer
  (``Content-Length`` of the cut body): a well-framed 207 whose XML ends
  half-way.

Faults come from a plan: :class:`ScriptedFaults` (this request, that fault)
or :class:`RandomFaults` (each matching request draws from a seeded
generator, with a cap on the number of faults), so a chaos run is
reproducible from its seed.  Every request is recorded
(:attr:`FaultProxy.events`) with the fault it got and the upstream's status,
and :meth:`FaultProxy.counts` gives the figures per kind.

Only 127.0.0.1 is proxied to: the upstream must be a loopback URL.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import urlsplit

import httpx

_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
        "host",
    }
)
_MAX_DELAY_S = 5.0


class FaultKind(StrEnum):
    """What the proxy does to one request."""

    ERROR = "error"
    RESET = "reset"
    DROP_AFTER = "drop_after"
    DELAY = "delay"
    TRUNCATE = "truncate"
    CUT = "cut"


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One fault: its kind and its parameters (status of an ERROR, seconds of a DELAY, bytes kept)."""

    kind: FaultKind
    status: int = 503
    delay_s: float = 0.2
    keep: int | None = None
    """Bytes of the body sent by TRUNCATE/CUT (default: half of it)."""

    def __post_init__(self) -> None:
        if not 500 <= self.status <= 599:
            raise ValueError(f"an ERROR fault answers a 5xx status, not {self.status}")
        if not 0 <= self.delay_s <= _MAX_DELAY_S:
            raise ValueError(f"a delay must lie in [0, {_MAX_DELAY_S}] seconds, not {self.delay_s}")
        if self.keep is not None and self.keep < 0:
            raise ValueError(f"keep must not be negative, not {self.keep}")


@dataclass(frozen=True, kw_only=True)
class Request:
    """What a plan sees of a request: its method, path and 1-based number on this proxy."""

    method: str
    path: str
    number: int


class FaultPlan(Protocol):
    """Decides the fault for each request (called under the proxy's lock, in request order)."""

    def fault_for(self, request: Request) -> Fault | None:
        """The fault for this request, or None to forward it untouched."""
        ...


Matcher = Callable[[Request], bool]


def matching(*methods: str, path_contains: str = "") -> Matcher:
    """A matcher of requests by method (any when none given) and a substring of the path."""
    wanted = {m.upper() for m in methods}
    return lambda r: (not wanted or r.method in wanted) and path_contains in r.path


@dataclass(kw_only=True)
class ScriptedFaults:
    """Faults at exact requests: the ``n``-th request that ``match`` accepts gets ``fault``.

    Each rule fires once.  ``rules``: (matcher, n, fault).
    """

    rules: list[tuple[Matcher, int, Fault]]
    _seen: Counter[int] = field(default_factory=Counter)

    def fault_for(self, request: Request) -> Fault | None:
        """The first rule whose count reaches its ``n`` with this request."""
        chosen: Fault | None = None
        for index, (match, n, fault) in enumerate(self.rules):
            if not match(request):
                continue
            self._seen[index] += 1
            if self._seen[index] == n and chosen is None:
                chosen = fault
        return chosen


@dataclass(kw_only=True)
class RandomFaults:
    """Each request ``match`` accepts gets a fault with probability ``rate``, drawn from ``seed``.

    The kind is drawn from ``kinds`` (weights equal unless given); at most
    ``max_faults`` faults in all.  The same seed and the same sequence of
    requests give the same faults.
    """

    seed: int | str
    rate: float = 0.2
    kinds: dict[FaultKind, float] = field(default_factory=lambda: dict.fromkeys(FaultKind, 1.0))
    match: Matcher = field(default=lambda _: True)
    max_faults: int = 50
    status_choices: tuple[int, ...] = (500, 502, 503)
    max_delay_s: float = 0.3
    _rng: random.Random = field(init=False)
    _given: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must lie in [0, 1], not {self.rate}")
        if not self.kinds:
            raise ValueError("kinds must name at least one fault kind")
        self._rng = random.Random(str(self.seed))

    @property
    def given(self) -> int:
        """How many faults this plan has handed out."""
        return self._given

    def fault_for(self, request: Request) -> Fault | None:
        """A fault for this request, or None."""
        if not self.match(request) or self._given >= self.max_faults:
            return None
        if self._rng.random() >= self.rate:
            return None
        kind = self._rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
        self._given += 1
        return Fault(
            kind=kind,
            status=self._rng.choice(self.status_choices),
            delay_s=round(self._rng.uniform(0.0, self.max_delay_s), 3),
            keep=None,
        )


@dataclass(frozen=True, kw_only=True)
class ProxyEvent:
    """One request through the proxy: what it got and what the upstream answered (None: not forwarded)."""

    method: str
    path: str
    number: int
    fault: FaultKind | None
    upstream_status: int | None


@dataclass(kw_only=True)
class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream``, injecting the faults of ``plan``.

    Use as a context manager; ``url`` is its base URL while it runs.  The
    plan can be replaced at any time (``proxy.plan = ...``; None: no faults).
    """

    upstream: str
    plan: FaultPlan | None = None
    timeout_s: float = 30.0
    url: str = ""
    events: list[ProxyEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _number: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _client: httpx.Client | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.hostname != "127.0.0.1" or parts.scheme != "http":
            raise ValueError(f"the proxy forwards to http://127.0.0.1 only, not {self.upstream}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on an ephemeral loopback port and serve in a thread."""
        self._client = httpx.Client(base_url=self.upstream, timeout=self.timeout_s)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving and close the upstream connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def rewrite(self, url: str) -> str:
        """``url`` (on the upstream) as seen through the proxy."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.upstream:
            raise ValueError(f"{url} is not on {self.upstream}")
        return self.url + url[len(self.upstream) :]

    def counts(self) -> Counter[str]:
        """Requests per fault kind (``"none"`` for untouched ones)."""
        with self._lock:
            return Counter(e.fault.value if e.fault else "none" for e in self.events)

    @contextmanager
    def faults(self, plan: FaultPlan | None) -> Iterator[FaultPlan | None]:
        """Use ``plan`` inside the block, the previous plan after it."""
        with self._lock:
            before, self.plan = self.plan, plan
        try:
            yield plan
        finally:
            with self._lock:
                self.plan = before

    # --- used by the handler ---------------------------------------------------

    def _decide(self, method: str, path: str) -> tuple[int, Fault | None]:
        with self._lock:
            self._number += 1
            request = Request(method=method, path=path, number=self._number)
            fault = self.plan.fault_for(request) if self.plan is not None else None
            return self._number, fault

    def _record(
        self, method: str, path: str, number: int, fault: Fault | None, status: int | None
    ) -> None:
        event = ProxyEvent(
            method=method,
            path=path,
            number=number,
            fault=fault.kind if fault else None,
            upstream_status=status,
        )
        with self._lock:
            self.events.append(event)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        assert self._client is not None
        return self._client.request(method, path, headers=headers, content=body)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout: close() sends RST, not FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _answer(
            self, status: int, headers: list[tuple[str, str]], body: bytes, *, declared: int
        ) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            method, path = self.command, self.path
            body = self._body()
            number, fault = proxy._decide(method, path)
            kind = fault.kind if fault else None
            if fault is not None and kind is FaultKind.ERROR:
                proxy._record(method, path, number, fault, None)
                text = f"injected fault: {fault.status}\n".encode()
                self._answer(
                    fault.status, [("Content-Type", "text/plain")], text, declared=len(text)
                )
                return
            if kind is FaultKind.RESET:
                proxy._record(method, path, number, fault, None)
                self._reset()
                return
            if fault is not None and kind is FaultKind.DELAY:
                time.sleep(fault.delay_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            try:
                upstream = proxy._forward(method, path, headers, body)
            except httpx.TransportError:
                proxy._record(method, path, number, fault, None)
                text = b"upstream unreachable\n"
                self._answer(502, [("Content-Type", "text/plain")], text, declared=len(text))
                return
            proxy._record(method, path, number, fault, upstream.status_code)
            if kind is FaultKind.DROP_AFTER:
                self.connection.close()
                self.close_connection = True
                return
            data = upstream.content
            out = [
                (k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP_HEADERS
            ]
            if fault is not None and kind in (FaultKind.TRUNCATE, FaultKind.CUT):
                # At least one byte short of the whole body (an empty body stays empty).
                keep = (
                    len(data) // 2 if fault.keep is None else min(fault.keep, max(len(data) - 1, 0))
                )
                declared = len(data) if kind is FaultKind.TRUNCATE else keep
                self._answer(upstream.status_code, out, data[:keep], declared=declared)
                if kind is FaultKind.TRUNCATE:
                    self.wfile.flush()
                    self.connection.close()
                    self.close_connection = True
                return
            self._answer(upstream.status_code, out, data, declared=len(data))

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle
        do_OPTIONS = do_PROPFIND = do_PROPPATCH = do_REPORT = do_MKCALENDAR = do_MKCOL = _handle

    return Handler
