"""The SLA report: a period's support requests at a glance, as ``report.html`` and CSV.

``python -m worker report --from DATE --to DATE [--out DIR] [--company ID] [--statements]``:

* :mod:`worker.sla_report.collect` reads the requests registered in the period (and in the
  previous one, for the trend; and the open ones, for what waits now) and their histories
  from amoCRM (the worker's cache saves requests where it holds a history) and recomputes
  each with the engine;
* :mod:`worker.sla_report.figures` counts (met % against goals and the previous period,
  medians and p90, breaches, what waits now, hours);
* :mod:`worker.sla_report.render` writes one CSV per table and the self-contained page;
* :mod:`worker.sla_report.statement` lays out each company's statement for the customer
  (HTML, CSV, and PDF printed by :mod:`worker.pdf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import structlog

from worker.pdf import PdfPrinter, PdfUnavailable
from worker.sla_report.collect import ReadStats, Sources, collect, lead_url
from worker.sla_report.figures import Figures, Period
from worker.sla_report.render import render_html, tables, write_csv
from worker.sla_report.statement import Statement, render_statement, statements

log = structlog.get_logger("worker.sla_report")

__all__ = [
    "Figures",
    "Period",
    "ReadStats",
    "Sources",
    "StatementFiles",
    "Written",
    "collect",
    "last_full_month",
    "lead_url",
    "write_report",
]

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class StatementFiles:
    """A company's statement as written: its page, its entries as CSV, and its PDF."""

    company_id: int
    customer: str
    page: Path
    csv: Path
    pdf: Path | None


@dataclass(frozen=True)
class Written:
    page: Path  # report.html, or with a company the statement's page
    csv: tuple[Path, ...]
    statements: tuple[StatementFiles, ...] = ()
    pdf_problem: str = ""  # why no PDF was printed, when one was asked for


def last_full_month(today: date) -> tuple[date, date]:
    """The calendar month before ``today``'s: its first and last days."""
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def write_report(
    figures: Figures,
    out: Path,
    *,
    company_id: int | None = None,
    with_statements: bool = False,
    provider: str = "",
    pdf: bool = False,
    chromium: str | None = None,
) -> Written:
    """Write the report into ``out`` (and with ``with_statements`` every company's statement
    into ``out/statements``), or with ``company_id`` that company's statement alone. With
    ``pdf`` each statement is printed to PDF too (Chromium: ``chromium`` or found on the
    PATH); without a browser the HTML is written and ``pdf_problem`` says why."""
    out.mkdir(parents=True, exist_ok=True)
    if company_id is not None:
        chosen = statements(figures, provider=provider, company_id=company_id)
        if not chosen:
            raise LookupError(
                f"company {company_id} has no hours in the report (packages off, or no "
                "package and no time entry)"
            )
        files, problem = _write_statements(chosen, out, pdf=pdf, chromium=chromium)
        return Written(files[0].page, (files[0].csv,), files, problem)
    found = tables(figures)
    paths = [write_csv(table, out) for table in found]
    page = out / REPORT_FILE
    title = "Отчёт по SLA техподдержки"
    page.write_text(render_html(figures, found, title=title), encoding="utf-8")
    if not with_statements:
        return Written(page, tuple(paths))
    chosen = statements(figures, provider=provider)
    folder = out / "statements"
    folder.mkdir(exist_ok=True)
    files, problem = _write_statements(chosen, folder, pdf=pdf, chromium=chromium)
    return Written(page, tuple(paths), files, problem)


def _write_statements(
    chosen: list[Statement], out: Path, *, pdf: bool, chromium: str | None
) -> tuple[tuple[StatementFiles, ...], str]:
    pages = []
    for item in chosen:
        page = out / f"{item.slug}.html"
        page.write_text(render_statement(item), encoding="utf-8")
        pages.append((item, page, write_csv(item.table(), out)))
    printed: dict[int, Path] = {}
    problem = ""
    if pdf and pages:
        try:
            with PdfPrinter.start(chromium) as printer:
                for item, page, _ in pages:
                    target = page.with_suffix(".pdf")
                    target.write_bytes(printer.print_pdf(page))
                    printed[item.hours.company_id] = target
        except PdfUnavailable as error:
            problem = str(error)
            log.warning("pdf_not_printed", problem=problem, statements=len(pages))
    files = tuple(
        StatementFiles(
            item.hours.company_id, item.customer, page, csv, printed.get(item.hours.company_id)
        )
        for item, page, csv in pages
    )
    return files, problem
