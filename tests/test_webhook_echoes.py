"""A webhook that only echoes the worker's own write starts no cycle; anything else in it
still does. The hooks are the fake amoCRM's, sent for writes made through the client."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient, Written
from amo_client.fake import FakeAmoCRM
from amo_client.models import EntityUpdate, NewNote
from tests.asgi_kit import AsgiClient
from tests.client_kit import FakeClock, client_options, make_fake
from tests.webhook_kit import FORM, SECRET, Triggers
from worker.echoes import OwnWrites
from worker.webhooks import build_app

DESTINATION = f"https://sla.example.com/amocrm/webhook/{SECRET}"
EVENTS = ["update_lead", "status_lead", "note_lead", "add_lead"]


class Bodies:
    """The worker's endpoint as the fake amoCRM sees it: each hook's raw body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.bodies.append(request.read())
        return httpx.Response(200)

    def take(self) -> list[bytes]:
        with self._lock:
            taken, self.bodies = self.bodies, []
        return taken


@pytest.fixture
def bodies() -> Bodies:
    return Bodies()


class Clock:
    def __init__(self) -> None:
        self.now = 1_762_326_000.0  # 5 November 2025, 10:00 Moscow

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(bodies: Bodies, clock: Clock) -> FakeAmoCRM:
    fake = FakeAmoCRM(max_requests_per_second=None, clock=clock)
    fake.webhook_transport = httpx.MockTransport(bodies)
    fake.add_pipeline("Техподдержка", ["Новое", "В работе"], unsorted=False)
    fake.subscribe_webhook(DESTINATION, EVENTS)
    return fake


def deliver(hooks: list[bytes], echoes: OwnWrites) -> int:
    """Post the hooks to the worker's endpoint; how many cycles they started."""
    triggers = Triggers()
    app = build_app(trigger=triggers, secret=SECRET, subdomain="example", echoes=echoes)
    with AsgiClient(app) as client:
        for body in hooks:
            assert (
                client.post(f"/amocrm/webhook/{SECRET}", content=body, headers=FORM).status_code
                == 200
            )
    return triggers.count


def worker_client(fake: FakeAmoCRM, echoes: OwnWrites) -> AmoClient:
    return AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        on_write=echoes.record,
    )


def test_the_echo_of_the_workers_own_field_write_starts_no_cycle(
    fake: FakeAmoCRM, bodies: Bodies
) -> None:
    lead_id = fake.add_lead("Обращение")
    field_id = fake.add_custom_field("SLA: статус", "text")
    assert fake.wait_for_webhooks()
    bodies.take()
    echoes = OwnWrites()
    with worker_client(fake, echoes) as client:
        client.update_leads([EntityUpdate(lead_id, {field_id: "Просрочено"})])
    assert fake.wait_for_webhooks()

    hooks = bodies.take()
    assert len(hooks) == 1
    assert deliver(hooks, echoes) == 0
    assert deliver(hooks, OwnWrites()) == 1  # not the worker's: a cycle


def test_an_agents_change_to_the_same_lead_later_still_starts_a_cycle(
    fake: FakeAmoCRM, bodies: Bodies, clock: Clock
) -> None:
    lead_id = fake.add_lead("Обращение")
    field_id = fake.add_custom_field("SLA: статус", "text")
    echoes = OwnWrites()
    with worker_client(fake, echoes) as client:
        client.update_leads([EntityUpdate(lead_id, {field_id: "В срок"})])
    assert fake.wait_for_webhooks()
    bodies.take()
    clock.now += 5
    agent = fake.add_user("Анна")
    fake.update_lead(lead_id, by_user=agent, name="Обращение: не работает вход")
    assert fake.wait_for_webhooks()

    assert deliver(bodies.take(), echoes) == 1


def test_a_hook_with_the_echo_and_one_other_change_starts_one_cycle(
    fake: FakeAmoCRM, bodies: Bodies
) -> None:
    lead_id = fake.add_lead("Обращение")
    other = fake.add_lead("Другое обращение")
    field_id = fake.add_custom_field("SLA: статус", "text")
    assert fake.wait_for_webhooks()
    bodies.take()
    echoes = OwnWrites()
    with worker_client(fake, echoes) as client:
        client.update_leads([EntityUpdate(lead_id, {field_id: "Просрочено"})])
    assert fake.wait_for_webhooks()
    (echo,) = bodies.take()
    # amoCRM batches changes of one moment into one hook: the echo and another lead's add.
    pairs = parse_qsl(echo.decode())
    both = urlencode([*pairs, ("leads[add][0][id]", str(other))]).encode()

    assert deliver([echo], echoes) == 0
    assert deliver([both], echoes) == 1


def test_the_echo_of_the_workers_own_note_starts_no_cycle(fake: FakeAmoCRM, bodies: Bodies) -> None:
    lead_id = fake.add_lead("Обращение")
    assert fake.wait_for_webhooks()
    bodies.take()
    echoes = OwnWrites()
    with worker_client(fake, echoes) as client:
        client.create_notes([NewNote(entity_id=lead_id, text="Принято", service="amo-sla")])
    assert fake.wait_for_webhooks()

    hooks = bodies.take()
    assert hooks
    assert deliver(hooks, echoes) == 0


