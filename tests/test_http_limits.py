"""The HTTP server's bounds: a deadline for a request's head and for its body, idle kept-alive
connections closed, a cap on connections that sheds the longest-waiting one, and log lines
about all of it (and about accepts that fail) at most once per interval, with counts."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.live_account import ROOT
from tests.webhook_kit import (
    FORM,
    SECRET,
    SUBDOMAIN,
    Triggers,
    amo_hook,
    lines,
    rejections,
)
from worker.connections import (
    ACCEPT_RETRY_S,
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    MAX_CONNECTIONS,
    RESERVED_FILES,
    Limits,
    Throttled,
    connection_limit,
)
from worker.webhooks import BODY_TIMEOUT_S as HOOK_BODY_TIMEOUT_S
from worker.webhooks import HttpServer, build_app

QUICK = Limits(head_timeout_s=0.6, body_timeout_s=0.8, keep_alive_s=1)
TIMEOUT_408 = b"HTTP/1.1 408 "


@pytest.fixture
def hooks_server() -> Iterator[HttpServer]:
    server = HttpServer(
        build_app(trigger=Triggers(), secret=SECRET, subdomain=SUBDOMAIN), "127.0.0.1", 0, QUICK
    )
    server.start()
    yield server
    server.stop()


def connect(server: HttpServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.monotonic()


def one_response(sock: socket.socket) -> bytes:
    """One whole response with a ``content-length`` (the connection stays open)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def shed_counts(stream: io.StringIO) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines(stream):
        if line["event"] == "http_connections_shed":
            for kind in ("slow_head", "slow_body", "at_limit", "bad_request"):
                counts[kind] = counts.get(kind, 0) + int(line.get(kind, 0))  # type: ignore[call-overload]
    return counts


def test_the_deadlines_are_a_few_seconds_and_a_hook_gets_its_own_answer_first() -> None:
    """amoCRM sends a hook at once and waits 2 s: the webhook's own 408 (logged with its
    reason) comes before the server's, which is the backstop for every other route."""
    assert 1.0 <= HEAD_TIMEOUT_S <= 5.0
    assert HOOK_BODY_TIMEOUT_S < BODY_TIMEOUT_S <= 5.0


def test_a_head_that_stops_halfway_gets_408_and_is_closed_at_the_deadline(
    hooks_server: HttpServer, log_stream: io.StringIO
) -> None:
    with connect(hooks_server) as sock:
        sent = time.monotonic()
        sock.sendall(b"POST /amocrm/webhook/x HTTP/1.1\r\nHost: x\r\n")
        received, closed = until_closed(sock)
    assert received.startswith(TIMEOUT_408), received
    assert QUICK.head_timeout_s - 0.05 <= closed - sent < QUICK.head_timeout_s + 1.0
    hooks_server.stop()
    assert shed_counts(log_stream)["slow_head"] == 1


