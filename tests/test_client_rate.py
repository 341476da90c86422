"""The client's rate cap against the fake amoCRM, which enforces 7 requests/s on the same clock."""

from __future__ import annotations

import heapq
import itertools
import random
import threading

import httpx
import pytest

from amo_client.fake import FakeAmoCRM
from amo_client.ratelimit import RateLimiter, Slot
from bench.client_load import most_in_one_second
from tests.client_kit import FakeClock, Tap, long_lived_client, make_fake


def test_full_speed_requests_meet_no_429_and_keep_close_to_seven_a_second(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    began = clock.monotonic()
    with long_lived_client(fake, clock) as amo:
        for _ in range(300):
            amo.account()
        sent = amo.requests_sent
    elapsed = clock.monotonic() - began
    assert fake.rate_limited_total == 0
    assert fake.status_counts == {200: 300}
    assert sent == 300
    assert 6.5 <= 300 / elapsed <= 7.0


def test_no_429_when_requests_take_a_varying_time_to_arrive(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible jitter, not a secret

    def in_transit(request: httpx.Request) -> None:
        clock.advance(rng.uniform(0.0, 0.04))

    with long_lived_client(fake, clock, transport=Tap(fake.transport, before=in_transit)) as amo:
        for _ in range(300):
            amo.account()
    assert fake.rate_limited_total == 0


def test_no_429_when_requests_wait_long_between_leaving_and_arriving(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    """A loaded machine or a slow network: up to half a second between the limiter's slot
    and amoCRM's counter, far beyond any fixed margin. The window runs from each answer, so
    amoCRM still never sees more than 7 in a second, at the cost of the latency."""
    rng = random.Random(11)  # noqa: S311 - reproducible delays, not a secret

    def in_transit(request: httpx.Request) -> None:
        clock.advance(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.1, 0.5)]))

    began = clock.monotonic()
    with long_lived_client(fake, clock, transport=Tap(fake.transport, before=in_transit)) as amo:
        for _ in range(200):
            amo.account()
    assert fake.rate_limited_total == 0
    assert 200 / (clock.monotonic() - began) >= 5.0


@pytest.mark.parametrize("late", [0.06, 0.2, 0.9])
def test_a_slow_send_does_not_let_eight_requests_into_one_second_at_amocrm(late: float) -> None:
    """The production failure: one request reaches amoCRM late (a busy machine), the seven
    after it on time, and all eight fall in one of amoCRM's seconds. Every eighth request
    here takes ``late`` seconds from the limiter's slot to the fake's count (0.06: just past
    the 50 ms margin of a limiter that counted from its slots); the fake's own stamps never
    hold eight in a second."""
    clock = FakeClock()
    counted: list[float] = []  # the fake's clock, read once per request as it counts it

    def counting() -> float:
        counted.append(clock.monotonic())
        return counted[-1]

    fake = FakeAmoCRM(clock=clock.time, monotonic=counting, max_requests_per_second=7)
    sends = itertools.count()

    def in_transit(request: httpx.Request) -> None:
        if next(sends) % 8 == 0:
            clock.advance(late)

    with long_lived_client(fake, clock, transport=Tap(fake.transport, before=in_transit)) as amo:
        for _ in range(140):
            amo.account()
    assert len(counted) == 140
    assert most_in_one_second(counted) == 7
    assert fake.rate_limited_total == 0


