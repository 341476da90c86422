"""SIGTERM to a real ``python -m worker run`` with webhooks and metrics on, mid write batch:
the batch finishes, then the HTTP server and the scheduler stop, and the process exits 0."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.live_account import LoopbackAccount, WorkerProcess
from worker.writes import WRITE_BATCH

SECRET = "shutdown-" + "abcdef0123456789" * 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sigterm_finishes_the_batch_then_stops_the_server_and_exits_0(
    slow_account: LoopbackAccount, tmp_path: Path
) -> None:
    leads = slow_account.add_leads(3 * WRITE_BATCH)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = slow_account.env(
        tmp_path / "state",
        SLA_LOG_FORMAT="json",
        SLA_HTTP_LISTEN=f"127.0.0.1:{port}",
        SLA_WEBHOOK_SECRET=SECRET,
        SLA_METRICS="true",
    )
    worker = WorkerProcess(["run"], env, cwd=tmp_path)
    slow_account.fake.wait_for_write()

    hook = urlencode({"leads[update][0][id]": str(leads[0]), "account[subdomain]": "example"})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=base, timeout=5) as http:
        health = http.get("/healthz")
        answered = http.post(f"/amocrm/webhook/{SECRET}", content=hook, headers=form)
        refused = http.post("/amocrm/webhook/wrong-secret-0123456789abcdef", content=hook)
        metrics = http.get("/metrics")
    worker.process.send_signal(signal.SIGTERM)
    finished = worker.finish()

    assert health.status_code == 200
    assert answered.status_code == 200
    assert refused.status_code == 404
    assert "amo_sla_api_requests_total" in metrics.text
    assert finished.code == 0
    names = [entry["event"] for entry in finished.entries()]
    assert names[-1] == "shutdown_complete"
    assert names.index("http_server_started") < names.index("shutdown_requested")
    # The batch in flight was taken in, then the server stopped, and nothing else was written.
    (batch,) = slow_account.lead_write_batches()
    assert len(batch) == WRITE_BATCH
    last_written = max(i for i, name in enumerate(names) if name == "lead_written")
    assert last_written < names.index("http_server_stopped")
    assert names.index("http_server_stopped") < names.index("shutdown_complete")
    (done,) = finished.events("cycle_done")
    assert done["stopped_early"] is True
    assert SECRET not in finished.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)
