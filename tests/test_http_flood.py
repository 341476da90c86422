"""``python -m worker run`` with 256 open files at most, under a flood of connections that send
half a request head and then nothing: more of them than the process has descriptors.

The HTTP side holds no more connections than its cap, which leaves the cycle its reserve:
cycles go on succeeding, a good webhook is answered at once, the server closes the stalled
connections itself, the log says so in a few lines, and the descriptors come back to where
they were once the clients are gone."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.live_account import LoopbackAccount, WorkerProcess, loopback_account
from worker.connections import HEAD_TIMEOUT_S, RESERVED_FILES

SECRET = "flood-" + "0123456789abcdef" * 2
NOFILE = 256
STALLED = 300  # per wave: more than the worker's whole limit on open files
STALLED_HEAD = b"POST /amocrm/webhook/x HTTP/1.1\r\nHost: x\r\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def account() -> Iterator[LoopbackAccount]:
    with loopback_account() as account:
        account.provision()
        yield account


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stalled(port: int, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(STALLED_HEAD)
        connections.append(sock)
    return connections


def closed_by_server(sock: socket.socket, until: float) -> bool:
    """Whether the server closed ``sock`` (after a 408 or not) before ``until``."""
    sock.settimeout(max(until - time.monotonic(), 0.01))
    try:
        while sock.recv(4096):
            pass
    except (TimeoutError, ConnectionResetError) as error:
        return isinstance(error, ConnectionResetError)
    return True


def hook(http: httpx.Client, lead_id: int) -> tuple[int, float]:
    body = urlencode({"leads[update][0][id]": str(lead_id), "account[subdomain]": "example"})
    started = time.monotonic()
    answer = http.post(f"/amocrm/webhook/{SECRET}", content=body, headers=FORM)
    return answer.status_code, time.monotonic() - started


def test_stalled_heads_beyond_the_open_file_limit_starve_neither_the_cycle_nor_a_good_hook(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    leads = account.add_leads(3)
    port = free_port()
    env = account.env(
        tmp_path / "state",
        SLA_LOG_FORMAT="json",
        SLA_HTTP_LISTEN=f"127.0.0.1:{port}",
        SLA_WEBHOOK_SECRET=SECRET,
    )
    worker = WorkerProcess(
        [str(NOFILE), "worker", "run"], env, cwd=tmp_path, module="tests.nofile_limited"
    )
    pid = worker.process.pid
    connections: list[socket.socket] = []
    try:
        started = worker.wait_for_event("worker_started")
        served = worker.wait_for_event("http_server_started")
        worker.wait_for_event("cycle_done")
        baseline = descriptors(pid)
        flood_from = time.time()
        answers, peak = [], baseline
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for wave in range(2):
                connections += stalled(port, STALLED)
                peak = max(peak, descriptors(pid))
                answers.append(hook(http, leads[wave]))
                # The cycle the hook asked for runs with the flood on (the poll is 300 s away).
                worker.wait_for_event("cycle_done")
                peak = max(peak, descriptors(pid))
        # The server closes every stalled connection itself: at the cap, or at the deadline.
        until = time.monotonic() + HEAD_TIMEOUT_S + 2
        closed = sum(closed_by_server(sock, until) for sock in connections)
        for sock in connections:
            sock.close()
        connections = []
        flood_to = time.time()
        deadline = time.monotonic() + 5
        while descriptors(pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        after = descriptors(pid)
    finally:
        for sock in connections:
            sock.close()
        worker.process.send_signal(signal.SIGTERM)
        finished = worker.finish()

    entries = finished.entries()
    during = [
        entry
        for entry in entries
        if flood_from <= datetime.fromisoformat(entry["timestamp"]).timestamp() <= flood_to
    ]
    print(
        f"\nopen files {started['open_files']}, cap {served['max_connections']}; descriptors: "
        f"baseline {baseline}, peak {peak}, after {after}; hooks answered in "
        f"{', '.join(f'{took:.3f} s' for _, took in answers)}; stalled closed by the server "
        f"{closed}/{2 * STALLED}; log lines during the flood {len(during)}: "
        f"{sorted({entry['event'] for entry in during})}"
    )
    assert started["open_files"] == NOFILE
    assert [status for status, _ in answers] == [200, 200]
    assert all(took < 2.0 for _, took in answers), answers
    assert closed == 2 * STALLED
    # Never more connections than the cap, and the reserve (less the few descriptors the first
    # cycle opened after the cap was set) stayed free for the cycle.
    assert peak <= baseline + served["max_connections"], (peak, baseline)
    assert NOFILE - peak >= RESERVED_FILES - 8, (peak, baseline)
    assert after <= baseline, (after, baseline)
    assert finished.code == 0
    assert finished.events("cycle_failed") == []
    assert len(finished.events("cycle_done")) >= 3
    assert len(during) < 100, [entry["event"] for entry in during]
    assert "out of system resource" not in finished.stderr
    assert "Too many open files" not in finished.stderr
