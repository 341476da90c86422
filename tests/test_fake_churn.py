"""The fake amoCRM under a real account's churn: leads deleted, restored and merged, stages
edited, events indexed late, data changing between the pages of one read, several writes in
one second. Each test runs through the in-process transport and the loopback server."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from amo_client.fake import WON_STATUS_ID, FakeAmoCRM, PageTurn, PipelineRef
from tests.client_kit import START, FakeClock
from tests.fake_kit import embedded, ids_of

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait


def lead_event_types(api: httpx.Client, lead_id: int) -> list[str]:
    """The lead's events as the feed lists them, oldest first."""
    response = api.get(
        "/api/v4/events", params={"filter[entity]": "lead", "filter[entity_id][]": lead_id}
    )
    return [event["type"] for event in reversed(embedded(response, "events"))]


# ---------------------------------------------------------------- delete, restore, merge


def test_a_deleted_lead_leaves_the_list_and_answers_204_by_id(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int, clock: FakeClock
) -> None:
    kept = fake.add_lead("Остаётся", pipeline_id=support.id)
    gone = fake.add_lead("Удалят", pipeline_id=support.id)
    fake.delete_lead(gone, by=agent, at=START + 10)

    assert ids_of(api.get("/api/v4/leads")) == [kept]
    by_id = api.get(f"/api/v4/leads/{gone}")
    assert (by_id.status_code, by_id.content) == (204, b"")
    assert fake.lead(gone) is None
    assert fake.deleted_lead_ids == [gone]
    assert lead_event_types(api, gone) == ["lead_added", "lead_deleted"]
    deletion = embedded(
        api.get("/api/v4/events", params={"filter[type]": "lead_deleted"}), "events"
    )
    assert [(e["entity_id"], e["created_by"], e["created_at"]) for e in deletion] == [
        (gone, agent, int(START) + 10)
    ]

    trash = embedded(api.get("/api/v4/leads", params={"with": "only_deleted"}), "leads")
    assert [(lead["id"], lead["is_deleted"], lead["updated_at"]) for lead in trash] == [
        (gone, True, int(START) + 10)
    ]
    assert trash[0]["updated_by"] == agent
    assert trash[0]["status_id"] is None
    trashed = api.get(f"/api/v4/leads/{gone}", params={"with": "only_deleted"})
    assert trashed.json()["is_deleted"] is True
    assert api.get(f"/api/v4/leads/{kept}", params={"with": "only_deleted"}).status_code == 204

    patch = api.patch("/api/v4/leads", json=[{"id": gone, "name": "Поздно"}])
    assert patch.status_code == 400
    assert patch.json()["validation-errors"][0]["errors"][0]["code"] == "NotFound"
    with pytest.raises(KeyError):
        fake.delete_lead(gone, by=agent)


def test_a_restored_lead_comes_back_with_its_id_and_its_history(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, created_at=START)
    fake.add_event(lead_id, "incoming_chat_message", created_by=0, at=START + 5)
    fake.delete_lead(lead_id, by=agent, at=START + 10)
    fake.restore_lead(lead_id, by=agent, at=START + 20)

    assert ids_of(api.get("/api/v4/leads")) == [lead_id]
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert (lead["updated_at"], lead["updated_by"], lead["is_deleted"]) == (
        int(START) + 20,
        agent,
        False,
    )
    assert lead["status_id"] == support.status("Новое")
    assert lead_event_types(api, lead_id) == [
        "lead_added",
        "incoming_chat_message",
        "lead_deleted",
        "lead_restored",
    ]
    since_restore = api.get("/api/v4/leads", params={"filter[updated_at][from]": int(START) + 20})
    assert ids_of(since_restore) == [lead_id]
    assert fake.deleted_lead_ids == []
    assert api.get("/api/v4/leads", params={"with": "only_deleted"}).status_code == 204


