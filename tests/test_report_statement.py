"""The customer statement: what a provider sends a customer, from the very figures of the
report's hours table, with the policy's rounding rule and clause, and lines to sign.

The figures are report_kit's October, worked out by hand: ООО Ромашка's 2-hour package paid
on 01.10 took 25 + 70 + 40 + 65 = 200 minutes, 80 over it at 3 500 ₽ an hour (4 666.67 ₽);
ООО Вектор has no package and 30 minutes of work."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

from sla.policy import TimeTerms
from sla.words import duration_text
from tests.cycle_kit import START
from tests.report_kit import build_report_world, make_report
from worker.sla_report import write_report

PROVIDER = "ИП Дудкин Антон Александрович"


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))


def text_of(page: str) -> str:
    """The page's text, tags out, spaces collapsed (no-break ones too)."""
    body = page.split("<body>", 1)[1]
    return " ".join(re.sub(r"<[^>]+>", " ", body).replace("\u00a0", " ").split())


def test_the_statement_names_both_parties_the_period_and_each_entry(tmp_path: Path) -> None:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, None, now=START)
    company = scenario.companies["romashka"]

    written = write_report(figures, tmp_path, company_id=company, provider=PROVIDER)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"statement-{company}.csv",
        f"statement-{company}.html",
    ]
    page = written.page.read_text(encoding="utf-8")
    text = text_of(page)
    assert page.count("<h1>") == 1  # its title once
    assert "<h2>Отчёт об оказанных" not in page
    assert "Исполнитель " + PROVIDER in text
    assert "Заказчик ООО Ромашка" in text
    assert "за период 01.10.2025 — 31.10.2025" in text
    assert "06.10.2025 r2 интеграция с АТС 1 ч 7 мин 1 ч 10 мин" in text
    assert "13.10.2025 r7 счёт на доплату 1 ч 2 мин 1 ч 5 мин" in text
    # nothing internal: no lead ids, no agents, no amoCRM wording
    for internal in (*(str(i) for i in scenario.leads.values()), "Анна", "Олег", "Сделка"):
        assert internal not in text, internal
    assert text.count("подпись / расшифровка") == 2
    assert read_csv(written.csv[0]) == [
        ["Дата", "Обращение", "Что сделано", "Записано, мин", "Учтено, мин", "Списание"],
        ["06.10.2025", "r1", "настройка воронки", "25", "25", "из пакета"],
        ["06.10.2025", "r2", "интеграция с АТС", "67", "70", "из пакета"],
        ["11.10.2025", "r6", "консультация", "40", "40", "из пакета"],
        ["13.10.2025", "r7", "счёт на доплату", "62", "65", "из пакета"],
    ]


def test_the_totals_package_balance_and_what_is_billed_over_it(tmp_path: Path) -> None:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, None, now=START)
    written = write_report(figures, tmp_path, company_id=scenario.companies["romashka"])
    text = text_of(written.page.read_text(encoding="utf-8"))

    assert "Записей за период 4" in text
    assert "Записано 3 ч 14 мин" in text  # 25 + 67 + 40 + 62
    assert "Учтено 3 ч 20 мин (200 мин)" in text
    assert "Пакет часов 2 ч, оплачен 01.10.2025, действует по 01.11.2025" in text
    assert "Израсходовано на конец 31.10.2025 3 ч 20 мин (200 мин)" in text
    # the balance as the company's field holds it: negative, not «0 мин»
    assert "Остаток пакета -1 ч 20 мин (-80 мин) — работы сверх пакета" in text
    assert "Сверх пакета за период 1 ч 20 мин (80 мин)" in text
    assert "Ставка часа сверх пакета 3 500 ₽" in text
    assert "К оплате сверх пакета 4 667 ₽" in text


def test_the_rounding_rule_and_its_clause_come_from_the_policy(tmp_path: Path) -> None:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, None, now=START)
    company = scenario.companies["romashka"]
    plain = write_report(figures, tmp_path / "crmbp", company_id=company)
    text = text_of(plain.page.read_text(encoding="utf-8"))
    assert "с округлением вверх до целых 5 мин:" in text
    assert "оферт" not in text.casefold()  # the built-in policy cites no offer

    world = scenario.world
    world.policy = dataclasses.replace(
        world.policy,
        time_terms=TimeTerms(
            unit_minutes=15, unit_clause="п. 5.2 оферты", contract="Договор № 12 от 01.09.2025"
        ),
    )
    figures, _ = make_report(world, tmp_path / "report", now=START)
    cited = write_report(figures, tmp_path / "cited", company_id=company)
    text = text_of(cited.page.read_text(encoding="utf-8"))
    assert "с округлением вверх до целых 15 мин (п. 5.2 оферты):" in text
    assert "Основание Договор № 12 от 01.09.2025" in text
    # 25 -> 30, 67 -> 75, 40 -> 45, 62 -> 75: 225 minutes, 105 over the package
    assert "Учтено 3 ч 45 мин (225 мин)" in text
    assert "Остаток пакета -1 ч 45 мин (-105 мин)" in text
    hours = {row[0]: row for row in read_csv(tmp_path / "report" / "hours.csv")}
    assert hours["ООО Ромашка"][4:8] == ["225", "-105", "0", "105"]


def test_statement_and_hours_table_agree_on_every_figure(tmp_path: Path) -> None:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, None, now=START)
    written = write_report(figures, tmp_path, with_statements=True)

    assert [(s.customer, s.page.parent.name) for s in written.statements] == [
        ("ООО Вектор", "statements"),
        ("ООО Ромашка", "statements"),
    ]
    hours = {row[0]: row for row in read_csv(tmp_path / "hours.csv")[1:]}
    for files in written.statements:
        text = text_of(files.page.read_text(encoding="utf-8"))
        entries = read_csv(files.csv)[1:]
        hours_of = {
            name: int(value) if value else None
            for name, value in zip(
                ("used", "left", "outside", "over", "rate", "cost"),
                hours[files.customer][4:10],
                strict=True,
            )
        }
        shown = {
            name: int(found[1].replace(" ", "")) if (found := re.search(pattern, text)) else None
            for name, pattern in (
                ("used", r"Израсходовано на [^(]*\((-?\d+) мин\)"),
                ("left", r"Остаток пакета [^(]*\((-?\d+) мин\)"),
                ("outside", r"(?:Вне срока пакета|Работа вне пакета) за период [^(]*\((\d+) мин\)"),
                ("over", r"Сверх пакета за период [^(]*\((\d+) мин\)"),
                ("rate", r"Ставка часа сверх пакета ([\d ]+) ₽"),
                ("cost", r"К оплате сверх пакета ([\d ]+) ₽"),
            )
        }
        # the statement leaves out a zero it has nothing to say about
        assert shown == {
            k: (None if v == 0 and k in ("outside", "over") else v) for k, v in hours_of.items()
        }, files.customer
        counted = sum(int(entry[4]) for entry in entries)
        assert f"Учтено {duration_text(counted)} ({counted} мин)" in text
        outside = sum(int(entry[4]) for entry in entries if entry[5] != "из пакета")
        assert outside == hours_of["outside"]
