"""``python -m worker health`` on the heartbeat a real ``python -m worker run`` leaves behind."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.live_account import LoopbackAccount, WorkerProcess, loopback_account, run_worker


@pytest.fixture
def account() -> Iterator[LoopbackAccount]:
    with loopback_account() as account:
        account.provision()
        account.add_leads(3)
        yield account


def heartbeat_age(state: Path) -> float:
    finished_at = json.loads((state / "last_cycle.json").read_text())["finished_at"]
    return (datetime.now(UTC) - datetime.fromisoformat(finished_at)).total_seconds()


def test_health_passes_after_a_good_cycle_and_fails_once_it_is_stale(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    worker = WorkerProcess(["run"], account.env(state), cwd=tmp_path)
    worker.wait_for_event("cycle_done")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.finish().code == 0

    healthy = run_worker(["health"], account.env(state), cwd=tmp_path)
    assert healthy.code == 0
    assert healthy.stdout.startswith("ok: last successful cycle finished at ")
    # The default limit is three poll intervals; with a one-second limit the same heartbeat
    # turns stale as soon as it is more than a second old.
    time.sleep(max(0.0, 1.5 - heartbeat_age(state)))
    stale = run_worker(["health"], account.env(state, SLA_HEALTH_MAX_AGE="1"), cwd=tmp_path)
    assert stale.code == 1
    assert stale.stdout.startswith("unhealthy: last successful cycle finished at ")
    assert "(limit 1 s)" in stale.stdout


def test_health_fails_without_a_heartbeat(account: LoopbackAccount, tmp_path: Path) -> None:
    missing = run_worker(["health"], account.env(tmp_path / "never-ran"), cwd=tmp_path)
    assert missing.code == 1
    assert missing.stdout.startswith("unhealthy: no heartbeat at ")


def test_a_worker_whose_cycles_fail_leaves_no_heartbeat(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    account.fake.revoke_tokens()
    stopped = run_worker(["run"], account.env(state), cwd=tmp_path)
    assert stopped.code == 2
    (failed,) = stopped.events("cycle_failed")
    assert failed["fatal"] is True

    unhealthy = run_worker(["health"], account.env(state), cwd=tmp_path)
    assert unhealthy.code == 1
    assert unhealthy.stdout.startswith("unhealthy: no heartbeat at ")


def test_once_leaves_a_heartbeat_but_a_dry_run_does_not(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    dry_state, state = tmp_path / "dry", tmp_path / "state"
    assert run_worker(["once", "--dry-run"], account.env(dry_state), cwd=tmp_path).code == 0
    assert run_worker(["health"], account.env(dry_state), cwd=tmp_path).code == 1

    assert run_worker(["once"], account.env(state), cwd=tmp_path).code == 0
    assert run_worker(["health"], account.env(state), cwd=tmp_path).code == 0
    assert heartbeat_age(state) < 30
