"""The demo: the real worker, for a few cycles, against the built-in amoCRM emulator.

The emulator (:class:`amo_client.fake.FakeAmoCRM`) is seeded with a support
pipeline and sample requests of every kind the CRMBP regulation knows. The
worker then does what it does in production, through the same client, cycle and
task ledger: ``provision`` creates the SLA fields, the first cycle writes every
lead's fields, and the next cycles run at the instants the worker itself asks to
be woken at (a due or at-risk instant), on a simulated clock, so an hour of
support passes in seconds. At the end a table shows each lead's SLA fields as
amoCRM holds them, and the breach tasks the worker created.

Two acts show the company ledgers, one regulation each, since a policy is one
regulation and quotas belong to plans CRMBP's tariffs do not have:

1. CRMBP with prepaid hour packages on (``SLA_PACKAGES=true``): a company's agents log
   time in notes until its 2-hour package runs out; ``explain --company`` then audits it.
2. A second account under the Prime Gate preset (``sla/presets/prime_gate.toml``): the
   third set-up in 12 months on the «Микробизнес» plan goes over its two free ones.

A third goes beyond the seeds (spec §4.1), under ``sla/presets/crmbp_next_response.toml``:
a customer's second message waits too long for an answer; the worker flags it, gives the
agent a task, and an hour later escalates to the supervisor.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TextIO, cast
from zoneinfo import ZoneInfo

import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from sla.policy import Policy, default_policy, load_policy
from worker.admin import provision
from worker.cycle import CycleOptions, CycleReport, SyncCycle
from worker.fields import COMPANY_FIELD_SPECS, SPEC_BY_KEY, Ledger, SlaField, read_value
from worker.ledgers.options import LedgerOptions
from worker.ledgers.statement import company_field_text, company_ledger_lines, read_company_ledger
from worker.report import format_value, lead_field_rows
from worker.setup import AccountSetup, StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions
from worker.text import Folded, table, tables_within

MOSCOW = ZoneInfo("Europe/Moscow")
# Wednesday 5 November 2025, the first workday after the 3–4 November holidays.
DEMO_START = datetime(2025, 11, 5, 10, 30, tzinfo=MOSCOW)
WIDTH = 120  # columns of the terminal the story is told to, unless --wide
DEMO_END = datetime(2025, 11, 5, 17, 5, tzinfo=MOSCOW)
QUOTAS_END = datetime(2025, 11, 5, 11, 35, tzinfo=MOSCOW)
CONVERSATION_END = datetime(2025, 11, 5, 16, 30, tzinfo=MOSCOW)
PACKAGE_PAID = datetime(2025, 11, 1, tzinfo=MOSCOW)  # the transferred working Saturday
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


@dataclass(frozen=True)
class Act:
    """One account of the demo: its emulator, what was seeded, and how the worker runs on it."""

    fake: FakeAmoCRM
    support: PipelineRef
    samples: list[Sample]
    happenings: list[Happening]
    policy: Policy
    ledgers: frozenset[Ledger]
    end: datetime
    companies: list[int] = field(default_factory=list)
    supervisor: int | None = None  # SLA_SUPERVISOR_USER_ID


def seed(fake: FakeAmoCRM) -> Act:
    """Act 1: the support pipeline, two agents and a manager, a robot's noise, the sample
    requests of two companies, one with a 2-hour package that three of them belong to, and
    what the agents will do during the demo, time notes included."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    anna = fake.add_user("Анна Смирнова")
    oleg = fake.add_user("Олег Петров")
    maria = fake.add_user("Мария Козлова")
    in_work, waiting = support.status(STAGES[1]), support.status(STAGES[2])
    samples: list[Sample] = []
    # The package's hours and payment date are typed in once `provision` made the fields.
    romashka = fake.add_company("ООО Ромашка", responsible_user_id=maria)
    vasilek = fake.add_company("ООО Василёк", responsible_user_id=maria)  # no package bought

    def lead(
        name: str,
        about: str,
        tags: list[str],
        created: float,
        user: int,
        *,
        company: int = vasilek,
    ) -> int:
        lead_id = fake.add_lead(
            name,
            pipeline_id=support.id,
            tags=tags,
            created_at=created,
            responsible_user_id=user,
            company_id=company,
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
                   _at(30, 15, month=10), oleg, company=romashka)  # fmt: skip
    # Done, waiting for the customer's remarks: accepted after one business day of silence.
    accepted = lead("Настроить права доступа", "Приоритет, на приёмке", ["Приоритет"],
                    _at(1, 12, 0), anna)  # fmt: skip
    fake.add_event(accepted, "outgoing_chat_message", created_by=anna, at=_at(1, 12, 20))
    fake.move_lead(accepted, support.status(STAGES[3]), by_user=anna, at=_at(1, 17, 0))
    # По факту, non-standard.
    one_c = lead("Интеграция с 1С", "По факту, нестандартное", ["По факту", "Нестандартное"],
                 _at(5, 9, 15), anna, company=romashka)  # fmt: skip
    # An «авария» tag: CRMBP has no emergency rule, so an ordinary «Приоритет» request.
    outage = lead("Сервер недоступен", "Приоритет, авария", ["Приоритет", "авария"],
                  _at(5, 9, 50), oleg)  # fmt: skip
    # On hold, waiting for the customer.
    hold = lead("Выгрузка отчёта", "По факту, ждём клиента", ["По факту"], _at(5, 9, 0), anna,
                company=romashka)  # fmt: skip
    fake.add_event(hold, "outgoing_call", created_by=anna, at=_at(5, 9, 5))
    fake.add_note(hold, "Время: 40 мин — диагностика выгрузки", created_by=anna, at=_at(5, 10, 0))
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

    def type_package() -> None:
        hours = fake.field_id("Пакет: часов", entity="companies")
        paid = fake.field_id("Пакет: оплачен", entity="companies")
        if hours is not None and paid is not None:
            package = {hours: 2, paid: int(PACKAGE_PAID.timestamp())}
            fake.update_company(romashka, by_user=maria, at=when(DEMO_START), custom_fields=package)

    def log_time(lead_id: int, text: str, by: int, moment: datetime) -> Callable[[], object]:
        return lambda: fake.add_note(lead_id, text, created_by=by, at=when(moment))

    happenings = [
        Happening(DEMO_START, "Мария вписывает в карточку «ООО Ромашка» пакет: 2 ч, оплачен "
                  f"{PACKAGE_PAID:%d.%m.%Y} (40 мин уже записаны утром в «Выгрузка "
                  "отчёта»)",
                  type_package),
        Happening(_today(10, 55), "Олег берёт «Настроить воронку продаж» в работу",
                  lambda: fake.move_lead(typical, in_work, by_user=oleg, at=when(_today(10, 55)))),
        Happening(_today(11, 20), "Анна отвечает клиенту по «Не открывается карточка сделки»",
                  lambda: fake.add_event(silent, "outgoing_chat_message", created_by=anna,
                                         at=when(_today(11, 20)))),
        Happening(_today(12, 0), "Анна вписывает согласованный срок 10.11 18:00 в «Доработать "
                  "виджет счёта»",
                  type_agreed_date),
        Happening(_today(11, 40), "Олег пишет примечание «Время: 35 мин — разбор воронки» в "
                  "«Настроить воронку продаж»",
                  log_time(typical, "Время: 35 мин — разбор воронки", oleg, _today(11, 40))),
        Happening(_today(12, 10), "Анна пишет «Время: полчаса» в «Интеграция с 1С»: без числа "
                  "минут, не учитывается",
                  log_time(one_c, "Время: полчаса", anna, _today(12, 10))),
        Happening(_today(14, 0), "клиент ответил: Анна возвращает «Выгрузка отчёта» в работу",
                  lambda: fake.move_lead(hold, in_work, by_user=anna, at=when(_today(14, 0)))),
        Happening(_today(14, 20), "Анна пишет «Время: 25 мин — выгрузка» в «Выгрузка отчёта»",
                  log_time(hold, "Время: 25 мин — выгрузка", anna, _today(14, 20))),
        Happening(_today(15, 30), "Олег закрывает «Сервер недоступен»",
                  lambda: fake.move_lead(outage, 142, by_user=oleg, at=when(_today(15, 30)))),
        Happening(_today(16, 10), "Олег пишет «Время: 1:05 — тестирование воронки» в «Настроить "
                  "воронку продаж»",
                  log_time(typical, "Время: 1:05 — тестирование воронки", oleg, _today(16, 10))),
    ]  # fmt: skip
    return Act(
        fake=fake,
        support=support,
        samples=samples,
        happenings=happenings,
        # CRMBP's deadlines, with seed 004's prices of an hour over a package (the report's
        # overage).
        policy=dataclasses.replace(default_policy(), extra_hour_rates=_package_rates()),
        ledgers=frozenset({Ledger.PACKAGES}),
        end=DEMO_END,
        companies=[romashka, vasilek],
    )


