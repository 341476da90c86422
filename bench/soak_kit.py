"""The soak's support pipeline: a seeded account, agents who work it, and the verdict on it.

Everything runs on the wall clock: the fake amoCRM stamps what happens with ``time.time()``
and the worker's ``once`` reads the same clock. The verdict judges the fields with the tests'
oracle (:mod:`tests.oracle`), the engine on each lead's whole history as the fake holds it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from amo_client.fake import LOST_STATUS_ID, WON_STATUS_ID, FakeAmoCRM, PageTurn, PipelineRef
from sla.policy import Policy
from sla.state import StageRoles
from tests.oracle import engine_state, expected_fields, stored_fields, support_roles
from worker.tasks import MARKERS, BreachClock
from worker.writes import ACCEPTANCE_NOTE

PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента", "Проверка клиентом")
FIRST, IN_WORK, HOLD, ACCEPTANCE = STAGES
DONE = (WON_STATUS_ID, LOST_STATUS_ID)
AGREED_DUE = "SLA: срок по согласованию"
REPLIES = ("outgoing_chat_message", "outgoing_call", "outgoing_mail", "common_note_added")
TOPICS = (
    "Не открывается карточка сделки",
    "Ошибка при импорте",
    "Не приходят письма",
    "Доработать отчёт",
    "Сбой интеграции с телефонией",
    "Вопрос по счёту",
)


@dataclass
class Account:
    """The seeded fake and the ids the agents and the oracle need."""

    fake: FakeAmoCRM
    support: PipelineRef
    agents: tuple[int, ...]
    supervisor: int
    policy: Policy
    rng: random.Random

    @property
    def roles(self) -> StageRoles:
        return support_roles(self.support, first=FIRST, hold=HOLD, acceptance=ACCEPTANCE)

    def support_leads(self) -> dict[int, dict[str, Any]]:
        return {
            lead_id: lead
            for lead_id, lead in self.fake.leads.items()
            if lead["pipeline_id"] == self.support.id
        }

    def agreed_field(self) -> int:
        field_id = self.fake.field_id(AGREED_DUE)
        assert field_id is not None, "provision the fields first"
        return field_id


def make_account(fake: FakeAmoCRM, policy: Policy, rng: random.Random) -> Account:
    """Pipelines and people; the SLA fields come from ``provision``, the requests from
    :func:`seed_requests`."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    agents = tuple(fake.add_user(f"Агент {n}") for n in range(1, 7))
    supervisor = fake.add_user("Руководитель поддержки")
    for number in range(10):
        fake.add_lead(f"Сделка {number}", pipeline_id=sales.id, tags=["Приоритет"])
    return Account(fake, support, agents, supervisor, policy, rng)


def request_tags(rng: random.Random) -> list[str]:
    draw = rng.random()
    if draw < 0.06:
        return ["счёт"]  # no tariff
    tags = [rng.choice(["Приоритет", "По факту"])]
    if draw > 0.97:
        tags = ["Приоритет", "По факту"]  # two tariffs: the policy's order decides
    if rng.random() < 0.2:
        tags.append(rng.choice(["Нестандартное", "Доработка"]))
    elif rng.random() < 0.2:
        tags.append("Типовое")
    return tags


