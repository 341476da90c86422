"""The fake's loopback server when a client dies mid-request (a worker killed with SIGKILL):
the answer that can no longer be delivered is dropped without a traceback."""

from __future__ import annotations

import socket
import struct
import threading
import time
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest

from amo_client.fake import PageTurn
from tests.client_kit import FakeClock, make_fake


def test_a_client_gone_before_its_answer_leaves_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake = make_fake(FakeClock(), max_requests_per_second=None)
    support = fake.add_pipeline("Поддержка", ["Новое"])
    for number in range(3):
        fake.add_lead(f"Обращение {number}", pipeline_id=support.id)
    release = threading.Event()
    handlers: list[threading.Thread] = []

    def hold(turn: PageTurn) -> None:
        handlers.append(threading.current_thread())
        release.wait(5)

    fake.on_page(hold)
    with fake.serve() as server:
        address = urlsplit(server.url)
        client = socket.create_connection((address.hostname or "", address.port or 0))
        client.sendall(
            b"GET /api/v4/leads?limit=1&page=2 HTTP/1.1\r\nHost: fake\r\n"
            b"Authorization: Bearer " + fake.long_lived_token.encode() + b"\r\n\r\n"
        )
        deadline = time.monotonic() + 5
        while not handlers and time.monotonic() < deadline:
            time.sleep(0.01)
        # Closed with a reset, as the kernel closes the sockets of a killed process.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        release.set()
        handlers[0].join(5)

    assert [(r.path, r.status) for r in fake.request_log] == [("/api/v4/leads", 200)]
    assert "Traceback" not in capfd.readouterr().err


def test_the_served_fake_dates_its_answers_by_its_own_clock_alone() -> None:
    """One ``Date`` header, the fake's (a virtual clock may be years off the machine's):
    the client reads amoCRM's clock from it, and two would read as none."""
    clock = FakeClock()
    fake = make_fake(clock, max_requests_per_second=None)
    with fake.serve() as server, httpx.Client() as client:
        answer = client.get(
            f"{server.url}/api/v4/leads",
            headers={"Authorization": f"Bearer {fake.long_lived_token}"},
        )
    assert answer.headers.get_list("date") == [formatdate(clock.wall, usegmt=True)]
