"""SIGTERM/SIGINT against a real worker process: the batch in flight completes, exit code 0."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``python -m tests.sleepy_service``, its JSON log lines read as they come."""

    def __init__(self, state_dir: Path, batch_seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sleepy_service", str(state_dir), str(batch_seconds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stderr,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        while True:
            line = self._queue.get(timeout=timeout)
            assert line is not None, f"the worker ended before logging {name}: {self.lines}"
            self.lines.append(line)
            entry: dict[str, Any] = json.loads(line)
            if entry["event"] == name:
                return entry

    def finish(self, timeout: float = 20.0) -> tuple[int, list[dict[str, Any]], str]:
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        entries = [json.loads(line) for line in self.lines if line.strip()]
        return self.process.returncode, entries, stdout


def test_sigterm_mid_batch_lets_the_batch_finish_and_exits_0(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path, batch_seconds=1.5)
    worker.wait_for_event("batch_started")
    worker.process.send_signal(signal.SIGTERM)
    code, entries, stdout = worker.finish()

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
    worker = WorkerProcess(tmp_path, batch_seconds=0.05)
    worker.wait_for_event("cycle_done")
    worker.process.send_signal(signal.SIGINT)
    code, entries, _ = worker.finish(timeout=10)

    assert code == 0
    names = [entry["event"] for entry in entries]
    assert names[-3:] == ["shutdown_requested", "stop_requested_of_cycle", "shutdown_complete"]
    assert names.count("cycle_done") == 1
    assert entries[-1]["reason"] == "SIGINT"
    assert all({"timestamp", "level", "logger", "event"} <= entry.keys() for entry in entries)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_ends_the_process_at_once(tmp_path: Path, signum: signal.Signals) -> None:
    worker = WorkerProcess(tmp_path, batch_seconds=5)
    worker.wait_for_event("batch_started")
    worker.process.send_signal(signum)
    worker.wait_for_event("shutdown_requested")
    worker.process.send_signal(signum)
    code, entries, _ = worker.finish(timeout=4)

    assert code == -signum
    assert "batch_finished" not in [entry["event"] for entry in entries]
