"""AmoClient on notes and companies: iter_notes and its client-side guard, the Note model,
a lead's company, company reads and writes, tasks on companies."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from amo_client.client import IDS_PER_REQUEST, AmoClient
from amo_client.errors import InvalidItem
from amo_client.fake import FakeAmoCRM, PipelineRef
from amo_client.models import EntityUpdate, Lead, NewTask, Note, SelectValue
from tests.client_kit import START, FakeClock


def moment(offset: float) -> datetime:
    return datetime.fromtimestamp(START + offset, UTC)


def queries(fake: FakeAmoCRM, path: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(e.query)) for e in fake.request_log if e.path == path]


# ---------------------------------------------------------------- the Note model


def note_json(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 1,
        "entity_id": 2,
        "created_by": 3,
        "updated_by": 3,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_060,
        "responsible_user_id": 3,
        "group_id": 0,
        "note_type": "common",
        "params": {"text": "Созвонились"},
        "account_id": 9,
    }
    return {**base, **changes}


def test_a_common_note_has_text_and_no_duration() -> None:
    note = Note.model_validate(note_json())
    assert note.text == "Созвонились"
    assert note.duration is None
    assert note.updated_at == datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "seconds"), [(95, 95), ("95", 95), (None, None), (True, None)])
def test_a_call_note_has_a_duration_in_seconds(raw: object, seconds: int | None) -> None:
    params = {"uniq": "a1", "phone": "+7 900 000-00-00", "source": "pbx", "duration": raw}
    note = Note.model_validate(note_json(note_type="call_in", params=params))
    assert note.duration == seconds
    assert note.text is None


def test_a_duration_belongs_to_calls_only() -> None:
    note = Note.model_validate(note_json(note_type="common", params={"duration": 60}))
    assert note.duration is None


@pytest.mark.parametrize("params", [[], None])
def test_empty_params_as_php_sends_them_are_an_empty_object(params: object) -> None:
    note = Note.model_validate(note_json(note_type="service_message", params=params))
    assert note.params == {}
    assert note.text is None


# ---------------------------------------------------------------- iter_notes


def test_notes_come_filtered_by_updated_at_type_and_entity_in_updated_order(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, agent: int
) -> None:
    first = fake.add_lead("Первое", pipeline_id=support.id)
    second = fake.add_lead("Второе", pipeline_id=support.id)
    old = fake.add_note(first, "Давно", created_by=agent, at=START - 3600)
    edited = fake.add_note(first, "Было", created_by=agent, at=START - 3600)
    call = fake.add_note(
        second, note_type="call_out", params={"duration": 125}, created_by=agent, at=START + 10
    )
    fake.add_note(second, "Сервис", created_by=agent, at=START + 20)
    fake.edit_note(edited, "Стало", by=agent, at=START + 30)

    notes = list(amo.iter_notes(updated_from=moment(0)))
    assert [note.id for note in notes] == [call, call + 1, edited]
    assert notes[-1].text == "Стало"
    assert notes[-1].updated_by == agent
    assert notes[0].duration == 125

    calls = list(amo.iter_notes(note_types=["call_in", "call_out"], entity_ids=[first, second]))
    assert [note.id for note in calls] == [call]
    assert [n.id for n in amo.iter_notes(entity_ids=[first], order=("id", "asc"))] == [old, edited]
    query = queries(fake, "/api/v4/leads/notes")[0]
    assert query["limit"] == "250"
    assert query["order[updated_at]"] == "asc"
    assert query["filter[updated_at][from]"] == str(int(START))


def test_notes_amocrm_answered_unfiltered_are_dropped(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, agent: int
) -> None:
    fake.api_filter_enabled = False  # the account answers every note whatever the filter
    mine = fake.add_lead("Моё", pipeline_id=support.id)
    other = fake.add_lead("Чужое", pipeline_id=support.id)
    fake.add_note(other, "Чужая", created_by=agent, at=START + 10)
    fake.add_note(mine, "Старая", created_by=agent, at=START - 10)
    wanted = fake.add_note(mine, "Нужная", created_by=agent, at=START + 10)
    fake.add_note(mine, note_type="call_in", params={"duration": 5}, created_by=agent, at=START)

    notes = amo.iter_notes(entity_ids=[mine], updated_from=moment(0), note_types=["common"])

    assert [note.id for note in notes] == [wanted]
    assert len(queries(fake, "/api/v4/leads/notes")) == 1


def test_many_entity_ids_are_sent_in_chunks(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, agent: int
) -> None:
    leads = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(120)]
    notes = {fake.add_note(lead_id, "Ок", created_by=agent) for lead_id in leads[::10]}
    fake.reset_request_log()

    assert {note.id for note in amo.iter_notes(entity_ids=leads)} == notes
    sent = queries(fake, "/api/v4/leads/notes")
    assert len(sent) == 3
    assert all(
        sum(key.startswith("filter[entity_id]") for key in query) <= IDS_PER_REQUEST
        for query in sent
    )


def test_no_entity_ids_means_no_notes_and_no_request(fake: FakeAmoCRM, amo: AmoClient) -> None:
    fake.reset_request_log()
    assert list(amo.iter_notes(entity_ids=[])) == []
    assert fake.request_log == []


def test_notes_of_companies_and_a_bad_note(fake: FakeAmoCRM, amo: AmoClient, agent: int) -> None:
    company = fake.add_company("ООО Ромашка")
    note_id = fake.add_note(company, "Договор продлён", created_by=agent, entity="companies")
    assert [note.id for note in amo.iter_notes("companies")] == [note_id]

    invalid: list[InvalidItem] = []
    fake._notes[note_id]["updated_at"] = "вчера"
    assert list(amo.iter_notes("companies", on_invalid=invalid.append)) == []
    assert [(item.kind, item.item_id) for item in invalid] == [("note", note_id)]


def test_a_deleted_note_is_not_listed_and_leaves_an_event(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, agent: int
) -> None:
    lead_id = fake.add_lead(pipeline_id=support.id)
    note_id = fake.add_note(lead_id, "Ошибся", created_by=agent)
    fake.delete_note(note_id, by=agent, at=START + 5)
    assert list(amo.iter_notes(entity_ids=[lead_id])) == []
    deleted = list(amo.iter_events(entity_ids=[lead_id], types=["common_note_deleted"]))
    assert [event.value_before for event in deleted] == [[{"note": {"id": note_id}}]]


# ---------------------------------------------------------------- companies


def test_a_lead_names_its_company(fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef) -> None:
    company = fake.add_company("ООО Ромашка")
    linked = fake.add_lead(pipeline_id=support.id, company_id=company)
    alone = fake.add_lead(pipeline_id=support.id)
    leads = {lead.id: lead for lead in amo.iter_leads()}
    assert leads[linked].company_id == company
    assert leads[alone].company_id is None
    assert (
        Lead.model_validate(
            {**fake.lead(alone), "_embedded": {"companies": [{"id": 7}, {"id": 8}]}}  # type: ignore[dict-item]
        ).company_id
        == 7
    )


def test_companies_by_id_in_chunks_and_updated_since(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, agent: int
) -> None:
    hours = fake.add_custom_field("Часов в пакете", "numeric", entity="companies")
    companies = [
        fake.add_company(f"Клиент {n}", custom_fields={hours: 10}, created_at=START - 100)
        for n in range(120)
    ]
    fake.update_company(companies[5], by_user=agent, custom_fields={hours: 8}, at=START)
    fake.reset_request_log()

    read = list(amo.iter_companies(ids=[*companies, companies[0]]))
    assert [company.id for company in read] == companies
    assert len(queries(fake, "/api/v4/companies")) == 3
    assert list(amo.iter_companies(ids=[])) == []

    recent = list(amo.iter_companies(updated_from=moment(0)))
    assert [company.id for company in recent] == [companies[5]]
    assert recent[0].updated_at == moment(0)
    field = recent[0].field(hours)
    assert field is not None
    assert field.values[0].value == "8"


def test_company_fields_are_written_with_bad_items_dropped(
    fake: FakeAmoCRM, amo: AmoClient
) -> None:
    until = fake.add_custom_field("Пакет действует до", "date", entity="companies")
    plan = fake.add_custom_field("Тариф", "select", enums=["Базовый", "Про"], entity="companies")
    kept = fake.add_company("ООО Ромашка")
    rejected = fake.add_company("ООО Лютик")

    result = amo.update_companies(
        [
            EntityUpdate(
                kept,
                {
                    until: moment(86400),
                    plan: SelectValue(fake.enum_id(plan, "Про", entity="companies")),
                },
            ),
            EntityUpdate(rejected, {999_999: 1}),
        ]
    )

    assert result.written == (kept,)
    assert "custom_fields_values.0.field_id" in result.failed[rejected]
    company = amo.company(kept)
    assert company is not None
    assert company.field(until).values[0].value == int(START) + 86400  # type: ignore[union-attr]
    assert company.field(plan).values[0].value == "Про"  # type: ignore[union-attr]


def test_tasks_go_on_companies(fake: FakeAmoCRM, amo: AmoClient, agent: int) -> None:
    company = fake.add_company("ООО Ромашка")
    created = amo.create_tasks(
        [
            NewTask(
                text="Пакет часов закончился",
                complete_till=int(START) + 3600,
                entity_id=company,
                entity_type="companies",
                responsible_user_id=agent,
            )
        ]
    )
    tasks = list(amo.iter_tasks(entity_type="companies", entity_ids=[company]))
    assert [task.id for task in tasks] == [created[0].id]
    assert tasks[0].entity_type == "companies"
    assert list(amo.iter_tasks(entity_type="leads", entity_ids=[company])) == []
