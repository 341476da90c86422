"""AmoClient under failure: 429 storms, 5xx bursts, timeouts, dropped connections, a ban.

Every fault is injected into the fake amoCRM; the virtual clock makes backoff instant while
the fake still sees requests spaced as the client spaced them.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import pytest
import respx
from structlog.testing import capture_logs

from amo_client import errors
from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.errors import (
    AccountBlocked,
    AmoError,
    ApiError,
    CircuitOpen,
    FatalAmoError,
    Forbidden,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
)
from amo_client.fake import FakeAmoCRM, PipelineRef
from amo_client.models import EntityUpdate, NewTask
from tests.client_kit import BASE_URL, FakeClock, long_lived_client

COOLDOWN = 900.0


@pytest.fixture
def amo(fake: FakeAmoCRM, clock: FakeClock) -> Iterator[AmoClient]:
    """The client of ``fake`` with six attempts a request and a ``COOLDOWN``-second circuit."""
    with long_lived_client(fake, clock, max_attempts=6, circuit_cooldown=COOLDOWN) as client:
        yield client


def statuses(fake: FakeAmoCRM, path: str | None = None) -> list[int | str | None]:
    return [
        entry.status if entry.status is not None else entry.error
        for entry in fake.request_log
        if path is None or entry.path == path
    ]


def retry_waits(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[float]:
    return [float(entry["wait_s"]) for entry in logs if entry["event"] == event]


def new_task(lead_id: int, clock: FakeClock) -> NewTask:
    return NewTask(
        text="Ответить клиенту",
        complete_till=int(clock.time()) + 3600,
        entity_id=lead_id,
        entity_type="leads",
    )


# ---------------------------------------------------------------- ridden out


def test_a_storm_of_html_429s_is_ridden_out_with_growing_bounded_waits(
    fake: FakeAmoCRM, amo: AmoClient
) -> None:
    fake.fail_next(5, status=429)
    with capture_logs() as logs:
        account = amo.account()
    assert account.id == fake.account_id
    assert statuses(fake) == [429] * 5 + [200]
    waits = retry_waits(logs, "api_rate_limited")
    assert len(waits) == 5
    # Exponential from 1 s with up to 1 s of jitter: 1-2, 2-3, 4-5, 8-9, 16-17.
    for attempt, wait in enumerate(waits):
        assert 2**attempt <= wait <= 2**attempt + 1


def test_a_burst_of_503s_is_ridden_out(fake: FakeAmoCRM, amo: AmoClient) -> None:
    fake.fail_next(4, status=503)
    assert amo.account().id == fake.account_id
    assert statuses(fake) == [503] * 4 + [200]


def test_timeouts_and_dropped_connections_on_a_read_are_retried(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.timeout_next(2)
    fake.disconnect_next(1)
    lead = amo.lead(lead_id)
    assert lead is not None
    assert statuses(fake) == ["ReadTimeout", "ReadTimeout", "ConnectError", 200]


def test_backoff_waits_never_exceed_the_configured_maximum(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    with long_lived_client(
        fake, clock, max_attempts=10, backoff_initial=1.0, backoff_max=5.0
    ) as amo:
        fake.fail_next(9, status=502)
        with capture_logs() as logs:
            amo.account()
    waits = retry_waits(logs, "api_retry")
    assert len(waits) == 9
    assert max(waits) <= 5.0


# ---------------------------------------------------------------- given up


def test_a_permanent_500_gives_up_after_the_configured_attempts(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    with long_lived_client(fake, clock, max_attempts=4) as amo:
        fake.fail_next(100, status=500)
        with pytest.raises(ServerError) as caught:
            amo.account()
    error = caught.value
    assert error.status == 500
    assert str(error).startswith("GET /api/v4/account: HTTP 500")
    assert statuses(fake) == [500] * 4
    assert error.fatal is False


def test_a_429_that_never_ends_is_a_rate_limited_error(fake: FakeAmoCRM, clock: FakeClock) -> None:
    with long_lived_client(fake, clock, max_attempts=3) as amo:
        fake.fail_next(100, status=429)
        with pytest.raises(RateLimited, match="HTTP 429"):
            amo.account()
    assert statuses(fake) == [429] * 3


# ---------------------------------------------------------------- POST is not idempotent


def test_a_post_is_not_retried_on_a_5xx(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.fail_next(1, status=503, method="POST")
    with pytest.raises(ServerError, match="POST /api/v4/tasks: HTTP 503"):
        amo.create_tasks([new_task(lead_id, clock)])
    assert statuses(fake, "/api/v4/tasks") == [503]
    assert fake.tasks == []


def test_a_post_whose_answer_timed_out_is_not_sent_again(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.timeout_next(1, method="POST", after_processing=True)
    with pytest.raises(TransportError, match="ReadTimeout"):
        amo.create_tasks([new_task(lead_id, clock)])
    assert statuses(fake, "/api/v4/tasks") == ["ReadTimeout"]
    assert len(fake.tasks) == 1  # created once, not duplicated by a retry


def test_a_post_is_retried_on_429_and_on_a_connection_that_never_opened(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.fail_next(2, status=429, method="POST")
    fake.disconnect_next(1, method="POST")
    created = amo.create_tasks([new_task(lead_id, clock)])
    assert len(created) == 1
    assert statuses(fake, "/api/v4/tasks") == [429, 429, "ConnectError", 200]
    assert len(fake.tasks) == 1


def test_a_patch_is_retried_on_a_5xx(
    fake: FakeAmoCRM, amo: AmoClient, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.fail_next(2, status=502, method="PATCH")
    result = amo.update_leads([EntityUpdate(lead_id, status_id=support.status("В работе"))])
    assert result.written == (lead_id,)
    assert statuses(fake, "/api/v4/leads") == [502, 502, 200]
    lead = fake.lead(lead_id)
    assert lead is not None
    assert lead["status_id"] == support.status("В работе")


# ---------------------------------------------------------------- the ban circuit


def test_an_html_403_opens_the_circuit_until_the_cooldown_ends(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.block_account()
    with capture_logs() as logs:
        with pytest.raises(AccountBlocked, match="HTTP 403"):
            amo.lead(lead_id)
        sent = fake.requests_total
        for _ in range(5):
            with pytest.raises(CircuitOpen, match="blocked the account"):
                amo.lead(lead_id)
        with pytest.raises(CircuitOpen):
            list(amo.iter_leads())
        with pytest.raises(CircuitOpen):
            amo.update_leads([EntityUpdate(lead_id, status_id=support.status("В работе"))])
        assert fake.requests_total == sent  # nothing left while the circuit was open

        clock.advance(COOLDOWN - 1)
        with pytest.raises(CircuitOpen):
            amo.account()
        assert fake.requests_total == sent

        fake.block_account(False)
        clock.advance(2)
        assert amo.lead(lead_id) is not None

    blocked = [entry for entry in logs if entry["event"] == "api_blocked"]
    assert len(blocked) == 1
    assert blocked[0]["log_level"] == "error"
    assert blocked[0]["cooldown_s"] == COOLDOWN


def test_a_ban_still_in_force_after_the_cooldown_opens_the_circuit_again(
    fake: FakeAmoCRM, amo: AmoClient, clock: FakeClock
) -> None:
    fake.block_account()
    with pytest.raises(AccountBlocked):
        amo.account()
    clock.advance(COOLDOWN + 1)
    with pytest.raises(AccountBlocked):
        amo.account()
    with pytest.raises(CircuitOpen):
        amo.account()
    assert statuses(fake) == [403, 403]


def test_a_json_403_is_a_missing_right_not_a_ban(fake: FakeAmoCRM, amo: AmoClient) -> None:
    fake.fail_next(
        1, status=403, body={"title": "Forbidden", "status": 403, "detail": "Access denied"}
    )
    with pytest.raises(Forbidden, match="Access denied"):
        amo.account()
    assert amo.account().id == fake.account_id  # no circuit


# ---------------------------------------------------------------- one tree, kept distinct


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, Unauthorized),
        (402, PaymentRequired),
        (404, NotFound),
    ],
)
def test_4xx_statuses_map_to_their_own_errors_without_retries(
    clock: FakeClock, status: int, error_class: type[Exception]
) -> None:
    with respx.mock(base_url=BASE_URL) as router:
        route = router.get("/api/v4/account").respond(status, json={"status": status})
        with (
            AmoClient(
                BASE_URL, LongLivedToken("long-lived"), sleep=clock.sleep, monotonic=clock.monotonic
            ) as amo,
            pytest.raises(error_class),
        ):
            amo.account()
    assert route.call_count == 1


def test_fatal_errors_are_exactly_the_subclasses_of_fatal_amo_error() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, AmoError)
    ]
    fatal = {cls.__name__ for cls in classes if issubclass(cls, FatalAmoError)}
    assert fatal == {
        "FatalAmoError",
        "AuthError",
        "Unauthorized",
        "AuthorizationRequired",
        "PaymentRequired",
    }
    assert all(cls.fatal == issubclass(cls, FatalAmoError) for cls in classes)
    assert issubclass(PaymentRequired, ApiError)