def _package_rates() -> Mapping[Decimal, Decimal]:
    preset = resources.files("sla.presets").joinpath("hour_packages.toml")
    return load_policy(preset.read_text(encoding="utf-8")).extra_hour_rates


def seed_quotas(fake: FakeAmoCRM) -> Act:
    """Act 2: a Prime Gate account. «ИП Сидоров» on «Микробизнес» (2 free set-ups in 12
    months) had two set-ups and a remote session this year; a third set-up comes in during
    the act. «ООО Вектор» on «БигДата» (4 free) has its first."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    anna = fake.add_user("Анна Смирнова")
    maria = fake.add_user("Мария Козлова")
    sidorov = fake.add_company("ИП Сидоров", responsible_user_id=maria)
    vector = fake.add_company("ООО Вектор", responsible_user_id=maria)
    samples: list[Sample] = []

    def lead(name: str, about: str, tags: list[str], created: float, company: int) -> int:
        lead_id = fake.add_lead(name, pipeline_id=support.id, tags=tags, created_at=created,
                                responsible_user_id=anna, company_id=company)  # fmt: skip
        samples.append(Sample(lead_id, about))
        return lead_id

    def done(lead_id: int, moment: float) -> None:
        fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=moment - 3600)
        fake.move_lead(lead_id, 142, by_user=anna, at=moment)

    done(lead("Настроить сайт", "Микробизнес, 1-я настройка", ["Микробизнес", "Настройка"],
              _at(12, 10, month=5), sidorov), _at(14, 12, month=5))  # fmt: skip
    done(lead("Подключить онлайн-кассу", "Микробизнес, 2-я настройка",
              ["Микробизнес", "Настройка"], _at(15, 11, month=9), sidorov),
         _at(17, 15, month=9))  # fmt: skip
    done(lead("Подключиться по AnyDesk", "Микробизнес, удалённое подключение",
              ["Микробизнес", "Удалённое подключение"], _at(20, 10, month=10), sidorov),
         _at(20, 12, month=10))  # fmt: skip
    lead("Настроить склад", "БигДата, 1-я настройка", ["БигДата", "Настройка"], _at(5, 10, 0),
         vector)  # fmt: skip

    def third() -> None:
        lead("Настроить телеграм-бота", "Микробизнес, 3-я настройка",
             ["Микробизнес", "Настройка"], _at(5, 10, 40), sidorov)  # fmt: skip

    text = resources.files("sla.presets").joinpath("prime_gate.toml").read_text(encoding="utf-8")
    return Act(
        fake=fake,
        support=support,
        samples=samples,
        happenings=[
            Happening(
                _today(10, 40),
                "ИП Сидоров присылает третью за год настройку: «Настроить телеграм-бота»",
                third,
            ),
        ],
        policy=load_policy(text),
        ledgers=frozenset({Ledger.QUOTAS}),
        end=QUOTAS_END,
        companies=[sidorov, vector],
    )


def seed_conversation(fake: FakeAmoCRM) -> Act:
    """Act 3: two «Приоритет» requests answered at once; the customers write again. One
    follow-up is answered within the 2 business hours, the other waits too long."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    anna = fake.add_user("Анна Смирнова")
    oleg = fake.add_user("Олег Петров")
    maria = fake.add_user("Мария Козлова")  # the supervisor
    samples: list[Sample] = []

    def lead(name: str, about: str, user: int) -> int:
        lead_id = fake.add_lead(name, pipeline_id=support.id, tags=["Приоритет"],
                                created_at=_at(5, 10, 0), responsible_user_id=user)  # fmt: skip
        samples.append(Sample(lead_id, about))
        return lead_id

    order = lead("Не сохраняется заказ", "второе сообщение ждёт", anna)
    fake.add_event(order, "outgoing_chat_message", created_by=anna, at=_at(5, 10, 10))
    price = lead("Не обновляются цены", "ответ в срок", oleg)
    fake.add_event(price, "outgoing_chat_message", created_by=oleg, at=_at(5, 10, 20))

    def writes(lead_id: int, channel: str, moment: datetime) -> Callable[[], object]:
        return lambda: fake.customer_writes(lead_id, channel, at=moment.timestamp())

    def answers(lead_id: int, kind: str, user: int, moment: datetime) -> Callable[[], object]:
        return lambda: fake.add_event(lead_id, kind, created_by=user, at=moment.timestamp())

    text = resources.files("sla.presets").joinpath("crmbp_next_response.toml")
    happenings = [
        Happening(_today(10, 40), "клиент пишет в чат по «Не сохраняется заказ»",
                  writes(order, "chat", _today(10, 40))),
        Happening(_today(11, 5), "Анна отвечает клиенту по «Не сохраняется заказ»",
                  answers(order, "outgoing_chat_message", anna, _today(11, 5))),
        Happening(_today(12, 15), "клиент снова пишет, письмом: «заказ всё ещё не сохраняется»",
                  writes(order, "mail", _today(12, 15))),
        Happening(_today(12, 30), "клиент пишет в чат по «Не обновляются цены»",
                  writes(price, "chat", _today(12, 30))),
        Happening(_today(13, 10), "Олег отвечает по «Не обновляются цены»",
                  answers(price, "outgoing_chat_message", oleg, _today(13, 10))),
        Happening(_today(15, 40), "Анна наконец звонит клиенту по «Не сохраняется заказ»",
                  answers(order, "outgoing_call", anna, _today(15, 40))),
    ]  # fmt: skip
    return Act(
        fake=fake,
        support=support,
        samples=samples,
        happenings=happenings,
        policy=load_policy(text.read_text(encoding="utf-8")),
        ledgers=frozenset(),
        end=CONVERSATION_END,
        supervisor=maria,
    )


