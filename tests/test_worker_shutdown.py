"""SIGTERM to a real ``python -m worker run`` in the middle of its write batches.

The worker talks to the fake amoCRM over loopback HTTP; the fake answers each batch write
(PATCH /api/v4/leads, 50 leads) after a second, so the signal lands while one is in flight.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.live_account import LoopbackAccount, WorkerProcess
from worker.writes import WRITE_BATCH

LEADS = 4 * WRITE_BATCH


def test_sigterm_mid_batch_finishes_the_batch_writes_no_other_and_exits_0(
    slow_account: LoopbackAccount, tmp_path: Path
) -> None:
    leads = slow_account.add_leads(LEADS)
    worker = WorkerProcess(
        ["run"], slow_account.env(tmp_path / "state", SLA_LOG_FORMAT="json"), cwd=tmp_path
    )
    slow_account.fake.wait_for_write()
    worker.process.send_signal(signal.SIGTERM)
    finished = worker.finish()

    assert finished.code == 0
    entries = finished.entries()
    names = [entry["event"] for entry in entries]
    assert names[-1] == "shutdown_complete"
    assert entries[-1]["reason"] == "SIGTERM"
    assert entries[-1]["exit_code"] == 0
    # The batch in flight was answered and taken in, and then no further batch went out.
    (batch,) = slow_account.lead_write_batches()
    assert len(batch) == WRITE_BATCH
    assert set(batch) <= set(leads)
    assert slow_account.leads_with_sla_fields() == set(batch)
    assert {entry["lead_id"] for entry in finished.events("lead_written")} == set(batch)
    assert names.index("shutdown_requested") < names.index("lead_written")
    (done,) = finished.events("cycle_done")
    assert done["leads_written"] == WRITE_BATCH
    assert done["stopped_early"] is True
    assert done["tasks_created"] == 0
    assert slow_account.fake.tasks == []
