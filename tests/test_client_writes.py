"""AmoClient writes: validation errors that name the bad item; field values in amoCRM's forms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.errors import ValidationFailed
from amo_client.fake import FakeAmoCRM, PipelineRef
from amo_client.models import EntityUpdate, NewCustomField, NewTask, SelectValue
from tests.client_kit import BASE_URL, FakeClock


def sent_bodies(fake: FakeAmoCRM, method: str, path: str) -> list[Any]:
    return [e.body for e in fake.request_log if e.method == method and e.path == path]


# ---------------------------------------------------------------- validation errors


def test_a_rejected_item_is_dropped_and_the_rest_written(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    first, bad, last = (fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(3))
    in_work = support.status("В работе")
    fake.reset_request_log()

    result = amo.update_leads(
        [
            EntityUpdate(first, status_id=in_work),
            EntityUpdate(bad, status_id=999),  # no such status in the pipeline
            EntityUpdate(last, status_id=in_work),
        ]
    )

    assert result.written == (first, last)
    assert set(result.failed) == {bad}
    assert "status_id" in result.failed[bad]
    assert "NotSupportedChoice" in result.failed[bad]
    for lead_id, status_id in [(first, in_work), (bad, support.first_status_id), (last, in_work)]:
        lead = fake.lead(lead_id)
        assert lead is not None
        assert lead["status_id"] == status_id
    bodies = sent_bodies(fake, "PATCH", "/api/v4/leads")
    assert [[item["id"] for item in body] for body in bodies] == [[first, bad, last], [first, last]]


def test_a_batch_of_only_bad_items_is_not_sent_again(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.reset_request_log()
    result = amo.update_leads([EntityUpdate(lead_id, values={123_456: "нет такого поля"})])
    assert result.written == ()
    assert "custom_fields_values.0.field_id" in result.failed[lead_id]
    assert len(sent_bodies(fake, "PATCH", "/api/v4/leads")) == 1


def test_a_validation_error_names_the_item_its_path_code_and_detail(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    due = int(clock.time()) + 3600
    tasks = [
        NewTask(text="Ответить", complete_till=due, entity_id=lead_id, entity_type="leads"),
        NewTask(text="Ответить", complete_till=due, entity_id=1, entity_type="leads"),
    ]
    with pytest.raises(ValidationFailed) as caught:
        amo.create_tasks(tasks)
    error = caught.value
    assert [(i.request_index, i.path, i.code, i.detail) for i in error.items] == [
        (1, "entity_id", "NotSupportedChoice", "Entity not found.")
    ]
    assert error.bad_indexes() == {1}
    assert "item 1: entity_id: NotSupportedChoice (Entity not found.)" in str(error)
    assert fake.tasks == []  # one bad item rejects the whole request


def test_every_bad_item_of_a_respx_answer_is_parsed_and_dropped(clock: FakeClock) -> None:
    rejection = {
        "title": "Bad Request",
        "status": 400,
        "validation-errors": [
            {
                "request_id": "0",
                "errors": [
                    {"code": "NotSupportedChoice", "path": "status_id", "detail": "Bad status."},
                    {"code": "InvalidType", "path": "price", "detail": "Not an int."},
                ],
            },
            {
                "request_id": "2",
                "errors": [{"code": "NotFound", "path": "id", "detail": "Entity not found."}],
            },
        ],
    }
    with respx.mock(base_url=BASE_URL) as router:
        route = router.patch("/api/v4/leads").mock(
            side_effect=[
                httpx.Response(400, json=rejection),
                httpx.Response(200, json={"_embedded": {"leads": [{"id": 8}]}}),
            ]
        )
        with AmoClient(
            BASE_URL, LongLivedToken("long-lived"), sleep=clock.sleep, monotonic=clock.monotonic
        ) as amo:
            result = amo.update_leads([EntityUpdate(lead_id, status_id=5) for lead_id in (7, 8, 9)])
    assert result.written == (8,)
    assert result.failed == {
        7: "status_id: NotSupportedChoice (Bad status.); price: InvalidType (Not an int.)",
        9: "id: NotFound (Entity not found.)",
    }
    assert [item["id"] for item in json.loads(route.calls[1].request.content)] == [8]


def test_a_request_level_validation_error_is_raised_not_looped(clock: FakeClock) -> None:
    rejection = {
        "status": 400,
        "validation-errors": [
            {"errors": [{"code": "TooManyElements", "path": "", "detail": "Too many."}]}
        ],
    }
    with respx.mock(base_url=BASE_URL) as router:
        route = router.patch("/api/v4/leads").respond(400, json=rejection)
        with (
            AmoClient(
                BASE_URL, LongLivedToken("long-lived"), sleep=clock.sleep, monotonic=clock.monotonic
            ) as amo,
            pytest.raises(ValidationFailed, match="TooManyElements") as caught,
        ):
            amo.update_leads([EntityUpdate(1, status_id=5)])
    assert caught.value.items[0].request_index is None
    assert route.call_count == 1


# ---------------------------------------------------------------- values


def test_field_values_go_out_in_the_forms_amocrm_accepts(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    deadline_field = fake.add_custom_field("Дедлайн", "date_time")
    overdue_field = fake.add_custom_field("Просрочено", "checkbox")
    zone_field = fake.add_custom_field("Зона", "select", enums=["Зелёная", "Красная"])
    hours_field = fake.add_custom_field("Часы", "numeric")
    note_field = fake.add_custom_field("Комментарий", "text")
    lead_id = fake.add_lead(
        "Обращение",
        pipeline_id=support.id,
        custom_fields={note_field: "старое", zone_field: "Зелёная"},
    )
    red = fake.enum_id(zone_field, "Красная")
    deadline = datetime(2024, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=3)))
    fake.reset_request_log()

    result = amo.update_leads(
        [
            EntityUpdate(
                lead_id,
                values={
                    deadline_field: deadline,
                    overdue_field: True,
                    zone_field: SelectValue(red),
                    hours_field: 12.5,
                    note_field: None,
                },
            )
        ]
    )

    assert result.written == (lead_id,)
    [body] = sent_bodies(fake, "PATCH", "/api/v4/leads")
    assert body == [
        {
            "id": lead_id,
            "custom_fields_values": [
                {"field_id": deadline_field, "values": [{"value": 1_709_305_200}]},
                {"field_id": overdue_field, "values": [{"value": True}]},
                {"field_id": zone_field, "values": [{"enum_id": red}]},
                {"field_id": hours_field, "values": [{"value": 12.5}]},
                {"field_id": note_field, "values": None},
            ],
        }
    ]
    assert fake.field_value(lead_id, deadline_field) == [{"value": 1_709_305_200}]
    assert fake.field_value(lead_id, overdue_field) == [{"value": True}]
    assert fake.field_value(lead_id, zone_field) == [
        {"value": "Красная", "enum_id": red, "enum_code": None}
    ]
    assert fake.field_value(lead_id, hours_field) == [{"value": "12.5"}]
    assert fake.field_value(lead_id, note_field) is None


def test_a_select_read_with_enum_code_is_written_back_without_it(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    zone_field = fake.add_custom_field("Зона", "select", enums=["Зелёная", "Красная"])
    source = fake.add_lead(
        "Источник", pipeline_id=support.id, custom_fields={zone_field: "Красная"}
    )
    target = fake.add_lead("Цель", pipeline_id=support.id)
    read = amo.lead(source)
    assert read is not None
    field = read.field(zone_field)
    assert field is not None
    [value] = field.values
    assert "enum_code" in value.model_dump()  # amoCRM sends it; writing it back is an error
    assert value.enum_id is not None

    result = amo.update_leads(
        [EntityUpdate(target, values={zone_field: SelectValue(value.enum_id)})]
    )

    assert result.written == (target,)
    assert result.failed == {}
    sent = json.dumps([e.body for e in fake.request_log if e.body is not None])
    assert "enum_code" not in sent


def test_a_naive_datetime_is_refused_before_anything_is_sent(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    field_id = fake.add_custom_field("Дедлайн", "date_time")
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.reset_request_log()
    with pytest.raises(ValueError, match="timezone-aware"):
        amo.update_leads([EntityUpdate(lead_id, values={field_id: datetime(2024, 3, 1, 18)})])
    assert fake.request_log == []


def test_created_select_fields_carry_their_options_in_order(
    fake: FakeAmoCRM, amo: AmoClient
) -> None:
    [created] = amo.create_lead_custom_fields(
        [NewCustomField(name="SLA: зона", type="select", enums=("Зелёная", "Жёлтая", "Красная"))]
    )
    assert created.type == "select"
    assert [enum.value for enum in created.enums or ()] == ["Зелёная", "Жёлтая", "Красная"]
    listed = {field.id: field for field in amo.iter_lead_custom_fields()}
    assert listed[created.id].name == "SLA: зона"


def test_an_aware_datetime_in_any_zone_is_the_same_unix_second(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    field_id = fake.add_custom_field("Дедлайн", "date_time")
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    moscow = datetime(2024, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=3)))
    amo.update_leads([EntityUpdate(lead_id, values={field_id: moscow.astimezone(UTC)})])
    assert fake.field_value(lead_id, field_id) == [{"value": int(moscow.timestamp())}]
