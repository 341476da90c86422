"""Account webhooks of the fake: subscriptions and their delivery, as amoCRM does them.

What it reproduces (see the research notes on amoCRM's webhooks):

* ``POST /api/v4/webhooks`` subscribes a ``destination`` to ``settings`` (events); the same
  destination again updates its settings; ``DELETE`` removes it; ``GET`` lists them with
  ``disabled``.
* Each change of a lead sends one form-encoded POST (``application/x-www-form-urlencoded``)
  in API v2's shape to every subscription of its event: ``leads[add|update|status|
  responsible|delete|restore][0][...]`` or ``leads[note][0][note][...]``, plus
  ``account[id]``, ``account[subdomain]``; every value is a string.
* An answer is awaited ``webhook_timeout`` seconds (2); an answer outside 100–299, a
  timeout or a refused connection is invalid. An invalid hook is sent again after
  ``webhook_retry_delays`` (amoCRM: 5 min, then 15 min; for 499 and 5xx two more, 15 min
  and 1 h).
* A subscription that gave more than ``webhook_disable_after`` (100) invalid answers within
  ``webhook_window`` seconds (2 hours), the last one among them, is disabled: nothing is
  sent to it until :meth:`AccountState.enable_webhook` (the «Включить» button).

Hooks are sent by a thread of their own, in the order the changes happened, after the
change is complete; chat messages send none (they are not account webhook events here).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from amo_client.fake.records import StoredEvent
from amo_client.fake.store import NOTE_EVENT_TYPES, AccountStore

SETTINGS = frozenset(
    {
        "responsible_lead",
        "responsible_contact",
        "responsible_company",
        "responsible_customer",
        "responsible_task",
        "restore_lead",
        "restore_contact",
        "restore_company",
        "add_lead",
        "add_contact",
        "add_company",
        "add_customer",
        "add_talk",
        "add_task",
        "update_lead",
        "update_contact",
        "update_company",
        "update_customer",
        "update_talk",
        "update_task",
        "delete_lead",
        "delete_contact",
        "delete_company",
        "delete_customer",
        "delete_task",
        "status_lead",
        "note_lead",
        "note_contact",
        "note_company",
        "note_customer",
        "add_chat_template_review",
        "add_message",
        "add_outgoing_message",
    }
)
# The numeric note types of API v2, which the hooks carry.
V2_NOTE_TYPES = {
    "common": "4",
    "call_in": "10",
    "call_out": "11",
    "service_message": "25",
    "extended_service_message": "25",
    "sms_in": "102",
    "sms_out": "103",
}
# The lead events that send a webhook of their own (update_lead comes from the change).
_LEAD_HOOKS = {
    "lead_added": "add_lead",
    "lead_status_changed": "status_lead",
    "lead_deleted": "delete_lead",
    "lead_restored": "restore_lead",
    "entity_responsible_changed": "responsible_lead",
}
# amoCRM tries an invalid hook this many times in all: more for a server's error.
_ATTEMPTS_AFTER_SERVER_ERROR = 5
_ATTEMPTS_OTHERWISE = 3


@dataclass
class Subscription:
    id: int
    destination: str
    settings: list[str]
    sort: int
    created_at: int
    updated_at: int
    created_by: int
    disabled: bool = False
    failures: deque[float] = field(default_factory=deque)  # monotonic times of invalid answers

    def render(self, account_id: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "destination": self.destination,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "account_id": account_id,
            "created_by": self.created_by,
            "sort": self.sort,
            "disabled": self.disabled,
            "settings": list(self.settings),
        }


@dataclass(frozen=True)
class Delivery:
    """One attempt to send a hook, as the fake made it."""

    destination: str
    setting: str
    attempt: int
    status: int | None  # None: no answer (timeout, refused)
    error: str | None
    seconds: float
    at: float  # time.monotonic() when it was sent

    @property
    def valid(self) -> bool:
        return self.status is not None and 100 <= self.status <= 299


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    subscription: Subscription = field(compare=False)
    setting: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(compare=False, default=1)


class HookSender:
    """Sends hooks from a thread of its own; started on the first hook, stopped by close()."""

    def __init__(
        self,
        *,
        timeout: Callable[[], float],
        retry_delays: Callable[[], tuple[float, ...]],
        on_answer: Callable[[Subscription, Delivery], None],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._retry_delays = retry_delays
        self._on_answer = on_answer
        self._transport = transport
        self._queue: list[_Queued] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    def send(self, subscription: Subscription, setting: str, body: bytes) -> None:
        with self._ready:
            if self._closed:
                return
            heapq.heappush(
                self._queue,
                _Queued(time.monotonic(), next(self._seq), subscription, setting, body),
            )
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fake-webhooks", daemon=True)
                self._thread.start()
            self._ready.notify_all()

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until no hook is due now or being sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                now = time.monotonic()
                due = [item for item in self._queue if item.due <= now]
                if not due and self._in_flight == 0:
                    return True
                if now >= deadline:
                    return False
                self._ready.wait(min(0.05, deadline - now))

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._queue.clear()
            self._ready.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(transport=self._transport) as client:
            while True:
                with self._ready:
                    item = self._next_due()
                    if item is None:
                        return
                    self._in_flight += 1
                try:
                    delivery = self._deliver(client, item)
                    self._on_answer(item.subscription, delivery)
                    if not delivery.valid:
                        self._maybe_retry(item, delivery)
                finally:
                    with self._ready:
                        self._in_flight -= 1
                        self._ready.notify_all()

    def _next_due(self) -> _Queued | None:
        """The next hook due (waiting for it), or None once closed. Holds the condition."""
        while not self._closed:
            if self._queue:
                wait = self._queue[0].due - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._queue)
                self._ready.wait(wait)
            else:
                self._ready.wait()
        return None

    def _deliver(self, client: httpx.Client, item: _Queued) -> Delivery:
        sent = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(
                item.subscription.destination,
                content=item.body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout(),
            )
            status = response.status_code
        except httpx.HTTPError as failure:
            error = type(failure).__name__
        return Delivery(
            item.subscription.destination,
            item.setting,
            item.attempt,
            status,
            error,
            time.monotonic() - sent,
            sent,
        )

    def _maybe_retry(self, item: _Queued, delivery: Delivery) -> None:
        server_error = delivery.status is not None and (
            delivery.status == 499 or 500 <= delivery.status <= 599
        )
        attempts = _ATTEMPTS_AFTER_SERVER_ERROR if server_error else _ATTEMPTS_OTHERWISE
        delays = self._retry_delays()
        if item.attempt >= attempts or item.attempt > len(delays):
            return
        with self._ready:
            if self._closed or item.subscription.disabled:
                return
            heapq.heappush(
                self._queue,
                _Queued(
                    time.monotonic() + delays[item.attempt - 1],
                    next(self._seq),
                    item.subscription,
                    item.setting,
                    item.body,
                    item.attempt + 1,
                ),
            )
            self._ready.notify_all()


def form(pairs: list[tuple[str, Any]]) -> bytes:
    """A hook's body: every value a string, as amoCRM sends them."""
    return urlencode([(key, "" if value is None else str(value)) for key, value in pairs]).encode()