def seed_requests(account: Account, count: int, now: float) -> None:
    """``count`` requests of the last 15 minutes (a tenth of them days old), in every state."""
    fake, rng, support = account.fake, account.rng, account.support
    agreed = account.agreed_field()
    for number in range(count):
        old = rng.random() < 0.1
        created = now - (rng.uniform(86_400, 3 * 86_400) if old else rng.uniform(0, 900))
        agent = rng.choice(account.agents)
        tags = request_tags(rng)
        lead = fake.add_lead(
            f"{rng.choice(TOPICS)} #{number}",
            pipeline_id=support.id,
            tags=tags,
            created_at=created,
            responsible_user_id=agent,
        )
        if rng.random() < 0.1:
            fake.add_event(lead, "outgoing_chat_message", created_by=0, at=created + 20)
        if rng.random() < 0.05:
            fake.move_lead(lead, support.status(IN_WORK), by_user=0, at=created + 40)
        if {"Нестандартное", "Доработка"} & set(tags) and rng.random() < 0.5:
            fake.update_lead(
                lead,
                by_user=agent,
                at=created + 60,
                custom_fields={agreed: int(now + rng.uniform(-600, 1_200))},
            )
        if rng.random() >= 0.55:
            continue
        answered = min(created + rng.uniform(30, 480), now - 1)
        fake.add_event(lead, rng.choice(REPLIES), created_by=agent, at=answered)
        later = min(answered + rng.uniform(10, 600), now)
        draw = rng.random()
        if draw < 0.25:
            fake.move_lead(lead, support.status(HOLD), by_user=agent, at=later)
        elif draw < 0.45:
            fake.move_lead(lead, support.status(IN_WORK), by_user=agent, at=later)
        elif draw < 0.6:
            fake.move_lead(lead, rng.choice(DONE), by_user=agent, at=later)
        elif draw < 0.66:
            fake.move_lead(lead, support.status(ACCEPTANCE), by_user=agent, at=later)


# --- the agents -------------------------------------------------------------------------------


