"""The scheduled service around a test double of the sync cycle, with short real intervals."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amo_client.errors import (
    AuthorizationRequired,
    PaymentRequired,
    ServerError,
    UnexpectedAnswer,
    ValidationFailed,
)
from tests.sleepy_service import FakeReport
from worker.errors import FatalError, is_fatal
from worker.health import health_main
from worker.service import EXIT_FATAL, SyncService, report_summary
from worker.setup import SetupError
from worker.store import StateVersionError


class AdminNeeded(FatalError):
    pass


@dataclass
class FakeCycle:
    """Records every run; ``next_change_in[i]`` seconds after run i's ``now`` is its next change."""

    duration: float = 0.0
    next_change_in: list[float | None] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)  # runs that find the state directory locked
    nows: list[datetime] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # time.monotonic() at each run's start
    max_active: int = 0
    stop_requested: threading.Event = field(default_factory=threading.Event)
    _active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, now: datetime) -> FakeReport:
        with self._lock:
            index = len(self.started)
            self.started.append(time.monotonic())
            self.nows.append(now)
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            if index in self.errors:
                raise self.errors[index]
            time.sleep(self.duration)
            offset = self.next_change_in[index] if index < len(self.next_change_in) else None
            return FakeReport(
                started_at=now,
                finished_at=datetime.now(UTC),
                full_sync=index == 0,
                leads_read=5,
                leads_computed=5,
                leads_written=2,
                tasks_created=1,
                requests=3,
                next_change_at=None if offset is None else now + timedelta(seconds=offset),
                skipped=index in self.skipped,
            )
        finally:
            with self._lock:
                self._active -= 1

    def request_stop(self) -> None:
        self.stop_requested.set()

    @property
    def runs(self) -> int:
        return len(self.started)


@dataclass
class Running:
    service: SyncService
    thread: threading.Thread
    began: float
    exit_code: list[int]

    def stop(self) -> int:
        self.service.request_shutdown()
        return self.join()

    def join(self, timeout: float = 10.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not stop"
        return self.exit_code[0]


Logs = list[MutableMapping[str, Any]]


def start(cycle: FakeCycle, state_dir: Path, poll: float, margin: float = 0.2) -> Running:
    service = SyncService(cycle, poll_interval=poll, state_dir=state_dir, wakeup_margin=margin)
    exit_code: list[int] = []
    thread = threading.Thread(
        target=lambda: exit_code.append(service.run(install_signal_handlers=False)), daemon=True
    )
    began = time.monotonic()
    thread.start()
    return Running(service, thread, began, exit_code)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def events(logs: Logs, name: str) -> Logs:
    return [entry for entry in logs if entry["event"] == name]


def test_first_run_starts_at_once_and_leaves_a_heartbeat(tmp_path: Path, logs: Logs) -> None:
    cycle = FakeCycle()
    running = start(cycle, tmp_path, poll=60)
    wait_until(lambda: bool(events(logs, "cycle_done")))
    assert cycle.started[0] - running.began < 1.0
    assert running.stop() == 0

    assert cycle.runs == 1
    assert cycle.stop_requested.is_set()
    done = events(logs, "cycle_done")[0]
    assert (done["leads_read"], done["leads_written"], done["tasks_created"]) == (5, 2, 1)
    assert done["requests"] == 3
    assert done["full_sync"] is True
    assert isinstance(done["duration_s"], float)
    heartbeat = json.loads((tmp_path / "last_cycle.json").read_text())
    assert heartbeat["report"]["leads_written"] == 2
    assert datetime.fromisoformat(heartbeat["finished_at"]) >= cycle.nows[0]
    assert health_main(tmp_path, 60) == 0
    names = [entry["event"] for entry in logs]
    assert names[0] == "worker_started"
    assert names[-2:] == ["shutdown_requested", "shutdown_complete"]
    assert logs[-1]["exit_code"] == 0


def test_runs_never_overlap_and_an_overrun_is_caught_up_at_once(tmp_path: Path, logs: Logs) -> None:
    # Each run takes 1.3 s against a 1 s poll: the 1 s instant is missed while the first run
    # is busy, and the next run starts when it returns (not at the 2 s poll).
    cycle = FakeCycle(duration=1.3)
    running = start(cycle, tmp_path, poll=1.0)
    wait_until(lambda: cycle.runs >= 3, timeout=15)
    assert running.stop() == 0

    assert cycle.max_active == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(cycle.started)]
    assert all(1.3 <= gap < 1.8 for gap in gaps[:2]), gaps
    assert events(logs, "cycle_overran")


def test_wakeup_moves_the_next_run_to_the_next_change(tmp_path: Path, logs: Logs) -> None:
    cycle = FakeCycle(next_change_in=[0.5, None])
    running = start(cycle, tmp_path, poll=30, margin=0.2)
    wait_until(lambda: cycle.runs >= 2, timeout=5)
    time.sleep(0.3)  # room for a wrong third run
    assert running.stop() == 0

    assert cycle.runs == 2
    wake_at = cycle.nows[0] + timedelta(seconds=0.5 + 0.2)
    assert wake_at <= cycle.nows[1] < wake_at + timedelta(seconds=1)
    (wakeup,) = events(logs, "wakeup_scheduled")
    assert datetime.fromisoformat(wakeup["at"]) == wake_at
    assert datetime.fromisoformat(wakeup["next_change_at"]) == cycle.nows[0] + timedelta(
        seconds=0.5
    )


