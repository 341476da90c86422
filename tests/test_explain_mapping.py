"""worker.mapping: amoCRM API v4 leads and events (as the fake renders them) -> sla inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from amo_client.fake import WON_STATUS_ID, FakeAmoCRM
from amo_client.models import Event, Lead
from sla.policy import default_policy
from sla.state import SlaStatus, StageRoles, compute_sla
from worker.mapping import lead_events, lead_facts

MSK = ZoneInfo("Europe/Moscow")
MONDAY = datetime(2025, 10, 13, 10, tzinfo=MSK)


def at(hours: float) -> float:
    return (MONDAY + timedelta(hours=hours)).timestamp()


@pytest.fixture
def fake() -> FakeAmoCRM:
    return FakeAmoCRM(clock=lambda: at(100))


def lead_with_field(field_type: str, values: list[dict[str, Any]]) -> Lead:
    return Lead.model_validate(
        {
            "id": 1,
            "status_id": 11,
            "pipeline_id": 7,
            "created_at": 1760338800,
            "updated_at": 1760338800,
            "custom_fields_values": [
                {"field_id": 55, "field_name": "SLA: срок по согласованию",
                 "field_type": field_type, "values": values},
                {"field_id": 66, "field_name": "Класс", "field_type": "select",
                 "values": [{"value": "Доработка", "enum_id": 3}]},
            ],
        }
    )  # fmt: skip


def test_a_fake_account_lead_and_its_history_map_and_compute(fake: FakeAmoCRM) -> None:
    support = fake.add_pipeline("Поддержка", ["Новое", "В работе", "Ждём клиента"])
    agent = fake.add_user("Агент")
    agreed_field = fake.add_custom_field("SLA: срок по согласованию", "date_time")
    lead_id = fake.add_lead(
        "Выгрузка из 1С",
        pipeline_id=support.id,
        status_id=support.status("Новое"),
        tags=[" приоритет", "Доработка"],
        custom_fields={agreed_field: int(at(28))},
        created_at=at(0),
    )
    fake.add_event(lead_id, "outgoing_chat_message", created_by=0, at=at(0.01))
    fake.add_event(lead_id, "outgoing_call", created_by=agent, at=at(0.5))
    fake.move_lead(lead_id, support.status("В работе"), by_user=agent, at=at(0.6))
    fake.move_lead(lead_id, WON_STATUS_ID, by_user=agent, at=at(24))

    raw_lead = fake.lead(lead_id)
    assert raw_lead is not None
    lead = Lead.model_validate(raw_lead)
    events = [Event.model_validate(item) for item in reversed(fake.lead_events(lead_id))]
    facts = lead_facts(lead, agreed_due_field_id=agreed_field, class_field_id=None)
    assert facts.tags == (" приоритет", "Доработка")
    assert facts.agreed_due == datetime.fromtimestamp(int(at(28)), UTC)
    assert facts.created_at == MONDAY
    assert facts.status_id == WON_STATUS_ID
    assert facts.problems == ()

    mapped = lead_events(events)
    assert [event.at for event in mapped] == sorted(event.at for event in mapped)
    moves = [event for event in mapped if event.type == "lead_status_changed"]
    assert moves[0].status_before == (support.id, support.status("Новое"))
    assert moves[0].status_after == (support.id, support.status("В работе"))
    assert moves[-1].status_after == (support.id, WON_STATUS_ID)

    roles = StageRoles(pipeline_id=support.id, first_status_id=support.status("Новое"))
    state = compute_sla(facts, mapped, default_policy(), roles, MONDAY + timedelta(days=2))
    assert state.tariff == "Приоритет"
    assert state.reaction.finished_at == MONDAY + timedelta(minutes=30)
    assert state.resolution.due == facts.agreed_due
    assert state.status is SlaStatus.MET


def test_events_of_other_entities_are_dropped() -> None:
    base = {"created_by": 0, "created_at": 1760338800, "value_after": [], "value_before": []}
    events = [
        Event.model_validate({**base, "id": "a", "type": "common_note_added", "entity_id": 1,
                              "entity_type": "contact"}),
        Event.model_validate({**base, "id": "b", "type": "common_note_added", "entity_id": 1,
                              "entity_type": "lead"}),
    ]  # fmt: skip
    assert [event.event_id for event in lead_events(events)] == ["b"]


def test_agreed_date_from_a_date_time_field() -> None:
    facts = lead_facts(
        lead_with_field("date_time", [{"value": 1760716800}]),
        agreed_due_field_id=55,
        class_field_id=66,
    )
    assert facts.agreed_due == datetime.fromtimestamp(1760716800, UTC)
    assert facts.class_value == "Доработка"


def test_a_date_only_field_allows_the_whole_day() -> None:
    midnight = int(datetime(2025, 10, 17, tzinfo=MSK).timestamp())
    facts = lead_facts(
        lead_with_field("date", [{"value": midnight}]), agreed_due_field_id=55, class_field_id=None
    )
    assert facts.agreed_due == datetime(2025, 10, 18, tzinfo=MSK)


def test_agreed_date_as_iso_text() -> None:
    facts = lead_facts(
        lead_with_field("date_time", [{"value": "2025-10-17T18:00:00+03:00"}]),
        agreed_due_field_id=55,
        class_field_id=None,
    )
    assert facts.agreed_due == datetime(2025, 10, 17, 18, tzinfo=MSK)


@pytest.mark.parametrize("value", ["завтра", True, "2025-10-17T18:00:00", {"a": 1}])
def test_an_unreadable_agreed_date_is_a_problem_not_a_crash(value: object) -> None:
    facts = lead_facts(
        lead_with_field("date_time", [{"value": value}]),
        agreed_due_field_id=55,
        class_field_id=None,
    )
    assert facts.agreed_due is None
    assert len(facts.problems) == 1
    assert "field 55 «SLA: срок по согласованию»" in facts.problems[0]


def test_missing_fields_give_nothing() -> None:
    facts = lead_facts(
        lead_with_field("date_time", []), agreed_due_field_id=999, class_field_id=998
    )
    assert facts.agreed_due is None
    assert facts.class_value is None
    assert facts.problems == ()
