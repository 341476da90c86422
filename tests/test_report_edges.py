"""The report against hostile names (HTML, spreadsheet formulas), a period after a package
expired, and the quotas table on a company worked by hand."""

from __future__ import annotations

import csv
from pathlib import Path

from sla.policy import load_policy
from tests.cycle_kit import LOST, MOSCOW, WON, at, build_world
from tests.report_kit import (
    OCTOBER,
    account_setup,
    build_report_world,
    make_report,
    oct_,
)
from worker.admin import provision
from worker.ledgers.options import LedgerOptions
from worker.sla_report import write_report
from worker.sla_report.collect import Sources, collect, lead_url

PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"

FORMULA = '=HYPERLINK("http://evil.example","x")'


def _cells(out: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(out.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as file:
            for row in csv.reader(file):
                found.extend((path.name, cell) for cell in row)
    return found


def test_html_escapes_names(tmp_path: Path) -> None:
    """Names with markup are escaped in report.html (passes: guards the XSS attack)."""
    rw = build_report_world()
    fake, world = rw.world.fake, rw.world
    user = fake.add_user('<script>alert(1)</script> & "Агент"')
    company = fake.add_company("<b>ООО</b> & Co", responsible_user_id=user)
    lead = fake.add_lead(
        "<img src=x onerror=alert(1)>",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=oct_(20, 10),
        responsible_user_id=user,
        company_id=company,
    )
    fake.add_note(lead, "Время: 30 мин — <script>x</script>", created_by=user, at=oct_(20, 11))
    make_report(world, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert "<img" not in page
    assert "<b>ООО" not in page


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    rw = build_report_world()
    fake, world = rw.world.fake, rw.world
    company = fake.add_company(FORMULA, responsible_user_id=world.agents[0])
    lead = fake.add_lead(
        "+cmd|' /C calc'!A0",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=oct_(20, 10),
        responsible_user_id=world.agents[0],
        company_id=company,
    )
    fake.add_note(lead, "Время: 30 мин — @SUM(1+1)", created_by=world.agents[0], at=oct_(20, 11))
    make_report(world, tmp_path)
    dangerous = [
        (name, cell)
        for name, cell in _cells(tmp_path)
        if (cell and (cell[0] in "=+@"))
        or (cell[:1] == "-" and not cell[1:].replace(".", "").isdigit())
    ]
    assert dangerous == []


def test_a_period_after_the_package_expired_bills_no_overage(tmp_path: Path) -> None:
    """Ромашка's 2-hour package (paid 01.10, valid to 01.11) went 80 minutes over in October
    (report_kit). The report for 05.11–30.11 holds no minute of its validity, so it must not
    bill those 80 minutes (4 667 ₽) a second time."""
    from datetime import date

    from tests.cycle_kit import MOSCOW
    from worker.sla_report import Period

    rw = build_report_world()
    october, _ = make_report(rw.world, None)
    romashka = {h.name: h for h in october.hours or ()}["ООО Ромашка"]
    assert romashka.over_minutes == 80  # billed in October

    november, _ = make_report(rw.world, None, Period(date(2025, 11, 5), date(2025, 11, 30), MOSCOW))
    again = {h.name: h for h in november.hours or ()}["ООО Ромашка"]
    assert again.over_minutes == 0


def test_the_quotas_table_counts_each_companys_uses_as_worked_by_hand(tmp_path: Path) -> None:
    """Prime Gate, «Микробизнес» (2 free set-ups, 4 module set-ups, 1 remote session in 12
    months). ИП Сидоров in October: three set-ups (the third is over), one module set-up; a
    lost set-up in September and one from 13 months before count nothing."""
    world = build_world(seed=False)
    world.policy = load_policy((PRESETS / "prime_gate.toml").read_text(encoding="utf-8"))
    provision(world.client, dry_run=False, say=lambda line: None, ledgers=frozenset())
    fake, anna = world.fake, world.agents[0]
    sidorov = fake.add_company("ИП Сидоров", responsible_user_id=anna)

    def request(created: float, *tags: str) -> int:
        return fake.add_lead(
            "Настройка",
            pipeline_id=world.support.id,
            tags=["Микробизнес", *tags],
            created_at=created,
            responsible_user_id=anna,
            company_id=sidorov,
        )

    request(at(5, 10, month=9) - 395 * 86400, "Настройка")  # 13 months before October
    lost = request(at(15, 10, month=9), "Настройка")
    fake.move_lead(lost, LOST, by_user=anna, at=at(16, 10, month=9))
    for day in (6, 13, 20):
        request(oct_(day, 10), "Настройка")
    request(oct_(21, 10), "Настройка модуля")
    setup = account_setup(world, packages=False)
    sources = Sources(
        world.client,
        setup,
        world.policy,
        LedgerOptions(quotas=world.policy.quotas, zone=MOSCOW),
        lead_url=lead_url(fake.base_url),
    )
    figures, _ = collect(sources, OCTOBER, world.now())
    write_report(figures, tmp_path)

    with (tmp_path / "quotas.csv").open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert rows == [
        ["Компания", "Квота", "Тариф", "Использовано", "Лимит", "Сверх лимита за период"],
        ["ИП Сидоров", "Настройки", "Микробизнес", "3", "2", "1"],
        ["ИП Сидоров", "Настройки модулей", "Микробизнес", "1", "4", "0"],
        ["ИП Сидоров", "Удалённые подключения", "Микробизнес", "0", "1", "0"],
    ]


def test_a_set_up_moved_into_support_before_the_period_counts_from_its_move(
    tmp_path: Path,
) -> None:
    """Spec §1: a set-up created in the sales pipeline 13 months before October and moved
    into support in September counts toward October's quota; by its creation it would not."""
    world = build_world(seed=False)
    world.policy = load_policy((PRESETS / "prime_gate.toml").read_text(encoding="utf-8"))
    provision(world.client, dry_run=False, say=lambda line: None, ledgers=frozenset())
    fake, anna = world.fake, world.agents[0]
    sidorov = fake.add_company("ИП Сидоров", responsible_user_id=anna)
    moved = fake.add_lead(
        "Настройка",
        pipeline_id=world.other.id,
        tags=["Микробизнес", "Настройка"],
        created_at=at(5, 10, month=9) - 395 * 86400,
        responsible_user_id=anna,
        company_id=sidorov,
    )
    fake.move_lead(
        moved,
        world.support.status("В работе"),
        pipeline_id=world.support.id,
        by_user=anna,
        at=at(10, 10, month=9),
    )
    fake.move_lead(moved, WON, by_user=anna, at=at(12, 10, month=9))
    for day in (6, 13):
        fake.add_lead(
            "Настройка",
            pipeline_id=world.support.id,
            tags=["Микробизнес", "Настройка"],
            created_at=oct_(day, 10),
            responsible_user_id=anna,
            company_id=sidorov,
        )
    sources = Sources(
        world.client,
        account_setup(world, packages=False),
        world.policy,
        LedgerOptions(quotas=world.policy.quotas, zone=MOSCOW),
    )
    figures, _ = collect(sources, OCTOBER, world.now())
    write_report(figures, tmp_path)

    with (tmp_path / "quotas.csv").open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert ["ИП Сидоров", "Настройки", "Микробизнес", "3", "2", "1"] in rows