class Agents:
    """People working the pipeline at random instants, in a thread, until :meth:`stop`."""

    def __init__(self, account: Account, per_minute: float) -> None:
        self.account = account
        self.per_minute = per_minute
        self.done: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="agents", daemon=True)
        self._number = 0

    def start(self) -> None:
        if self.per_minute > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _work(self) -> None:
        rng = self.account.rng
        while not self._stop.wait(rng.expovariate(self.per_minute / 60)):
            self.act()

    def act(self) -> None:
        rng = self.account.rng
        actions: list[tuple[str, float, Callable[[], bool]]] = [
            ("new request", 0.2, self.new_request),
            ("reply", 0.25, self.reply),
            ("bot message", 0.05, self.bot_message),
            ("hold", 0.1, lambda: self.move(IN_WORK, FIRST, to=HOLD)),
            ("back from hold", 0.1, lambda: self.move(HOLD, to=IN_WORK)),
            ("close", 0.08, self.close),
            ("to acceptance", 0.05, lambda: self.move(IN_WORK, to=ACCEPTANCE)),
            ("reopen", 0.04, self.reopen),
            ("agreed date", 0.05, self.agree),
            ("retag", 0.04, self.retag),
            ("task completed", 0.04, self.complete_task),
            ("reply on the contact", 0.1, self.reply_on_contact),
            ("close while the worker reads", 0.05, self.close_mid_read),
        ]
        name, _, action = rng.choices(actions, weights=[w for _, w, _ in actions])[0]
        if action():
            self.done[name] += 1

    def _leads(self, *stages: str | int) -> list[int]:
        ids = {s if isinstance(s, int) else self.account.support.status(s) for s in stages}
        return sorted(
            i for i, lead in self.account.support_leads().items() if lead["status_id"] in ids
        )

    def _agent(self) -> int:
        return self.account.rng.choice(self.account.agents)

    def new_request(self) -> bool:
        account = self.account
        self._number += 1
        account.fake.add_lead(
            f"{account.rng.choice(TOPICS)} (новое {self._number})",
            pipeline_id=account.support.id,
            tags=request_tags(account.rng),
            responsible_user_id=self._agent(),
        )
        return True

    def reply(self) -> bool:
        leads = self._leads(FIRST, IN_WORK, HOLD)
        if not leads:
            return False
        rng = self.account.rng
        self.account.fake.add_event(
            rng.choice(leads), rng.choice(REPLIES), created_by=self._agent()
        )
        return True

    def reply_on_contact(self) -> bool:
        """A reply amoCRM files on the request's contact (given one, sometimes another
        request's, so that some replies are ambiguous)."""
        leads = self._leads(FIRST, IN_WORK, HOLD)
        if not leads:
            return False
        fake, rng = self.account.fake, self.account.rng
        lead_id = rng.choice(leads)
        if not fake.lead_contacts(lead_id):
            with_contacts = [i for i in leads if fake.lead_contacts(i)]
            if with_contacts and rng.random() < 0.3:
                contact = fake.lead_contacts(rng.choice(with_contacts))[0]
            else:
                contact = fake.add_contact(f"Клиент {lead_id}")
            fake.link_contact(lead_id, contact, by=self._agent())
            time.sleep(1.1)  # a link and a reply in one second cannot be ordered
        fake.replies_filed_on = "contact"
        try:
            fake.reply(lead_id, rng.choice(REPLIES), created_by=self._agent())
        finally:
            fake.replies_filed_on = "lead"
        return True

    def close_mid_read(self) -> bool:
        """Close a request just before the worker's next page of leads: between two pages
        of its read, whichever read that is."""
        fake, rng = self.account.fake, self.account.rng

        def close_one(read: PageTurn) -> None:
            if read.path != "/api/v4/leads":
                return
            fake.on_read(None)
            leads = self._leads(FIRST, IN_WORK)
            if leads:
                fake.move_lead(rng.choice(leads), rng.choice(DONE), by_user=self._agent())

        fake.on_read(close_one)
        return True

    def bot_message(self) -> bool:
        leads = self._leads(FIRST)
        if not leads:
            return False
        self.account.fake.add_event(
            self.account.rng.choice(leads), "outgoing_chat_message", created_by=0
        )
        return True

    def move(self, *from_stages: str | int, to: str | int) -> bool:
        leads = self._leads(*from_stages)
        if not leads:
            return False
        target = to if isinstance(to, int) else self.account.support.status(to)
        self.account.fake.move_lead(self.account.rng.choice(leads), target, by_user=self._agent())
        return True

    def close(self) -> bool:
        return self.move(FIRST, IN_WORK, HOLD, to=self.account.rng.choice(DONE))

    def reopen(self) -> bool:
        return self.move(*DONE, to=self.account.rng.choice([FIRST, IN_WORK]))

    def agree(self) -> bool:
        account = self.account
        candidates = [
            lead_id
            for lead_id in self._leads(FIRST, IN_WORK, HOLD)
            if {"нестандартное", "доработка"} & _tags(account.fake.lead(lead_id))
        ]
        if not candidates:
            return False
        account.fake.update_lead(
            account.rng.choice(candidates),
            by_user=self._agent(),
            custom_fields={account.agreed_field(): int(time.time() + account.rng.uniform(60, 600))},
        )
        return True

    def retag(self) -> bool:
        leads = self._leads(FIRST, IN_WORK, HOLD)
        if not leads:
            return False
        rng = self.account.rng
        lead_id = rng.choice(leads)
        if rng.random() < 0.5:
            self.account.fake.update_lead(lead_id, by_user=self._agent(), add_tags=["Доработка"])
        else:
            self.account.fake.update_lead(
                lead_id,
                by_user=self._agent(),
                remove_tags=["Приоритет", "По факту"],
                add_tags=[rng.choice(["Приоритет", "По факту"])],
            )
        return True

    def complete_task(self) -> bool:
        fake = self.account.fake
        open_tasks = [task["id"] for task in fake.tasks if not task["is_completed"]]
        if not open_tasks:
            return False
        fake.complete_task(self.account.rng.choice(open_tasks), result="Связались с клиентом")
        return True


def _tags(lead: dict[str, Any] | None) -> set[str]:
    embedded = (lead or {}).get("_embedded") or {}
    return {str(tag["name"]).casefold() for tag in embedded.get("tags") or ()}


# --- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    lead_id: int
    stored: dict[str, object]
    expected: dict[str, object]

    def fields(self) -> dict[str, tuple[object, object]]:
        return {
            name: (self.stored[name], self.expected[name])
            for name in self.expected
            if self.stored[name] != self.expected[name]
        }


