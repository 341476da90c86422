"""The demo: the real worker, for a few cycles, against the built-in amoCRM emulator.

The emulator (:class:`amo_client.fake.FakeAmoCRM`) is seeded with a support
pipeline and sample requests of every kind the CRMBP regulation knows. The
worker then does what it does in production, through the same client, cycle and
task ledger: ``provision`` creates the SLA fields, the first cycle writes every
lead's fields, and the next cycles run at the instants the worker itself asks to
be woken at (a due or at-risk instant), on a simulated clock, so an hour of
support passes in seconds. At the end a table shows each lead's SLA fields as
amoCRM holds them, and the breach tasks the worker created.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from sla.policy import default_policy
from worker.admin import provision
from worker.cycle import CycleOptions, CycleReport, SyncCycle
from worker.report import lead_field_rows, table
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions

MOSCOW = ZoneInfo("Europe/Moscow")
# Wednesday 5 November 2025, the first workday after the 3–4 November holidays.
DEMO_START = datetime(2025, 11, 5, 10, 30, tzinfo=MOSCOW)
DEMO_END = datetime(2025, 11, 5, 17, 5, tzinfo=MOSCOW)
DEMO_POLL_INTERVAL = timedelta(hours=1)
PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента", "Проверка клиентом")
REACTION_TASK = (
    "Просрочена реакция по обращению «{lead_name}» (#{lead_id}), тариф «{tariff}»: "
    "срок реакции истёк {due}."
)
RESOLUTION_TASK = (
    "Просрочено решение по обращению «{lead_name}» (#{lead_id}), тариф «{tariff}»: "
    "срок решения истёк {due}."
)

log = structlog.get_logger("worker.demo")


@dataclass
class SimulatedClock:
    now: datetime

    def unix(self) -> float:
        return self.now.timestamp()

    def aware(self) -> datetime:
        return self.now.astimezone(UTC)


@dataclass(frozen=True)
class Sample:
    lead_id: int
    about: str


@dataclass(frozen=True)
class Happening:
    """Something an agent does in amoCRM while the worker runs."""

    at: datetime
    what: str
    act: Callable[[], object]


def _at(day: int, hour: int, minute: int = 0, *, month: int = 11) -> float:
    return datetime(2025, month, day, hour, minute, tzinfo=MOSCOW).timestamp()


def _today(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, 5, hour, minute, tzinfo=MOSCOW)


def seed(fake: FakeAmoCRM) -> tuple[PipelineRef, list[Sample], list[Happening]]:
    """The support pipeline, two agents, a robot's noise, the sample requests, and what the
    agents will do to them during the demo."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    anna = fake.add_user("Анна Смирнова")
    oleg = fake.add_user("Олег Петров")
    in_work, waiting = support.status(STAGES[1]), support.status(STAGES[2])
    samples: list[Sample] = []

    def lead(name: str, about: str, tags: list[str], created: float, user: int) -> int:
        lead_id = fake.add_lead(
            name, pipeline_id=support.id, tags=tags, created_at=created, responsible_user_id=user
        )
        samples.append(Sample(lead_id, about))
        return lead_id

    # Приоритет, typical: nobody answers in time; a chat bot's greeting does not count.
    silent = lead("Не открывается карточка сделки", "Приоритет, типовое", ["Приоритет"],
                  _at(5, 10, 10), anna)  # fmt: skip
    fake.add_event(silent, "outgoing_chat_message", created_by=0, at=_at(5, 10, 11))
    # Приоритет, typical, answered by an agent within the hour.
    answered = lead("Не приходят уведомления", "Приоритет, типовое, с ответом", ["Приоритет"],
                    _at(5, 10, 0), oleg)  # fmt: skip
    fake.add_event(answered, "outgoing_chat_message", created_by=oleg, at=_at(5, 10, 25))
    # Приоритет, non-standard: a change request; resolution by agreement.
    change = lead("Доработать виджет счёта", "Приоритет, нестандартное",
                  ["Приоритет", "Доработка"], _at(5, 10, 20), anna)  # fmt: skip
    # По факту, typical, registered last week: the 3–4 November holidays do not count, the
    # transferred working Saturday 1 November does.
    typical = lead("Настроить воронку продаж", "По факту, типовое", ["По факту"],
                   _at(30, 15, month=10), oleg)  # fmt: skip
    # Done, waiting for the customer's remarks: accepted after one business day of silence.
    accepted = lead("Настроить права доступа", "Приоритет, на приёмке", ["Приоритет"],
                    _at(1, 12, 0), anna)  # fmt: skip
    fake.add_event(accepted, "outgoing_chat_message", created_by=anna, at=_at(1, 12, 20))
    fake.move_lead(accepted, support.status(STAGES[3]), by_user=anna, at=_at(1, 17, 0))
    # По факту, non-standard.
    lead("Интеграция с 1С", "По факту, нестандартное", ["По факту", "Нестандартное"],
         _at(5, 9, 15), anna)  # fmt: skip
    # An «авария» tag: CRMBP has no emergency rule, so an ordinary «Приоритет» request.
    outage = lead("Сервер недоступен", "Приоритет, авария", ["Приоритет", "авария"],
                  _at(5, 9, 50), oleg)  # fmt: skip
    # On hold, waiting for the customer.
    hold = lead("Выгрузка отчёта", "По факту, ждём клиента", ["По факту"], _at(5, 9, 0), anna)
    fake.add_event(hold, "outgoing_call", created_by=anna, at=_at(5, 9, 5))
    fake.move_lead(hold, waiting, by_user=anna, at=_at(5, 10, 5))
    # Resolved in time, before the worker started.
    done = lead("Сброс пароля", "Приоритет, решено", ["Приоритет"], _at(5, 10, 2), oleg)
    fake.add_event(done, "outgoing_chat_message", created_by=oleg, at=_at(5, 10, 6))
    fake.move_lead(done, 142, by_user=oleg, at=_at(5, 10, 20))
    # No tariff tag.
    lead("Вопрос по счёту", "без тарифа", ["счёт"], _at(5, 10, 15), anna)
    # Another pipeline: the worker never touches it.
    fake.add_lead("Новый клиент", pipeline_id=sales.id, tags=["Приоритет"], created_at=_at(5, 9))

    def type_agreed_date() -> None:
        # The field exists once `provision` has run, which is after seeding.
        field_id = fake.field_id("SLA: срок по согласованию")
        if field_id is not None:
            fake.update_lead(change, by_user=anna, at=when(_today(12, 0)),
                             custom_fields={field_id: int(_at(10, 18))})  # fmt: skip

    def when(moment: datetime) -> float:
        return moment.timestamp()

    happenings = [
        Happening(_today(10, 55), "Олег берёт «Настроить воронку продаж» в работу",
                  lambda: fake.move_lead(typical, in_work, by_user=oleg, at=when(_today(10, 55)))),
        Happening(_today(11, 20), "Анна отвечает клиенту по «Не открывается карточка сделки»",
                  lambda: fake.add_event(silent, "outgoing_chat_message", created_by=anna,
                                         at=when(_today(11, 20)))),
        Happening(_today(12, 0), "Анна вписывает согласованный срок 10.11 18:00 в «Доработать "
                  "виджет счёта»",
                  type_agreed_date),
        Happening(_today(14, 0), "клиент ответил: Анна возвращает «Выгрузка отчёта» в работу",
                  lambda: fake.move_lead(hold, in_work, by_user=anna, at=when(_today(14, 0)))),
        Happening(_today(15, 30), "Олег закрывает «Сервер недоступен»",
                  lambda: fake.move_lead(outage, 142, by_user=oleg, at=when(_today(15, 30)))),
    ]  # fmt: skip
    return support, samples, happenings


