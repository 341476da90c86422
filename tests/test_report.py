"""The SLA report on a month whose every figure is worked out by hand (tests/report_kit.py).

The expected tables below come from the scenario's table of requests and the policy's
calendars, not from the report's code: met % is met / (met + breached), times are business
minutes, p90 is the nearest rank."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.cycle_kit import (
    MOSCOW,
    START,
    make_cycle,
    plant_raw_value,
    stage_options,
    task_options,
)
from tests.report_kit import OCTOBER, build_report_world, make_report
from worker.cycle import CycleOptions
from worker.sla_report import Period, last_full_month, write_report


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))


MET = [
    "Обращений",
    "Обращений за прошлый период",
    *(
        f"{clock}: {what}"
        for clock in ("Реакция", "Решение")
        for what in (
            "в срок",
            "нарушено",
            "% в срок",
            "цель, %",
            "% в срок за прошлый период",
            "изменение, п.п.",
        )
    ),
]

# Goals (report_kit.GOALS): 90 % reaction and 80 % resolution for every tariff, 95 % reaction
# for «Приоритет». September, the previous period: s1 met both; s2 met both; «september»
# breached both (never answered, still open).
EXPECTED: dict[str, list[list[str]]] = {
    "summary": [
        ["Показатель", "Значение"],
        ["Обращений", "8"],
        ["Обращений за прошлый период", "3"],  # s1 s2 september
        ["Реакция: % в срок", "85.7"],  # 6 of 7: r2 late; r7 has no tariff
        ["Реакция: в срок", "6"],
        ["Реакция: нарушено", "1"],
        ["Реакция: цель, %", "90"],
        ["Реакция: % в срок за прошлый период", "66.7"],  # 2 of 3
        ["Реакция: изменение, п.п.", "19"],  # 85.7 - 66.7
        ["Решение: % в срок", "60"],  # r1 r2 r8 of r1 r2 r3 r4 r8 (r6 pending, r5 no due)
        ["Решение: в срок", "3"],
        ["Решение: нарушено", "2"],
        ["Решение: цель, %", "80"],
        ["Решение: % в срок за прошлый период", "66.7"],
        ["Решение: изменение, п.п.", "-6.7"],
        ["Просрочено сейчас (открытые)", "2"],  # r4, and «september» from the month before
        ["Под угрозой сейчас (открытые)", "1"],  # r9, registered today
    ],
    "by_tariff_class": [
        ["Тариф", "Класс", *MET],
        ["Приоритет", "нестандартное", "1", "0",
         "1", "0", "100", "95", "", "", "0", "0", "", "80", "", ""],
        # September: s1 met, «september» breached: 50 % and 50 %
        ["Приоритет", "типовое", "5", "2",
         "4", "1", "80", "95", "50", "30", "3", "1", "75", "80", "50", "25"],
        ["По факту", "типовое", "1", "1",
         "1", "0", "100", "90", "100", "0", "0", "1", "0", "80", "100", "-100"],
        # no tariff: no deadline, so no goal
        ["Нет тарифа", "типовое", "1", "0", "0", "0", "", "", "", "", "0", "0", "", "", "", ""],
    ],
    "by_agent": [
        ["Ответственный", *MET],
        # r1 r3 r5 r7; September s1 and «september»
        ["Анна Смирнова", "4", "2", "3", "0", "100", "90", "50", "50",
         "1", "1", "50", "80", "50", "0"],
        # r2 r4 r6 r8; September s2
        ["Олег Петров", "4", "1", "3", "1", "75", "90", "100", "-25",
         "2", "1", "66.7", "80", "100", "-33.3"],
    ],
    "by_company": [
        ["Компания", *MET],
        ["Без компании", "1", "0", "1", "0", "100", "90", "", "", "0", "0", "", "80", "", ""],
        ["ООО Вектор", "3", "1", "3", "0", "100", "90", "100", "0",
         "1", "2", "33.3", "80", "100", "-66.7"],
        ["ООО Ромашка", "4", "2", "2", "1", "66.7", "90", "50", "16.7",
         "2", "0", "100", "80", "50", "50"],
    ],
    "times": [
        [
            "Тариф",
            "Реакций",
            "Реакция: медиана, мин",
            "Реакция: p90, мин",
            "Решений",
            "Решение: медиана, мин",
            "Решение: p90, мин",
        ],
        # reactions 10 20 30 45 60 90: median (30 + 45) / 2, p90 the 6th of 6;
        # resolutions 120 180 240 480 960: median the 3rd, p90 the 5th of 5.
        ["Приоритет", "6", "37.5", "90", "5", "240", "960"],
        ["По факту", "1", "240", "240", "0", "", ""],
    ],
    "hours": [
        [
            "Компания",
            "Пакет, ч",
            "Оплачен",
            "Действует до",
            "Израсходовано, мин",
            "Остаток, мин",
            "Вне пакета, мин",
            "Сверх пакета, мин",
            "Ставка, ₽/ч",
            "Сверх пакета, ₽",
        ],
        ["ООО Вектор", "", "", "", "", "", "30", "0", "", ""],
        # 25 + 70 + 40 + 65 = 200 of 120 minutes: 80 over, at 3 500 ₽ an hour = 4 666.67
        ["ООО Ромашка", "2", "01.10.2025", "01.11.2025", "200", "-80", "0", "80", "3500", "4667"],
    ],
    "now_by_agent": [
        ["Ответственный", "Под угрозой", "Просрочено"],
        ["Анна Смирнова", "0", "1"],
        ["Олег Петров", "1", "1"],
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    scenario = build_report_world()
    # r1's card was left saying its reaction was breached: stale, and not believed.
    world = scenario.world
    plant_raw_value(world, scenario.leads["r1"], "SLA: реакция просрочена", [{"value": True}])
    plant_raw_value(world, scenario.leads["r1"], "SLA: статус", [{"value": "Просрочено"}])
    out = tmp_path_factory.mktemp("report")
    make_report(world, out, now=START)
    return out, {**scenario.leads, **{f"company:{k}": v for k, v in scenario.companies.items()}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_figure_equals_the_hand_computed_table(
    report: tuple[Path, dict[str, int]], name: str
) -> None:
    out, _ = report
    assert read_csv(out / f"{name}.csv") == EXPECTED[name]


def test_daily_counts_by_registration_day(report: tuple[Path, dict[str, int]]) -> None:
    out, _ = report
    rows = read_csv(out / "daily.csv")
    assert rows[0] == ["Дата", "Обращений", "Выполнено в срок", "С нарушением", "В работе"]
    assert len(rows) == 1 + 31
    busy = {row[0]: row[1:] for row in rows[1:] if row[1] != "0"}
    assert busy == {
        "06.10.2025": ["2", "1", "1", "0"],  # r1 met, r2 late
        "07.10.2025": ["1", "0", "1", "0"],  # r3
        "08.10.2025": ["1", "0", "1", "0"],  # r4
        "09.10.2025": ["1", "1", "0", "0"],  # r5: closed, nothing breached
        "11.10.2025": ["1", "0", "0", "1"],  # r6 on hold
        "13.10.2025": ["1", "0", "0", "1"],  # r7 without a tariff
        "14.10.2025": ["1", "1", "0", "0"],  # r8, moved into the pipeline that day
    }


def test_each_breach_with_its_deadline_and_how_far_past(
    report: tuple[Path, dict[str, int]],
) -> None:
    out, ids = report
    rows = read_csv(out / "breaches.csv")
    assert rows[1:] == [
        # 12:30 against 11:00 + 1 h
        [str(ids["r2"]), "r2", "ООО Ромашка", "Олег Петров", "Приоритет", "реакция",
         "06.10.2025 12:00", "06.10.2025 12:30", "30", "рабочие"],
        # 7.10 480 min + 8.10 240 min = 12 h; closed after 960 business minutes
        [str(ids["r3"]), "r3", "ООО Вектор", "Анна Смирнова", "Приоритет", "решение",
         "08.10.2025 14:00", "09.10.2025 10:00", "240", "рабочие"],
        # 72 h = nine 8-hour workdays from 8.10; by now 8.10–31.10 (18 days), the working
        # Saturday 1.11 and 2 h of 5.11: 9 240 minutes used, 4 320 of them allowed
        [str(ids["r4"]), "r4", "ООО Вектор", "Олег Петров", "По факту", "решение",
         "20.10.2025 18:00", "не выполнено", "4920", "рабочие"],
    ]  # fmt: skip


def test_a_stale_card_is_reported_by_its_true_state(report: tuple[Path, dict[str, int]]) -> None:
    out, ids = report
    breached = {row[0] for row in read_csv(out / "breaches.csv")[1:]}
    assert str(ids["r1"]) not in breached
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"/leads/detail/{ids['r2']}" in page
    assert (
        f"/leads/detail/{ids['r1']}"
        not in page.split('data-table="breaches"')[1].split("</section>")[0]
    )


def test_what_waits_now_is_every_open_request_at_risk_or_breached_by_agent(
    report: tuple[Path, dict[str, int]],
) -> None:
    out, ids = report
    assert read_csv(out / "now.csv")[1:] == [
        # Registered 30.09 10:00 and never answered: its calendar is open every day (8 h on
        # workdays, 6 h on days off): 30.09 8 h, October 23 × 8 + 8 × 6, 1.11 (a working
        # Saturday) 8 h, 2–4.11 3 × 6, 5.11 2 h: 268 h, less the 1 h allowed.
        ["Анна Смирнова", str(ids["september"]), "september", "ООО Ромашка", "Приоритет",
         "Просрочено", "реакция", "30.09.2025 11:00", "", "16020", "рабочие"],
        ["Олег Петров", str(ids["r4"]), "r4", "ООО Вектор", "По факту", "Просрочено",
         "решение", "20.10.2025 18:00", "", "4920", "рабочие"],
        # 11:10 to 12:00: 50 of 60 minutes used
        ["Олег Петров", str(ids["r9"]), "r9", "ООО Ромашка", "Приоритет", "Под угрозой",
         "реакция", "05.11.2025 12:10", "10", "", "рабочие"],
    ]  # fmt: skip
    page = (out / "report.html").read_text(encoding="utf-8")
    listing = page.split('data-table="now"', 1)[1].split("</section>", 1)[0]
    assert "просрочено на 267 ч" in listing  # 16 020 business minutes, read in hours
    assert "осталось 10 мин" in listing
    assert f"/leads/detail/{ids['r9']}" in listing


def test_the_page_shows_shares_with_n_of_n_goals_and_trend(
    report: tuple[Path, dict[str, int]],
) -> None:
    out, _ = report
    page = (out / "report.html").read_text(encoding="utf-8")
    cards = page.split('id="cards"', 1)[1].split('<div class="charts">', 1)[0]
    reaction = cards.split('data-card="Реакция в срок"', 1)[1].split('data-card="Решение', 1)[0]
    assert "85,7 %" in reaction
    assert "6 из 7" in reaction
    assert "ниже цели 90 %" in reaction
    assert "▲ +19 п.п." in reaction
    assert "▲ +5 к прошлому периоду (3)" in cards  # 8 requests against September's 3
    tariffs = page.split('data-table="by_tariff_class"', 1)[1].split("</section>", 1)[0]
    # every share in the table with its n of N
    body = tariffs.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count(" из ") == 8  # 4 rows, 2 shares each
    assert "4 из 5" in tariffs
    assert "▲ +30 п.п." in tariffs
    assert "ниже цели 95 %" in tariffs
    assert "▼ −100 п.п." in tariffs
    times = page.split('data-table="times"', 1)[1].split("</section>", 1)[0]
    assert "38 мин" in times  # the median 37.5 business minutes, to the minute
    assert "16 ч" in times  # p90 960 minutes
    breaches = page.split('data-table="breaches"', 1)[1].split("</section>", 1)[0]
    assert "82 ч рабочего" in breaches  # r4: 4 920 minutes


def test_the_previous_period_is_as_many_months_or_days_before() -> None:
    assert OCTOBER.previous() == Period(date(2025, 9, 1), date(2025, 9, 30), MOSCOW)
    quarter = Period(date(2025, 10, 1), date(2025, 12, 31), MOSCOW)
    assert quarter.previous() == Period(date(2025, 7, 1), date(2025, 9, 30), MOSCOW)
    march = Period(date(2025, 3, 1), date(2025, 3, 31), MOSCOW)
    assert march.previous() == Period(date(2025, 2, 1), date(2025, 2, 28), MOSCOW)
    week = Period(date(2025, 10, 6), date(2025, 10, 12), MOSCOW)
    assert week.previous() == Period(date(2025, 9, 29), date(2025, 10, 5), MOSCOW)
    # not whole months: the same number of days
    mid = Period(date(2025, 10, 15), date(2025, 11, 14), MOSCOW)
    assert mid.previous() == Period(date(2025, 9, 14), date(2025, 10, 14), MOSCOW)


def test_an_empty_period_gives_an_empty_report(tmp_path: Path) -> None:
    scenario = build_report_world()
    august = Period(date(2025, 8, 1), date(2025, 8, 31), MOSCOW)
    figures, _ = make_report(scenario.world, tmp_path, august)
    assert figures.requests == ()
    summary = {row[0]: row[1] for row in read_csv(tmp_path / "summary.csv")[1:]}
    assert summary["Обращений"] == "0"
    assert summary["Реакция: % в срок"] == ""
    for name in ("by_tariff_class", "by_agent", "by_company", "times", "breaches"):
        assert len(read_csv(tmp_path / f"{name}.csv")) == 1, name  # the header alone
    daily = read_csv(tmp_path / "daily.csv")
    assert len(daily) == 32
    assert {row[1] for row in daily[1:]} == {"0"}
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Нет данных за период" in page


def test_without_packages_there_is_no_hours_table(tmp_path: Path) -> None:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, tmp_path, packages=False)
    assert figures.hours is None
    assert not (tmp_path / "hours.csv").exists()
    assert write_report(figures, tmp_path, with_statements=True).statements == ()
    assert read_csv(tmp_path / "summary.csv")[1] == ["Обращений", "8"]


def test_histories_the_cache_holds_need_no_per_lead_request(tmp_path: Path) -> None:
    scenario = build_report_world()
    world = scenario.world
    now = world.now()
    cold, cold_stats = make_report(world, None, now=now)
    # The worker's first cycle keeps the requests of the last 30 days with their histories.
    cycle = make_cycle(world, tmp_path, options=CycleOptions(stage_options(), task_options()))
    cycle.run(world.now())
    cached = set(cycle.store.load_leads()) & {r.lead_id for r in cold.requests}
    cycle.store.close()
    assert 0 < len(cached) < len(cold.requests)
    logged = len(world.fake.request_log)
    warm, warm_stats = make_report(world, None, cache=tmp_path / "state.sqlite3", now=now)
    assert warm_stats.from_cache >= len(cached)
    assert warm_stats.read_by_id < cold_stats.read_by_id
    asked: set[int] = set()
    for request in world.fake.request_log[logged:]:
        if request.path == "/api/v4/events":
            for key, values in parse_qs(request.query).items():
                if key.startswith("filter[entity_id]"):
                    asked.update(int(v) for v in values)
    assert asked
    assert not asked & cached
    assert [(r.lead_id, r.state) for r in warm.requests] == [
        (r.lead_id, r.state) for r in cold.requests
    ]


def test_the_default_period_is_the_last_full_month() -> None:
    assert last_full_month(date(2025, 11, 5)) == (date(2025, 10, 1), date(2025, 10, 31))
    assert last_full_month(date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 31))
    assert OCTOBER.days()[-1] == date(2025, 10, 31)
