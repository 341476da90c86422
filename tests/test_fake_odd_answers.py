"""The fake amoCRM's odd 2xx answers: bodies that break the documented shape with a success
status, injected through the same fault queue as errors and timeouts, by both ways in."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from amo_client.fake import ODD_SHAPES, FakeAmoCRM, PipelineRef
from tests.fake_kit import ids_of

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait


@pytest.fixture
def lead_ids(fake: FakeAmoCRM, support: PipelineRef) -> list[int]:
    return [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(3)]


def test_each_odd_shape_answers_a_list_read(
    fake: FakeAmoCRM, api: httpx.Client, lead_ids: list[int]
) -> None:
    normal = api.get("/api/v4/leads")
    answers = {}
    for shape in ODD_SHAPES:
        fake.odd_answer_next(shape, path="/api/v4/leads")
        answers[shape] = api.get("/api/v4/leads")

    assert {shape: answer.status_code for shape, answer in answers.items()} == {
        "empty_object": 200,
        "empty_embedded": 200,
        "null_list": 200,
        "html": 200,
        "truncated": 200,
        "list": 200,
        "no_content": 204,
    }
    assert answers["empty_object"].json() == {}
    assert answers["empty_embedded"].json() == {"_embedded": {}}
    assert answers["null_list"].json() == {"_embedded": {"leads": None}}
    assert answers["html"].headers["content-type"] == "text/html"
    assert answers["html"].text.startswith("<!DOCTYPE html>")
    truncated = answers["truncated"]
    assert truncated.headers["content-type"] == "application/hal+json"
    assert normal.content.startswith(truncated.content)
    assert 0 < len(truncated.content) < len(normal.content)
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    assert [lead["id"] for lead in answers["list"].json()] == lead_ids
    assert answers["no_content"].content == b""
    assert ids_of(api.get("/api/v4/leads")) == lead_ids


def test_a_cut_answer_to_an_empty_list_is_a_200_with_half_a_body(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    fake.odd_answer_next("truncated", path="/api/v4/leads")
    cut = api.get("/api/v4/leads")
    assert (cut.status_code, cut.content) == (200, b'{"_embed')


def test_the_list_key_comes_from_the_path(
    fake: FakeAmoCRM, api: httpx.Client, lead_ids: list[int]
) -> None:
    fake.odd_answer_next("null_list", path=re.compile(r"/events$"))
    fake.odd_answer_next("list", path="/api/v4/leads/pipelines")
    assert api.get("/api/v4/events").json() == {"_embedded": {"events": None}}
    pipelines = api.get("/api/v4/leads/pipelines").json()
    assert isinstance(pipelines, list)
    assert pipelines[0]["name"] == "Поддержка"


def test_odd_answers_count_down_per_path_and_method_and_clear_with_the_other_faults(
    fake: FakeAmoCRM, api: httpx.Client, lead_ids: list[int]
) -> None:
    fake.odd_answer_next("empty_object", 2, path="/api/v4/leads", method="GET")
    assert api.get("/api/v4/account").json()["id"] == fake.account_id
    assert api.get("/api/v4/leads").json() == {}
    assert api.get("/api/v4/leads").json() == {}
    assert ids_of(api.get("/api/v4/leads")) == lead_ids

    fake.fail_next(status=503, path="/api/v4/leads")
    fake.odd_answer_next("no_content", path="/api/v4/leads")
    assert api.get("/api/v4/leads").status_code == 503
    assert api.get("/api/v4/leads").status_code == 204
    assert api.get("/api/v4/leads").status_code == 200

    fake.odd_answer_next("html", 5)
    fake.clear_faults()
    assert api.get("/api/v4/leads").headers["content-type"] == "application/hal+json"


def test_a_write_answered_oddly_still_takes_effect(
    fake: FakeAmoCRM, api: httpx.Client, lead_ids: list[int]
) -> None:
    fake.odd_answer_next("empty_object", method="PATCH")
    patched = api.patch("/api/v4/leads", json=[{"id": lead_ids[0], "name": "Переименовано"}])
    assert (patched.status_code, patched.json()) == (200, {})
    lead = fake.lead(lead_ids[0])
    assert lead is not None
    assert lead["name"] == "Переименовано"
    assert [entry.status for entry in fake.request_log] == [200]