def test_a_head_sent_a_byte_at_a_time_does_not_move_its_deadline(
    hooks_server: HttpServer,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(hooks_server) as sock:
        sent = time.monotonic()
        sock.settimeout(0.1)
        received = b""
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
                received += sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if received.startswith(TIMEOUT_408):
                break
        closed = time.monotonic()
    assert received.startswith(TIMEOUT_408), received
    assert closed - sent < QUICK.head_timeout_s + 1.0


def test_a_kept_alive_connection_gets_the_head_deadline_again_and_idles_out(
    hooks_server: HttpServer,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(hooks_server) as sock:
        sock.sendall(request)
        assert one_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(QUICK.keep_alive_s / 2)
        sent = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        received, closed = until_closed(sock)
    assert received.startswith(TIMEOUT_408), received
    assert QUICK.head_timeout_s - 0.05 <= closed - sent < QUICK.head_timeout_s + 1.0

    with connect(hooks_server) as idle:
        idle.sendall(request)
        answered = time.monotonic()
        received, closed = until_closed(idle)
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert closed - answered < QUICK.keep_alive_s + 1.0


def test_a_body_too_slow_for_a_route_without_a_deadline_of_its_own_gets_408() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    server = HttpServer(app, "127.0.0.1", 0, QUICK)
    server.start()
    try:
        with connect(server) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            headed = time.monotonic()
            sock.sendall(b"x" * 10)
            received, closed = until_closed(sock)
    finally:
        server.stop()
    assert received.startswith(TIMEOUT_408), received
    assert QUICK.body_timeout_s - 0.05 <= closed - headed < QUICK.body_timeout_s + 1.0


def test_a_hook_body_trickled_past_its_answer_is_cut_off_at_the_body_deadline(
    log_stream: io.StringIO,
) -> None:
    """The webhook answers 408 itself after 1.8 s; a sender that goes on trickling bytes
    after that is closed at the server's deadline, not kept for as long as it likes."""
    limits = Limits(body_timeout_s=HOOK_BODY_TIMEOUT_S + 0.7)
    app = build_app(trigger=Triggers(), secret=SECRET, subdomain=SUBDOMAIN)
    server = HttpServer(app, "127.0.0.1", 0, limits)
    server.start()
    body = amo_hook().encode()
    try:
        with connect(server) as sock:
            head = (
                f"POST /amocrm/webhook/{SECRET} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: {FORM['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode())
            headed = time.monotonic()
            sock.settimeout(0.2)
            received, closed = b"", None
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = time.monotonic()
                    break
                if not chunk:
                    closed = time.monotonic()
                    break
                received += chunk
    finally:
        server.stop()
    assert received.startswith(TIMEOUT_408), received
    assert closed is not None, "the connection was still open when the body was all sent"
    assert limits.body_timeout_s - 0.05 <= closed - headed < limits.body_timeout_s + 1.0
    assert [r["reason"] for r in rejections(log_stream)] == ["slow_body"]
    assert shed_counts(log_stream)["slow_body"] == 1


def test_at_the_cap_a_new_connection_sheds_the_longest_stalled_one(
    log_stream: io.StringIO,
) -> None:
    limits = Limits(max_connections=8, head_timeout_s=30)
    server = HttpServer(build_app(trigger=Triggers()), "127.0.0.1", 0, limits)
    server.start()
    stalled = []
    try:
        for _ in range(20):
            sock = connect(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            stalled.append(sock)
        with connect(server) as prompt:
            asked = time.monotonic()
            prompt.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received, answered = until_closed(prompt)
        still_open = []
        for sock in stalled:
            sock.settimeout(0.2)
            try:
                still_open.append(sock.recv(1) != b"")
            except TimeoutError:
                still_open.append(True)
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert answered - asked < 1.0
    # The newest stalled connections are the ones kept; the cap counts the prompt one too.
    assert still_open == [False] * 13 + [True] * 7
    assert shed_counts(log_stream)["at_limit"] == 13
    assert server.max_connections == 8


def test_garbage_requests_are_counted_in_one_line_not_one_warning_each(
    hooks_server: HttpServer, log_stream: io.StringIO
) -> None:
    for _ in range(50):
        with connect(hooks_server) as sock:
            sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
            received, _ = until_closed(sock)
            assert received.startswith(b"HTTP/1.1 400 "), received
    hooks_server.stop()
    entries = lines(log_stream)
    assert [e for e in entries if e["event"] == "Invalid HTTP request received."] == []
    assert shed_counts(log_stream)["bad_request"] == 50
    assert len([e for e in entries if e["event"] == "http_connections_shed"]) <= 2


def test_the_cap_leaves_the_reserve_to_the_rest_of_the_process() -> None:
    assert connection_limit(None, 10) == MAX_CONNECTIONS
    assert connection_limit(1_048_576, 40) == MAX_CONNECTIONS
    assert connection_limit(256, 10) == 256 - 10 - RESERVED_FILES
    assert connection_limit(1024, 900) == 1024 // 4
    assert connection_limit(8, 8) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_throttled_line_comes_at_once_then_at_most_once_per_interval_with_the_counts() -> None:
    reported: list[tuple[float, dict[str, int]]] = []
    clock = FakeClock()
    throttled = Throttled(lambda counts: reported.append((clock.now, counts)), 10.0, clock)
    throttled.note("a")
    for step in range(1, 100):
        clock.now = step * 0.1
        throttled.note("a" if step % 3 else "b")
    throttled.tick()
    clock.now = 10.0
    throttled.tick()
    clock.now = 10.5
    throttled.note("a")
    clock.now = 12.0
    throttled.flush()
    clock.now = 40.0
    throttled.note("b")
    assert reported == [
        (0.0, {"a": 1}),
        (10.0, {"a": 66, "b": 33}),
        (12.0, {"a": 1}),
        (40.0, {"b": 1}),
    ]


def _send(stream: IO[str] | None, line: str) -> None:
    assert stream is not None
    stream.write(line + "\n")
    stream.flush()


def _read(stream: IO[str] | None) -> str:
    assert stream is not None
    return stream.readline().strip()


def test_accepts_that_fail_for_want_of_descriptors_are_logged_once_per_interval() -> None:
    """Something else has taken every descriptor: the clients wait in the kernel's queue, the
    server retries every half second and logs one line (and one more with the count at its
    stop), not one per attempt; once descriptors are free again the clients are served."""
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.starved_server", "10"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        port = int(_read(helper.stdout))
        assert _read(helper.stdout) == "starved"
        starved = time.monotonic()
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            clients.append(sock)
            time.sleep(0.5)
        _send(helper.stdin, "free")
        assert _read(helper.stdout) == "freed"
        waited = time.monotonic() - starved
        answers = [until_closed(sock)[0] for sock in clients]
        _send(helper.stdin, "stop")
        _, stderr = helper.communicate(timeout=30)
    finally:
        for sock in clients:
            sock.close()
        if helper.poll() is None:
            helper.kill()
            helper.communicate()
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
    entries = [json.loads(line) for line in stderr.splitlines()]
    failed = [entry for entry in entries if entry["event"] == "http_accept_failed"]
    assert 1 <= len(failed) <= 2, failed
    assert "Too many open files" in failed[0]["error"]
    attempts = sum(int(entry["count"]) for entry in failed)
    assert waited / ACCEPT_RETRY_S - 2 <= attempts <= waited / ACCEPT_RETRY_S + 2, (
        attempts,
        waited,
    )
    assert "out of system resource" not in stderr