def test_an_echo_is_forgotten_after_it_is_kept() -> None:
    now = [0.0]
    echoes = OwnWrites(keep=timedelta(minutes=10), monotonic=lambda: now[0])
    at = datetime(2025, 11, 5, 10, 0, tzinfo=UTC)
    echoes.record(Written("leads", (7,), at - timedelta(seconds=1), at))
    hook = [
        ("leads[update][0][id]", "7"),
        ("leads[update][0][last_modified]", str(int(at.timestamp()))),
    ]
    assert echoes.only_echoes(hook)
    assert not echoes.only_echoes([("leads[update][0][id]", "8"), hook[1]])
    assert not echoes.only_echoes(
        [hook[0], ("leads[update][0][last_modified]", str(int(at.timestamp()) + 5))]
    )
    assert not echoes.only_echoes([("account[subdomain]", "example")])
    now[0] = 601.0
    assert not echoes.only_echoes(hook)


# --- what a hook's echo check still gets wrong ---------------------------------------------------


def hook_of(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode([*pairs, ("account[subdomain]", "example")]).encode()


def test_a_hook_whose_lead_id_is_a_superscript_digit_still_starts_a_cycle() -> None:
    hook = hook_of([("leads[update][0][id]", "²"), ("leads[update][0][last_modified]", "1")])

    assert deliver([hook], OwnWrites()) == 1


def test_a_hook_whose_last_modified_is_out_of_range_still_starts_a_cycle() -> None:
    hook = hook_of([("leads[update][0][id]", "7"), ("leads[update][0][last_modified]", "9" * 17)])

    assert deliver([hook], OwnWrites()) == 1


def test_a_persons_move_made_while_the_workers_write_was_retried_starts_a_cycle(
    bodies: Bodies,
) -> None:
    clock = FakeClock(wall=1_762_326_000.0)
    fake = make_fake(clock, max_requests_per_second=None)
    fake.webhook_transport = httpx.MockTransport(bodies)
    support = fake.add_pipeline("Техподдержка", ["Новое", "В работе"], unsorted=False)
    fake.subscribe_webhook(DESTINATION, EVENTS)
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    field_id = fake.add_custom_field("SLA: статус", "text")
    agent = fake.add_user("Анна")
    assert fake.wait_for_webhooks()
    bodies.take()
    moved: list[bool] = []

    def backoff(seconds: float) -> None:
        """The client's wait before its retry: an agent moves the lead halfway through."""
        clock.advance(seconds / 2)
        if not moved:
            fake.move_lead(lead_id, support.status("В работе"), by_user=agent)
            moved.append(True)
        clock.advance(seconds / 2)

    echoes = OwnWrites()
    fake.fail_next(1, status=503, path="/api/v4/leads", method="PATCH")
    with AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        on_write=echoes.record,
        **client_options(clock, sleep=backoff, backoff_initial=10.0),
    ) as client:
        client.update_leads([EntityUpdate(lead_id, {field_id: "В срок"})])
    assert moved
    assert fake.wait_for_webhooks()
    # The agent's move, delivered after the write was answered (amoCRM's hooks come late).
    moves = [body for body in bodies.take() if b"leads%5Bstatus%5D" in body]
    assert len(moves) == 1

    assert deliver(moves, echoes) == 1


class NoDateOnWrites(httpx.BaseTransport):
    """The fake amoCRM behind a proxy that drops the ``Date`` header of write answers."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "PATCH":
            del response.headers["date"]
        return response


def test_the_echo_of_a_write_answered_without_a_date_header_starts_no_cycle(
    fake: FakeAmoCRM, bodies: Bodies, clock: Clock
) -> None:
    lead_id = fake.add_lead("Обращение")
    field_id = fake.add_custom_field("SLA: статус", "text")
    assert fake.wait_for_webhooks()
    bodies.take()
    echoes = OwnWrites()
    with AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=NoDateOnWrites(fake.transport),
        on_write=echoes.record,
        clock=clock,  # the worker's clock, which agrees with amoCRM's
    ) as client:
        client.account()  # an answer with amoCRM's Date
        clock.now += 120  # the cycle reads and computes for two minutes
        client.update_leads([EntityUpdate(lead_id, {field_id: "Просрочено"})])
    assert fake.wait_for_webhooks()

    hooks = bodies.take()
    assert len(hooks) == 1
    assert deliver(hooks, echoes) == 0


def test_an_agents_stage_change_in_the_second_of_a_field_write_starts_a_cycle(
    fake: FakeAmoCRM, bodies: Bodies
) -> None:
    support = fake.add_pipeline("Линия 2", ["Новое", "В работе"], unsorted=False)
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    field_id = fake.add_custom_field("SLA: статус", "text")
    agent = fake.add_user("Анна")
    assert fake.wait_for_webhooks()
    bodies.take()
    echoes = OwnWrites()
    with worker_client(fake, echoes) as client:
        client.update_leads([EntityUpdate(lead_id, {field_id: "В срок"})])  # fields only
    fake.move_lead(lead_id, support.status("В работе"), by_user=agent)  # the same second
    assert fake.wait_for_webhooks()

    moves = [body for body in bodies.take() if b"leads%5Bstatus%5D" in body]
    assert len(moves) == 1
    assert deliver(moves, echoes) == 1
