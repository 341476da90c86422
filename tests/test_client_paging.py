"""AmoClient reads: 204 as an empty answer, ``_links.next`` paging, page-size caps, event chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PageTurn, PipelineRef
from tests.client_kit import BASE_URL, FakeClock


def query_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query.decode()))


def lead_json(lead_id: int) -> dict[str, object]:
    return {
        "id": lead_id,
        "name": f"Обращение {lead_id}",
        "status_id": 1,
        "pipeline_id": 2,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
    }


def leads_page(ids: range, next_href: str | None) -> dict[str, object]:
    links: dict[str, object] = {"self": {"href": f"{BASE_URL}/api/v4/leads"}}
    if next_href is not None:
        links["next"] = {"href": next_href}
    return {"_links": links, "_embedded": {"leads": [lead_json(i) for i in ids]}}


# ---------------------------------------------------------------- respx: the wire format


def test_a_204_list_is_empty_and_a_204_lead_is_none(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").respond(204)
    router.get("/api/v4/leads/77").respond(204)
    router.get("/api/v4/events").respond(204)
    assert list(mocked_amo.iter_leads()) == []
    assert mocked_amo.lead(77) is None
    assert list(mocked_amo.iter_events(entity_ids=[77])) == []


def test_paging_follows_next_links_and_sends_them_unchanged(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    second = f"{BASE_URL}/api/v4/leads?limit=250&order%5Bid%5D=asc&page=2"
    third = f"{BASE_URL}/api/v4/leads?limit=250&order%5Bid%5D=asc&page=3"

    def answer(request: httpx.Request) -> httpx.Response:
        page = query_of(request).get("page", "1")
        if page == "1":
            return httpx.Response(200, json=leads_page(range(1, 251), second))
        if page == "2":
            return httpx.Response(200, json=leads_page(range(251, 501), third))
        return httpx.Response(200, json=leads_page(range(501, 601), None))

    route = router.get("/api/v4/leads").mock(side_effect=answer)
    ids = [lead.id for lead in mocked_amo.iter_leads()]
    assert ids == list(range(1, 601))
    assert route.call_count == 3
    assert str(route.calls[1].request.url) == second
    assert str(route.calls[2].request.url) == third


def test_a_204_after_a_next_link_is_asked_again_and_a_second_one_ends_the_iteration(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    # A lead deleted between two pages can leave a next link that points past the end; an
    # odd empty answer looks the same, so the page is asked for once more.
    next_href = f"{BASE_URL}/api/v4/leads?limit=250&page=2"
    route = router.get("/api/v4/leads").mock(
        side_effect=[
            httpx.Response(200, json=leads_page(range(1, 251), next_href)),
            httpx.Response(204),
            httpx.Response(204),
        ]
    )
    assert len(list(mocked_amo.iter_leads())) == 250
    assert route.call_count == 3


def test_a_204_after_a_next_link_that_was_odd_loses_no_page(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    next_href = f"{BASE_URL}/api/v4/leads?limit=250&page=2"
    route = router.get("/api/v4/leads").mock(
        side_effect=[
            httpx.Response(200, json=leads_page(range(1, 251), next_href)),
            httpx.Response(204),
            httpx.Response(200, json=leads_page(range(251, 301), None)),
        ]
    )
    assert len(list(mocked_amo.iter_leads())) == 300
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("path", "read", "limit"),
    [
        ("/api/v4/leads", lambda amo: amo.iter_leads(), "250"),
        ("/api/v4/events", lambda amo: amo.iter_events(), "100"),
        ("/api/v4/leads/custom_fields", lambda amo: amo.iter_lead_custom_fields(), "50"),
        ("/api/v4/companies/custom_fields", lambda amo: amo.iter_company_custom_fields(), "50"),
        ("/api/v4/tasks", lambda amo: amo.iter_tasks(), "250"),
        ("/api/v4/companies", lambda amo: amo.iter_companies(), "250"),
    ],
)
def test_each_list_asks_for_its_capped_page_size(
    router: respx.MockRouter,
    mocked_amo: AmoClient,
    path: str,
    read: Callable[[AmoClient], Iterator[object]],
    limit: str,
) -> None:
    route = router.get(path).respond(204)
    assert list(read(mocked_amo)) == []
    assert query_of(route.calls.last.request)["limit"] == limit


def test_more_than_ten_entity_ids_go_out_in_chunks_of_ten(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    route = router.get("/api/v4/events").respond(204)
    list(mocked_amo.iter_events(entity_ids=list(range(1, 26)), created_by=[5, 6]))
    sent = [
        [int(v) for k, v in parse_qsl(call.request.url.query.decode()) if "entity_id" in k]
        for call in route.calls
    ]
    assert sent == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    for call in route.calls:
        assert query_of(call.request)["filter[entity][0]"] == "lead"


# ---------------------------------------------------------------- against the fake


def test_six_hundred_leads_arrive_in_three_pages_of_at_most_250(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    created = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, record_added_event=False)
        for n in range(600)
    ]
    fake.reset_request_log()
    leads = list(amo.iter_leads(pipeline_id=support.id))
    assert [lead.id for lead in leads] == sorted(created)
    pages = [entry for entry in fake.request_log if entry.path == "/api/v4/leads"]
    assert len(pages) == 3
    assert all("limit=250" in entry.query for entry in pages)
    assert [entry.status for entry in pages] == [200, 200, 200]
    assert fake.rate_limited_total == 0


def test_empty_lists_and_a_missing_lead_are_204s_from_the_fake(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    other = fake.add_pipeline("Продажи", ["Первичный контакт"])
    fake.add_lead("Обращение", pipeline_id=support.id)
    fake.reset_request_log()
    assert list(amo.iter_leads(pipeline_id=other.id)) == []
    assert amo.lead(99_999_999) is None
    assert list(amo.iter_tasks()) == []
    assert list(amo.iter_events(types=["outgoing_call"])) == []
    assert [entry.status for entry in fake.request_log] == [204, 204, 204, 204]


def test_events_page_by_100_and_custom_fields_by_50(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id, record_added_event=False)
    for n in range(130):
        fake.add_event(lead_id, "incoming_chat_message", created_by=0, at=clock.time() + n)
    for n in range(60):
        fake.add_custom_field(f"Поле {n}", "text")
    fake.reset_request_log()
    events = list(amo.iter_events(entity_ids=[lead_id]))
    fields = list(amo.iter_lead_custom_fields())
    assert len(events) == 130
    assert len(fields) == 60
    queries = [(entry.path, entry.query) for entry in fake.request_log]
    assert [path for path, _ in queries].count("/api/v4/events") == 2
    assert [path for path, _ in queries].count("/api/v4/leads/custom_fields") == 2
    assert all("limit=100" in q for p, q in queries if p == "/api/v4/events")
    assert all("limit=50" in q for p, q in queries if p == "/api/v4/leads/custom_fields")


def test_events_of_25_leads_come_back_whole_though_the_fake_refuses_more_than_10_ids(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_ids = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(25)]
    fake.reset_request_log()
    events = list(amo.iter_events(entity_ids=lead_ids, types=["lead_added"]))
    assert sorted(event.entity_id for event in events) == sorted(lead_ids)
    assert [entry.status for entry in fake.request_log] == [200, 200, 200]


def test_a_lead_by_id_and_the_account_parse_into_models(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Не работает вход", pipeline_id=support.id, tags=["Приоритет"])
    lead = amo.lead(lead_id)
    assert lead is not None
    assert lead.status_id == support.status("Новое")
    assert lead.tag_names == ("Приоритет",)
    account = amo.account()
    assert account.timezone == "Europe/Moscow"
    assert [p.name for p in amo.pipelines()] == ["Поддержка"]


# ---------------------------------------------------------------- reads that cannot skip


def test_a_read_by_update_skips_no_lead_when_one_already_read_leaves_the_filter(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    ids = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, created_at=clock.time() - 900 + n)
        for n in range(600)
    ]
    open_ = [support.status("Новое")]
    turns: list[PageTurn] = []

    def close_the_first(turn: PageTurn) -> None:
        turns.append(turn)
        if len(turns) == 2:
            fake.move_lead(ids[0], 142, by_user=fake.api_user_id)

    fake.on_read(close_the_first)
    read = [
        lead.id for lead in amo.iter_leads(pipeline_id=support.id, status_ids=open_, by_update=True)
    ]
    fake.on_read(None)

    assert set(ids[1:]) <= set(read)
    assert len(read) == len(set(read))
    assert len(turns) == 3  # 600 leads: three pages of 250, none twice


def test_by_offset_the_same_change_skips_a_lead(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    """What the read by update exists for: amoCRM's offset pages shift."""
    ids = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, created_at=clock.time() - 900 + n)
        for n in range(300)
    ]
    fake.on_page(lambda turn: fake.move_lead(ids[0], 142, by_user=fake.api_user_id))
    read = {
        lead.id
        for lead in amo.iter_leads(pipeline_id=support.id, status_ids=[support.status("Новое")])
    }
    fake.on_page(None)

    assert ids[250] not in read


