"""The fake amoCRM through a raw httpx client: paging, 204s, limits, filters, validation, events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amo_client.fake import LOST_STATUS_ID, WON_STATUS_ID, FakeAmoCRM, PipelineRef
from amo_client.fake.query import as_ints, as_strings, lookup, parse_query
from tests.client_kit import START, FakeClock
from tests.fake_kit import embedded

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait


# ---------------------------------------------------------------- paging and 204


def test_paging_follows_next_until_the_last_page(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    created = {fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(260)}
    seen: list[int] = []
    pages = 0
    url: str | None = "/api/v4/leads?limit=100"
    while url is not None:
        response = api.get(url)
        body = response.json()
        pages += 1
        assert body["_page"] == pages
        seen.extend(lead["id"] for lead in body["_embedded"]["leads"])
        next_link = body["_links"].get("next")
        url = next_link["href"] if next_link else None
    assert pages == 3
    assert len(seen) == 260
    assert set(seen) == created
    past_the_end = api.get("/api/v4/leads", params={"limit": 100, "page": 4})
    assert past_the_end.status_code == 204
    assert past_the_end.content == b""


def test_a_full_last_page_has_no_next_link(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    for n in range(4):
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id)
    body = api.get("/api/v4/leads", params={"limit": 2, "page": 2}).json()
    assert len(body["_embedded"]["leads"]) == 2
    assert "next" not in body["_links"]
    assert body["_links"]["self"]["href"].endswith("limit=2&page=2")


def test_an_empty_list_is_204_without_a_body(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    fake.add_lead("Обращение", pipeline_id=support.id)
    response = api.get("/api/v4/leads", params={"filter[pipeline_id]": 1})
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers
    assert api.get("/api/v4/tasks").status_code == 204
    assert api.get("/api/v4/events", params={"filter[type]": "outgoing_call"}).status_code == 204


def test_a_missing_lead_by_id_is_204(api: httpx.Client, support: PipelineRef) -> None:
    response = api.get("/api/v4/leads/123456")
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize("api", ["transport"], indirect=True)  # links name fake.base_url
def test_a_lead_by_id_carries_tags_fields_and_companies(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    field_id = fake.add_custom_field("Класс", "select", enums=["Типовое", "Нестандартное"])
    company_id = fake.add_company("ООО Ромашка")
    lead_id = fake.add_lead(
        "Не работает вход",
        pipeline_id=support.id,
        tags=["Приоритет", "авария"],
        custom_fields={field_id: "Нестандартное"},
        company_id=company_id,
    )
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert lead["status_id"] == support.status("Новое")
    assert [tag["name"] for tag in lead["_embedded"]["tags"]] == ["Приоритет", "авария"]
    assert lead["_embedded"]["companies"][0]["id"] == company_id
    assert lead["custom_fields_values"] == [
        {
            "field_id": field_id,
            "field_name": "Класс",
            "field_code": None,
            "field_type": "select",
            "values": [
                {
                    "value": "Нестандартное",
                    "enum_id": fake.enum_id(field_id, "Нестандартное"),
                    "enum_code": None,
                }
            ],
        }
    ]
    assert lead["created_at"] == int(START)
    assert lead["_links"]["self"]["href"] == f"{fake.base_url}/api/v4/leads/{lead_id}"


# ---------------------------------------------------------------- limits


def test_leads_limit_250_is_honoured_and_more_falls_back_to_50(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    for n in range(300):
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, record_added_event=False)
    assert len(embedded(api.get("/api/v4/leads", params={"limit": 250}), "leads")) == 250
    over = api.get("/api/v4/leads", params={"limit": 251})
    assert len(embedded(over, "leads")) == 50
    assert "next" in over.json()["_links"]
    assert len(embedded(api.get("/api/v4/leads"), "leads")) == 50


def test_events_limit_is_100(fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, record_added_event=False)
    for n in range(120):
        fake.add_event(lead_id, "incoming_chat_message", created_by=0, at=START + n)
    assert len(embedded(api.get("/api/v4/events", params={"limit": 100}), "events")) == 100
    assert len(embedded(api.get("/api/v4/events", params={"limit": 101}), "events")) == 50


def test_custom_fields_limit_is_50_with_totals(fake: FakeAmoCRM, api: httpx.Client) -> None:
    for n in range(60):
        fake.add_custom_field(f"Поле {n}", "text")
    first = api.get("/api/v4/leads/custom_fields", params={"limit": 50})
    assert len(embedded(first, "custom_fields")) == 50
    assert first.json()["_total_items"] == 60
    assert first.json()["_page_count"] == 2
    second = api.get(first.json()["_links"]["next"]["href"])
    assert len(embedded(second, "custom_fields")) == 10
    over = api.get("/api/v4/leads/custom_fields", params={"limit": 250})
    assert len(embedded(over, "custom_fields")) == 50


def test_events_take_at_most_ten_entity_ids(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    lead_ids = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(11)]
    ten = api.get(
        "/api/v4/events",
        params="filter[entity]=lead&" + "&".join(f"filter[entity_id][]={i}" for i in lead_ids[:10]),
    )
    assert {event["entity_id"] for event in embedded(ten, "events")} == set(lead_ids[:10])
    eleven = api.get(
        "/api/v4/events",
        params={"filter[entity]": "lead", "filter[entity_id]": ",".join(map(str, lead_ids))},
    )
    assert eleven.status_code == 400
    errors = eleven.json()["validation-errors"][0]["errors"]
    assert errors[0]["path"] == "filter.entity_id"
    without_entity = api.get("/api/v4/events", params={"filter[entity_id][]": lead_ids[0]})
    assert without_entity.status_code == 400


# ---------------------------------------------------------------- validation


@pytest.fixture
def sla_fields(fake: FakeAmoCRM) -> dict[str, int]:
    return {
        "due": fake.add_custom_field("SLA: реакция до", "date_time"),
        "breached": fake.add_custom_field("SLA: реакция просрочена", "checkbox"),
        "left": fake.add_custom_field("SLA: осталось, мин", "numeric"),
        "status": fake.add_custom_field(
            "SLA: статус", "select", enums=["В срок", "Под угрозой", "Просрочено"]
        ),
    }


def test_a_bad_item_rejects_the_whole_batch_and_names_each_bad_item(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, sla_fields: dict[str, int]
) -> None:
    leads = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(6)]
    good = {"field_id": sla_fields["due"], "values": [{"value": int(START) + 3600}]}
    batch = [
        {"id": leads[0], "custom_fields_values": [good]},
        {"id": leads[1], "custom_fields_values": [{"field_id": 999, "values": [{"value": 1}]}]},
        {"id": leads[2], "custom_fields_values": [good]},
        {
            "id": leads[3],
            "custom_fields_values": [
                {"field_id": sla_fields["breached"], "values": [{"value": "да"}]}
            ],
        },
        {
            "id": leads[4],
            "custom_fields_values": [
                {
                    "field_id": sla_fields["status"],
                    "values": [
                        {
                            "value": "В срок",
                            "enum_id": fake.enum_id(sla_fields["status"], "В срок"),
                            "enum_code": None,
                        }
                    ],
                }
            ],
        },
        {"id": leads[5], "status_id": 42},
    ]
    response = api.patch("/api/v4/leads", json=batch)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Request validation failed"
    by_request = {item["request_id"]: item["errors"] for item in body["validation-errors"]}
    assert set(by_request) == {"1", "3", "4", "5"}
    assert by_request["1"][0]["path"] == "custom_fields_values.0.field_id"
    assert by_request["3"][0]["path"] == "custom_fields_values.0.values.0.value"
    assert by_request["3"][0]["code"] == "InvalidType"
    assert by_request["4"][0]["path"] == "custom_fields_values.0.values.0.enum_code"
    assert by_request["5"][0]["path"] == "status_id"
    assert fake.field_value(leads[0], sla_fields["due"]) is None
    assert fake.field_value(leads[2], sla_fields["due"]) is None


@pytest.mark.usefixtures("support")
@pytest.mark.parametrize(
    "case",
    [
        ("left", [{"value": "сорок"}], "custom_fields_values.0.values.0.value"),
        ("left", [{"value": True}], "custom_fields_values.0.values.0.value"),
        ("due", [{"value": "завтра"}], "custom_fields_values.0.values.0.value"),
        ("breached", [{"value": 1}], "custom_fields_values.0.values.0.value"),
        ("status", [{"enum_id": 1}], "custom_fields_values.0.values.0.enum_id"),
        ("status", [{"value": "Нет такого"}], "custom_fields_values.0.values.0.value"),
        ("status", [{"enum_id": None, "value": None}], "custom_fields_values.0.values.0.value"),
        ("due", [{"value": 1}, {"value": 2}], "custom_fields_values.0.values"),
        ("due", {"value": 1}, "custom_fields_values.0.values"),
    ],
)
def test_values_of_the_wrong_kind_are_rejected(
    fake: FakeAmoCRM, api: httpx.Client, sla_fields: dict[str, int], case: tuple[str, Any, str]
) -> None:
    field, values, bad_path = case
    lead_id = fake.add_lead("Обращение")
    response = api.patch(
        "/api/v4/leads",
        json=[
            {
                "id": lead_id,
                "custom_fields_values": [{"field_id": sla_fields[field], "values": values}],
            }
        ],
    )
    assert response.status_code == 400, response.text
    error = response.json()["validation-errors"][0]
    assert error["request_id"] == "0"
    assert error["errors"][0]["path"] == bad_path


@pytest.mark.parametrize("api", ["transport"], indirect=True)  # links name fake.base_url
def test_values_are_stored_and_returned_as_amocrm_does(
    fake: FakeAmoCRM,
    api: httpx.Client,
    support: PipelineRef,
    sla_fields: dict[str, int],
    clock: FakeClock,
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    risk = fake.enum_id(sla_fields["status"], "Под угрозой")
    clock.wall += 60
    response = api.patch(
        "/api/v4/leads",
        json=[
            {
                "id": lead_id,
                "custom_fields_values": [
                    {"field_id": sla_fields["due"], "values": [{"value": 1_700_003_600}]},
                    {"field_id": sla_fields["breached"], "values": [{"value": False}]},
                    {"field_id": sla_fields["left"], "values": [{"value": 42}]},
                    {"field_id": sla_fields["status"], "values": [{"enum_id": risk}]},
                ],
            }
        ],
    )
    assert embedded(response, "leads")[0] == {
        "id": lead_id,
        "updated_at": int(clock.wall),
        "_links": {"self": {"href": f"{fake.base_url}/api/v4/leads/{lead_id}"}},
    }
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    values = {entry["field_id"]: entry["values"] for entry in lead["custom_fields_values"]}
    assert values[sla_fields["due"]] == [{"value": 1_700_003_600}]
    assert values[sla_fields["breached"]] == [{"value": False}]
    assert values[sla_fields["left"]] == [{"value": "42"}]
    assert values[sla_fields["status"]] == [
        {"value": "Под угрозой", "enum_id": risk, "enum_code": None}
    ]
    assert lead["updated_at"] == int(clock.wall)
    assert lead["updated_by"] == fake.api_user_id


def test_null_values_clear_and_an_unchanged_write_changes_nothing(
    fake: FakeAmoCRM,
    api: httpx.Client,
    support: PipelineRef,
    sla_fields: dict[str, int],
    clock: FakeClock,
) -> None:
    lead_id = fake.add_lead(
        "Обращение", pipeline_id=support.id, custom_fields={sla_fields["left"]: 15}
    )
    write = [
        {
            "id": lead_id,
            "custom_fields_values": [{"field_id": sla_fields["due"], "values": [{"value": 5}]}],
        }
    ]
    clock.wall += 10
    api.patch("/api/v4/leads", json=write)
    events_after_first = len(fake.lead_events(lead_id))
    clock.wall += 10
    again = api.patch("/api/v4/leads", json=write)
    assert again.status_code == 200
    assert fake.lead(lead_id)["updated_at"] == int(START) + 10  # type: ignore[index]
    assert len(fake.lead_events(lead_id)) == events_after_first
    clock.wall += 10
    clear = [
        {"id": lead_id, "custom_fields_values": [{"field_id": sla_fields["left"], "values": None}]}
    ]
    assert api.patch("/api/v4/leads", json=clear).status_code == 200
    assert fake.field_value(lead_id, sla_fields["left"]) is None
    assert fake.lead(lead_id)["updated_at"] == int(START) + 30  # type: ignore[index]
    changed = fake.lead_events(lead_id, f"custom_field_{sla_fields['left']}_value_changed")
    assert changed[-1]["value_after"] == []
    assert changed[-1]["value_before"][0]["custom_field_value"]["text"] == "15"


def test_tags_are_replaced_added_and_removed(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, tags=["Стандарт"])
    api.patch("/api/v4/leads", json=[{"id": lead_id, "tags_to_add": [{"name": "авария"}]}])
    lead = fake.lead(lead_id)
    assert lead is not None
    assert [tag["name"] for tag in lead["_embedded"]["tags"]] == ["Стандарт", "авария"]
    api.patch(
        "/api/v4/leads",
        json=[{"id": lead_id, "_embedded": {"tags": [{"name": "Приоритет"}]}}],
    )
    lead = fake.lead(lead_id)
    assert lead is not None
    assert [tag["name"] for tag in lead["_embedded"]["tags"]] == ["Приоритет"]
    added = fake.lead_events(lead_id, "entity_tag_added")
    assert [event["value_after"][0]["tag"]["name"] for event in added] == ["авария", "Приоритет"]
    assert len(fake.lead_events(lead_id, "entity_tag_deleted")) == 2


# ---------------------------------------------------------------- status changes


def test_a_move_records_lead_status_changed(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, clock: FakeClock
) -> None:
    agent = fake.add_user("Оператор Анна")
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.move_lead(lead_id, support.status("В работе"), by_user=agent, at=START + 600)
    moves = fake.lead_events(lead_id, "lead_status_changed")
    assert len(moves) == 1
    assert moves[0]["created_by"] == agent
    assert moves[0]["created_at"] == int(START) + 600
    assert moves[0]["value_before"] == [
        {"lead_status": {"id": support.status("Новое"), "pipeline_id": support.id}}
    ]
    assert moves[0]["value_after"] == [
        {"lead_status": {"id": support.status("В работе"), "pipeline_id": support.id}}
    ]
    clock.wall += 3600
    response = api.patch("/api/v4/leads", json=[{"id": lead_id, "status_id": WON_STATUS_ID}])
    assert response.status_code == 200
    moves = fake.lead_events(lead_id, "lead_status_changed")
    assert moves[-1]["created_by"] == fake.api_user_id
    assert moves[-1]["value_after"][0]["lead_status"] == {"id": 142, "pipeline_id": support.id}
    lead = fake.lead(lead_id)
    assert lead is not None
    assert lead["closed_at"] == int(clock.wall)
    fake.move_lead(lead_id, support.status("В работе"), by_user=0)
    lead = fake.lead(lead_id)
    assert lead is not None
    assert lead["closed_at"] is None


def test_pipelines_end_with_142_and_143(api: httpx.Client, support: PipelineRef) -> None:
    pipelines = embedded(api.get("/api/v4/leads/pipelines"), "pipelines")
    statuses = pipelines[0]["_embedded"]["statuses"]
    assert pipelines[0]["is_main"] is True
    assert statuses[0]["name"] == "Неразобранное"
    assert statuses[0]["type"] == 1
    assert [s["name"] for s in statuses[1:4]] == ["Новое", "В работе", "Ждём клиента"]
    assert [(s["id"], s["name"]) for s in statuses[-2:]] == [
        (WON_STATUS_ID, "Успешно реализовано"),
        (LOST_STATUS_ID, "Закрыто и не реализовано"),
    ]
    assert all(s["pipeline_id"] == support.id for s in statuses)
    assert support.first_status_id == support.status("Новое")


# ---------------------------------------------------------------- filters


def test_lead_filters(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, clock: FakeClock
) -> None:
    sales = fake.add_pipeline("Продажи", ["Лид"])
    in_new = fake.add_lead("Новое", pipeline_id=support.id)
    in_work = fake.add_lead(
        "В работе", pipeline_id=support.id, status_id=support.status("В работе")
    )
    waiting = fake.add_lead(
        "Ждём", pipeline_id=support.id, status_id=support.status("Ждём клиента")
    )
    sale = fake.add_lead("Продажа", pipeline_id=sales.id)
    for offset, lead_id in ((100, in_new), (200, in_work), (300, waiting), (400, sale)):
        fake.update_lead(lead_id, by_user=0, at=START + offset, add_tags=["тронут"])

    def ids(params: Any) -> list[int]:
        response = api.get("/api/v4/leads", params=params)
        if response.status_code == 204:
            return []
        return [lead["id"] for lead in embedded(response, "leads")]

    assert ids({"filter[pipeline_id]": support.id}) == [in_new, in_work, waiting]
    assert ids(
        {
            "filter[statuses][0][pipeline_id]": support.id,
            "filter[statuses][0][status_id]": support.status("В работе"),
            "filter[statuses][1][pipeline_id]": sales.id,
            "filter[statuses][1][status_id]": sales.status("Лид"),
        }
    ) == [in_work, sale]
    window = {
        "filter[updated_at][from]": int(START) + 200,
        "filter[updated_at][to]": int(START) + 300,
    }
    assert ids(window) == [in_work, waiting]
    assert ids({"filter[updated_at][from]": int(START) + 301}) == [sale]
    assert ids([("filter[id][]", str(sale)), ("filter[id][]", str(in_new))]) == [in_new, sale]
    assert ids({"order[updated_at]": "desc"}) == [sale, waiting, in_work, in_new]
    assert ids({"order[updated_at]": "asc", "filter[pipeline_id]": sales.id}) == [sale]
    assert ids({"query": "ждём"}) == [waiting]


def test_event_filters_and_newest_first(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    agent = fake.add_user("Оператор")
    first = fake.add_lead("Первое", pipeline_id=support.id, record_added_event=False)
    second = fake.add_lead("Второе", pipeline_id=support.id, record_added_event=False)
    bot_reply = fake.add_event(first, "outgoing_chat_message", created_by=0, at=START + 10)
    person_reply = fake.add_event(first, "outgoing_chat_message", created_by=agent, at=START + 20)
    call = fake.add_event(second, "outgoing_call", created_by=agent, at=START + 30)
    incoming = fake.add_event(second, "incoming_chat_message", created_by=0, at=START + 40)

    def ids(params: Any) -> list[str]:
        response = api.get("/api/v4/events", params=params)
        if response.status_code == 204:
            return []
        return [event["id"] for event in embedded(response, "events")]

    assert ids({}) == [incoming, call, person_reply, bot_reply]
    assert ids({"filter[type]": "outgoing_chat_message,outgoing_call"}) == [
        call,
        person_reply,
        bot_reply,
    ]
    assert ids(
        [("filter[type][]", "outgoing_call"), ("filter[type][]", "incoming_chat_message")]
    ) == [
        incoming,
        call,
    ]
    assert ids({"filter[created_by][]": 0}) == [incoming, bot_reply]
    assert ids({"filter[created_by]": f"0,{agent}", "filter[type]": "outgoing_call"}) == [call]
    assert ids(
        {"filter[created_at][from]": int(START) + 20, "filter[created_at][to]": int(START) + 30}
    ) == [call, person_reply]
    assert ids({"filter[created_at]": int(START) + 31}) == [incoming]
    assert ids({"filter[entity]": "lead", "filter[entity_id][]": first}) == [
        person_reply,
        bot_reply,
    ]
    event = api.get(f"/api/v4/events/{call}").json()
    assert event["entity_type"] == "lead"
    assert event["entity_id"] == second
    assert event["value_after"][0]["note"]["id"] > 0
    assert api.get("/api/v4/events/0000").status_code == 204


# ---------------------------------------------------------------- tasks, notes, fields, companies


def test_tasks_are_created_in_batches_and_filtered(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    agent = fake.add_user("Оператор")
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    other = fake.add_lead("Другое", pipeline_id=support.id)
    response = api.post(
        "/api/v4/tasks",
        json=[
            {
                "text": "Просрочена реакция",
                "complete_till": int(START) + 3600,
                "entity_id": lead_id,
                "entity_type": "leads",
                "responsible_user_id": agent,
                "task_type_id": 1,
                "request_id": "sla-reaction-1",
            },
            {
                "text": "Проверить",
                "complete_till": int(START) + 60,
                "entity_id": other,
                "entity_type": "leads",
            },
        ],
    )
    created = embedded(response, "tasks")
    assert [task["request_id"] for task in created] == ["sla-reaction-1", "1"]
    tasks = fake.tasks
    assert tasks[0]["responsible_user_id"] == agent
    assert tasks[0]["created_by"] == fake.api_user_id
    assert tasks[1]["responsible_user_id"] == fake.api_user_id
    listed = embedded(
        api.get(
            "/api/v4/tasks",
            params={
                "filter[entity_type]": "leads",
                "filter[entity_id][]": lead_id,
                "filter[is_completed]": 0,
                "filter[task_type][]": 1,
            },
        ),
        "tasks",
    )
    assert [task["id"] for task in listed] == [created[0]["id"]]
    assert listed[0]["text"] == "Просрочена реакция"
    assert fake.lead(lead_id)["closest_task_at"] == int(START) + 3600  # type: ignore[index]
    fake.complete_task(created[0]["id"])
    assert (
        api.get(
            "/api/v4/tasks", params={"filter[entity_id]": lead_id, "filter[is_completed]": 0}
        ).status_code
        == 204
    )
    bad = api.post(
        "/api/v4/tasks",
        json=[
            {
                "text": "ok",
                "complete_till": int(START),
                "entity_id": lead_id,
                "entity_type": "leads",
            },
            {"text": "", "complete_till": "завтра"},
        ],
    )
    assert bad.status_code == 400
    paths = {error["path"] for error in bad.json()["validation-errors"][0]["errors"]}
    assert paths == {"text", "complete_till"}
    assert len(fake.tasks) == 2


def test_notes_are_created_and_become_events(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    response = api.post(
        "/api/v4/leads/notes",
        json=[{"entity_id": lead_id, "note_type": "common", "params": {"text": "Принято"}}],
    )
    note = embedded(response, "notes")[0]
    assert note["entity_id"] == lead_id
    assert fake.notes[0]["params"] == {"text": "Принято"}
    added = fake.lead_events(lead_id, "common_note_added")
    assert added[0]["created_by"] == fake.api_user_id
    assert added[0]["value_after"] == [{"note": {"id": note["id"]}}]
    listed = embedded(api.get(f"/api/v4/leads/{lead_id}/notes"), "notes")
    assert [item["id"] for item in listed] == [note["id"]]
    bad = api.post("/api/v4/leads/notes", json=[{"entity_id": 1, "note_type": "common"}])
    assert bad.status_code == 400


def test_custom_fields_are_created_with_enums(fake: FakeAmoCRM, api: httpx.Client) -> None:
    response = api.post(
        "/api/v4/leads/custom_fields",
        json=[
            {
                "name": "SLA: статус",
                "type": "select",
                "enums": [{"value": "В срок", "sort": 1}, {"value": "Просрочено", "sort": 2}],
            },
            {"name": "SLA: решение до", "type": "date_time"},
        ],
    )
    created = embedded(response, "custom_fields")
    assert [field["type"] for field in created] == ["select", "date_time"]
    assert [enum["value"] for enum in created[0]["enums"]] == ["В срок", "Просрочено"]
    assert created[1]["enums"] is None
    listed = embedded(api.get("/api/v4/leads/custom_fields"), "custom_fields")
    assert [field["name"] for field in listed] == ["SLA: статус", "SLA: решение до"]
    bad = api.post(
        "/api/v4/leads/custom_fields",
        json=[{"name": "ok", "type": "text"}, {"name": "Список", "type": "select"}],
    )
    assert bad.status_code == 400
    assert bad.json()["validation-errors"][0]["request_id"] == "1"
    assert len(embedded(api.get("/api/v4/leads/custom_fields"), "custom_fields")) == 2


def test_companies_are_read_and_patched(fake: FakeAmoCRM, api: httpx.Client) -> None:
    balance = fake.add_custom_field("Остаток пакета, мин", "numeric", entity="companies")
    company_id = fake.add_company("ООО Ромашка", custom_fields={balance: 600})
    listed = embedded(
        api.get("/api/v4/companies", params={"filter[id][]": company_id}), "companies"
    )
    assert listed[0]["custom_fields_values"][0]["values"] == [{"value": "600"}]
    response = api.patch(
        "/api/v4/companies",
        json=[
            {
                "id": company_id,
                "custom_fields_values": [{"field_id": balance, "values": [{"value": 540}]}],
            }
        ],
    )
    assert response.status_code == 200
    company = api.get(f"/api/v4/companies/{company_id}").json()
    assert company["custom_fields_values"][0]["values"] == [{"value": "540"}]
    assert embedded(api.get("/api/v4/companies/custom_fields"), "custom_fields")[0]["id"] == balance


def test_account_and_users(fake: FakeAmoCRM, api: httpx.Client) -> None:
    agent = fake.add_user("Оператор", email="agent@example.com")
    account = api.get("/api/v4/account", params={"with": "datetime_settings,task_types"}).json()
    assert account["current_user_id"] == fake.api_user_id
    assert account["subdomain"] == "example"
    settings = account["_embedded"]["datetime_settings"]
    assert settings["timezone"] == "Europe/Moscow"
    assert settings["timezone_offset"] == "+03:00"
    assert account["_embedded"]["task_types"][0]["id"] == 1
    users = embedded(api.get("/api/v4/users"), "users")
    assert [user["id"] for user in users] == [fake.owner_id, agent]
    assert api.get(f"/api/v4/users/{agent}").json()["email"] == "agent@example.com"


def test_unknown_paths_and_methods(api: httpx.Client) -> None:
    assert api.get("/api/v4/contacts/chats").status_code == 404
    assert api.delete("/api/v4/leads").status_code == 405
    not_a_list = api.patch("/api/v4/leads", json={"id": 1})
    assert not_a_list.status_code == 400


def test_query_strings_nest_like_php() -> None:
    parsed = parse_query(
        [
            ("filter[statuses][0][pipeline_id]", "7"),
            ("filter[statuses][0][status_id]", "142"),
            ("filter[id][]", "1"),
            ("filter[id][]", "2,3"),
            ("with", "contacts"),
            ("broken[", "x"),
        ]
    )
    assert lookup(parsed, "filter", "statuses", "0", "status_id") == "142"
    assert as_ints(lookup(parsed, "filter", "id"), "filter[id]") == [1, 2, 3]
    assert as_strings(parsed["with"]) == ["contacts"]
    assert parsed["broken["] == "x"