@dataclass(frozen=True)
class Pacing:
    """How the client paces its requests and the emulator measures their rate: real time,
    or a virtual clock in tests."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def run_demo(
    out: TextIO,
    *,
    state_dir: Path | None = None,
    pacing: Pacing | None = None,
    report_dir: Path | None = None,
    log: Callable[[Callable[[], datetime]], None] | None = None,
    wide: bool = False,
) -> int:
    """The three acts; the first ends by writing the SLA report of its day into ``report_dir``
    (default: ``amo-sla-demo-report`` in the system's temporary directory, kept). ``log``
    sets up logging on the story's clock; ``wide`` prints every field in one table."""
    clock = SimulatedClock(DEMO_START)
    if log is not None:
        log(clock.aware)
    width = None if wide else WIDTH
    if width is not None:
        out = cast(TextIO, Folded(out, width))
    report_dir = report_dir or Path(tempfile.gettempdir()) / "amo-sla-demo-report"
    pace = pacing or Pacing()

    def emulator(account_name: str) -> FakeAmoCRM:
        return FakeAmoCRM(clock=clock.unix, monotonic=pace.monotonic, account_name=account_name)

    packages = seed(emulator("Интегратор: поддержка"))
    print(
        f"amo-sla demo: the worker against the built-in amoCRM emulator "
        f"({packages.fake.base_url}),\npipeline «{PIPELINE}», simulated clock from "
        f"{DEMO_START:%d.%m.%Y %H:%M} (Moscow). Logs go to stderr.\n\n"
        "Act 1: the built-in CRMBP policy, with prepaid hour packages on (SLA_PACKAGES=true):\n"
        "agents log time in notes «Время: …» until a company's 2-hour package runs out.\n",
        file=out,
    )
    with tempfile.TemporaryDirectory(prefix="amo-sla-demo-") as scratch:
        directory = state_dir or Path(scratch)
        if not _play(
            packages,
            clock,
            directory / "crmbp",
            out,
            pace=pace,
            audit=True,
            report_to=report_dir,
            width=width,
        ):
            return 1
        clock.now = DEMO_START
        quotas = seed_quotas(emulator("Прайм гейт: поддержка"))
        print(
            "\nAct 2: another account, under the Prime Gate preset (SLA_POLICY_FILE="
            "sla/presets/prime_gate.toml).\nIts plans come with free set-ups per company and 12 "
            "months (a policy's quotas): «Микробизнес» has 2,\nso the third set-up that year goes "
            "over; the worker flags it and asks the agent to agree payment.\nThe first two, "
            "closed months ago, are older than the 30 days the worker keeps SLAs for: it counts "
            "them\nwithout writing to them.\n",
            file=out,
        )
        if not _play(
            quotas, clock, directory / "prime-gate", out, pace=pace, audit=False, width=width
        ):
            return 1
        clock.now = DEMO_START
        conversation = seed_conversation(emulator("Интегратор: поддержка чата"))
        print(
            "\nAct 3: beyond the seeds, a third account under sla/presets/crmbp_next_response"
            ".toml: after the first answer,\nevery customer message waits at most 2 business "
            "hours for the next one («SLA: ответ до»). When it waits\nlonger, the field «SLA: "
            "ответ просрочен» is set, the agent gets a task, and an hour later the supervisor\n"
            "(SLA_SUPERVISOR_USER_ID, Мария Козлова) gets one too: the policy's escalation "
            "ladder.\n",
            file=out,
        )
        if not _play(
            conversation, clock, directory / "conversation", out, pace=pace, audit=False,
            width=width,
        ):  # fmt: skip
            return 1
    print(f"\nThe SLA report of act 1's support day: {report_dir / 'report.html'}", file=out)
    return 0


def _play(
    act: Act,
    clock: SimulatedClock,
    directory: Path,
    out: TextIO,
    *,
    pace: Pacing,
    audit: bool,
    report_to: Path | None = None,
    width: int | None = None,
) -> bool:
    """Provision, run the worker's cycles until ``act.end``, print the closing tables (and,
    with ``audit``, ``explain --company`` of the act's first company; with ``report_to``, write
    the SLA report of the act's day there)."""
    fake, policy = act.fake, act.policy
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        sleep=pace.sleep,
        monotonic=pace.monotonic,
    )
    directory.mkdir(parents=True, exist_ok=True)
    print("$ python -m worker provision", file=out)
    next_response = policy.next_response is not None
    provision(client, dry_run=False, say=lambda line: print(f"  {line}", file=out),
              ledgers=act.ledgers, next_response=next_response)  # fmt: skip
    ledger_options = LedgerOptions(
        packages=Ledger.PACKAGES in act.ledgers,
        quotas=policy.quotas if Ledger.QUOTAS in act.ledgers else (),
        zone=policy.zone,
        at_risk=policy.at_risk_fraction,
        unit=policy.time_terms.unit_seconds,
    )
    cycle = SyncCycle(
        client,
        StateStore(directory / "state.sqlite3"),
        policy,
        CycleOptions(
            stages=StageOptions(
                pipeline=PIPELINE,
                hold_stages=(STAGES[2],),
                acceptance_stages=(STAGES[3],),
                ledgers=act.ledgers,
                next_response=next_response,
            ),
            tasks=TaskOptions(
                reaction_text=REACTION_TASK,
                resolution_text=RESOLUTION_TASK,
                display_zone=policy.zone,
                supervisor_user_id=act.supervisor,
            ),
            ledgers=ledger_options,
        ),
        lock_path=directory / "cycle.lock",
        wall_clock=lambda: datetime.now(UTC),
    )
    print(
        "\ncycles: every poll interval (1 h in the demo), and at each instant the previous "
        "cycle asked to be woken at (a deadline or an at-risk instant):",
        file=out,
    )
    pending = sorted(act.happenings, key=lambda happening: happening.at)
    _happen(pending, clock.now, clock, out)
    report = _cycle(cycle, clock, out)
    last_poll = clock.now
    while True:
        wake = report.next_change_at
        poll = last_poll + DEMO_POLL_INTERVAL
        next_run = min(poll, wake + timedelta(seconds=1)) if wake is not None else poll
        if next_run > act.end:
            break
        _happen(pending, next_run, clock, out)
        clock.now = next_run
        if next_run == poll:
            last_poll = poll
        report = _cycle(cycle, clock, out)
    cycle.store.close()
    setup = cycle.setup
    if setup is None:
        client.close()
        return False
    users = {user.id: user.name for user in client.iter_users()}
    _print_tables(act, client, setup, out, users=users, now=clock.now, width=width)
    if audit and act.companies:
        company_id = act.companies[0]
        ledger = read_company_ledger(
            client, company_id, setup=setup, policy=policy, options=ledger_options,
            now=clock.aware(),
        )  # fmt: skip
        if ledger is not None:
            print(f"\n$ python -m worker explain --company {company_id}", file=out)
            for line in company_ledger_lines(ledger, width=None if width is None else width - 2):
                print(f"  {line}" if line else "", file=out)
    if report_to is not None:
        _write_report(
            act,
            client,
            setup=setup,
            ledger_options=ledger_options,
            cache=directory / "state.sqlite3",
            out_dir=report_to,
            clock=clock,
            out=out,
        )
    print(
        f"\n{fake.requests_total} API requests in all, {fake.rate_limited_total} answered 429.",
        file=out,
    )
    client.close()
    return True


