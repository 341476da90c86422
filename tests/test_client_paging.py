"""AmoClient reads: 204 as an empty answer, ``_links.next`` paging, page-size caps, event chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from tests.client_kit import BASE_URL, FakeClock, long_lived_client


@pytest.fixture
def support(fake: FakeAmoCRM) -> PipelineRef:
    return fake.add_pipeline("Поддержка", ["Новое", "В работе", "Ждём клиента"])


@pytest.fixture
def amo(fake: FakeAmoCRM, clock: FakeClock) -> Iterator[AmoClient]:
    with long_lived_client(fake, clock) as client:
        yield client


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mocked:
        yield mocked


@pytest.fixture
def mocked_amo(router: respx.MockRouter, clock: FakeClock) -> Iterator[AmoClient]:
    with AmoClient(
        BASE_URL,
        LongLivedToken("long-lived-token-value"),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    ) as client:
        yield client


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


def test_a_204_after_a_next_link_ends_the_iteration(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    # A lead deleted between two pages can leave a next link that points past the end.
    next_href = f"{BASE_URL}/api/v4/leads?limit=250&page=2"
    route = router.get("/api/v4/leads").mock(
        side_effect=[
            httpx.Response(200, json=leads_page(range(1, 251), next_href)),
            httpx.Response(204),
        ]
    )
    assert len(list(mocked_amo.iter_leads())) == 250
    assert route.call_count == 2


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
