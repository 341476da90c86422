"""A month of support requests in the fake amoCRM whose report is worked out by hand.

October 2025 (no holidays), the CRMBP policy with seed 004's extra-hour rates and hour
packages on. «Приоритет» typical: reaction 1 h, resolution 12 h, 10:00–18:00 on workdays
and 12:00–18:00 on days off; non-standard: reaction 3 h on workdays, resolution by
agreement. «По факту» typical: 24 h and 72 h of 10:00–18:00 workdays. The report is made
on Wednesday 5 November 2025 at 12:00 (after the 3–4 November holidays; Saturday 1
November was a working day).

| request | agent | company | tariff, class | registered | reaction | resolution |
|---|---|---|---|---|---|---|
| r1 | Анна | Ромашка | Приоритет, typ. | Mon 06.10 10:00 | 10:20 (20 min) | won 12:00 (120) |
| r2 | Олег | Ромашка | Приоритет, typ. | Mon 06.10 11:00 | 12:30 (90, late) | won 15:00 (240) |
| r3 | Анна | Вектор | Приоритет, typ. | Tue 07.10 10:00 | 10:10 (10) | won 09.10 (960, late) |
| r4 | Олег | Вектор | По факту, typ. | Wed 08.10 10:00 | 14:00 (240) | open, due 20.10 18:00 |
| r5 | Анна | — | Приоритет, non-st. | Thu 09.10 10:00 | 11:00 (60) | won Fri 10:00 (480, no due) |
| r6 | Олег | Ромашка | Приоритет, typ. | Sat 11.10 12:00 | on hold 12:30 (30) | on hold: pending |
| r7 | Анна | Ромашка | no tariff | Mon 13.10 10:00 | — | — |
| r8 | Олег | Вектор | Приоритет, typ. | moved in Tue 14.10 10:00 | 10:45 (45) | won 13:00 (180) |

Not in the report: a sales lead of October. r1's card says «Просрочено» with its reaction
breached: a stale value the report must not believe.

The previous period, September, for the trend:

| request | agent | company | tariff | registered | reaction | resolution |
|---|---|---|---|---|---|---|
| s1 | Анна | Ромашка | Приоритет | Mon 15.09 10:00 | 10:30 (30) | won 12:00 (120) |
| s2 | Олег | Вектор | По факту | Tue 16.09 10:00 | 17.09 10:00 (480) | won 18.09 10:00 (960) |
| september | Анна | Ромашка | Приоритет | Tue 30.09 10:00 | never: breached | open: breached |

Open now besides: r9 (Олег, Ромашка, Приоритет), registered Wed 05.11 11:10, unanswered:
50 of its 60 minutes used at 12:00, so at risk (80 %).

Goals: every tariff 90 % reaction and 80 % resolution; «Приоритет» 95 % reaction.

Time notes: r1 25 min, r2 1 h 7 min (70 counted), r6 40 min, r7 1:02 (65) for Ромашка,
whose 2-hour package was paid on 01.10; r3 30 min for Вектор, which has no package; and
one more on r6 on 05.11, after the period.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sla.policy import Goals, default_policy
from tests.cycle_kit import HOLD, MOSCOW, STAGES, WON, World, at, build_world
from worker.admin import provision
from worker.fields import Ledger
from worker.ledgers.options import LedgerOptions
from worker.setup import AccountSetup, StageOptions, resolve_setup
from worker.sla_report import Period, Sources, collect, lead_url, write_report
from worker.sla_report.collect import ReadStats
from worker.sla_report.figures import Figures

OCTOBER = Period(date(2025, 10, 1), date(2025, 10, 31), MOSCOW)
RATES = {Decimal(2): Decimal(3500), Decimal(5): Decimal(3000), Decimal(10): Decimal(2000)}
GOALS = Goals(
    every={"reaction": Decimal(90), "resolution": Decimal(80)},
    tariffs={"Приоритет": {"reaction": Decimal(95)}},
)


@dataclass
class ReportWorld:
    world: World
    leads: dict[str, int]
    companies: dict[str, int]


def oct_(day: int, hour: int, minute: int = 0) -> float:
    return at(day, hour, minute, month=10)


def stages(*, packages: bool = True) -> StageOptions:
    return StageOptions(
        pipeline="Техподдержка",
        hold_stages=(HOLD,),
        acceptance_stages=(STAGES[3],),
        ledgers=frozenset({Ledger.PACKAGES}) if packages else frozenset(),
    )


def build_report_world() -> ReportWorld:
    world = build_world(seed=False)
    world.policy = dataclasses.replace(default_policy(), extra_hour_rates=RATES, goals=GOALS)
    provision(
        world.client, dry_run=False, say=lambda line: None, ledgers=frozenset({Ledger.PACKAGES})
    )
    fake, support = world.fake, world.support
    anna, oleg = world.agents
    hours_id = fake.field_id("Пакет: часов", entity="companies")
    paid_id = fake.field_id("Пакет: оплачен", entity="companies")
    assert hours_id is not None
    assert paid_id is not None
    paid = datetime(2025, 10, 1, tzinfo=MOSCOW)
    romashka = fake.add_company(
        "ООО Ромашка",
        responsible_user_id=oleg,
        custom_fields={hours_id: 2, paid_id: int(paid.timestamp())},
    )
    vector = fake.add_company("ООО Вектор", responsible_user_id=anna)
    leads: dict[str, int] = {}
    in_work, hold = support.status(STAGES[1]), support.status(HOLD)

    def lead(role: str, tags: list[str], created: float, user: int, company: int | None) -> int:
        lead_id = fake.add_lead(
            role,
            pipeline_id=support.id,
            tags=tags,
            created_at=created,
            responsible_user_id=user,
            company_id=company,
        )
        leads[role] = lead_id
        return lead_id

    r1 = lead("r1", ["Приоритет"], oct_(6, 10), anna, romashka)
    fake.add_event(r1, "outgoing_chat_message", created_by=anna, at=oct_(6, 10, 20))
    fake.move_lead(r1, WON, by_user=anna, at=oct_(6, 12))
    r2 = lead("r2", ["Приоритет"], oct_(6, 11), oleg, romashka)
    fake.add_event(r2, "outgoing_chat_message", created_by=oleg, at=oct_(6, 12, 30))
    fake.move_lead(r2, WON, by_user=oleg, at=oct_(6, 15))
    r3 = lead("r3", ["Приоритет"], oct_(7, 10), anna, vector)
    fake.add_event(r3, "outgoing_call", created_by=anna, at=oct_(7, 10, 10))
    fake.move_lead(r3, in_work, by_user=anna, at=oct_(7, 10, 15))
    fake.move_lead(r3, WON, by_user=anna, at=oct_(9, 10))
    r4 = lead("r4", ["По факту"], oct_(8, 10), oleg, vector)
    fake.add_event(r4, "outgoing_chat_message", created_by=oleg, at=oct_(8, 14))
    r5 = lead("r5", ["Приоритет", "Доработка"], oct_(9, 10), anna, None)
    fake.add_event(r5, "outgoing_chat_message", created_by=anna, at=oct_(9, 11))
    fake.move_lead(r5, WON, by_user=anna, at=oct_(10, 10))
    r6 = lead("r6", ["Приоритет"], oct_(11, 12), oleg, romashka)
    fake.move_lead(r6, hold, by_user=oleg, at=oct_(11, 12, 30))
    r7 = lead("r7", ["счёт"], oct_(13, 10), anna, romashka)
    r8 = fake.add_lead(
        "r8",
        pipeline_id=world.other.id,
        tags=["Приоритет"],
        created_at=at(25, 10, month=9),
        responsible_user_id=oleg,
        company_id=vector,
    )
    leads["r8"] = r8
    fake.move_lead(
        r8, support.status(STAGES[0]), by_user=oleg, pipeline_id=support.id, at=oct_(14, 10)
    )
    fake.add_event(r8, "outgoing_call", created_by=oleg, at=oct_(14, 10, 45))
    fake.move_lead(r8, WON, by_user=oleg, at=oct_(14, 13))

    # The previous period, September; open now; outside the report: a sales lead.
    s1 = lead("s1", ["Приоритет"], at(15, 10, month=9), anna, romashka)
    fake.add_event(s1, "outgoing_chat_message", created_by=anna, at=at(15, 10, 30, month=9))
    fake.move_lead(s1, WON, by_user=anna, at=at(15, 12, month=9))
    s2 = lead("s2", ["По факту"], at(16, 10, month=9), oleg, vector)
    fake.add_event(s2, "outgoing_call", created_by=oleg, at=at(17, 10, month=9))
    fake.move_lead(s2, WON, by_user=oleg, at=at(18, 10, month=9))
    lead("september", ["Приоритет"], at(30, 10, month=9), anna, romashka)
    lead("r9", ["Приоритет"], at(5, 11, 10), oleg, romashka)
    fake.add_lead("sales", pipeline_id=world.other.id, tags=["Приоритет"], created_at=oct_(15, 10))

    for lead_id, text, by, moment in (
        (r1, "Время: 25 мин — настройка воронки", anna, oct_(6, 11)),
        (r2, "Время: 1 ч 7 мин — интеграция с АТС", oleg, oct_(6, 14)),
        (r3, "Время: 30 мин — диагностика", anna, oct_(7, 12)),
        (r6, "Время: 40 — консультация", oleg, oct_(11, 13)),
        (r7, "Время: 1:02 — счёт на доплату", anna, oct_(13, 11)),
        (r6, "Время: 10 мин — после периода", oleg, at(5, 11)),
    ):
        fake.add_note(lead_id, text, created_by=by, at=moment)
    return ReportWorld(world, leads, {"romashka": romashka, "vector": vector})


def account_setup(world: World, *, packages: bool = True) -> AccountSetup:
    client = world.client
    return resolve_setup(
        stages(packages=packages),
        client.pipelines(),
        list(client.iter_lead_custom_fields()),
        list(client.iter_company_custom_fields()) if packages else [],
    )


def make_report(
    world: World,
    out: Path | None,
    period: Period = OCTOBER,
    *,
    cache: Path | None = None,
    packages: bool = True,
    now: datetime | None = None,
) -> tuple[Figures, ReadStats]:
    setup = account_setup(world, packages=packages)
    sources = Sources(
        world.client,
        setup,
        world.policy,
        LedgerOptions(packages=packages, zone=MOSCOW, unit=world.policy.time_terms.unit_seconds),
        cache=cache,
        lead_url=lead_url(world.fake.base_url),
    )
    figures, stats = collect(sources, period, now or world.now())
    if out is not None:
        write_report(figures, out)
    return figures, stats