@dataclass(frozen=True)
class Verdict:
    """The account against the engine, after the last run of the clean pass."""

    compared: int
    differences: tuple[Difference, ...]
    duplicate_tasks: dict[tuple[int, str], int]  # (lead, marker) -> how many
    missing_tasks: tuple[tuple[int, str], ...]
    duplicate_notes: dict[int, int]  # lead -> acceptance notes
    missing_notes: tuple[int, ...]
    tasks: int
    notes: int
    by_status: Counter[str] = field(default_factory=Counter)
    past_tasks: tuple[tuple[int, str], ...] = ()  # tasks for breaches before the first start
    past_breaches: int = 0  # breach clocks due before the first start (no task, spec §5)

    @property
    def failed(self) -> bool:
        return bool(
            self.differences
            or self.duplicate_tasks
            or self.missing_tasks
            or self.duplicate_notes
            or self.missing_notes
            or self.past_tasks
        )


def judge(
    account: Account,
    started: float,
    finished: float,
    supervised: bool,
    first_start: float | None = None,
) -> Verdict:
    """Compare every lead of the support pipeline with the engine.

    The last ``once`` computed its state at an instant between ``started`` and ``finished``:
    a lead agrees when its fields are the engine's at either end (a change can fall inside).
    A breach task is missing when the engine says one was due already at ``started`` and
    its deadline is not older than the worker's ``first_start``; a task for a deadline
    older than it is one too many (spec §5).
    """
    fake = account.fake
    differences: list[Difference] = []
    missing_tasks: list[tuple[int, str]] = []
    past_tasks: list[tuple[int, str]] = []
    past_breaches = 0
    by_status: Counter[str] = Counter()
    leads = account.support_leads()
    task_keys = Counter(
        (int(task["entity_id"]), marker)
        for task in fake.tasks
        for marker in MARKERS.values()
        if marker in str(task["text"])
    )
    for lead_id in sorted(leads):
        stored = stored_fields(account, lead_id)
        early = engine_state(account, lead_id, datetime.fromtimestamp(started, UTC))
        late = engine_state(account, lead_id, datetime.fromtimestamp(finished, UTC))
        by_status[str(stored["SLA: статус"])] += 1
        if stored not in (expected_fields(early), expected_fields(late)):
            differences.append(Difference(lead_id, stored, expected_fields(late)))
        for clock, due_now, due in (
            (BreachClock.REACTION, early.reaction_task_due, early.reaction.due),
            (
                BreachClock.RESOLUTION,
                supervised and early.resolution_task_due,
                early.resolution.due,
            ),
        ):
            key = (lead_id, MARKERS[clock])
            past = first_start is not None and due is not None and due.timestamp() < first_start
            if due_now and past:
                past_breaches += 1
                if key in task_keys:
                    past_tasks.append(key)
            elif due_now and key not in task_keys:
                missing_tasks.append(key)
    notes = Counter(
        int(note["entity_id"]) for note in fake.notes if ACCEPTANCE_NOTE in str(note.get("params"))
    )
    return Verdict(
        compared=len(leads),
        differences=tuple(differences),
        duplicate_tasks={key: n for key, n in task_keys.items() if n > 1},
        missing_tasks=tuple(missing_tasks),
        duplicate_notes={lead_id: n for lead_id, n in notes.items() if n > 1},
        missing_notes=tuple(sorted(accepted_by_worker(account) - set(notes))),
        tasks=sum(task_keys.values()),
        notes=sum(notes.values()),
        by_status=by_status,
        past_tasks=tuple(past_tasks),
        past_breaches=past_breaches,
    )


def accepted_by_worker(account: Account) -> set[int]:
    """Leads the worker moved out of the acceptance stage (its own status changes)."""
    acceptance = account.support.status(ACCEPTANCE)
    moved: set[int] = set()
    for event in account.fake.events:
        if (
            event["type"] != "lead_status_changed"
            or event["created_by"] != account.fake.api_user_id
        ):
            continue
        before = (event.get("value_before") or [{}])[0].get("lead_status") or {}
        if before.get("id") == acceptance:
            moved.add(int(event["entity_id"]))
    return moved
