"""The SLA report: a period's support requests at a glance, as ``report.html`` and CSV.

``python -m worker report --from DATE --to DATE [--out DIR] [--company ID]``:

* :mod:`worker.sla_report.collect` reads the requests registered in the period and their
  histories from amoCRM (the worker's cache saves requests where it holds a history) and
  recomputes each with the engine;
* :mod:`worker.sla_report.figures` counts (met %, medians and p90, breaches, hours);
* :mod:`worker.sla_report.render` writes one CSV per table and the self-contained page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from worker.sla_report.collect import ReadStats, Sources, collect, lead_url
from worker.sla_report.figures import Figures, Period
from worker.sla_report.render import render_html, statements, tables, write_csv

__all__ = [
    "Figures",
    "Period",
    "ReadStats",
    "Sources",
    "Written",
    "collect",
    "last_full_month",
    "lead_url",
    "write_report",
]

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Written:
    page: Path
    csv: tuple[Path, ...]


def last_full_month(today: date) -> tuple[date, date]:
    """The calendar month before ``today``'s: its first and last days."""
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def write_report(figures: Figures, out: Path, *, company_id: int | None = None) -> Written:
    """Write the report into ``out``, or with ``company_id`` that company's statement alone."""
    out.mkdir(parents=True, exist_ok=True)
    found = tables(figures)
    if company_id is not None:
        chosen = statements(figures, company_id)
        if not chosen:
            raise LookupError(
                f"company {company_id} has no hours in the report (packages off, or no "
                "package and no time entry)"
            )
        page = out / f"statement-{company_id}.html"
        title = f"Выписка по часам: {chosen[0].hours.name}"
        page.write_text(render_html(figures, found, title=title, only=chosen), encoding="utf-8")
        return Written(page, (write_csv(chosen[0].table, out),))
    paths = [write_csv(table, out) for table in found]
    paths += [write_csv(item.table, out) for item in statements(figures)]
    page = out / REPORT_FILE
    title = "Отчёт по SLA техподдержки"
    page.write_text(render_html(figures, found, title=title), encoding="utf-8")
    return Written(page, tuple(paths))