def test_every_request_sent_tells_when_it_was_let_go_sent_and_answered(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    """What a bench needs to measure the delays between the limiter and amoCRM: one slot
    per request sent, a 429's retry and a connection that never opened included."""
    slots: list[Slot] = []
    fake.fail_next(1, status=429)
    fake.disconnect_next(1)
    tap = Tap(fake.transport, before=lambda request: clock.advance(0.25))
    with long_lived_client(fake, clock, transport=tap, on_slot=slots.append) as amo:
        amo.account()
        amo.account()
    assert [entry.status or entry.error for entry in fake.request_log] == [
        429,
        "ConnectError",
        200,
        200,
    ]
    assert len(slots) == 4
    for slot in slots:
        assert slot.sent is not None
        assert slot.answered is not None
        assert slot.left <= slot.sent
        assert slot.answered - slot.sent == pytest.approx(0.25)


def simulate_in_flight(rng: random.Random, in_flight: int, count: int = 500) -> list[float]:
    """``count`` requests through one limiter, up to ``in_flight`` on their way at once, on
    a virtual clock: each is sent at once or late after its slot, and amoCRM counts it at
    any moment between its send and its answer (the earliest, the latest, or between).
    Returns the moments amoCRM counted them, in the order the slots were given."""
    clock = FakeClock()
    due: list[tuple[float, int, Slot]] = []  # answers on their way, by when they come back

    def answer_until(moment: float) -> None:
        while due and due[0][0] <= moment:
            at, _, slot = heapq.heappop(due)
            clock.advance(at - clock.monotonic())
            limiter.answered(slot)
        clock.advance(moment - clock.monotonic())

    limiter = RateLimiter(
        7.0, clock=clock.monotonic, sleep=lambda s: answer_until(clock.monotonic() + s)
    )
    counted = []
    for number in range(count):
        while len(due) >= in_flight:
            answer_until(due[0][0])
        slot = limiter.acquire()
        sent = slot.left + rng.choice([0.0, 0.0, rng.uniform(0.0, 0.3)])
        answered = sent + rng.uniform(0.001, 0.4)
        counted.append(rng.choice([sent, answered, rng.uniform(sent, answered)]))
        heapq.heappush(due, (answered, number, slot))
    return counted


@pytest.mark.parametrize("in_flight", [1, 2, 4, 8])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_requests_late_on_their_way_never_put_eight_in_one_second_at_amocrm(
    in_flight: int, seed: int
) -> None:
    counted = simulate_in_flight(random.Random(seed), in_flight)  # noqa: S311 - not a secret
    assert most_in_one_second(counted) <= 7
    if in_flight > 1:
        assert counted != sorted(counted)  # amoCRM saw them in another order than they left


class LockstepClock(FakeClock):
    """A shared virtual clock that stands still while a request is on its way to the fake.

    A thread departs when its request reaches the transport, and lands when the fake has
    answered. With a plain virtual clock, other threads' sleeps could move time on by whole
    seconds between those two moments while only microseconds pass: a transit no network
    has (the limiter would still hold, measuring from the answers, but at a crawl).
    """

    def __init__(self) -> None:
        super().__init__()
        self._transit = threading.Condition()
        self._on_the_way: set[int] = set()

    def departed(self) -> None:
        with self._transit:
            self._on_the_way.add(threading.get_ident())

    def landed(self) -> None:
        with self._transit:
            self._on_the_way.discard(threading.get_ident())
            self._transit.notify_all()

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        with self._transit:
            self._transit.wait_for(lambda: not self._on_the_way - {me}, timeout=5)
        super().sleep(seconds)


def test_threads_share_one_cap() -> None:
    clock = LockstepClock()
    fake = make_fake(clock, max_requests_per_second=7)
    tap = Tap(
        fake.transport,
        before=lambda request: clock.departed(),
        after=lambda request, response: clock.landed(),
    )
    with long_lived_client(fake, clock, transport=tap) as amo:
        threads = [
            threading.Thread(target=lambda: [amo.account() for _ in range(40)]) for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert fake.rate_limited_total == 0
    assert fake.status_counts == {200: 200}


def test_without_the_cap_the_same_run_meets_429s(fake: FakeAmoCRM, clock: FakeClock) -> None:
    # The control: the fake does enforce its limit on this clock, so the zero above means something.
    with long_lived_client(fake, clock, max_requests_per_second=1000) as amo:
        for _ in range(50):
            amo.account()
    assert fake.rate_limited_total > 0


@pytest.mark.parametrize("rate", [7.0, 3.0, 1.0])
def test_no_one_second_window_holds_more_than_the_rate(rate: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock.monotonic, sleep=clock.sleep)
    sent = []
    for _ in range(100):
        limiter.answered(limiter.acquire())  # answered at once
        sent.append(clock.monotonic())
    for index, at in enumerate(sent):
        in_window = [t for t in sent[index:] if t < at + 1.0]
        assert len(in_window) <= int(rate)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) >= 1.0 / rate - 1e-9
    assert (len(sent) - 1) / (sent[-1] - sent[0]) >= rate * 0.9


@pytest.mark.parametrize("rate", [6.5, 2.5, 0.5])
def test_a_fractional_rate_is_kept_on_average(rate: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock.monotonic, sleep=clock.sleep)
    sent = []
    for _ in range(60):
        limiter.answered(limiter.acquire())  # answered at once
        sent.append(clock.monotonic())
    achieved = (len(sent) - 1) / (sent[-1] - sent[0])
    assert rate * 0.85 <= achieved <= rate


def test_a_thread_waiting_for_a_slot_does_not_keep_others_from_answering() -> None:
    """Eight threads at a cap of 7: when the window is full of requests still on their way,
    the one waiting for a slot must not stop them from giving their answers back."""
    limiter = RateLimiter(7.0)
    in_flight = [limiter.acquire() for _ in range(7)]

    def answer_all() -> None:
        for slot in in_flight:
            limiter.answered(slot)

    answer = threading.Timer(0.3, answer_all)
    answer.daemon = True
    answer.start()
    waiter = threading.Thread(target=limiter.acquire, daemon=True)
    waiter.start()
    waiter.join(timeout=5)
    answer.join(timeout=1)
    assert not waiter.is_alive()
