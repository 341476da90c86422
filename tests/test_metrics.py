"""The worker's metrics: a registry of their own, fed by the amoCRM client's callbacks and
the service's cycle reports."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amo_client.fake import FakeAmoCRM
from tests.client_kit import FakeClock, long_lived_client, make_fake
from tests.cycle_kit import build_world, make_cycle
from tests.oracle import engine_state
from worker.metrics import Metrics
from worker.service import SyncService


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.webhook_received()
    assert first.value("amo_sla_webhooks_received_total") == 1
    assert second.value("amo_sla_webhooks_received_total") == 0


def test_api_requests_429s_and_retries_are_counted_through_the_client() -> None:
    clock = FakeClock()
    fake: FakeAmoCRM = make_fake(clock)
    fake.add_pipeline("Техподдержка", ["Новое"])
    metrics = Metrics()
    fake.fail_next(1, status=429)
    fake.fail_next(1, status=503)
    with long_lived_client(
        fake, clock, on_request=metrics.api_request, on_retry=metrics.api_retry
    ) as client:
        client.pipelines()
    fake.disconnect_next(1)
    with long_lived_client(
        fake, clock, on_request=metrics.api_request, on_retry=metrics.api_retry
    ) as client:
        client.pipelines()

    assert metrics.value("amo_sla_api_requests_total", {"method": "GET", "status": "429"}) == 1
    assert metrics.value("amo_sla_api_requests_total", {"method": "GET", "status": "503"}) == 1
    assert metrics.value("amo_sla_api_requests_total", {"method": "GET", "status": "200"}) == 2
    assert metrics.value("amo_sla_api_requests_total", {"method": "GET", "status": "error"}) == 1
    assert metrics.value("amo_sla_api_rate_limited_total") == 1
    assert metrics.value("amo_sla_api_retries_total", {"reason": "rate_limited"}) == 1
    assert metrics.value("amo_sla_api_retries_total", {"reason": "server_error"}) == 1
    assert metrics.value("amo_sla_api_retries_total", {"reason": "transport"}) == 1


def test_cycles_leads_breaches_and_tasks() -> None:
    metrics = Metrics()
    common: dict[str, Any] = {"duration_s": 0.5, "leads_written": 2, "tasks_created": 1}
    metrics.cycle_done(
        finished_at=1000.0,
        skipped=False,
        stopped=False,
        tracked=3,
        breached={"reaction": {1}, "resolution": set()},
        **common,
    )
    metrics.cycle_done(
        finished_at=1300.0,
        skipped=False,
        stopped=False,
        tracked=2,
        breached={"reaction": {1, 2}, "resolution": {2}, "next_response": {2}},
        **common,
    )
    metrics.cycle_done(
        finished_at=1400.0, skipped=True, stopped=False, tracked=None, breached=None, **common
    )
    metrics.cycle_done(
        finished_at=1500.0, skipped=False, stopped=True, tracked=None, breached=None, **common
    )
    metrics.cycle_failed()

    assert metrics.value("amo_sla_cycles_total", {"outcome": "ok"}) == 2
    assert metrics.value("amo_sla_cycles_total", {"outcome": "skipped"}) == 1
    assert metrics.value("amo_sla_cycles_total", {"outcome": "stopped"}) == 1
    assert metrics.value("amo_sla_cycles_total", {"outcome": "failed"}) == 1
    assert metrics.value("amo_sla_cycle_duration_seconds_count") == 3
    assert metrics.value("amo_sla_last_good_cycle_timestamp_seconds") == 1300.0
    assert metrics.value("amo_sla_leads_tracked") == 2
    assert metrics.value("amo_sla_leads_breached", {"deadline": "reaction"}) == 2
    assert metrics.value("amo_sla_breaches_flagged_total", {"deadline": "reaction"}) == 2
    assert metrics.value("amo_sla_breaches_flagged_total", {"deadline": "resolution"}) == 1
    assert metrics.value("amo_sla_leads_breached", {"deadline": "next_response"}) == 1
    assert metrics.value("amo_sla_tasks_created_total") == 3
    assert metrics.value("amo_sla_leads_written_total") == 6


def test_the_exposition_names_every_metric() -> None:
    text = Metrics().exposition().decode()
    for name in (
        "amo_sla_cycles_total",
        "amo_sla_cycle_duration_seconds_bucket",
        "amo_sla_last_good_cycle_timestamp_seconds",
        "amo_sla_leads_tracked",
        "amo_sla_leads_breached",
        "amo_sla_breaches_flagged_total",
        "amo_sla_api_rate_limited_total",
        "amo_sla_tasks_created_total",
        "amo_sla_webhooks_received_total",
    ):
        assert name in text, name


def test_a_real_cycle_run_by_the_service_sets_the_breach_gauges(tmp_path: Path) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    metrics = Metrics()
    service = SyncService(cycle, poll_interval=600, state_dir=tmp_path, observer=metrics)
    thread = threading.Thread(target=lambda: service.run(install_signal_handlers=False))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while metrics.value("amo_sla_cycles_total", {"outcome": "ok"}) < 1:
            assert time.monotonic() < deadline, "no cycle finished"
            time.sleep(0.02)
    finally:
        service.request_shutdown()
        thread.join(10)
    now = datetime.now(UTC)
    states = {
        i: engine_state(world, i, now)
        for i in world.fake.leads
        if cycle.tracked_lead(i) is not None
    }

    assert metrics.value("amo_sla_leads_tracked") == len(states)
    for deadline_name in ("reaction", "resolution"):
        breached = {i for i, s in states.items() if getattr(s, deadline_name).breached}
        assert breached
        assert metrics.value("amo_sla_leads_breached", {"deadline": deadline_name}) == len(breached)