def lead_fields(prefix: str, lead: Any) -> list[tuple[str, Any]]:
    """A lead's v2 fields under ``prefix`` (``leads[update][0]``)."""
    return [
        (f"{prefix}[id]", lead.id),
        (f"{prefix}[name]", lead.name),
        (f"{prefix}[status_id]", lead.status_id),
        (f"{prefix}[pipeline_id]", lead.pipeline_id),
        (f"{prefix}[price]", lead.price),
        (f"{prefix}[responsible_user_id]", lead.responsible_user_id),
        (f"{prefix}[created_user_id]", lead.created_by),
        (f"{prefix}[modified_user_id]", lead.updated_by),
        (f"{prefix}[date_create]", lead.created_at),
        (f"{prefix}[last_modified]", lead.updated_at),
    ]


class AccountWebhooks(AccountStore):
    """The account's subscriptions, and the hooks its changes send to them."""

    def subscribe_webhook(
        self, destination: str, settings: Sequence[str], *, sort: int | None = None, by: int = 0
    ) -> Subscription:
        """Subscribe ``destination`` to ``settings``; the same destination is updated, and a
        disabled one stays disabled (only :meth:`enable_webhook` switches it back on)."""
        with self._lock:
            now = self.now()
            known = self._subscriptions.get(destination)
            if known is not None:
                known.settings = list(dict.fromkeys(settings))
                known.sort = sort if sort is not None else known.sort
                known.updated_at = now
                return known
            subscription = Subscription(
                id=self._new_id("webhook"),
                destination=destination,
                settings=list(dict.fromkeys(settings)),
                sort=sort if sort is not None else 10,
                created_at=now,
                updated_at=now,
                created_by=by,
            )
            self._subscriptions[destination] = subscription
            return subscription

    def unsubscribe_webhook(self, destination: str) -> bool:
        with self._lock:
            return self._subscriptions.pop(destination, None) is not None

    def subscriptions(self, destination: str | None = None) -> list[Subscription]:
        with self._lock:
            found = sorted(self._subscriptions.values(), key=lambda s: (s.sort, s.id))
            return [s for s in found if destination is None or s.destination == destination]

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """The subscriptions as ``GET /api/v4/webhooks`` renders them."""
        return [s.render(self.account_id) for s in self.subscriptions()]

    def enable_webhook(self, destination: str) -> None:
        """Switch a disabled webhook back on, as the «Включить» button in amoCRM does."""
        with self._lock:
            subscription = self._subscriptions[destination]
            subscription.disabled = False
            subscription.failures.clear()

    @property
    def webhook_deliveries(self) -> list[Delivery]:
        """Every attempt to send a hook, in order."""
        with self._lock:
            return list(self._deliveries)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every hook due now has been sent and answered; False on timeout."""
        sender = self._sender
        return True if sender is None else sender.idle(timeout)

    def stop_webhooks(self) -> None:
        """Stop sending hooks (the sender's thread ends); subscriptions stay."""
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    def _hook(self, setting: str, pairs: list[tuple[str, Any]]) -> None:
        """Send ``pairs`` (and the account's) to every live subscription of ``setting``."""
        targets = [s for s in self.subscriptions() if setting in s.settings and not s.disabled]
        if not targets:
            return
        body = form(
            [
                *pairs,
                ("account[id]", self.account_id),
                ("account[subdomain]", self.subdomain),
                ("account[_links][self]", self.base_url),
            ]
        )
        if self._sender is None:
            self._sender = HookSender(
                timeout=lambda: self.webhook_timeout,
                retry_delays=lambda: self.webhook_retry_delays,
                on_answer=self._hook_answered,
                transport=self.webhook_transport,
            )
        for subscription in targets:
            self._sender.send(subscription, setting, body)

    def _hook_answered(self, subscription: Subscription, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)
            if delivery.valid:
                return
            subscription.failures.append(delivery.at)
            horizon = time.monotonic() - self.webhook_window
            while subscription.failures and subscription.failures[0] < horizon:
                subscription.failures.popleft()
            if len(subscription.failures) > self.webhook_disable_after:
                subscription.disabled = True

    def _hook_event(self, event: StoredEvent) -> None:
        """The webhook an event of a lead sends, if any."""
        if event.entity_type != "lead":
            return
        if event.type in NOTE_EVENT_TYPES:
            self._hook("note_lead", self._note_hook(event))
            return
        setting = _LEAD_HOOKS.get(event.type)
        if setting is None:
            return
        entity = self._entities["leads"].get(event.entity_id) or self._trash.get(event.entity_id)
        if entity is None:
            return
        action = setting.removesuffix("_lead")
        prefix = f"leads[{action}][0]"
        pairs = lead_fields(prefix, entity)
        if event.type == "lead_status_changed":
            after = (event.value_after or [{}])[0].get("lead_status", {})
            before = (event.value_before or [{}])[0].get("lead_status", {})
            pairs = [
                p for p in pairs if p[0] not in (f"{prefix}[status_id]", f"{prefix}[pipeline_id]")
            ]
            pairs += [
                (f"{prefix}[status_id]", after.get("id")),
                (f"{prefix}[pipeline_id]", after.get("pipeline_id")),
                (f"{prefix}[old_status_id]", before.get("id")),
                (f"{prefix}[old_pipeline_id]", before.get("pipeline_id")),
            ]
        elif event.type == "entity_responsible_changed":
            before = (event.value_before or [{}])[0].get("responsible_user", {})
            pairs.append((f"{prefix}[old_responsible_user_id]", before.get("id")))
        self._hook(setting, pairs)

    def _note_hook(self, event: StoredEvent) -> list[tuple[str, Any]]:
        note_id = ((event.value_after or [{}])[0].get("note") or {}).get("id")
        note = self._notes.get(note_id) if isinstance(note_id, int) else None
        prefix = "leads[note][0][note]"
        note_type = note["note_type"] if note is not None else "common"
        text = (note or {}).get("params", {}).get("text", "")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.created_at))
        return [
            (f"{prefix}[id]", note_id),
            (f"{prefix}[note_type]", V2_NOTE_TYPES.get(note_type, "4")),
            (f"{prefix}[text]", text),
            (f"{prefix}[element_id]", event.entity_id),
            (f"{prefix}[element_type]", 2),
            (f"{prefix}[main_user_id]", event.created_by),
            (f"{prefix}[created_by]", event.created_by),
            (f"{prefix}[date_create]", event.created_at),
            (f"{prefix}[timestamp_x]", stamp),
            (f"{prefix}[account_id]", self.account_id),
        ]
