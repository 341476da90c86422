"""report.html in a real browser: headless Chromium (Debian's ``chromium``) opens it from disk.

Every request the browser makes for anything but the file goes to a recording proxy that
answers none, so a page that loads a script, a font or an image from anywhere fails here
(Chromium's own calls home, to the few hosts in ``BROWSER_OWN``, are left aside). The page
forbids itself any load by its Content-Security-Policy, and Chromium logs each console
message, a refused load included, to stderr (``--enable-logging``); the page has no script,
so any message at all is a resource that failed or an error. The screenshot is
kept next to the report (and copied to ``$SLA_REPORT_SCREENSHOT`` when that is set).

Without Chromium the test is skipped on a developer's machine and fails in CI (CI=true):
``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.report_kit import build_report_world, make_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Chromium's own services (sign-in, the network time, the new-tab page), not the page's.
BROWSER_OWN = ("accounts.google.com", "www.google.com", "clients2.google.com")
CHARTS = ("daily", "tariff", "agent", "hours")
TABLES = (
    "daily",
    "by_tariff_class",
    "by_agent",
    "by_company",
    "times",
    "breaches",
    "hours",
)


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs the chromium package")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this test")
    return found


@dataclass
class Recorder:
    """A proxy that writes down every request line it is sent and answers 502."""

    seen: list[str] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def proxy() -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(4096).decode("latin-1").strip()
            target = line.split(" ")[1] if line.count(" ") >= 2 else line
            host = target.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
            if line and host not in BROWSER_OWN:
                recorder.seen.append(line)
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


def chromium(
    binary: str, profile: Path, proxy: Recorder, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--no-default-browser-check",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,"
            "MediaRouter,AutofillServerCommunication,InterestFeedContentSuggestions,"
            "CertificateTransparencyComponentUpdater,PrivacySandboxSettings4",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            "--proxy-bypass-list=<-loopback>",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_page_opens_offline_with_every_chart_and_table(tmp_path: Path, proxy: Recorder) -> None:
    binary = browser()
    out = tmp_path / "report"
    scenario = build_report_world()
    make_report(scenario.world, out)
    page = (out / "report.html").as_uri()

    dom = chromium(binary, tmp_path / "profile", proxy, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for chart in CHARTS:
        section = html.split(f'data-chart="{chart}"', 1)
        assert len(section) == 2, chart
        assert "<svg" in section[1].split("</section>", 1)[0], chart
    for table in TABLES:
        section = html.split(f'data-table="{table}"', 1)
        assert len(section) == 2, table
        assert "<table>" in section[1].split("</section>", 1)[0], table
    assert html.count('class="card ') == 4
    assert 'data-table="statement-' in html
    assert console_lines(dom.stderr) == []

    shot = out / "report.png"
    picture = chromium(
        binary,
        tmp_path / "profile",
        proxy,
        "--hide-scrollbars",
        "--window-size=1200,2600",
        f"--screenshot={shot}",
        page,
    )
    assert picture.returncode == 0, picture.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a page with charts, not a blank one
    if target := os.environ.get("SLA_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, target)

    pdf = out / "report.pdf"
    printed = chromium(
        binary, tmp_path / "profile", proxy, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
    assert boxes
    # A4 (595 × 842 pt) pages, as the page's @page rule asks
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}

    assert proxy.seen == [], f"the page loaded something from the network: {proxy.seen}"
    assert console_lines(picture.stderr + printed.stderr) == []
