"""The worker's metrics: a registry of their own, fed by the amoCRM client's callbacks and
the service's cycle reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amo_client.fake import FakeAmoCRM
from tests.client_kit import FakeClock, long_lived_client, make_fake
from worker.metrics import Metrics


@dataclass(frozen=True)
class Deadline:
    breached: bool


@dataclass(frozen=True)
class State:
    reaction: Deadline
    resolution: Deadline


def state(reaction: bool = False, resolution: bool = False) -> State:
    return State(Deadline(reaction), Deadline(resolution))


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
        states={1: state(reaction=True), 2: state(), 3: state()},
        **common,
    )
    metrics.cycle_done(
        finished_at=1300.0,
        skipped=False,
        stopped=False,
        states={1: state(reaction=True), 2: state(reaction=True, resolution=True)},
        **common,
    )
    metrics.cycle_done(finished_at=1400.0, skipped=True, stopped=False, states=None, **common)
    metrics.cycle_done(finished_at=1500.0, skipped=False, stopped=True, states=None, **common)
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