def run_demo(out: TextIO, *, state_dir: Path | None = None) -> int:
    clock = SimulatedClock(DEMO_START)
    fake = FakeAmoCRM(clock=clock.unix, account_name="Интегратор: поддержка")
    support, samples, happenings = seed(fake)
    client = AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    )
    with tempfile.TemporaryDirectory(prefix="amo-sla-demo-") as scratch:
        directory = state_dir or Path(scratch)
        print(
            f"amo-sla demo: the worker against the built-in amoCRM emulator ({fake.base_url}),\n"
            f"pipeline «{PIPELINE}», built-in CRMBP policy, simulated clock from "
            f"{DEMO_START:%d.%m.%Y %H:%M} (Moscow). Logs go to stderr.\n",
            file=out,
        )
        print("$ python -m worker provision", file=out)
        provision(client, dry_run=False, say=lambda line: print(f"  {line}", file=out))
        policy = default_policy()
        cycle = SyncCycle(
            client,
            StateStore(directory / "state.sqlite3"),
            policy,
            CycleOptions(
                stages=StageOptions(
                    pipeline=PIPELINE,
                    hold_stages=(STAGES[2],),
                    acceptance_stages=(STAGES[3],),
                ),
                tasks=TaskOptions(
                    reaction_text=REACTION_TASK,
                    resolution_text=RESOLUTION_TASK,
                    display_zone=policy.zone,
                ),
            ),
            lock_path=directory / "cycle.lock",
            wall_clock=lambda: datetime.now(UTC),
        )
        print(
            "\ncycles: every poll interval (1 h in the demo), and at each instant the previous "
            "cycle asked to be woken at (a deadline or an at-risk instant):",
            file=out,
        )
        pending = list(happenings)
        report = _cycle(cycle, clock, out)
        last_poll = clock.now
        while True:
            wake = report.next_change_at
            poll = last_poll + DEMO_POLL_INTERVAL
            next_run = min(poll, wake + timedelta(seconds=1)) if wake is not None else poll
            if next_run > DEMO_END:
                break
            while pending and pending[0].at <= next_run:
                happening = pending.pop(0)
                clock.now = happening.at
                happening.act()
                print(f"  {happening.at:%H:%M:%S}  amoCRM: {happening.what}", file=out)
            clock.now = next_run
            if next_run == poll:
                last_poll = poll
            report = _cycle(cycle, clock, out)
        cycle.store.close()
        leads = [
            lead
            for lead in client.iter_leads(ids=[sample.lead_id for sample in samples])
            if lead.pipeline_id == support.id
        ]
        setup = cycle.setup
        if setup is None:
            return 1
        about = {sample.lead_id: sample.about for sample in samples}
        headers, rows = lead_field_rows(
            sorted(leads, key=lambda lead: lead.id),
            setup.fields,
            policy.zone,
            about,
            {**setup.status_names, 142: "Успешно", 143: "Закрыто"},
        )
        print(f"\nthe leads' SLA fields in amoCRM at {clock.now.astimezone(MOSCOW):%H:%M:%S}:",
              file=out)  # fmt: skip
        for line in table(headers, rows):
            print(line, file=out)
        print("\nbreach tasks created:", file=out)
        users = {user.id: user.name for user in client.iter_users()}
        task_rows = [
            [
                str(task["entity_id"]),
                users.get(int(task["responsible_user_id"]), str(task["responsible_user_id"])),
                str(task["text"]).replace("\n", " "),
            ]
            for task in fake.tasks
        ]
        for line in table(["lead", "responsible", "text"], task_rows):
            print(line, file=out)
        print(
            f"\n{fake.requests_total} API requests in all, {fake.rate_limited_total} answered 429.",
            file=out,
        )
    client.close()
    return 0


def _cycle(cycle: SyncCycle, clock: SimulatedClock, out: TextIO) -> CycleReport:
    report = cycle.run(clock.aware())
    wake = report.next_change_at
    print(
        f"  {clock.now.astimezone(MOSCOW):%H:%M:%S}  worker: read {report.leads_read}, "
        f"wrote {report.leads_written}, tasks {report.tasks_created}, "
        f"requests {report.requests}; next change "
        f"{_moment(wake, clock.now) if wake else '—'}",
        file=out,
    )
    return report


def _moment(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(MOSCOW)
    same_day = local.date() == now.astimezone(MOSCOW).date()
    return local.strftime("%H:%M:%S" if same_day else "%d.%m %H:%M:%S")
