"""Webhook triggers into the scheduled service: the same job moved forward, debounced,
rate-capped, never beside a running cycle; and the HTTP companion's place in start and stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tests.test_service import FakeCycle, Running, wait_until
from worker.metrics import Metrics
from worker.service import SyncService


def start(
    cycle: FakeCycle,
    state_dir: Path,
    *,
    debounce: float = 0.5,
    min_interval: float = 1.0,
    observer: Metrics | None = None,
    companions: Sequence[Companion] = (),
) -> Running:
    service = SyncService(
        cycle,
        poll_interval=600,
        state_dir=state_dir,
        debounce=debounce,
        min_interval=min_interval,
        observer=observer,
        companions=companions,
    )
    exit_code: list[int] = []
    thread = threading.Thread(
        target=lambda: exit_code.append(service.run(install_signal_handlers=False)), daemon=True
    )
    began = time.monotonic()
    thread.start()
    return Running(service, thread, began, exit_code)


def test_a_burst_of_triggers_gives_one_cycle_within_2_s_of_the_first(tmp_path: Path) -> None:
    cycle = FakeCycle()
    metrics = Metrics()
    running = start(cycle, tmp_path, debounce=1.0, min_interval=1.0, observer=metrics)
    wait_until(lambda: cycle.runs == 1)
    time.sleep(1.1)  # past the rate cap of the first cycle

    first = time.monotonic()
    moved = [running.service.trigger() for _ in range(500)]
    wait_until(lambda: cycle.runs == 2, timeout=5)
    time.sleep(1.5)

    assert moved.count(True) == 1
    assert cycle.runs == 2
    assert 0.9 <= cycle.started[1] - first < 2.0
    assert metrics.value("amo_sla_webhook_cycles_total") == 1
    assert metrics.value("amo_sla_cycles_total", {"outcome": "ok"}) == 2
    assert running.stop() == 0


def test_with_the_default_settings_a_hook_right_after_a_cycle_gets_its_own_within_2_s(
    tmp_path: Path,
) -> None:
    cycle = FakeCycle()
    service = SyncService(cycle, poll_interval=600, state_dir=tmp_path)  # default debounce, cap
    exit_code: list[int] = []
    thread = threading.Thread(
        target=lambda: exit_code.append(service.run(install_signal_handlers=False)), daemon=True
    )
    running = Running(service, thread, time.monotonic(), exit_code)
    thread.start()
    wait_until(lambda: cycle.runs == 1)

    first = time.monotonic()  # the scheduled cycle has just started and returned
    service.trigger()
    wait_until(lambda: cycle.runs == 2, timeout=5)

    assert cycle.started[1] - first < 2.0
    assert running.stop() == 0


def test_triggers_during_a_cycle_give_one_more_run_after_it(tmp_path: Path) -> None:
    cycle = FakeCycle(duration=1.0)
    running = start(cycle, tmp_path, debounce=0.2, min_interval=0.5)
    wait_until(lambda: cycle.runs == 1)  # the first cycle is running now
    for _ in range(100):
        running.service.trigger()
    wait_until(lambda: cycle.runs == 2, timeout=5)
    time.sleep(1.5)

    assert cycle.runs == 2
    assert cycle.max_active == 1
    assert cycle.started[1] - cycle.started[0] >= 1.0  # after the first one returned
    assert running.stop() == 0


def test_triggers_are_rate_capped(tmp_path: Path) -> None:
    cycle = FakeCycle()
    running = start(cycle, tmp_path, debounce=0.0, min_interval=1.0)
    wait_until(lambda: cycle.runs == 1)
    deadline = time.monotonic() + 3.2
    while time.monotonic() < deadline:
        running.service.trigger()
        time.sleep(0.005)
    assert running.stop() == 0

    gaps = [b - a for a, b in zip(cycle.started, cycle.started[1:], strict=False)]
    assert 2 <= cycle.runs <= 5
    assert all(gap >= 0.95 for gap in gaps), gaps


def test_a_trigger_after_shutdown_does_nothing(tmp_path: Path) -> None:
    cycle = FakeCycle()
    running = start(cycle, tmp_path)
    wait_until(lambda: cycle.runs == 1)
    assert running.stop() == 0
    assert running.service.trigger() is False
    assert cycle.runs == 1


class Companion:
    def __init__(self, cycle: FakeCycle, fail: bool = False) -> None:
        self.cycle = cycle
        self.fail = fail
        self.log: list[str] = []

    def start(self) -> None:
        self.log.append(f"start after {self.cycle.runs} runs")
        if self.fail:
            raise OSError("address already in use")

    def stop(self) -> None:
        self.log.append(f"stop, cycle stopped: {self.cycle.stop_requested.is_set()}")


def test_a_companion_starts_before_the_first_cycle_and_stops_after_the_last(
    tmp_path: Path,
) -> None:
    cycle = FakeCycle(duration=0.5)
    companion = Companion(cycle)
    running = start(cycle, tmp_path, companions=[companion])
    wait_until(lambda: cycle.runs == 1)
    assert running.stop() == 0
    assert companion.log == ["start after 0 runs", "stop, cycle stopped: True"]


def test_a_companion_that_cannot_start_stops_the_worker_with_2(tmp_path: Path) -> None:
    cycle = FakeCycle()
    service = SyncService(cycle, poll_interval=600, state_dir=tmp_path)
    service.add_companion(Companion(cycle, fail=True))
    assert service.run(install_signal_handlers=False) == 2
    assert cycle.runs == 0
