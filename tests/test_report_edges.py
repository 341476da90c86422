"""The report against hostile names (HTML, spreadsheet formulas) and a period after a
package expired."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.report_kit import build_report_world, make_report, oct_

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
