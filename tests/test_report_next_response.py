"""The report's next-response table (spec §4.1), worked out by hand.

Wednesday 5 November 2025, under the example preset (``crmbp_next_response.toml``:
«Приоритет» typical 2 business hours, «По факту» 8), the report made at 17:00:

| request | agent | company | tariff | answered | customer waits (business minutes) |
|---|---|---|---|---|---|
| a1 | Анна | Ромашка | Приоритет | 10:10 | 10:30–11:00 (30, met); 13:00–15:30 (150, breached) |
| a2 | Олег | — | По факту | 10:20 | 11:00–12:00 (60, met); 16:00– (pending) |
| a3 | Анна | — | Приоритет | never | none: no reaction yet |
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from sla.policy import default_policy, load_policy
from tests.cycle_kit import MOSCOW, World, at, build_world, stage_options
from worker.setup import resolve_setup
from worker.sla_report import Period, Sources, collect, write_report

PRESET = Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
DAY = Period(date(2025, 11, 5), date(2025, 11, 5), MOSCOW)


def conversations() -> World:
    world = build_world(seed=False, policy=load_policy(PRESET.read_text(encoding="utf-8")))
    fake, support = world.fake, world.support
    anna, oleg = world.agents
    romashka = fake.add_company("ООО Ромашка", responsible_user_id=anna)

    def lead(tags: list[str], hour: int, user: int, company: int | None = None) -> int:
        return fake.add_lead(
            "Обращение", pipeline_id=support.id, tags=tags, created_at=at(5, hour),
            responsible_user_id=user, company_id=company,
        )  # fmt: skip

    a1 = lead(["Приоритет"], 10, anna, romashka)
    for moment, writer in ((at(5, 10, 10), anna), (at(5, 11), anna), (at(5, 15, 30), anna)):
        fake.add_event(a1, "outgoing_chat_message", created_by=writer, at=moment)
    fake.customer_writes(a1, "chat", at=at(5, 10, 30))
    fake.customer_writes(a1, "mail", at=at(5, 13))
    a2 = lead(["По факту"], 10, oleg)
    fake.add_event(a2, "outgoing_call", created_by=oleg, at=at(5, 10, 20))
    fake.customer_writes(a2, "call", at=at(5, 11))
    fake.add_event(a2, "outgoing_chat_message", created_by=oleg, at=at(5, 12))
    fake.customer_writes(a2, "chat", at=at(5, 16))
    lead(["Приоритет"], 11, anna)
    return world


def report(world: World, out: Path) -> None:
    setup = resolve_setup(
        stage_options(next_response=world.policy.next_response is not None),
        world.client.pipelines(),
        list(world.client.iter_lead_custom_fields()),
    )
    world.clock.advance(at(5, 17) - world.clock.time())
    figures, _ = collect(Sources(world.client, setup, world.policy), DAY, world.now())
    write_report(figures, out)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))


def test_next_response_met_and_p90_by_tariff_agent_and_company(tmp_path: Path) -> None:
    report(conversations(), tmp_path)
    assert read_csv(tmp_path / "next_response.csv") == [
        ["Разрез", "Группа", "Ожиданий", "В срок", "Нарушено", "% в срок", "p90, мин"],
        ["Тариф", "Приоритет", "2", "1", "1", "50", "150"],
        ["Тариф", "По факту", "2", "1", "0", "100", "60"],
        ["Ответственный", "Анна Смирнова", "2", "1", "1", "50", "150"],
        ["Ответственный", "Олег Петров", "2", "1", "0", "100", "60"],
        ["Компания", "Без компании", "2", "1", "0", "100", "60"],
        ["Компания", "ООО Ромашка", "2", "1", "1", "50", "150"],
        ["Всего", "", "4", "2", "1", "66.7", "150"],
    ]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Следующий ответ клиенту" in page


def test_without_next_response_the_report_has_no_such_table(tmp_path: Path) -> None:
    world = conversations()
    world.policy = default_policy()
    report(world, tmp_path)
    assert not (tmp_path / "next_response.csv").exists()
    assert "Следующий ответ клиенту" not in (tmp_path / "report.html").read_text(encoding="utf-8")
