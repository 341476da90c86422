"""A success status with a body of the wrong shape is an UnexpectedAnswer, never an empty list.

Only HTTP 204 (or an empty body) to a list read means "nothing there". A write's answer
has to list what was written; a create's answer has to list as many items as were sent.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from amo_client.client import UNEXPECTED_ATTEMPTS, AmoClient
from amo_client.errors import UnexpectedAnswer
from amo_client.models import EntityUpdate, NewTask
from tests.client_kit import BASE_URL

HTML_PAGE = "<html><body><h1>Gateway says hello</h1></body></html>"

GARBLED = {
    "empty object": httpx.Response(200, json={}),
    "empty _embedded": httpx.Response(200, json={"_embedded": {}}),
    "null list": httpx.Response(200, json={"_embedded": {"leads": None}}),
    "a list": httpx.Response(200, json=[]),
    "html": httpx.Response(200, text=HTML_PAGE, headers={"content-type": "text/html"}),
    "truncated": httpx.Response(200, text='{"_embedded": {"leads": [{"id": 1, "na'),
    "a redirect": httpx.Response(302, headers={"location": "https://elsewhere/login"}),
}


def copy_of(response: httpx.Response) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers, content=response.content)


def lead(lead_id: int) -> dict[str, Any]:
    return {
        "id": lead_id,
        "name": f"Обращение {lead_id}",
        "status_id": 1,
        "pipeline_id": 1,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
    }


def new_task(lead_id: int) -> NewTask:
    return NewTask(
        text="Ответить клиенту", complete_till=1_700_003_600, entity_id=lead_id, entity_type="leads"
    )


@pytest.mark.parametrize("shape", list(GARBLED))
def test_a_garbled_list_answer_is_an_error_after_a_few_tries_not_an_empty_list(
    router: respx.MockRouter, mocked_amo: AmoClient, shape: str
) -> None:
    route = router.get("/api/v4/leads").mock(side_effect=lambda _: copy_of(GARBLED[shape]))
    with pytest.raises(UnexpectedAnswer) as caught:
        list(mocked_amo.iter_leads())
    error = caught.value
    assert route.call_count == UNEXPECTED_ATTEMPTS
    assert (error.method, error.path) == ("GET", "/api/v4/leads")
    assert error.status == GARBLED[shape].status_code
    assert error.fatal is False
    assert str(error).startswith(f"GET /api/v4/leads: HTTP {error.status}: ")


def test_the_excerpt_shows_the_start_of_a_garbled_body(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").mock(side_effect=lambda _: copy_of(GARBLED["html"]))
    with pytest.raises(UnexpectedAnswer, match="not JSON") as caught:
        list(mocked_amo.iter_leads())
    assert caught.value.excerpt.startswith("<html><body><h1>Gateway says hello")


def test_a_garbled_answer_once_is_ridden_out(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").mock(
        side_effect=[
            httpx.Response(200, json={"_embedded": {}}),
            httpx.Response(200, json={"_embedded": {"leads": [lead(1), lead(2)]}}),
        ]
    )
    assert [found.id for found in mocked_amo.iter_leads()] == [1, 2]


def test_a_garbled_second_page_does_not_end_the_list_early(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    first = {
        "_links": {"next": {"href": f"{BASE_URL}/api/v4/leads?page=2&limit=250"}},
        "_embedded": {"leads": [lead(1)]},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json={})
        return httpx.Response(200, json=first)

    router.get("/api/v4/leads").mock(side_effect=answer)
    seen: list[int] = []
    with pytest.raises(UnexpectedAnswer, match=r"no _embedded\.leads list"):
        seen.extend(found.id for found in mocked_amo.iter_leads())
    assert seen == [1]


def test_a_204_is_still_an_empty_list(router: respx.MockRouter, mocked_amo: AmoClient) -> None:
    router.get("/api/v4/leads").respond(204)
    assert list(mocked_amo.iter_leads()) == []


def test_an_account_answer_that_is_not_an_object_is_an_error(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/account").respond(200, json=["not", "an", "account"])
    with pytest.raises(UnexpectedAnswer, match="not a JSON object"):
        mocked_amo.account()


def test_a_patch_answered_without_its_list_is_an_error_not_nothing_written(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    route = router.patch("/api/v4/leads").respond(200, json={})
    with pytest.raises(UnexpectedAnswer, match=r"no _embedded\.leads list"):
        mocked_amo.update_leads([EntityUpdate(7, status_id=5)])
    assert route.call_count == UNEXPECTED_ATTEMPTS  # a PATCH is safe to send again


def test_a_create_answered_with_fewer_tasks_than_sent_is_an_error_and_not_sent_again(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    route = router.post("/api/v4/tasks").respond(
        200, json={"_embedded": {"tasks": [{"id": 101, "request_id": "0"}]}}
    )
    with pytest.raises(UnexpectedAnswer, match=r"1 items in _embedded\.tasks for 2 sent"):
        mocked_amo.create_tasks([new_task(7), new_task(8)])
    assert route.call_count == 1  # a POST may have created them: never sent twice


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(204), httpx.Response(200, json={"_embedded": {"tasks": None}})],
    ids=["204", "no list"],
)
def test_a_create_answered_without_tasks_is_an_error(
    router: respx.MockRouter, mocked_amo: AmoClient, answer: httpx.Response
) -> None:
    router.post("/api/v4/tasks").mock(return_value=answer)
    with pytest.raises(UnexpectedAnswer):
        mocked_amo.create_tasks([new_task(7)])