def _write_report(
    act: Act,
    client: AmoClient,
    *,
    setup: AccountSetup,
    ledger_options: LedgerOptions,
    cache: Path,
    out_dir: Path,
    clock: SimulatedClock,
    out: TextIO,
) -> None:
    """``python -m worker report`` for the demo's day, from the worker's own cache."""
    from worker import sla_report  # noqa: PLC0415 - Jinja2 and pygal only for the report

    day = clock.now.astimezone(act.policy.zone).date()
    sources = sla_report.Sources(
        client,
        setup,
        act.policy,
        ledger_options,
        cache=cache,
        lead_url=sla_report.lead_url(act.fake.base_url),
    )
    figures, _ = sla_report.collect(
        sources, sla_report.Period(day, day, act.policy.zone), clock.aware()
    )
    written = sla_report.write_report(figures, out_dir, with_statements=True)
    print(
        f"\n$ python -m worker report --from {day} --to {day} --out {out_dir} --statements",
        file=out,
    )
    print(
        f"  {len(figures.requests)} requests of the day recomputed from their histories; "
        f"the report and its {len(written.csv)} CSV tables, and each customer's statement "
        "(HTML; a PDF too where Chromium is installed):",
        file=out,
    )
    print(f"  {written.page}", file=out)
    for files in written.statements:
        print(f"  {files.page}", file=out)