def test_a_merge_deletes_the_loser_and_bumps_the_winner(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    company = fake.add_company("ООО Ромашка")
    winner = fake.add_lead("Первое письмо", pipeline_id=support.id, created_at=START)
    loser = fake.add_lead(
        "Повторное письмо", pipeline_id=support.id, created_at=START + 1, company_id=company
    )
    fake.add_event(loser, "incoming_chat_message", created_by=0, at=START + 2)
    task_id = fake.add_task(loser, "Ответить", complete_till=START + 3600)
    fake.merge_leads(winner, loser, by=agent, at=START + 30)

    assert ids_of(api.get("/api/v4/leads")) == [winner]
    assert api.get(f"/api/v4/leads/{loser}").status_code == 204
    kept = api.get(f"/api/v4/leads/{winner}").json()
    assert (kept["id"], kept["updated_at"], kept["updated_by"]) == (winner, int(START) + 30, agent)
    assert [company_ref["id"] for company_ref in kept["_embedded"]["companies"]] == [company]
    assert lead_event_types(api, winner) == ["lead_added", "entity_merged"]
    merged = embedded(api.get("/api/v4/events", params={"filter[type]": "entity_merged"}), "events")
    assert merged[0]["value_after"] == [{"entity": {"id": loser, "type": "lead"}}]
    assert lead_event_types(api, loser) == ["lead_added", "incoming_chat_message", "lead_deleted"]
    task = api.get(f"/api/v4/tasks/{task_id}").json()
    assert task["entity_id"] == winner
    with pytest.raises(ValueError, match="itself"):
        fake.merge_leads(winner, winner, by=agent)


# ---------------------------------------------------------------- stages


def test_stages_are_added_renamed_and_deleted_and_listed_at_once(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    def stages() -> list[tuple[str, int]]:
        pipelines = embedded(api.get("/api/v4/leads/pipelines"), "pipelines")
        statuses = pipelines[0]["_embedded"]["statuses"]
        return [(status["name"], status["sort"]) for status in statuses]

    triage = fake.add_status(support.id, "Разбор", after=support.status("Новое"))
    assert [name for name, _ in stages()] == [
        "Неразобранное",
        "Новое",
        "Разбор",
        "В работе",
        "Ждём клиента",
        "Успешно реализовано",
        "Закрыто и не реализовано",
    ]
    sorts = [sort for _, sort in stages()]
    assert sorts == sorted(sorts)
    last = fake.add_status(support.id, "Проверка клиентом")
    assert [name for name, _ in stages()][-3] == "Проверка клиентом"
    assert fake.pipeline(support.id).statuses["Проверка клиентом"] == last

    fake.rename_status(support.id, triage, "Сортировка")
    assert "Сортировка" in dict(stages())
    assert fake.pipeline(support.id).status("Сортировка") == triage
    fake.add_lead("Ждёт сортировки", pipeline_id=support.id, status_id=triage)
    with pytest.raises(ValueError, match="holds leads"):
        fake.delete_status(support.id, triage)
    with pytest.raises(ValueError, match="cannot be deleted"):
        fake.delete_status(support.id, WON_STATUS_ID)
    fake.delete_status(support.id, last)
    assert "Проверка клиентом" not in dict(stages())
    status = api.get(f"/api/v4/leads/pipelines/{support.id}/statuses/{last}")
    assert status.status_code == 404


def test_stages_are_edited_through_the_api_too(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    statuses_path = f"/api/v4/leads/pipelines/{support.id}/statuses"
    created = api.post(statuses_path, json=[{"name": "Разбор", "sort": 25, "color": "#fffeb2"}])
    added = embedded(created, "statuses")[0]
    assert (added["name"], added["color"], added["request_id"]) == ("Разбор", "#fffeb2", "0")
    names = [status["name"] for status in embedded(api.get(statuses_path), "statuses")]
    assert names[1:4] == ["Новое", "Разбор", "В работе"]

    renamed = api.patch(f"{statuses_path}/{added['id']}", json={"name": "Сортировка"})
    assert renamed.json()["name"] == "Сортировка"
    assert fake.pipeline(support.id).status("Сортировка") == added["id"]
    assert api.patch(f"{statuses_path}/{WON_STATUS_ID}", json={"name": "Ура"}).status_code == 400

    fake.add_lead("Обращение", pipeline_id=support.id, status_id=added["id"])
    refused = api.delete(f"{statuses_path}/{added['id']}")
    assert refused.status_code == 400
    assert "holds leads" in refused.json()["detail"]
    emptied = support.status("Ждём клиента")
    assert api.delete(f"{statuses_path}/{emptied}").status_code == 204
    assert api.get(f"{statuses_path}/{emptied}").status_code == 404
    assert api.post(statuses_path, json=[{"name": " "}]).status_code == 400


# ---------------------------------------------------------------- events indexed late


def test_a_late_event_is_missed_by_a_cursor_just_after_its_created_at(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int, clock: FakeClock
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, record_added_event=False)
    reply = fake.add_event(
        lead_id,
        "outgoing_chat_message",
        created_by=agent,
        at=START,
        visible_after=timedelta(seconds=90),
    )
    clock.wall = START + 5
    since_before = {"filter[created_at][from]": int(START) - 60}
    assert api.get("/api/v4/events", params=since_before).status_code == 204
    assert api.get(f"/api/v4/events/{reply}").status_code == 204
    assert fake.unindexed_event_ids == [reply]
    cursor = int(clock.wall)  # a reader moves its cursor to the time of its read

    clock.wall = START + 120
    after_cursor = api.get("/api/v4/events", params={"filter[created_at][from]": cursor})
    assert after_cursor.status_code == 204
    listed = embedded(api.get("/api/v4/events", params=since_before), "events")
    assert [(event["id"], event["created_at"]) for event in listed] == [(reply, int(START))]
    assert api.get(f"/api/v4/events/{reply}").json()["id"] == reply
    assert fake.unindexed_event_ids == []


def test_an_index_delay_holds_back_the_events_of_api_writes_until_released(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, record_added_event=False)
    fake.event_index_delay = 300
    moved = api.patch(
        "/api/v4/leads", json=[{"id": lead_id, "status_id": support.status("В работе")}]
    )
    assert moved.status_code == 200
    assert api.get("/api/v4/events").status_code == 204
    assert [event["type"] for event in fake.lead_events(lead_id)] == ["lead_status_changed"]
    assert fake.release_events() == 1
    assert lead_event_types(api, lead_id) == ["lead_status_changed"]
    assert fake.release_events() == 0


# ---------------------------------------------------------------- changes between pages


def test_closing_a_lead_already_read_skips_the_first_lead_of_the_next_page(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    first, second, third, fourth = (
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(4)
    )
    turns: list[PageTurn] = []

    def close_the_first(turn: PageTurn) -> None:
        turns.append(turn)
        fake.move_lead(first, WON_STATUS_ID, by_user=agent)

    fake.on_page(close_the_first)
    open_leads = {
        "filter[statuses][0][pipeline_id]": support.id,
        "filter[statuses][0][status_id]": support.status("Новое"),
        "limit": 2,
    }
    page_one = api.get("/api/v4/leads", params=open_leads)
    assert ids_of(page_one) == [first, second]
    assert turns == []
    page_two = api.get(page_one.json()["_links"]["next"]["href"])
    assert ids_of(page_two) == [fourth]
    assert "next" not in page_two.json()["_links"]
    assert [(turn.path, turn.page) for turn in turns] == [("/api/v4/leads", 2)]
    assert third not in ids_of(page_one) + ids_of(page_two)

    fake.on_page(None)
    page_two_again = api.get(page_one.json()["_links"]["next"]["href"])
    assert ids_of(page_two_again) == [fourth]
    assert len(turns) == 1


def test_a_lead_created_mid_read_repeats_a_lead_on_the_next_page_when_newest_first(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    older = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(4)]
    created: list[int] = []
    fake.on_page(lambda turn: created.append(fake.add_lead("Новое", pipeline_id=support.id)))
    newest_first: dict[str, str | int] = {"order[id]": "desc", "limit": 2}
    page_one = api.get("/api/v4/leads", params=newest_first)
    page_two = api.get("/api/v4/leads", params={**newest_first, "page": 2})
    assert ids_of(page_one) == [older[3], older[2]]
    assert ids_of(page_two) == [older[2], older[1]]
    assert len(created) == 1


# ---------------------------------------------------------------- one second, two writes


def test_two_updates_within_one_second_share_updated_at_and_both_land(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, clock: FakeClock
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, created_at=START - 100)
    clock.wall = START + 0.2
    first = api.patch(f"/api/v4/leads/{lead_id}", json={"name": "Не работает вход"})
    clock.wall = START + 0.7
    second = api.patch(f"/api/v4/leads/{lead_id}", json={"price": 500})
    assert first.json()["updated_at"] == second.json()["updated_at"] == int(START)
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert (lead["name"], lead["price"], lead["updated_at"]) == (
        "Не работает вход",
        500,
        int(START),
    )
    assert ids_of(api.get("/api/v4/leads", params={"filter[updated_at][from]": int(START)})) == [
        lead_id
    ]
    past_that_second = {"filter[updated_at][from]": int(START) + 1}
    assert api.get("/api/v4/leads", params=past_that_second).status_code == 204


def test_updated_at_and_statuses_filters_include_their_bounds(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef, agent: int
) -> None:
    at_from = fake.add_lead("С начала", pipeline_id=support.id, created_at=START + 10)
    at_to = fake.add_lead("До конца", pipeline_id=support.id, created_at=START + 20)
    won = fake.add_lead("Закрыто", pipeline_id=support.id, created_at=START + 15)
    fake.move_lead(won, WON_STATUS_ID, by_user=agent, at=START + 15)
    fake.add_lead("Позже", pipeline_id=support.id, created_at=START + 21)
    window: dict[str, int] = {
        "filter[updated_at][from]": int(START) + 10,
        "filter[updated_at][to]": int(START) + 20,
    }
    assert ids_of(api.get("/api/v4/leads", params=window)) == [at_from, at_to, won]
    closed_here = {
        **window,
        "filter[statuses][0][pipeline_id]": support.id,
        "filter[statuses][0][status_id]": WON_STATUS_ID,
    }
    assert ids_of(api.get("/api/v4/leads", params=closed_here)) == [won]
    elsewhere = {
        "filter[statuses][0][pipeline_id]": support.id + 1,
        "filter[statuses][0][status_id]": WON_STATUS_ID,
    }
    assert api.get("/api/v4/leads", params=elsewhere).status_code == 204
