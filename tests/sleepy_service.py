"""Test helper: the worker service around a cycle whose write batches take a while.

    python -m tests.sleepy_service STATE_DIR BATCH_SECONDS

Each cycle writes two batches; a stop request is honoured between batches, never inside one.
Every step is logged (JSON on standard error), so a test can send a signal mid-batch and
check from the log that the batch completed before the service shut down.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from worker.logs import configure_logging
from worker.service import run_service

log = structlog.stdlib.get_logger("tests.sleepy_service")

BATCHES_PER_CYCLE = 2


@dataclass(frozen=True)
class FakeReport:
    started_at: datetime
    finished_at: datetime
    full_sync: bool = False
    leads_read: int = 0
    leads_computed: int = 0
    leads_written: int = 0
    leads_failed: int = 0
    tasks_created: int = 0
    requests: int = 0
    next_change_at: datetime | None = None
    skipped: bool = False


class SleepyCycle:
    def __init__(self, batch_seconds: float) -> None:
        self._batch_seconds = batch_seconds
        self._stop = threading.Event()

    def request_stop(self) -> None:
        log.info("stop_requested_of_cycle")
        self._stop.set()

    def run(self, now: datetime) -> FakeReport:
        written = 0
        for batch in range(BATCHES_PER_CYCLE):
            if self._stop.is_set():
                break
            log.info("batch_started", batch=batch)
            time.sleep(self._batch_seconds)
            written += 10
            log.info("batch_finished", batch=batch)
        return FakeReport(
            started_at=now,
            finished_at=datetime.now(UTC),
            leads_read=written,
            leads_computed=written,
            leads_written=written,
            requests=written // 10,
        )


def main(argv: list[str]) -> int:
    state_dir, batch_seconds = Path(argv[0]), float(argv[1])
    configure_logging(format="json", level="INFO")
    return run_service(SleepyCycle(batch_seconds), poll_interval=60, state_dir=state_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