@pytest.mark.parametrize(
    "next_change_in",
    [pytest.param(60.0, id="later-than-the-next-poll"), pytest.param(-1.0, id="in-the-past")],
)
def test_a_change_that_is_not_sooner_than_the_poll_keeps_the_poll(
    tmp_path: Path, logs: Logs, next_change_in: float
) -> None:
    cycle = FakeCycle(next_change_in=[next_change_in, None])
    running = start(cycle, tmp_path, poll=1.0)
    wait_until(lambda: cycle.runs >= 2, timeout=5)
    assert running.stop() == 0

    assert 0.9 <= cycle.started[1] - cycle.started[0] < 1.6
    assert not events(logs, "wakeup_scheduled")


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(AdminNeeded("refresh token revoked: run python -m worker auth"), id="own"),
        pytest.param(SetupError(["SLA_PIPELINE: no pipeline 'x'"]), id="setup"),
    ],
)
def test_a_fatal_error_stops_the_service_with_code_2(
    tmp_path: Path, logs: Logs, error: Exception
) -> None:
    cycle = FakeCycle(errors={0: error})
    running = start(cycle, tmp_path, poll=0.2)

    assert running.join() == EXIT_FATAL
    assert cycle.runs == 1
    (failed,) = events(logs, "cycle_failed")
    assert failed["fatal"] is True
    assert failed["error"] == str(error)
    assert failed["log_level"] == "error"
    assert logs[-1]["event"] == "shutdown_complete"
    assert logs[-1]["exit_code"] == EXIT_FATAL
    assert not (tmp_path / "last_cycle.json").exists()
    assert health_main(tmp_path, 60) == 1


def test_a_failing_cycle_is_logged_and_retried_at_the_next_poll(tmp_path: Path, logs: Logs) -> None:
    cycle = FakeCycle(errors={0: ConnectionError("amoCRM is down")})
    running = start(cycle, tmp_path, poll=0.3)
    wait_until(lambda: bool(events(logs, "cycle_done")))
    assert running.stop() == 0

    (failed,) = events(logs, "cycle_failed")
    assert failed["fatal"] is False
    assert failed["error_type"] == "ConnectionError"
    assert failed["error"] == "amoCRM is down"
    assert 0.25 <= cycle.started[1] - cycle.started[0] < 1.0
    assert (tmp_path / "last_cycle.json").exists()


def test_a_heartbeat_that_cannot_be_written_does_not_stop_the_service(
    tmp_path: Path, logs: Logs
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cycle = FakeCycle()
    running = start(cycle, blocker, poll=60)
    wait_until(lambda: bool(events(logs, "cycle_done")))
    assert running.stop() == 0
    assert events(logs, "heartbeat_failed")


def test_no_cycle_starts_after_shutdown_was_requested(tmp_path: Path) -> None:
    cycle = FakeCycle(duration=0.5)
    running = start(cycle, tmp_path, poll=0.1)
    wait_until(lambda: cycle.runs == 1)
    running.service.request_shutdown()
    assert running.join() == 0
    assert cycle.runs == 1
    assert cycle.stop_requested.is_set()


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (AdminNeeded(), True),
        (SetupError(["a stage is gone"]), True),
        (StateVersionError("newer state file"), True),
        (AuthorizationRequired("authorise again"), True),
        (PaymentRequired(402, "GET", "/api/v4/leads", "Payment Required"), True),
        (RuntimeError("x"), False),
        (ValueError("a bad value"), False),
        (ServerError(503, "GET", "/api/v4/leads", "unavailable"), False),
        (ValidationFailed("PATCH", "/api/v4/leads", []), False),
        (UnexpectedAnswer(200, "GET", "/api/v4/leads", "no _embedded"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_the_error_policy_names_what_stops_the_worker(error: Exception, fatal: bool) -> None:
    assert is_fatal(error) is fatal


def test_a_fatal_error_is_known_by_its_class_not_by_an_attribute() -> None:
    class Truthy(Exception):
        fatal = True

    wrapped = RuntimeError("outer")
    wrapped.__cause__ = AdminNeeded()
    assert not is_fatal(Truthy())
    assert not is_fatal(wrapped)


def test_a_cycle_skipped_on_the_lock_leaves_no_heartbeat(tmp_path: Path, logs: Logs) -> None:
    cycle = FakeCycle(skipped={0})
    running = start(cycle, tmp_path, poll=60)
    wait_until(lambda: bool(events(logs, "cycle_done")))
    assert running.stop() == 0
    assert not (tmp_path / "last_cycle.json").exists()
    assert health_main(tmp_path, 60) == 1


def test_report_summary_prefers_the_reports_own_summary() -> None:
    now = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)

    @dataclass(frozen=True)
    class WithSummary(FakeReport):
        def summary(self) -> dict[str, object]:
            return {"leads_read": 7, "at": now}

    assert report_summary(WithSummary(started_at=now, finished_at=now)) == {
        "leads_read": 7,
        "at": now.isoformat(),
    }
    plain = report_summary(
        FakeReport(
            started_at=now,
            finished_at=now + timedelta(seconds=2.5),
            leads_read=4,
            next_change_at=now + timedelta(hours=1),
        )
    )
    assert plain["leads_read"] == 4
    assert plain["duration_s"] == 2.5
    assert plain["next_change_at"] == "2025-03-03T11:00:00+00:00"


def test_the_service_raises_its_open_file_limit_to_the_hard_one() -> None:
    """Run in a child whose soft limit is 256: the sockets and the state file share it."""
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "from worker.app import raise_open_file_limit\n"
        "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    now, hard = result.stdout.split()
    assert now == hard
