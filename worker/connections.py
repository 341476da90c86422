"""The HTTP side's connections: how many at once, how long a request may take to arrive, and
how much the log says about them.

uvicorn on its own accepts every connection the kernel hands it and waits for a request head
as long as the client likes, so a few hundred clients that send half a head and then nothing
hold the process's descriptors until the sync cycle can no longer open its lock or its state
file, and asyncio logs every accept that fails for want of one. Here:

* :class:`Gate` accepts the connections itself and never holds more than its ``limit``
  (:func:`connection_limit`): the open-file limit less the descriptors in use at start and a
  reserve (:data:`RESERVED_FILES`) that the server never takes, so the cycle always has
  descriptors for its lock, its heartbeat, SQLite's files and its sockets to amoCRM. At the
  limit a new connection sheds the one that has waited longest with no request being served
  (a head still arriving, an idle kept-alive connection), so a flood of stalled clients never
  keeps a prompt one out; when every connection has a request in progress, accepting waits
  and the kernel's queue holds the rest.
* :class:`GuardedH11Protocol` (uvicorn's h11 protocol) gives a request's head
  :data:`HEAD_TIMEOUT_S` from the connection, or from its first byte on a kept-alive one, and
  its body :data:`BODY_TIMEOUT_S` from the end of its head; past either the client gets
  ``408`` (unless an answer has started) and the connection is closed. An idle kept-alive
  connection is closed after :data:`KEEP_ALIVE_S` (uvicorn's own timer).
* Connections shed, accepts that fail and uvicorn's warnings about garbage requests are
  logged at most once per :data:`LOG_EVERY_S` each, every line with the count it stands for
  (:class:`Throttled`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.stdlib.get_logger("worker.connections")

# amoCRM sends a hook's head and its small body at once and gives up after 2 s; Prometheus and
# a reverse proxy send theirs at once too. A few seconds is ample for every honest client.
HEAD_TIMEOUT_S: Final = 3.0
BODY_TIMEOUT_S: Final = 3.0
KEEP_ALIVE_S: Final = 2
# Hooks, scrapes and probes need a handful of connections at a time.
MAX_CONNECTIONS: Final = 256
# Descriptors the server leaves to the rest of the process whatever the load: the cycle's
# lock, heartbeat, SQLite's database, WAL and shared-memory files, its sockets to amoCRM,
# the token file and its lock, modules imported late.
RESERVED_FILES: Final = 64
LOG_EVERY_S: Final = 10.0
ACCEPT_RETRY_S: Final = 0.5
_REQUEST_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)
# uvicorn's warnings about one request (by their start), one or two per connection: counted in
# the gate's line, not repeated.
_UVICORN_NOISE: Final = (
    ("Invalid HTTP request received", "bad_request"),
    ("Unsupported upgrade request", "upgrade_ignored"),
    ("No supported WebSocket library", None),  # the second line of the one above
)


@dataclass(frozen=True)
class Limits:
    """The server's bounds; ``max_connections`` None takes :func:`connection_limit` at start."""

    max_connections: int | None = None
    head_timeout_s: float = HEAD_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    keep_alive_s: int = KEEP_ALIVE_S
    log_every_s: float = LOG_EVERY_S


