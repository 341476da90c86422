"""PDF from the worker's own HTML pages, printed by headless Chromium.

Why Chromium: the statement is an HTML page, and printing it in the browser engine that
shows it gives the PDF that page's exact layout (its ``@page`` A4 size and margins, its
fonts, its tables) with no second renderer to keep in step and no Python dependency. The
PDF is made through Chromium's DevTools protocol over a pipe (``--remote-debugging-pipe``,
NUL-separated JSON on descriptors 3 and 4): no port is opened, and one browser prints a
batch of statements, each page in a fresh tab, so a month's statements cost one start (a
second or two on two cores) instead of one per company.

The browser runs headless with a fresh profile in a temporary directory and none of its
background services, and every network request goes to a closed loopback port: the pages
are the worker's own (no script, a Content-Security-Policy that refuses every load), and
nothing leaves the machine. Chromium's sandbox is off (``--no-sandbox``): it cannot start as
root or in most containers, and the pages it opens are the worker's, never a third party's.

Chromium is found as ``SLA_CHROMIUM`` says, else as ``chromium``, ``chromium-browser``,
``google-chrome`` on the ``PATH``; without it :class:`PdfUnavailable` says how to get it.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from worker.devtools import DevTools, DevToolsError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-pings",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
)
DEADLINE = 60.0  # seconds for any one DevTools call or page load


class PdfUnavailable(RuntimeError):
    """No Chromium to print with, or it could not print."""


def find_chromium(configured: str | None = None) -> str | None:
    """The browser's path: ``configured`` (a path or a name on the PATH), else the first of
    :data:`BROWSERS` found; None when there is none."""
    if configured:
        return shutil.which(configured)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class PdfPrinter:
    """One headless Chromium that prints pages to PDF; a context manager that ends it."""

    def __init__(self, binary: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="amo-sla-pdf-")
        try:
            self._browser = DevTools(binary, FLAGS, self._profile.name)
        except DevToolsError as error:
            self._profile.cleanup()
            raise PdfUnavailable(str(error)) from error

    @classmethod
    def start(cls, configured: str | None = None) -> PdfPrinter:
        binary = find_chromium(configured)
        if binary is None:
            wanted = configured or " or ".join(BROWSERS[:2])
            raise PdfUnavailable(
                f"no Chromium ({wanted}) to print PDF with: install it (Debian: apt-get install "
                "chromium) or point SLA_CHROMIUM at it; the HTML is written all the same"
            )
        return cls(binary)

    def __enter__(self) -> PdfPrinter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def print_pdf(self, page: Path) -> bytes:
        """``page`` printed as the print dialog would, on its own ``@page`` size, with its
        backgrounds and no header or footer."""
        try:
            return self._print(page)
        except DevToolsError as error:
            raise PdfUnavailable(f"Chromium could not print {page.name}: {error}") from error

    def _print(self, page: Path) -> bytes:
        call = self._browser.call
        target = call("Target.createTarget", url="about:blank")["targetId"]
        session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            call("Page.enable", session)
            call("Page.navigate", session, url=page.resolve().as_uri())
            self._wait_for("Page.loadEventFired", session)
            printed = call(
                "Page.printToPDF",
                session,
                preferCSSPageSize=True,
                printBackground=True,
                displayHeaderFooter=False,
            )
        finally:
            with contextlib.suppress(DevToolsError):
                call("Target.closeTarget", targetId=target)
        return base64.b64decode(printed["data"])

    def close(self) -> None:
        """End the browser and its profile."""
        try:
            self._browser.close()
        finally:
            self._profile.cleanup()

    def _wait_for(self, event: str, session: str) -> None:
        def wanted(message: dict[str, Any]) -> bool:
            return message.get("method") == event and message.get("sessionId") == session

        seen, self._browser.events = self._browser.events, []
        if any(wanted(message) for message in seen):
            return
        until = time.monotonic() + DEADLINE
        while True:
            message = self._browser.receive(until)
            if message is None:
                raise DevToolsError(f"the page did not load within {DEADLINE:.0f} s")
            if wanted(message):
                return
