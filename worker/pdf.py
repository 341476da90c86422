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
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

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


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class PdfPrinter:
    """One headless Chromium that prints pages to PDF; a context manager that ends it."""

    def __init__(self, binary: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="amo-sla-pdf-")
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def wire_pipes() -> None:  # in the child: fd 3 reads commands, fd 4 writes answers
            commands, answers = os.dup(commands_read), os.dup(answers_write)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        try:
            self._process = subprocess.Popen(
                [
                    binary,
                    *FLAGS,
                    "--remote-debugging-pipe",
                    f"--user-data-dir={self._profile.name}",
                    f"--proxy-server=http://127.0.0.1:{_closed_port()}",
                    "--proxy-bypass-list=<-loopback>",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=False,  # Python's own descriptors are non-inheritable; 3 and 4 are not
                start_new_session=True,  # its renderers share one process group to end
                preexec_fn=wire_pipes,  # noqa: PLW1509 - only dup2 runs between fork and exec
            )
        except OSError as error:
            self._close_pipes()
            self._profile.cleanup()
            raise PdfUnavailable(f"{binary} does not start: {error}") from error
        finally:
            os.close(commands_read)
            os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []  # events that came while a call waited

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
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            self._call("Page.enable", session)
            self._call("Page.navigate", session, url=page.resolve().as_uri())
            self._wait_for("Page.loadEventFired", session)
            printed = self._call(
                "Page.printToPDF",
                session,
                preferCSSPageSize=True,
                printBackground=True,
                displayHeaderFooter=False,
            )
        finally:
            with contextlib.suppress(PdfUnavailable):
                self._call("Target.closeTarget", targetId=target)
        return base64.b64decode(printed["data"])

    def close(self) -> None:
        """Ask Chromium to quit, then end whatever of its process group is left."""
        try:
            with contextlib.suppress(PdfUnavailable, json.JSONDecodeError):
                self._call("Browser.close", deadline=5.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        finally:
            self._close_pipes()
            self._profile.cleanup()

    def _close_pipes(self) -> None:
        for descriptor in (self._commands, self._answers):
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def _call(
        self, method: str, session: str | None = None, *, deadline: float = DEADLINE, **params: Any
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        except OSError as error:
            raise PdfUnavailable(f"Chromium is gone ({error})") from error
        until = time.monotonic() + deadline
        while True:
            answer = self._receive(until)
            if answer is None:
                raise PdfUnavailable(f"Chromium did not answer {method} within {deadline:.0f} s")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise PdfUnavailable(f"Chromium refused {method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self._events.append(answer)

    def _wait_for(self, event: str, session: str) -> None:
        def wanted(message: dict[str, Any]) -> bool:
            return message.get("method") == event and message.get("sessionId") == session

        seen, self._events = self._events, []
        if any(wanted(message) for message in seen):
            return
        until = time.monotonic() + DEADLINE
        while True:
            message = self._receive(until)
            if message is None:
                raise PdfUnavailable(f"the page did not load within {DEADLINE:.0f} s")
            if wanted(message):
                return

    def _receive(self, until: float) -> dict[str, Any] | None:
        while b"\0" not in self._buffer:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._answers], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise PdfUnavailable(f"Chromium exited (code {self._process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed
