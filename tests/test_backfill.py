"""``backfill``: the final SLA fields of requests closed since a date, written once.

Expected values are the engine's state for each lead and its whole history as the fake
holds them, read back by field name (tests/cycle_kit.py), not the backfill's own plan."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

import worker.backfill as backfill_module
from amo_client.fake import LoggedRequest
from amo_client.models import Lead
from sla.state import SlaState
from tests.cycle_kit import MOSCOW, plant_raw_value
from tests.oracle import engine_state, expected_fields, stored_fields
from tests.report_kit import account_setup as report_setup
from tests.report_kit import build_report_world
from worker.backfill import backfill
from worker.sla_report.collect import compute_state

SINCE = datetime(2025, 10, 1, tzinfo=MOSCOW)


def lead_writes(log: Sequence[LoggedRequest]) -> int:
    return sum(1 for r in log if r.method == "PATCH" and r.path == "/api/v4/leads")


def test_backfill_writes_the_closed_requests_once() -> None:
    scenario = build_report_world()
    world = scenario.world
    leads = scenario.leads
    # A stale value left on a closed card: the backfill corrects it.
    plant_raw_value(world, leads["r1"], "SLA: реакция просрочена", [{"value": True}])
    setup = report_setup(world, packages=False)
    now = world.now()

    dry = backfill(world.client, setup, world.policy, since=SINCE, now=now, dry_run=True)
    closed = {leads[name] for name in ("r1", "r2", "r3", "r5", "r8")}
    assert {w.lead_id for w in dry.planned} == closed
    assert dry.closed == len(closed)
    assert lead_writes(world.fake.request_log) == 0

    first = backfill(world.client, setup, world.policy, since=SINCE, now=now)
    assert first.written == len(closed)
    assert first.failed == {}
    assert lead_writes(world.fake.request_log) == 1  # five leads, one batch
    for lead_id in closed:
        assert stored_fields(world, lead_id) == expected_fields(
            engine_state(world, lead_id, now)
        ), lead_id
    assert stored_fields(world, leads["r1"])["SLA: статус"] == "Выполнено в срок"
    for name in ("r4", "r6", "r7"):  # open: the cycle's business, not the backfill's
        assert stored_fields(world, leads[name])["SLA: статус"] is None

    logged = len(world.fake.request_log)
    second = backfill(world.client, setup, world.policy, since=SINCE, now=world.now())
    assert second.closed == len(closed)
    assert second.planned == []
    assert second.written == 0
    assert lead_writes(world.fake.request_log[logged:]) == 0


def test_backfill_since_a_later_date_leaves_earlier_closures_alone() -> None:
    scenario = build_report_world()
    world = scenario.world
    setup = report_setup(world, packages=False)
    later = datetime(2025, 10, 9, tzinfo=MOSCOW)  # r3 closed on 9.10 10:00, r5 10.10, r8 14.10
    result = backfill(world.client, setup, world.policy, since=later, now=world.now())
    assert {w.lead_id for w in result.planned} == {scenario.leads[n] for n in ("r3", "r5", "r8")}
    assert stored_fields(world, scenario.leads["r1"])["SLA: статус"] is None


def test_a_lead_that_fails_to_compute_is_skipped_by_id_and_the_rest_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = build_report_world()
    world = scenario.world
    leads = scenario.leads
    compute = compute_state

    def failing_for_r5(lead: Lead, *args: Any, **kwargs: Any) -> SlaState:
        if lead.id == leads["r5"]:
            raise RuntimeError("an error no one foresaw")
        return compute(lead, *args, **kwargs)

    monkeypatch.setattr(backfill_module, "compute_state", failing_for_r5)
    setup = report_setup(world, packages=False)

    result = backfill(world.client, setup, world.policy, since=SINCE, now=world.now())

    assert result.skipped == {leads["r5"]: "RuntimeError: an error no one foresaw"}
    assert {w.lead_id for w in result.planned} == {leads[n] for n in ("r1", "r2", "r3", "r8")}
    assert result.written == 4
