"""The fake amoCRM's random faults: a share of requests hit by a drawn kind of fault, counted
by kind, through both ways in."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from amo_client.fake import RANDOM_FAULT_KINDS, FakeAmoCRM, PipelineRef, RandomFaultKind
from tests.fake_kit import ids_of

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait

TASK = {"text": "Перезвонить", "complete_till": 1_700_003_600, "entity_type": "leads"}


def outcome(call: Callable[[], httpx.Response]) -> int | str:
    """The status of an answer, or the name of the transport error instead of one."""
    try:
        return call().status_code
    except httpx.TransportError as error:
        return type(error).__name__


def post_task(api: httpx.Client, lead_id: int) -> int | str:
    return outcome(lambda: api.post("/api/v4/tasks", json=[{**TASK, "entity_id": lead_id}]))


def test_without_a_draw_no_request_is_hit(fake: FakeAmoCRM, api: httpx.Client) -> None:
    fake.fault_at_random(0.0)

    assert {outcome(lambda: api.get("/api/v4/leads")) for _ in range(20)} == {204}
    assert fake.faults_injected == {}


@pytest.mark.parametrize(
    ("kind", "answers"),
    [("rate_limited", {429}), ("server_error", {500, 502, 503, 504})],
)
def test_an_error_status_is_answered_and_the_request_not_served(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, kind: RandomFaultKind, answers: set[int]
) -> None:
    fake.fault_at_random(1.0, kinds=[kind], seed=1)

    seen = {post_task(api, lead_id) for _ in range(40)}

    assert seen == answers
    assert fake.tasks == []
    assert fake.faults_injected == {kind: 40}


@pytest.mark.parametrize("kind", ["timeout", "disconnect"])
def test_a_lost_request_is_not_served(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int, kind: RandomFaultKind
) -> None:
    fake.fault_at_random(1.0, kinds=[kind])

    assert isinstance(post_task(api, lead_id), str)
    assert fake.tasks == []
    assert fake.faults_injected == {kind: 1}


def test_a_timeout_after_processing_applies_the_write_and_loses_its_answer(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int
) -> None:
    fake.fault_at_random(1.0, kinds=["timeout_after_processing"])

    assert isinstance(post_task(api, lead_id), str)
    assert [task["entity_id"] for task in fake.tasks] == [lead_id]


def test_an_odd_answer_applies_the_write_and_bends_its_answer(
    fake: FakeAmoCRM, api: httpx.Client, lead_id: int
) -> None:
    fake.fault_at_random(1.0, kinds=["odd_answer"], seed=3)

    statuses = {post_task(api, lead_id) for _ in range(30)}

    assert statuses <= {200, 204}
    assert len(fake.tasks) == 30
    assert fake.faults_injected == {"odd_answer": 30}


def test_a_share_of_requests_is_hit_and_counted_by_kind(
    fake: FakeAmoCRM, api: httpx.Client
) -> None:
    fake.fault_at_random(0.1, seed=7)

    results = [outcome(lambda: api.get("/api/v4/leads")) for _ in range(1000)]

    injected = fake.faults_injected
    assert 60 <= sum(injected.values()) <= 140
    assert set(injected) == set(RANDOM_FAULT_KINDS)
    assert sum(1 for result in results if result == 204) >= 1000 - sum(injected.values())


def test_the_same_seed_draws_the_same_faults(fake: FakeAmoCRM, api: httpx.Client) -> None:
    def draws() -> list[int | str]:
        fake.fault_at_random(0.5, kinds=["rate_limited", "server_error"], seed=11)
        return [outcome(lambda: api.get("/api/v4/leads")) for _ in range(30)]

    assert draws() == draws()


def test_a_queued_fault_goes_first(fake: FakeAmoCRM, api: httpx.Client) -> None:
    fake.fault_at_random(1.0, kinds=["rate_limited"])
    fake.fail_next(status=502)

    assert outcome(lambda: api.get("/api/v4/leads")) == 502
    assert outcome(lambda: api.get("/api/v4/leads")) == 429
    assert fake.faults_injected == {"rate_limited": 1}


def test_clear_faults_stops_the_draw_and_keeps_the_count(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    fake.fault_at_random(1.0, kinds=["server_error"])
    assert outcome(lambda: api.get("/api/v4/leads")) in {500, 502, 503, 504}

    fake.clear_faults()

    assert ids_of(api.get("/api/v4/leads")) == []
    assert fake.faults_injected == {"server_error": 1}


@pytest.mark.parametrize(
    ("rate", "kinds"), [(-0.1, RANDOM_FAULT_KINDS), (1.5, RANDOM_FAULT_KINDS), (0.1, ())]
)
def test_a_bad_rate_or_kind_list_is_refused(
    fake: FakeAmoCRM, rate: float, kinds: tuple[RandomFaultKind, ...]
) -> None:
    with pytest.raises(ValueError, match=r"rate|kinds"):
        fake.fault_at_random(rate, kinds=kinds)