def test_a_read_by_update_sees_a_note_edited_mid_read_and_skips_none(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    start = clock.time() - 1000
    notes = [
        fake.add_note(lead_id, f"Время: {n + 1} мин", created_by=fake.api_user_id, at=start + n)
        for n in range(300)
    ]
    turns: list[PageTurn] = []

    def edit_the_first(turn: PageTurn) -> None:
        turns.append(turn)
        if len(turns) == 2:
            fake.edit_note(notes[0], "Время: 2 ч", by=fake.api_user_id)

    fake.on_read(edit_the_first)
    read = list(amo.iter_notes("leads", updated_from=datetime.fromtimestamp(start - 1, UTC)))
    fake.on_read(None)

    assert {note.id for note in read} == set(notes)
    (edited,) = [note for note in read if note.id == notes[0] and "2 ч" in str(note.params)]
    assert edited.updated_at > read[1].updated_at


def test_more_leads_in_one_second_than_a_page_holds_are_all_read(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    moment = clock.time() - 60
    ids = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, created_at=moment)
        for n in range(620)
    ]

    read = [lead.id for lead in amo.iter_leads(pipeline_id=support.id, by_update=True)]

    assert sorted(read) == sorted(ids)


def test_an_empty_first_answer_is_asked_again_when_the_read_must_not_take_absence(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.odd_answer_next("no_content", path="/api/v4/leads")
    plain = [lead.id for lead in amo.iter_leads(pipeline_id=support.id, by_update=True)]
    fake.odd_answer_next("no_content", path="/api/v4/leads")
    confirmed = [
        lead.id
        for lead in amo.iter_leads(pipeline_id=support.id, by_update=True, confirm_empty=True)
    ]

    assert plain == []  # a quiet cycle's read pays for no second question
    assert confirmed == [lead_id]


def crowded_account(
    fake: FakeAmoCRM, support: PipelineRef, clock: FakeClock
) -> tuple[float, list[int], list[int]]:
    """300 leads sharing one second (more than a page), then 50 a second apart."""
    moment = clock.time() - 600
    crowded = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, created_at=moment)
        for n in range(300)
    ]
    later = [
        fake.add_lead(f"Обращение {n}", pipeline_id=support.id, created_at=moment + 10 + n)
        for n in range(50)
    ]
    return moment, crowded, later


