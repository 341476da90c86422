"""Companies in the fake amoCRM: their custom fields created, set, read and written, leads
linked to them, tasks on them. Each test runs through the in-process transport and the
loopback server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amo_client.fake import FakeAmoCRM, PipelineRef
from tests.client_kit import START, FakeClock
from tests.fake_kit import embedded, ids_of

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait

COMPANIES = "/api/v4/companies"


@pytest.fixture
def fields(fake: FakeAmoCRM) -> dict[str, int]:
    """One company field of each kind a prepaid-hours package needs."""
    return {
        "hours": fake.add_custom_field("Часов в пакете", "numeric", entity="companies"),
        "until": fake.add_custom_field("Пакет до", "date", entity="companies"),
        "plan": fake.add_custom_field(
            "Тариф", "select", enums=["Базовый", "Про"], entity="companies"
        ),
        "manager": fake.add_custom_field("Менеджер", "text", entity="companies"),
        "paused": fake.add_custom_field("Пауза", "checkbox", entity="companies"),
    }


def values(company: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    return {entry["field_id"]: entry["values"] for entry in company["custom_fields_values"] or []}


# ---------------------------------------------------------------- fields


def test_company_fields_are_created_by_the_api_and_kept_apart_from_lead_fields(
    fake: FakeAmoCRM, api: httpx.Client
) -> None:
    response = api.post(
        "/api/v4/companies/custom_fields",
        json=[
            {"name": "Часов в пакете", "type": "numeric"},
            {"name": "Пакет до", "type": "date"},
            {"name": "Тариф", "type": "select", "enums": [{"value": "Базовый", "sort": 1}]},
            {"name": "Менеджер", "type": "text"},
            {"name": "Пауза", "type": "checkbox"},
        ],
    )
    created = embedded(response, "custom_fields")
    assert [field["entity_type"] for field in created] == ["companies"] * 5
    listed = embedded(api.get("/api/v4/companies/custom_fields"), "custom_fields")
    assert [field["type"] for field in listed] == ["numeric", "date", "select", "text", "checkbox"]
    assert api.get("/api/v4/leads/custom_fields").status_code == 204
    assert fake.field_id("Тариф", entity="companies") == created[2]["id"]
    assert fake.field_id("Тариф") is None


def test_a_change_in_the_interface_bumps_updated_at_and_records_field_events(
    fake: FakeAmoCRM, api: httpx.Client, agent: int, fields: dict[str, int]
) -> None:
    company_id = fake.add_company("ООО Ромашка", created_at=START - 3600)
    changed = fake.update_company(
        company_id,
        by_user=agent,
        at=START,
        custom_fields={
            fields["hours"]: 12.5,
            fields["until"]: int(START) + 30 * 86400,
            fields["plan"]: "Про",
            fields["manager"]: "Ирина",
            fields["paused"]: True,
        },
    )
    assert changed
    company = api.get(f"{COMPANIES}/{company_id}").json()
    assert (company["updated_at"], company["updated_by"]) == (int(START), agent)
    assert values(company) == {
        fields["hours"]: [{"value": "12.5"}],
        fields["until"]: [{"value": int(START) + 30 * 86400}],
        fields["plan"]: [
            {
                "value": "Про",
                "enum_id": fake.enum_id(fields["plan"], "Про", entity="companies"),
                "enum_code": None,
            }
        ],
        fields["manager"]: [{"value": "Ирина"}],
        fields["paused"]: [{"value": True}],
    }
    event_types = {
        event["type"]
        for event in fake.events
        if event["entity_type"] == "company" and event["entity_id"] == company_id
    }
    assert event_types == {f"custom_field_{field_id}_value_changed" for field_id in fields.values()}

    assert not fake.update_company(
        company_id, by_user=agent, at=START + 60, custom_fields={fields["manager"]: "Ирина"}
    )
    assert fake.company(company_id)["updated_at"] == int(START)  # type: ignore[index]
    fake.update_company(
        company_id, by_user=agent, at=START + 90, custom_fields={fields["hours"]: None}
    )
    assert fields["hours"] not in values(fake.company(company_id))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Custom field not found"):
        fake.update_company(company_id, by_user=agent, custom_fields={999: 1})
    with pytest.raises(KeyError):
        fake.update_company(999, by_user=agent, name="Нет такой")


# ---------------------------------------------------------------- reads


def test_companies_are_listed_by_id_and_updated_at(
    fake: FakeAmoCRM, api: httpx.Client, agent: int, fields: dict[str, int]
) -> None:
    old, touched, other = (
        fake.add_company(name, created_at=START - 3600) for name in ("Старая", "Свежая", "Третья")
    )
    fake.update_company(touched, by_user=agent, at=START, custom_fields={fields["hours"]: 4})

    assert ids_of(
        api.get(COMPANIES, params={"filter[updated_at][from]": int(START)}), "companies"
    ) == [touched]
    assert ids_of(api.get(COMPANIES, params={"filter[id][]": [other, old]}), "companies") == [
        old,
        other,
    ]
    assert ids_of(
        api.get(
            COMPANIES,
            params={"filter[id]": f"{touched},{other}", "filter[updated_at][to]": int(START) - 1},
        ),
        "companies",
    ) == [other]
    assert api.get(COMPANIES, params={"filter[id][]": 1}).status_code == 204
    assert api.get(f"{COMPANIES}/1").status_code == 204
    fake.api_filter_enabled = False
    assert ids_of(api.get(COMPANIES, params={"filter[id][]": old}), "companies") == [
        old,
        touched,
        other,
    ]


# ---------------------------------------------------------------- writes


def test_a_patch_writes_every_kind_of_field_and_a_date_as_unix_seconds(
    fake: FakeAmoCRM, api: httpx.Client, clock: FakeClock, fields: dict[str, int]
) -> None:
    company_id = fake.add_company("ООО Ромашка", created_at=START - 60)
    plan = fake.enum_id(fields["plan"], "Базовый", entity="companies")
    response = api.patch(
        COMPANIES,
        json=[
            {
                "id": company_id,
                "custom_fields_values": [
                    {"field_id": fields["hours"], "values": [{"value": 20}]},
                    {"field_id": fields["until"], "values": [{"value": int(START) + 86400}]},
                    {"field_id": fields["plan"], "values": [{"enum_id": plan}]},
                    {"field_id": fields["manager"], "values": [{"value": "Олег"}]},
                    {"field_id": fields["paused"], "values": [{"value": False}]},
                ],
            }
        ],
    )
    assert embedded(response, "companies")[0]["updated_at"] == int(START)
    stored = values(api.get(f"{COMPANIES}/{company_id}").json())
    assert stored[fields["hours"]] == [{"value": "20"}]
    assert stored[fields["until"]] == [{"value": int(START) + 86400}]
    assert stored[fields["plan"]][0]["enum_id"] == plan
    assert stored[fields["paused"]] == [{"value": False}]
    events = [event for event in fake.events if event["entity_type"] == "company"]
    assert {event["created_by"] for event in events} == {fake.api_user_id}


def test_a_patch_with_a_bad_item_names_it_and_writes_nothing(
    fake: FakeAmoCRM, api: httpx.Client, fields: dict[str, int]
) -> None:
    good = fake.add_company("ООО Ромашка", custom_fields={fields["hours"]: 10})
    bad = fake.add_company("ООО Лютик")
    lead_field = fake.add_custom_field("Поле сделки", "numeric")
    response = api.patch(
        COMPANIES,
        json=[
            {
                "id": good,
                "custom_fields_values": [{"field_id": fields["hours"], "values": [{"value": 9}]}],
            },
            {
                "id": bad,
                "custom_fields_values": [
                    {"field_id": lead_field, "values": [{"value": 1}]},
                    {"field_id": fields["until"], "values": [{"value": "завтра"}]},
                    {"field_id": fields["plan"], "values": [{"value": "Премиум"}]},
                ],
            },
            {"id": 1, "name": "Нет такой"},
        ],
    )
    assert response.status_code == 400
    groups = {g["request_id"]: g["errors"] for g in response.json()["validation-errors"]}
    assert set(groups) == {"1", "2"}
    assert [error["path"] for error in groups["1"]] == [
        "custom_fields_values.0.field_id",
        "custom_fields_values.1.values.0.value",
        "custom_fields_values.2.values.0.value",
    ]
    assert values(fake.company(good))[fields["hours"]] == [{"value": "10"}]  # type: ignore[arg-type]


# ---------------------------------------------------------------- leads linked to companies


def test_a_linked_lead_carries_its_company_without_with(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    first = fake.add_company("ООО Ромашка")
    second = fake.add_company("ООО Лютик")
    lead_id = fake.add_lead(pipeline_id=support.id, created_at=START - 600, company_id=first)

    def companies() -> list[int]:
        lead = api.get(f"/api/v4/leads/{lead_id}").json()
        return [company["id"] for company in lead["_embedded"]["companies"]]

    assert companies() == [first]
    fake.link_company(lead_id, second, by=agent, at=START)
    assert companies() == [second]
    lead = embedded(
        api.get("/api/v4/leads", params={"filter[updated_at][from]": int(START)}), "leads"
    )
    assert [item["id"] for item in lead] == [lead_id]
    assert lead[0]["updated_by"] == agent
    links = [
        (e["type"], e["value_before"], e["value_after"])
        for e in fake.lead_events(lead_id)
        if e["type"].startswith("entity_")
    ]
    assert links == [
        ("entity_unlinked", [{"link": {"entity": {"id": first, "type": "company"}}}], []),
        ("entity_linked", [], [{"link": {"entity": {"id": second, "type": "company"}}}]),
    ]
    fake.unlink_company(lead_id, by=agent, at=START + 60)
    assert companies() == []
    assert fake.lead(lead_id)["updated_at"] == int(START) + 60  # type: ignore[index]
    with pytest.raises(KeyError):
        fake.link_company(lead_id, 1, by=agent)


# ---------------------------------------------------------------- tasks on companies


def test_tasks_are_set_on_companies_and_listed_by_them(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    company_id = fake.add_company("ООО Ромашка")
    lead_id = fake.add_lead(pipeline_id=support.id)
    response = api.post(
        "/api/v4/tasks",
        json=[
            {
                "text": "Продлить пакет часов",
                "complete_till": int(START) + 3600,
                "entity_id": company_id,
                "entity_type": "companies",
                "responsible_user_id": agent,
            },
            {
                "text": "По сделке",
                "complete_till": int(START) + 60,
                "entity_id": lead_id,
                "entity_type": "leads",
            },
        ],
    )
    on_company = embedded(response, "tasks")[0]["id"]
    listed = api.get(
        "/api/v4/tasks",
        params={"filter[entity_type]": "companies", "filter[entity_id][]": company_id},
    )
    assert ids_of(listed, "tasks") == [on_company]
    assert embedded(listed, "tasks")[0]["entity_type"] == "companies"
    assert fake.company(company_id)["closest_task_at"] == int(START) + 3600  # type: ignore[index]
    missing = api.post(
        "/api/v4/tasks",
        json=[
            {
                "text": "Нет компании",
                "complete_till": int(START),
                "entity_id": lead_id,
                "entity_type": "companies",
            }
        ],
    )
    assert missing.json()["validation-errors"][0]["errors"][0]["path"] == "entity_id"
