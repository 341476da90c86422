"""report.html and a customer statement in a real browser: headless Chromium (Debian's
``chromium``) opens them from disk.

The pages are judged by their own loads (``tests/browser_kit.py``): a page that asks for a
script, a font or an image from anywhere fails, whatever the browser does for itself. The
pages have no script, so any console or log entry is a refused load or an error. The
screenshots are kept next to the report (and copied to ``$SLA_REPORT_SCREENSHOT`` and
``$SLA_STATEMENT_SCREENSHOT`` when set). The statement's PDF is the worker's own
(:mod:`worker.pdf`), read back with ``pdftotext`` and ``pdfinfo`` (poppler-utils).

Without Chromium the tests are skipped on a developer's machine and fail in CI (CI=true):
``.ci/run`` installs it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sla.policy import TimeTerms
from tests.browser_kit import Browser, chromium, find_browser
from tests.cycle_kit import START
from tests.report_kit import build_report_world, make_report
from worker.sla_report import StatementFiles, write_report

CHARTS = ("daily", "tariff", "agent", "hours")
TABLES = (
    "now_by_agent",
    "now",
    "daily",
    "by_tariff_class",
    "by_agent",
    "by_company",
    "times",
    "breaches",
    "hours",
)
PROVIDER = "ИП Дудкин Антон Александрович"
OUTSIDE_IMAGE = "http://images.example.test/logo.png"
REPORT_POLICY = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[StatementFiles, ...]]:
    out = tmp_path_factory.mktemp("report")
    world = build_report_world().world
    # The hour-package offer's citations, as sla/presets/hour_packages.toml carries them.
    world.policy = dataclasses.replace(
        world.policy,
        time_terms=TimeTerms(5, "п. 5.2 оферты", "Публичная оферта на оказание услуг поддержки"),
    )
    figures, _ = make_report(world, None, now=START)
    done = write_report(
        figures,
        out,
        with_statements=True,
        provider=PROVIDER,
        pdf=True,
        chromium=find_browser(),
    )
    assert done.pdf_problem == ""
    return done.page, done.statements


@pytest.fixture(scope="module")
def report(written: tuple[Path, tuple[StatementFiles, ...]]) -> Path:
    return written[0]


@pytest.fixture(scope="module")
def romashka(written: tuple[Path, tuple[StatementFiles, ...]]) -> StatementFiles:
    return next(s for s in written[1] if s.customer == "ООО Ромашка")


def leaky_page(folder: Path, *, policy: str = "") -> str:
    page = folder / "leaky.html"
    page.write_text(
        f'<!doctype html><html><head><meta charset="utf-8">{policy}</head>'
        f'<body><p>Отчёт</p><img src="{OUTSIDE_IMAGE}" alt=""></body></html>',
        encoding="utf-8",
    )
    return page.as_uri()


def test_the_page_opens_offline_with_every_chart_and_table(browser: Browser, report: Path) -> None:
    tab = browser.open_tab()
    visit = tab.visit(report.as_uri())

    assert visit.loads == [], f"the page loaded something: {visit.loads}"
    assert visit.console == []
    html = tab.html()
    for chart in CHARTS:
        section = html.split(f'data-chart="{chart}"', 1)
        assert len(section) == 2, chart
        assert "<svg" in section[1].split("</section>", 1)[0], chart
    for table in TABLES:
        section = html.split(f'data-table="{table}"', 1)
        assert len(section) == 2, table
        assert "<table>" in section[1].split("</section>", 1)[0], table
    assert html.count('class="card ') == 4
    cards = html.split('id="cards"', 1)[1].split('class="charts"', 1)[0]
    # goals, n of N and the trend on the cards
    assert "ниже цели 90 %" in cards
    assert "6 из 7" in cards
    assert "▲ +19 п.п." in cards
    now = html.split('data-table="now"', 1)[1].split("</section>", 1)[0]
    assert "просрочено на 267 ч" in now
    assert "осталось 10 мин" in now


def test_the_statement_opens_offline_and_its_pdf_is_a4_with_the_totals(
    browser: Browser, romashka: StatementFiles
) -> None:
    tab = browser.open_tab()
    visit = tab.visit(romashka.page.as_uri())

    assert visit.loads == [], f"the statement loaded something: {visit.loads}"
    assert visit.console == []
    html = tab.html()
    assert "ООО Ромашка" in html
    assert PROVIDER in html
    shot = tab.screenshot(width=900, height=1200)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (romashka.page.parent / "statement.png").write_bytes(shot)
    if target := os.environ.get("SLA_STATEMENT_SCREENSHOT"):
        shutil.copyfile(romashka.page.parent / "statement.png", target)

    assert romashka.pdf is not None
    pdf = romashka.pdf.read_bytes()
    assert pdf[:5] == b"%PDF-"
    pdftotext, pdfinfo = shutil.which("pdftotext"), shutil.which("pdfinfo")
    if pdftotext is None or pdfinfo is None:
        if os.environ.get("CI"):
            pytest.fail("pdftotext is missing in CI: .ci/run installs poppler-utils")
        pytest.skip("no pdftotext here (apt-get install poppler-utils); CI runs this test")
    info = subprocess.run(
        [pdfinfo, "-f", "1", "-l", "99", str(romashka.pdf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = re.findall(r"Page\s+\d+ size:\s+(.+)", info)
    assert sizes, info
    assert all(size.endswith("pts (A4)") for size in sizes), sizes  # every page A4
    text = subprocess.run(
        [pdftotext, "-layout", str(romashka.pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.replace("\u00a0", " ").split())
    for figure in (
        "Учтено 3 ч 20 мин (200 мин)",
        "Остаток пакета -1 ч 20 мин (-80 мин)",
        "Сверх пакета за период 1 ч 20 мин (80 мин)",
        "К оплате сверх пакета 4 667 ₽",
        "до целых 5 мин (п. 5.2 оферты)",
        "ООО Ромашка",
        PROVIDER,
    ):
        assert figure in flat, figure


def test_the_page_prints_on_a4_and_screenshots_with_its_charts(
    browser: Browser, report: Path
) -> None:
    tab = browser.open_tab()
    visit = tab.visit(report.as_uri())

    shot = tab.screenshot(width=1200, height=2600)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(shot) > 50_000  # a page with charts, not a blank one
    (report.parent / "report.png").write_bytes(shot)
    if target := os.environ.get("SLA_REPORT_SCREENSHOT"):
        shutil.copyfile(report.parent / "report.png", target)

    pdf = tab.pdf()
    assert pdf[:5] == b"%PDF-"
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert boxes
    # A4 (595 × 842 pt) pages, as the page's @page rule asks
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}
    printed = tab.judge_again(visit)  # printing may load what the screen did not
    assert printed.loads == []
    assert printed.console == []


def test_a_page_that_never_goes_quiet_is_judged_within_the_deadline(
    browser: Browser, tmp_path: Path
) -> None:
    page = tmp_path / "chatty.html"
    page.write_text(
        "<!doctype html><script>setInterval(() => console.log('tick'), 50)</script>",
        encoding="utf-8",
    )
    started = time.monotonic()
    visit = browser.open_tab().visit(page.as_uri(), within=2.0)

    assert time.monotonic() - started < 10
    assert any("tick" in line for line in visit.console)


def test_a_page_that_loads_an_image_from_outside_fails_the_check(
    browser: Browser, tmp_path: Path
) -> None:
    visit = browser.open_tab().visit(leaky_page(tmp_path))

    assert visit.loads == [OUTSIDE_IMAGE]


def test_an_outside_image_refused_by_the_report_policy_still_shows_in_the_console(
    browser: Browser, tmp_path: Path
) -> None:
    visit = browser.open_tab().visit(leaky_page(tmp_path, policy=REPORT_POLICY))

    assert any(OUTSIDE_IMAGE in line for line in visit.loads + visit.console), visit


def test_traffic_that_is_not_the_pages_does_not_count_against_it(
    browser: Browser, report: Path, tmp_path: Path
) -> None:
    # Another tab loads from outside while the report opens, as the browser's own
    # services would: the report is judged on its own requests alone.
    start = len(browser.events)
    other = browser.open_tab()
    browser.call("Page.navigate", other.session, url=OUTSIDE_IMAGE)

    visit = browser.open_tab().visit(report.as_uri())

    outside = [
        event
        for event in browser.events[start:]
        if event["method"] == "Network.requestWillBeSent"
        and event["params"]["request"]["url"] == OUTSIDE_IMAGE
    ]
    assert outside, "the other tab's request was not seen at all"
    assert {event["sessionId"] for event in outside} == {other.session}
    assert visit.loads == []
    assert visit.console == []
