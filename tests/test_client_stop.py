"""A stop request ends every wait of the client at once: retry backoff, 429 backoff, rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.errors import StopRequested
from amo_client.fake import FakeAmoCRM
from tests.client_kit import BASE_URL, FakeClock, long_lived_client

STOP_AFTER = 0.2


class Counting(httpx.BaseTransport):
    """Answers every request with ``status`` and counts them."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(self.status, json={"id": 1, "name": "Поддержка"})


@pytest.fixture
def timer() -> Iterator[list[threading.Timer]]:
    started: list[threading.Timer] = []
    yield started
    for each in started:
        each.cancel()


def stop_later(amo: AmoClient, started: list[threading.Timer]) -> None:
    each = threading.Timer(STOP_AFTER, amo.request_stop)
    started.append(each)
    each.start()


def test_a_stop_ends_the_retry_waits_against_a_server_that_answers_503_forever(
    timer: list[threading.Timer],
) -> None:
    transport = Counting(503)
    with AmoClient(BASE_URL, LongLivedToken("long-lived"), transport=transport) as amo:
        stop_later(amo, timer)
        began = time.monotonic()
        with pytest.raises(StopRequested) as caught:
            amo.account()
        took = time.monotonic() - began
    assert took < 1.0  # the first backoff alone is 1-2 s
    assert transport.calls == 1
    assert caught.value.fatal is False
    assert amo.stop_requested


def test_a_stop_ends_a_wait_in_the_rate_limiter(timer: list[threading.Timer]) -> None:
    transport = Counting(200)
    with AmoClient(
        BASE_URL,
        LongLivedToken("long-lived"),
        transport=transport,
        max_requests_per_second=0.1,  # ten seconds between requests
    ) as amo:
        amo.account()
        stop_later(amo, timer)
        began = time.monotonic()
        with pytest.raises(StopRequested):
            amo.account()
        took = time.monotonic() - began
    assert took < 1.0
    assert transport.calls == 1


@pytest.mark.parametrize("status", [429, 503])
def test_on_a_virtual_clock_a_stop_during_a_backoff_ends_the_call_after_that_wait(
    fake: FakeAmoCRM, clock: FakeClock, status: int
) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)
        amo.request_stop()  # the stop arrives while the client waits

    amo = long_lived_client(fake, clock, sleep=sleep)
    fake.fail_next(10, status=status)
    with amo, pytest.raises(StopRequested):
        amo.account()
    assert len(slept) == 1
    assert fake.requests_total == 1


def test_after_a_stop_a_call_that_must_wait_sends_nothing_more(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    with long_lived_client(fake, clock) as amo:
        fake.fail_next(10, status=502)
        amo.request_stop()
        with pytest.raises(StopRequested):
            amo.account()
    assert clock.slept == []
    assert fake.requests_total == 1
