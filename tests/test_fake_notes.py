"""Notes in the fake amoCRM: added, edited and deleted in the interface or by the API, listed
with amoCRM's filters, paging and gaps (``filter[created_at]`` ignored). Each test runs
through the in-process transport and the loopback server."""

from __future__ import annotations

import httpx
import pytest

from amo_client.fake import FakeAmoCRM, PipelineRef
from tests.client_kit import START, FakeClock
from tests.fake_kit import embedded, ids_of

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait

NOTES = "/api/v4/leads/notes"


def note_ids(api: httpx.Client, **params: object) -> list[int]:
    return ids_of(api.get(NOTES, params=params), "notes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- added in the interface


def test_a_note_added_by_a_person_is_listed_with_one_event(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    note_id = fake.add_note(lead_id, "Перезвонил клиенту", created_by=agent, at=START + 5)

    listed = embedded(api.get(NOTES), "notes")
    href = listed[0]["_links"]["self"]["href"]
    assert href.endswith(f"/api/v4/leads/{lead_id}/notes/{note_id}")
    assert listed == [
        {
            "id": note_id,
            "entity_id": lead_id,
            "created_by": agent,
            "updated_by": agent,
            "created_at": int(START) + 5,
            "updated_at": int(START) + 5,
            "responsible_user_id": agent,
            "group_id": 0,
            "note_type": "common",
            "params": {"text": "Перезвонил клиенту"},
            "account_id": fake.account_id,
            "_links": {"self": {"href": href}},
        }
    ]
    added = fake.lead_events(lead_id, "common_note_added")
    assert [(e["created_by"], e["value_after"]) for e in added] == [
        (agent, [{"note": {"id": note_id}}])
    ]
    assert fake.lead(lead_id)["updated_at"] == int(START) - 600  # type: ignore[index]
    assert api.get(f"{NOTES}/{note_id}").json()["id"] == note_id
    assert api.get(f"/api/v4/leads/{lead_id}/notes").json()["_embedded"]["notes"][0]["id"] == (
        note_id
    )


def test_a_call_note_keeps_its_duration_and_records_a_call(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    params = {"uniq": "c-1", "duration": 340, "source": "pbx", "phone": "+79000000000"}
    note_id = fake.add_note(lead_id, note_type="call_in", params=params, created_by=agent)
    assert (
        embedded(api.get(f"{NOTES}", params={"filter[id][]": note_id}), "notes")[0]["params"]
        == params
    )
    assert fake.lead_events(lead_id, "incoming_call")[0]["value_after"] == [
        {"note": {"id": note_id}}
    ]
    assert fake.lead_events(lead_id, "common_note_added") == []
    with pytest.raises(ValueError, match=r"params\.duration"):
        fake.add_note(lead_id, note_type="call_out", params={"duration": "5 мин"}, created_by=0)
    with pytest.raises(ValueError, match=r"params\.text"):
        fake.add_note(lead_id, created_by=agent)
    with pytest.raises(KeyError):
        fake.add_note(999, "Нет такой сделки", created_by=agent)


# ---------------------------------------------------------------- filters, order, paging


def test_filters_by_updated_at_type_entity_and_id(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, lead_id: int, agent: int
) -> None:
    other = fake.add_lead("Другое", pipeline_id=support.id)
    early = fake.add_note(lead_id, "Рано", created_by=agent, at=START - 100)
    middle = fake.add_note(other, "Днём", created_by=agent, at=START)
    call = fake.add_note(
        lead_id, note_type="call_out", params={"duration": 60}, created_by=agent, at=START + 100
    )

    assert note_ids(api, **{"filter[updated_at][from]": int(START)}) == [middle, call]
    assert note_ids(api, **{"filter[updated_at][to]": int(START)}) == [early, middle]
    assert note_ids(api, **{"filter[updated_at]": int(START) + 1}) == [call]
    assert note_ids(api, **{"filter[note_type][]": "call_out"}) == [call]
    assert note_ids(api, **{"filter[note_type][0]": "common", "filter[entity_id][]": other}) == [
        middle
    ]
    assert note_ids(api, **{"filter[id][]": early}) == [early]
    assert note_ids(api, **{"filter[entity_id]": f"{lead_id},{other}"}) == [early, middle, call]
    assert api.get(NOTES, params={"filter[note_type][]": "sms_in"}).status_code == 204
    assert api.get(f"/api/v4/leads/{other}/notes", params={"filter[id][]": early}).status_code == (
        204
    )


def test_filter_created_at_is_silently_ignored(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    old = fake.add_note(lead_id, "Давно", created_by=agent, at=START - 86400)
    new = fake.add_note(lead_id, "Сейчас", created_by=agent, at=START)
    since_today = {"filter[created_at][from]": int(START) - 60}
    assert note_ids(api, **since_today) == [old, new]
    assert note_ids(api, **{"filter[created_at]": int(START) - 60}) == [old, new]


def test_order_by_updated_at_follows_edits(
    fake: FakeAmoCRM, api: httpx.Client, clock: FakeClock, lead_id: int, agent: int
) -> None:
    first = fake.add_note(lead_id, "Первая", created_by=agent, at=START)
    second = fake.add_note(lead_id, "Вторая", created_by=agent, at=START + 10)
    fake.edit_note(first, "Первая, исправлена", by=agent, at=START + 20)
    assert note_ids(api, **{"order[updated_at]": "asc"}) == [second, first]
    assert note_ids(api, **{"order[updated_at]": "desc"}) == [first, second]
    assert note_ids(api, **{"order[id]": "desc"}) == [second, first]
    assert note_ids(api) == [first, second]


def test_limit_is_capped_at_250_and_pages_end_in_204(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    for n in range(260):
        fake.add_note(lead_id, f"Заметка {n}", created_by=agent)
    assert len(note_ids(api, limit=250)) == 250
    assert len(note_ids(api, limit=300)) == 50
    second = api.get(NOTES, params={"limit": 250, "page": 2})
    assert len(embedded(second, "notes")) == 10
    assert "next" not in second.json()["_links"]
    assert api.get(NOTES, params={"limit": 250, "page": 3}).status_code == 204


def test_with_api_filtering_off_every_filter_is_ignored(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, lead_id: int, agent: int
) -> None:
    other = fake.add_lead("Другое", pipeline_id=support.id)
    mine = fake.add_note(lead_id, "Моя", created_by=agent, at=START)
    theirs = fake.add_note(other, "Чужая", created_by=agent, at=START - 100)
    fake.api_filter_enabled = False
    assert note_ids(api, **{"filter[entity_id][]": lead_id, "order[id]": "desc"}) == [theirs, mine]
    assert note_ids(api, **{"filter[updated_at][from]": int(START)}) == [mine, theirs]
    assert ids_of(api.get(f"/api/v4/leads/{lead_id}/notes"), "notes") == [mine]


# ---------------------------------------------------------------- edits and deletions


def test_an_edit_in_the_interface_moves_updated_at_only(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    author = fake.add_user("Автор")
    note_id = fake.add_note(lead_id, "Черновик", created_by=author, at=START)
    events_before = len(fake.events)
    fake.edit_note(note_id, "Итог", by=agent, at=START + 60)
    note = embedded(api.get(NOTES, params={"filter[updated_at]": int(START) + 30}), "notes")[0]
    assert (note["params"], note["created_at"], note["created_by"]) == (
        {"text": "Итог"},
        int(START),
        author,
    )
    assert (note["updated_at"], note["updated_by"]) == (int(START) + 60, agent)
    assert len(fake.events) == events_before
    call = fake.add_note(lead_id, note_type="call_in", params={"duration": 1}, created_by=0)
    with pytest.raises(ValueError, match="no text"):
        fake.edit_note(call, "Текст", by=agent)


def test_a_deleted_note_leaves_the_lists_and_records_common_note_deleted(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    kept = fake.add_note(lead_id, "Остаётся", created_by=agent, at=START)
    gone = fake.add_note(lead_id, "Удалят", created_by=agent, at=START)
    fake.delete_note(gone, by=agent, at=START + 30)

    assert note_ids(api) == [kept]
    assert api.get(f"{NOTES}/{gone}").status_code == 204
    assert fake.deleted_note_ids == [gone]
    response = api.get(
        "/api/v4/events",
        params={
            "filter[entity]": "lead",
            "filter[entity_id][]": lead_id,
            "filter[type]": "common_note_deleted",
        },
    )
    deleted = embedded(response, "events")
    assert [(e["created_by"], e["created_at"]) for e in deleted] == [(agent, int(START) + 30)]
    assert deleted[0]["value_before"] == [{"note": {"id": gone}}]
    assert deleted[0]["value_after"] == []
    with pytest.raises(KeyError):
        fake.delete_note(gone, by=agent)


# ---------------------------------------------------------------- the API's writes


def test_notes_posted_by_the_api_record_one_event_each(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int
) -> None:
    response = api.post(
        NOTES,
        json=[
            {"entity_id": lead_id, "note_type": "common", "params": {"text": "Принято"}},
            {"entity_id": lead_id, "note_type": "common", "params": {"text": "Ещё"}},
        ],
    )
    created = [note["id"] for note in embedded(response, "notes")]
    added = fake.lead_events(lead_id, "common_note_added")
    assert [event["value_after"][0]["note"]["id"] for event in added] == created
    assert {event["created_by"] for event in added} == {fake.api_user_id}
    bad = api.post(NOTES, json=[{"entity_id": lead_id, "note_type": "common", "params": []}])
    assert bad.json()["validation-errors"][0]["errors"][0]["path"] == "params"


def test_a_patch_edits_notes_and_bumps_updated_at(
    fake: FakeAmoCRM, api: httpx.Client, clock: FakeClock, lead_id: int, agent: int
) -> None:
    note_id = fake.add_note(lead_id, "Принято", created_by=agent, at=START)
    same = fake.add_note(lead_id, "Без изменений", created_by=agent, at=START)
    clock.wall += 90

    response = api.patch(
        NOTES,
        json=[
            {"id": note_id, "note_type": "common", "params": {"text": "Принято в работу"}},
            {"id": same, "params": {"text": "Без изменений"}},
        ],
    )

    edited = embedded(response, "notes")
    assert [(item["id"], item["updated_at"]) for item in edited] == [
        (note_id, int(START) + 90),
        (same, int(START)),
    ]
    note = api.get(f"{NOTES}/{note_id}").json()
    assert note["params"] == {"text": "Принято в работу"}
    assert note["updated_by"] == fake.api_user_id
    assert note_ids(api, **{"filter[updated_at][from]": int(START) + 1}) == [note_id]


def test_a_patch_with_a_bad_item_changes_nothing(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    note_id = fake.add_note(lead_id, "Принято", created_by=agent, at=START)
    company = fake.add_company("ООО Ромашка")
    on_company = fake.add_note(company, "Договор", created_by=agent, entity="companies")
    response = api.patch(
        NOTES,
        json=[
            {"id": note_id, "params": {"text": "Иначе"}},
            {"id": 1, "params": {"text": "Нет такой"}},
            {"id": note_id, "note_type": "call_in"},
            {"id": note_id, "params": {"text": ""}},
            {"id": on_company, "params": {"text": "Не та сущность"}},
        ],
    )
    assert response.status_code == 400
    rejected = {
        group["request_id"]: group["errors"][0]["path"]
        for group in response.json()["validation-errors"]
    }
    assert rejected == {"1": "id", "2": "note_type", "3": "params.text", "4": "id"}
    assert fake.notes[0]["params"] == {"text": "Принято"}


def test_company_notes_are_their_own_list(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, agent: int
) -> None:
    company = fake.add_company("ООО Ромашка")
    on_lead = fake.add_note(lead_id, "По сделке", created_by=agent)
    posted = api.post(
        "/api/v4/companies/notes",
        json=[{"entity_id": company, "note_type": "common", "params": {"text": "Продлили"}}],
    )
    on_company = embedded(posted, "notes")[0]["id"]
    assert ids_of(api.get("/api/v4/companies/notes"), "notes") == [on_company]
    assert note_ids(api) == [on_lead]
    assert api.get(f"/api/v4/companies/notes/{on_lead}").status_code == 204
    assert fake.events[-1]["entity_type"] == "company"
    assert fake.events[-1]["value_after"] == [{"note": {"id": on_company}}]