def _happen(pending: list[Happening], until: datetime, clock: SimulatedClock, out: TextIO) -> None:
    """What the agents do in amoCRM up to ``until``, in order, each at its own instant."""
    while pending and pending[0].at <= until:
        happening = pending.pop(0)
        clock.now = happening.at
        happening.act()
        print(f"  {happening.at:%H:%M:%S}  amoCRM: {happening.what}", file=out)


LEDGER_COLUMNS: Mapping[Ledger, tuple[SlaField, ...]] = {
    Ledger.PACKAGES: (SlaField.SPENT_MINUTES, SlaField.PACKAGE_EXHAUSTED),
    Ledger.QUOTAS: (SlaField.QUOTA_OVER,),
}
NEXT_RESPONSE_COLUMNS = (SlaField.NEXT_RESPONSE_DUE, SlaField.NEXT_RESPONSE_BREACHED)


def _print_tables(
    act: Act,
    client: AmoClient,
    setup: AccountSetup,
    out: TextIO,
    *,
    users: Mapping[int, str],
    now: datetime,
    width: int | None,
) -> None:
    """The leads' SLA (and ledger) fields, the companies' ledger fields, and the tasks; the
    tables split by columns to fit ``width`` (None: one table each)."""
    zone = act.policy.zone
    leads = sorted(
        (
            lead
            for lead in client.iter_leads(ids=[sample.lead_id for sample in act.samples])
            if lead.pipeline_id == act.support.id
        ),
        key=lambda lead: lead.id,
    )
    about = {sample.lead_id: sample.about for sample in act.samples}
    stage_names = {**setup.status_names, 142: "Успешно", 143: "Закрыто"}
    headers, rows = lead_field_rows(leads, setup.fields, zone, about, stage_names)
    extra = [key for ledger in sorted(act.ledgers) for key in LEDGER_COLUMNS[ledger]]
    if act.policy.next_response is not None:
        extra += NEXT_RESPONSE_COLUMNS
    headers += [SPEC_BY_KEY[key].name for key in extra]
    for lead, row in zip(leads, rows, strict=True):
        for key in extra:
            spec, field_id = SPEC_BY_KEY[key], setup.fields.id_of(key)
            value = read_value(lead.field(field_id), spec) if field_id is not None else None
            row.append(format_value(value, spec, setup.fields, zone))
    print(f"\nthe leads' SLA fields in amoCRM at {now.astimezone(MOSCOW):%H:%M:%S}:", file=out)
    _print_table(headers, rows, out, width, keep=2)

    if act.companies:
        _print_companies(act, client, setup, out, users=users, width=width)
    _print_tasks(act, out, users=users)


