"""Bad input in one lead costs that lead only: it is logged with its id and the rest is written."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from amo_client.fake.replies import ItemError, validation_failed
from tests.cycle_kit import build_world, make_cycle, plant_raw_value, sla_values_of
from tests.oracle import engine_state, expected_fields, stored_fields


def test_a_field_holding_the_wrong_type_skips_that_lead_and_logs_its_id(tmp_path: Path) -> None:
    world = build_world()
    broken = world.leads["priority_answered"]
    plant_raw_value(world, broken, "SLA: реакция до", [{"value": "завтра к обеду"}])
    now = world.now()

    with capture_logs() as logs:
        report = make_cycle(world, tmp_path).run(now)

    complaints = [e for e in logs if e.get("lead_id") == broken and e["log_level"] == "warning"]
    assert complaints
    assert "SLA: реакция до" in str(complaints[0]["problem"])
    assert "завтра к обеду" in str(complaints[0]["problem"])
    assert report.leads_failed == 1
    assert broken not in {write.lead_id for write in report.writes}
    assert [v["field_name"] for v in sla_values_of(world, broken)] == ["SLA: реакция до"]
    others = [i for i in world.leads.values() if i != broken]
    for lead_id in others:
        assert stored_fields(world, lead_id) == expected_fields(engine_state(world, lead_id, now))


def test_a_lead_rejected_in_a_write_batch_is_isolated_and_the_rest_is_written(
    tmp_path: Path,
) -> None:
    world = build_world()
    rejection = validation_failed(
        [("3", [ItemError("NotSupportedChoice", "custom_fields_values.0.field_id", "Nope")])]
    )
    world.fake.fail_next(
        status=400, body=json.loads(rejection.body), path="/api/v4/leads", method="PATCH"
    )
    now = world.now()

    with capture_logs() as logs:
        report = make_cycle(world, tmp_path).run(now)

    patches = [r for r in world.fake.request_log if r.method == "PATCH"]
    assert [r.status for r in patches] == [400, 200]
    rejected = patches[0].body[3]["id"]
    assert len(patches[1].body) == len(patches[0].body) - 1
    assert rejected not in {item["id"] for item in patches[1].body}

    logged = [e for e in logs if e["event"] == "lead_invalid"]
    assert [e["lead_id"] for e in logged] == [rejected]
    assert "Nope" in str(logged[0]["problem"])
    assert report.leads_failed == 1
    assert report.leads_written == len(world.leads) - 1
    assert sla_values_of(world, rejected) == []
    for lead_id in world.leads.values():
        if lead_id != rejected:
            assert stored_fields(world, lead_id) == expected_fields(
                engine_state(world, lead_id, now)
            )

    # amoCRM takes it next time: the rejected lead is not forgotten.
    later = world.advance(timedelta(minutes=1))
    make_cycle(world, tmp_path, client=world.new_client()).run(later)
    assert stored_fields(world, rejected) == expected_fields(engine_state(world, rejected, later))