def open_file_limit() -> tuple[int, int] | None:
    """The soft and hard limits on open files (None where the platform has none)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft), int(hard)


def descriptors_in_use() -> int:
    """How many descriptors the process has open (0 where that cannot be read)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def connection_limit(open_files: int | None, in_use: int) -> int:
    """How many connections the server may hold: :data:`MAX_CONNECTIONS`, or fewer so that
    ``in_use`` and :data:`RESERVED_FILES` still fit under ``open_files`` (a quarter of
    ``open_files`` at least, whatever is in use)."""
    if open_files is None or open_files <= 0:
        return MAX_CONNECTIONS
    spare = open_files - in_use - RESERVED_FILES
    return max(1, min(MAX_CONNECTIONS, max(spare, open_files // 4)))


class Throttled:
    """Counts a repeated occurrence by kind and reports the counts at most once per
    ``every_s``: the first after a quiet spell at once, the ones after it together once the
    interval has passed (at the next occurrence or :meth:`tick`), the rest at :meth:`flush`."""

    def __init__(
        self,
        report: Callable[[dict[str, int]], None],
        every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._report = report
        self._every_s = every_s
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._reported_at: float | None = None

    def note(self, kind: str) -> None:
        self._counts[kind] += 1
        self.tick()

    def tick(self) -> None:
        due = self._reported_at is None or self._clock() - self._reported_at >= self._every_s
        if self._counts and due:
            self.flush()

    def flush(self) -> None:
        if self._counts:
            counts = dict(self._counts)
            self._counts.clear()
            self._reported_at = self._clock()
            self._report(counts)


class Gate:
    """The server's connections: at most ``limit`` open, the one waiting longest shed for a new
    one at the limit, and the log lines about them. Used on the server's event loop only."""

    def __init__(self, limits: Limits, limit: int) -> None:
        self.limits = limits
        self.limit = limit
        self._open: set[GuardedH11Protocol] = set()
        # Open connections with no request being served, the one waiting longest first.
        self._waiting: dict[GuardedH11Protocol, None] = {}
        self._admitting = 0
        self._freed: asyncio.Event | None = None
        self._accept_error = ""
        self.shed = Throttled(self._report_shed, limits.log_every_s)
        self.accept_failures = Throttled(self._report_accept_failures, limits.log_every_s)

    @property
    def open(self) -> int:
        return len(self._open) + self._admitting

    # --- the protocol's side --------------------------------------------------------------------
    def opened(self, connection: GuardedH11Protocol) -> None:
        self._open.add(connection)
        self.waiting(connection, True)

    def waiting(self, connection: GuardedH11Protocol, waiting: bool) -> None:
        """Whether ``connection`` has no request being served (a candidate to shed)."""
        if not waiting:
            self._waiting.pop(connection, None)
        elif connection in self._open and connection not in self._waiting:
            self._waiting[connection] = None

    def closed(self, connection: GuardedH11Protocol) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)
        if self._freed is not None:
            self._freed.set()

    # --- accepting ------------------------------------------------------------------------------
    async def serve(
        self, listener: socket.socket, protocol: Callable[[], asyncio.Protocol]
    ) -> None:
        """Accept connections on ``listener`` until cancelled, never more than the limit."""
        loop = asyncio.get_running_loop()
        while True:
            if self.open >= self.limit:
                await _knocked(loop, listener)
                await self._room()
            try:
                sock, _address = await loop.sock_accept(listener)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as error:
                # Out of descriptors (something else took them) or another transient failure:
                # the client waits in the kernel's queue; try again in a moment.
                self._accept_error = str(error)
                self.accept_failures.note(errno.errorcode.get(error.errno or 0, "error"))
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            self._admitting += 1
            try:
                await loop.connect_accepted_socket(protocol, sock)
            except OSError:
                sock.close()
            finally:
                self._admitting -= 1

    async def _room(self) -> None:
        """Return once a connection may be accepted: at the limit, shed the connection that has
        waited longest with no request being served, or wait for one to close."""
        if self._freed is None:
            self._freed = asyncio.Event()
        while self.open >= self.limit:
            if self._waiting:
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
                self.shed.note("at_limit")
                oldest.shed()
            self._freed.clear()
            await self._freed.wait()

    def tick(self) -> None:
        self.shed.tick()
        self.accept_failures.tick()

    def flush(self) -> None:
        self.shed.flush()
        self.accept_failures.flush()

    def _report_shed(self, counts: dict[str, int]) -> None:
        log.warning("http_connections_shed", **counts, open=self.open, limit=self.limit)

    def _report_accept_failures(self, counts: dict[str, int]) -> None:
        log.error(
            "http_accept_failed",
            error=self._accept_error,
            count=sum(counts.values()),
            retry_in_s=ACCEPT_RETRY_S,
        )


async def _knocked(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    """Return once a connection waits on ``listener`` (without accepting it)."""
    knocked: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not knocked.done():
            knocked.set_result(None)

    loop.add_reader(listener.fileno(), ready)
    try:
        await knocked
    finally:
        loop.remove_reader(listener.fileno())


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for a request's head and body, in a :class:`Gate`."""

    def __init__(self, gate: Gate, **options: Any) -> None:
        super().__init__(**options)
        self.gate = gate
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None  # "slow_head" or "slow_body": what the timer is for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.gate.opened(self)
        self._arm("slow_head")

    def data_received(self, data: bytes) -> None:
        if self._awaiting is None and self.conn.their_state is h11.IDLE:
            self._arm("slow_head")  # the next request's head begins on a kept-alive connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        self.gate.closed(self)

    def shed(self) -> None:
        """Close the connection to make room for a new one."""
        self._disarm()
        self.transport.close()

    def _follow(self) -> None:
        """Move the deadline along with the request: the head's until it is whole, then the
        body's until that is whole."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if (self._awaiting == "slow_head" and state is not h11.IDLE) or (
            self._awaiting == "slow_body" and state is not h11.SEND_BODY
        ):
            self._disarm()
        if self._awaiting is None and state is h11.SEND_BODY:
            self._arm("slow_body")
        self.gate.waiting(self, self.cycle is None or self.cycle.response_complete)

    def _arm(self, awaiting: str) -> None:
        self._disarm()
        limits = self.gate.limits
        delay = limits.head_timeout_s if awaiting == "slow_head" else limits.body_timeout_s
        self._awaiting = awaiting
        self._timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._awaiting = None, None

    def _expired(self) -> None:
        awaiting, self._timer, self._awaiting = self._awaiting, None, None
        if awaiting is None or self.transport.is_closing():
            return
        self.gate.shed.note(awaiting)
        answer = True
        if awaiting == "slow_body" and self.cycle is not None:
            answer = not self.cycle.response_started
            self.cycle.disconnected = True  # whatever the application still sends goes nowhere
        if answer:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


class _UvicornNoise(logging.Filter):
    """Counts uvicorn's per-request warnings about garbage in the gate's log line instead."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True
        message = str(record.msg)
        for start, kind in _UVICORN_NOISE:
            if message.startswith(start):
                if kind is not None:
                    self.gate.shed.note(kind)
                return False
        return True


def listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (as asyncio's server binds)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class GuardedServer(uvicorn.Server):
    """uvicorn's server on sockets already listening, accepting through a :class:`Gate`."""

    def __init__(self, config: uvicorn.Config, gate: Gate, listeners: list[socket.socket]) -> None:
        super().__init__(config)
        self.gate = gate
        self.listeners = listeners
        self._accepting: list[asyncio.Task[None]] = []
        self._noise = _UvicornNoise(gate)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()
        config, state, app_state = self.config, self.server_state, self.lifespan.state

        def protocol() -> asyncio.Protocol:
            return GuardedH11Protocol(
                self.gate, config=config, server_state=state, app_state=app_state, _loop=loop
            )

        logging.getLogger("uvicorn.error").addFilter(self._noise)
        self.servers = []
        self._accepting = [
            loop.create_task(self.gate.serve(listener, protocol)) for listener in self.listeners
        ]
        self.started = True

    async def on_tick(self, counter: int) -> bool:
        self.gate.tick()
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in self._accepting:
            task.cancel()
        await asyncio.gather(*self._accepting, return_exceptions=True)
        for listener in self.listeners:
            listener.close()
        try:
            await super().shutdown(sockets)
        finally:
            logging.getLogger("uvicorn.error").removeFilter(self._noise)
            self.gate.flush()
