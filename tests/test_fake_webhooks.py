"""The fake amoCRM's account webhooks: the API the client drives, and hooks sent like amoCRM's
(form-encoded v2 payloads, a 2-second wait, retries, disabling after repeated failures)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.errors import NotFound, ValidationFailed
from amo_client.fake import FakeAmoCRM

DESTINATION = "https://sla.example.com/amocrm/webhook/" + "k" * 32
EVENTS = ["add_lead", "update_lead", "status_lead", "note_lead"]


class Receiver:
    """An httpx transport standing for the worker's endpoint: records each hook, answers
    with ``answer`` (a status, or an exception to raise)."""

    def __init__(self, answer: Callable[[httpx.Request], int] = lambda request: 200) -> None:
        self.answer = answer
        self.hooks: list[tuple[str, dict[str, str], str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read().decode()
        with self._lock:
            self.hooks.append(
                (str(request.url), dict(parse_qsl(body)), request.headers["content-type"])
            )
        return httpx.Response(self.answer(request))

    def forms(self) -> list[dict[str, str]]:
        with self._lock:
            return [form for _, form, _ in self.hooks]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def fake(receiver: Receiver) -> FakeAmoCRM:
    fake = FakeAmoCRM(max_requests_per_second=None)
    fake.webhook_transport = httpx.MockTransport(receiver)
    fake.webhook_retry_delays = (0.05, 0.05, 0.05, 0.05)
    fake.add_pipeline("Техподдержка", ["Новое", "В работе"], unsorted=False)
    return fake


def client_of(fake: FakeAmoCRM) -> AmoClient:
    return AmoClient(fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport)


def test_subscribe_list_and_unsubscribe_through_the_client(fake: FakeAmoCRM) -> None:
    with client_of(fake) as client:
        assert client.webhooks() == []
        created = client.subscribe_webhook(DESTINATION, EVENTS)
        again = client.subscribe_webhook(DESTINATION, [*EVENTS, "delete_lead"])
        listed = client.webhooks(destination=DESTINATION)
        other = client.webhooks(destination=DESTINATION + "x")
        client.unsubscribe_webhook(DESTINATION)
        after = client.webhooks()
        with pytest.raises(NotFound):
            client.unsubscribe_webhook(DESTINATION)

    assert created.destination == DESTINATION
    assert created.settings == EVENTS
    assert created.disabled is False
    assert again.id == created.id  # the same destination is updated, not doubled
    assert [hook.settings for hook in listed] == [[*EVENTS, "delete_lead"]]
    assert other == []
    assert after == []


def test_unknown_events_are_refused(fake: FakeAmoCRM) -> None:
    with client_of(fake) as client, pytest.raises(ValidationFailed):
        client.subscribe_webhook(DESTINATION, ["reply_lead"])


def test_an_agent_note_sends_a_note_lead_hook_in_v2_form(
    fake: FakeAmoCRM, receiver: Receiver
) -> None:
    lead_id = fake.add_lead("Не работает вход")
    fake.subscribe_webhook(DESTINATION, EVENTS)
    agent = fake.add_user("Анна")

    note_id = fake.add_note(lead_id, "Здравствуйте, смотрим", created_by=agent)
    assert fake.wait_for_webhooks()

    ((url, form, content_type),) = receiver.hooks
    assert url == DESTINATION
    assert content_type == "application/x-www-form-urlencoded"
    assert form["leads[note][0][note][element_id]"] == str(lead_id)
    assert form["leads[note][0][note][id]"] == str(note_id)
    assert form["leads[note][0][note][note_type]"] == "4"
    assert form["leads[note][0][note][text]"] == "Здравствуйте, смотрим"
    assert form["account[subdomain]"] == "example"
    assert form["account[id]"] == str(fake.account_id)


def test_a_move_sends_status_and_update_hooks(fake: FakeAmoCRM, receiver: Receiver) -> None:
    support = fake.pipeline(next(iter(fake._pipelines)))
    lead_id = fake.add_lead("Обращение")
    fake.subscribe_webhook(DESTINATION, EVENTS)

    fake.move_lead(lead_id, support.status("В работе"), by_user=fake.owner_id)
    assert fake.wait_for_webhooks()

    forms = receiver.forms()
    status = next(form for form in forms if "leads[status][0][id]" in form)
    assert status["leads[status][0][id]"] == str(lead_id)
    assert status["leads[status][0][status_id]"] == str(support.status("В работе"))
    assert status["leads[status][0][old_status_id]"] == str(support.status("Новое"))
    assert any(form.get("leads[update][0][id]") == str(lead_id) for form in forms)


def test_only_subscribed_events_are_sent(fake: FakeAmoCRM, receiver: Receiver) -> None:
    fake.subscribe_webhook(DESTINATION, ["note_lead"])
    lead_id = fake.add_lead("Обращение")
    fake.update_lead(lead_id, by_user=fake.owner_id, name="Другое")
    assert fake.wait_for_webhooks()
    assert receiver.hooks == []


def test_a_failing_hook_is_retried_and_a_timeout_counts_as_failing(fake: FakeAmoCRM) -> None:
    calls: list[float] = []

    def answer(request: httpx.Request) -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise httpx.ReadTimeout("no answer in 2 s", request=request)
        if len(calls) == 2:
            return 503
        return 200

    fake.webhook_transport = httpx.MockTransport(Receiver(answer))
    fake.subscribe_webhook(DESTINATION, EVENTS)
    fake.add_lead("Обращение")
    deadline = time.monotonic() + 5
    while len(fake.webhook_deliveries) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)

    deliveries = fake.webhook_deliveries
    assert [(d.attempt, d.status, d.error) for d in deliveries] == [
        (1, None, "ReadTimeout"),
        (2, 503, None),
        (3, 200, None),
    ]
    assert fake.webhooks[0]["disabled"] is False


def test_the_hook_waits_two_seconds_for_an_answer(fake: FakeAmoCRM) -> None:
    seen: list[float | None] = []

    def answer(request: httpx.Request) -> int:
        timeout = request.extensions.get("timeout", {})
        seen.append(timeout.get("read"))
        return 200

    fake.webhook_transport = httpx.MockTransport(Receiver(answer))
    fake.subscribe_webhook(DESTINATION, EVENTS)
    fake.add_lead("Обращение")
    assert fake.wait_for_webhooks()
    assert seen == [2.0]


def test_repeated_failures_disable_the_hook_until_it_is_switched_back_on(
    fake: FakeAmoCRM,
) -> None:
    receiver = Receiver(lambda request: 500)
    fake.webhook_transport = httpx.MockTransport(receiver)
    fake.webhook_disable_after = 5
    fake.webhook_retry_delays = (60.0,)  # no retry within the test
    fake.subscribe_webhook(DESTINATION, EVENTS)

    for number in range(6):
        fake.add_lead(f"Обращение {number}")
        assert fake.wait_for_webhooks()
    disabled = fake.webhooks[0]["disabled"]
    fake.add_lead("После отключения")
    assert fake.wait_for_webhooks()
    sent_while_disabled = len(receiver.hooks)
    fake.enable_webhook(DESTINATION)
    fake.add_lead("После включения")
    assert fake.wait_for_webhooks()

    assert disabled is True
    assert sent_while_disabled == 6
    assert len(receiver.hooks) == 7
    with client_of(fake) as client:
        assert [hook.disabled for hook in client.webhooks()] == [False]
    fake.stop_webhooks()