def _print_companies(
    act: Act,
    client: AmoClient,
    setup: AccountSetup,
    out: TextIO,
    *,
    users: Mapping[int, str],
    width: int | None,
) -> None:
    zone = act.policy.zone
    specs = [spec for spec in COMPANY_FIELD_SPECS if spec.needed(act.ledgers)]
    company_rows = [
        [
            company.name,
            users.get(company.responsible_user_id, str(company.responsible_user_id)),
            *(company_field_text(company, s.key, setup.company_fields, zone) for s in specs),
        ]
        for company in client.iter_companies(ids=act.companies)
    ]
    print("\nthe companies' ledger fields in amoCRM:", file=out)
    _print_table(["company", "responsible", *(s.name for s in specs)], company_rows, out, width)


def _print_tasks(act: Act, out: TextIO, *, users: Mapping[int, str]) -> None:
    breach: list[str] = []
    ledger: list[str] = []
    for task in act.fake.tasks:
        text = str(task["text"])
        on = "company" if task.get("entity_type") == "companies" else "lead"
        responsible = users.get(int(task["responsible_user_id"]), str(task["responsible_user_id"]))
        line = f"  {on} {task['entity_id']}, to {responsible}: {text.replace(chr(10), ' ')}"
        (breach if text.rsplit("\n", 1)[-1].startswith("[SLA:") else ledger).append(line)
    for title, lines in (("breach", breach), ("ledger", ledger)):
        print(f"\n{title} tasks created:{'' if lines else ' none'}", file=out)
        _print(lines, out)


def _print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    out: TextIO,
    width: int | None,
    *,
    keep: int = 1,
) -> None:
    tables = (
        [table(headers, rows)] if width is None else tables_within(headers, rows, width, keep=keep)
    )
    for index, lines in enumerate(tables):
        if index:
            print(file=out)
        _print(lines, out)


def _print(lines: Sequence[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out)


def _cycle(cycle: SyncCycle, clock: SimulatedClock, out: TextIO) -> CycleReport:
    report = cycle.run(clock.aware())
    wake = report.next_change_at
    companies = f"companies {report.companies_written}, " if report.ledger is not None else ""
    print(
        f"  {clock.now.astimezone(MOSCOW):%H:%M:%S}  worker: read {report.leads_read}, "
        f"wrote {report.leads_written}, {companies}tasks {report.tasks_created}, "
        f"requests {report.requests}; next change "
        f"{_moment(wake, clock.now) if wake else '—'}",
        file=out,
    )
    return report


def _moment(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(MOSCOW)
    same_day = local.date() == now.astimezone(MOSCOW).date()
    return local.strftime("%H:%M:%S" if same_day else "%d.%m %H:%M:%S")
