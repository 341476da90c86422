"""SIGTERM/SIGINT against a real worker process: the batch in flight completes, exit code 0."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.live_account import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


def sleepy_worker(state_dir: Path, batch_seconds: float) -> WorkerProcess:
    """``python -m tests.sleepy_service``: the real service around a slow stand-in cycle."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return WorkerProcess(
        [str(state_dir), str(batch_seconds)], env, ROOT, module="tests.sleepy_service"
    )


def finished(worker: WorkerProcess, timeout: float = 20.0) -> tuple[int, list[dict[str, Any]], str]:
    done = worker.finish(timeout)
    return done.code, done.entries(), done.stdout


def test_sigterm_mid_batch_lets_the_batch_finish_and_exits_0(tmp_path: Path) -> None:
    worker = sleepy_worker(tmp_path, batch_seconds=1.5)
    worker.wait_for_event("batch_started")
    worker.process.send_signal(signal.SIGTERM)
    code, entries, stdout = finished(worker)

    assert code == 0
    assert stdout == ""
    names = [entry["event"] for entry in entries]
    assert names.index("shutdown_requested") < names.index("batch_finished")
    assert names.count("batch_started") == names.count("batch_finished") == 1
    assert names.index("stop_requested_of_cycle") < names.index("cycle_done")
    assert names[-1] == "shutdown_complete"
    assert entries[-1]["exit_code"] == 0
    assert entries[-1]["reason"] == "SIGTERM"
    # The cycle returned normally (one batch written), so it left its heartbeat.
    heartbeat = json.loads((tmp_path / "last_cycle.json").read_text())
    assert heartbeat["report"]["leads_written"] == 10


def test_sigint_while_idle_exits_0_at_once(tmp_path: Path) -> None:
    worker = sleepy_worker(tmp_path, batch_seconds=0.05)
    worker.wait_for_event("cycle_done")
    worker.process.send_signal(signal.SIGINT)
    code, entries, _ = finished(worker, timeout=10)

    assert code == 0
    names = [entry["event"] for entry in entries]
    assert names[-3:] == ["shutdown_requested", "stop_requested_of_cycle", "shutdown_complete"]
    assert names.count("cycle_done") == 1
    assert entries[-1]["reason"] == "SIGINT"
    assert all({"timestamp", "level", "logger", "event"} <= entry.keys() for entry in entries)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_ends_the_process_at_once(tmp_path: Path, signum: signal.Signals) -> None:
    worker = sleepy_worker(tmp_path, batch_seconds=5)
    worker.wait_for_event("batch_started")
    worker.process.send_signal(signum)
    worker.wait_for_event("shutdown_requested")
    worker.process.send_signal(signum)
    code, entries, _ = finished(worker, timeout=4)

    assert code == -signum
    assert "batch_finished" not in [entry["event"] for entry in entries]
