"""Headless Chromium (Debian's ``chromium``) over the DevTools pipe of :mod:`worker.devtools`.

The browser is started the way a test harness starts it: a fresh profile and none of its own
background services. It is driven through ``--remote-debugging-pipe`` (NUL-separated JSON on
file descriptors 3 and 4), so no WebSocket library and no open port are needed. A page is
judged by what its own frames did: every request its frames and workers sent (the DevTools
``Network`` domain of the page's session and of the sessions attached below it) and every
console or log entry. What the browser does for itself (update checks, other tabs) is never
in the page's session, so it cannot fail a page.

All network goes to a port on loopback that nothing listens on: nothing leaves the machine.
One blind spot, found by trying: a frame nested in a sandboxed ``srcdoc`` frame sends its
requests in no session the page can attach to. The report's own policy forbids frames,
and a load it refuses shows in the console.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from worker.devtools import DevTools, DevToolsError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# What a harness turns off: first-run UI, the browser's own calls home, throttling that would
# make page loads slow in the background. Each flag is honoured by Chromium 156.
HARNESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-features=Translate,OptimizationHints,MediaRouter,"
    "NetworkTimeServiceQuerying,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
)
DEADLINE = 60.0  # seconds for any one DevTools call or wait
QUIET = 0.3  # seconds without page activity after the load event that end a visit


def find_browser() -> str:
    """The Chromium binary; skipped on a developer's machine without it, a failure in CI."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs the chromium package")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this test")
    return found


@dataclass
class Visit:
    """What one page did while it was open: its own requests and its console."""

    url: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    @property
    def loads(self) -> list[str]:
        """Requests for anything but the page itself (``data:`` URLs never leave the page)."""
        return [url for url in self.requests if url != self.url and not url.startswith("data:")]


class Browser(DevTools):
    """One headless Chromium process and its DevTools pipe, started as a harness starts it."""

    def __init__(self, binary: str, profile: Path) -> None:
        super().__init__(binary, HARNESS_FLAGS, str(profile))

    def pump(self, seconds: float, sessions: set[str] | None = None) -> int:
        """Keep the events that arrive within ``seconds``; return how many came (of
        ``sessions`` alone, when given)."""
        deadline = time.monotonic() + seconds
        count = 0
        while (event := self.receive(deadline)) is not None:
            if "method" in event:
                self.events.append(event)
                count += sessions is None or event.get("sessionId") in sessions
        return count

    def open_tab(self) -> Tab:
        """A new page target, attached and watched: network, console and log, child frames."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tab = Tab(self, target, session)
        tab.watch(session)
        self.call(
            "Target.setAutoAttach",
            session,
            autoAttach=True,
            waitForDebuggerOnStart=True,
            flatten=True,
        )
        return tab


@dataclass
class Tab:
    """One page target and every DevTools session below it (frames, workers)."""

    browser: Browser
    target: str
    session: str
    sessions: set[str] = field(default_factory=set)
    _start: int = 0

    def watch(self, session: str) -> None:
        self.sessions.add(session)
        for domain in ("Network", "Runtime", "Log", "Page"):
            try:
                self.browser.call(f"{domain}.enable", session)
            except DevToolsError:  # a worker has no Page domain
                continue

    def _attach_children(self, start: int) -> int:
        """Watch every frame or worker attached since event ``start``; let it run on."""
        events = self.browser.events
        index = start
        while index < len(events):
            event = events[index]
            if event["method"] == "Target.attachedToTarget" and event.get("sessionId") in (
                self.sessions
            ):
                child = event["params"]["sessionId"]
                self.watch(child)
                self.browser.call("Runtime.runIfWaitingForDebugger", child)
            index += 1
        return index

    def visit(self, url: str, *, within: float = DEADLINE) -> Visit:
        """Load ``url``, wait for its load event and a quiet spell (at most ``within``
        seconds in all), and say what it did."""
        start = len(self.browser.events)
        self.browser.call("Page.navigate", self.session, url=url)
        seen = self._attach_children(start)
        deadline = time.monotonic() + within
        while not any(
            e["method"] == "Page.loadEventFired" and e.get("sessionId") == self.session
            for e in self.browser.events[start:]
        ):
            if time.monotonic() > deadline:
                raise DevToolsError(f"{url} did not finish loading within {within:.0f} s")
            self.browser.pump(0.05)
            seen = self._attach_children(seen)
        # A quiet spell of the page's own sessions ends the visit; a page that never goes
        # quiet (a timer logging forever) ends it at the deadline all the same.
        while self.browser.pump(QUIET, self.sessions) and time.monotonic() < deadline:
            seen = self._attach_children(seen)
        self._start = start
        return self._judge(url, self.browser.events[start:])

    def judge_again(self, visit: Visit) -> Visit:
        """The visit judged on everything the page did since it began, printing and
        screenshots included (a print stylesheet may load what the screen did not)."""
        self.browser.pump(QUIET, self.sessions)
        return self._judge(visit.url, self.browser.events[self._start :])

    def _judge(self, url: str, events: list[dict[str, Any]]) -> Visit:
        visit = Visit(url)
        for event in events:
            if event.get("sessionId") not in self.sessions:
                continue
            params = event["params"]
            match event["method"]:
                case "Network.requestWillBeSent":
                    visit.requests.append(params["request"]["url"])
                case "Log.entryAdded":
                    entry = params["entry"]
                    visit.console.append(f"{entry['level']}: {entry['text']}")
                case "Runtime.consoleAPICalled":
                    texts = [str(arg.get("value", arg.get("type"))) for arg in params["args"]]
                    visit.console.append(f"{params['type']}: {' '.join(texts)}")
                case "Runtime.exceptionThrown":
                    visit.console.append(f"exception: {params['exceptionDetails']['text']}")
        return visit

    def html(self) -> str:
        result = self.browser.call(
            "Runtime.evaluate", self.session, expression="document.documentElement.outerHTML"
        )
        value: str = result["result"]["value"]
        return value

    def screenshot(self, width: int, height: int) -> bytes:
        self.browser.call(
            "Emulation.setDeviceMetricsOverride",
            self.session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.browser.call("Page.captureScreenshot", self.session, format="png")
        self.browser.call("Emulation.clearDeviceMetricsOverride", self.session)
        return base64.b64decode(shot["data"])

    def pdf(self) -> bytes:
        """The page printed as the print dialog would, with the page's own ``@page`` size."""
        printed = self.browser.call(
            "Page.printToPDF",
            self.session,
            preferCSSPageSize=True,
            displayHeaderFooter=False,
            printBackground=True,
        )
        return base64.b64decode(printed["data"])


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) after."""
    binary = find_browser()
    with tempfile.TemporaryDirectory(prefix="amo-sla-chromium-") as profile:
        browser = Browser(binary, Path(profile))
        try:
            yield browser
        finally:
            browser.close()