def test_an_empty_answer_inside_a_crowded_first_second_is_asked_again(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    moment, crowded, later = crowded_account(fake, support, clock)
    reads: list[PageTurn] = []

    def empty_second_page(turn: PageTurn) -> None:
        reads.append(turn)
        if len(reads) == 1:  # the answer to the next request will be a 204
            fake.odd_answer_next("no_content", path="/api/v4/leads")

    fake.on_read(empty_second_page)
    since = datetime.fromtimestamp(moment, UTC)
    read = {lead.id for lead in amo.iter_leads(updated_from=since, by_update=True)}
    fake.on_read(None)

    assert set(crowded + later) <= read


def test_a_lead_leaving_a_crowded_second_mid_read_makes_it_read_again(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef, clock: FakeClock
) -> None:
    moment, crowded, later = crowded_account(fake, support, clock)
    reads: list[PageTurn] = []

    def change_the_first(turn: PageTurn) -> None:
        reads.append(turn)
        if len(reads) == 2:  # between the crowded second's first two pages
            fake.update_lead(crowded[0], name="Изменено", by_user=fake.api_user_id)

    fake.on_read(change_the_first)
    since = datetime.fromtimestamp(moment, UTC)
    read = {
        lead.id for lead in amo.iter_leads(updated_from=since, by_update=True, recheck_crowded=True)
    }
    fake.on_read(None)

    assert set(crowded + later) <= read
