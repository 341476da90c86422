"""Headless Chromium driven over its DevTools pipe.

``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 (commands) and 4
(answers and events), so no port is opened and no WebSocket library is needed. The browser
starts with a fresh profile, and every network request goes to a loopback port nothing
listens on: nothing leaves the machine. The statements' PDF (:mod:`worker.pdf`) and the
tests' browser (``tests/browser_kit.py``) both drive it through :class:`DevTools`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

DEADLINE = 60.0  # seconds for any one DevTools call


class DevToolsError(RuntimeError):
    """Chromium did not start, answered a call with an error, went silent, or exited."""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class DevTools:
    """One headless Chromium process and its DevTools pipe; events that arrive while a call
    waits are kept in :attr:`events`."""

    def __init__(self, binary: str, flags: Sequence[str], profile: str) -> None:
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
                    *flags,
                    "--remote-debugging-pipe",
                    f"--user-data-dir={profile}",
                    f"--proxy-server=http://127.0.0.1:{closed_port()}",
                    "--proxy-bypass-list=<-loopback>",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=False,  # Python's own descriptors are non-inheritable; 3 and 4 are not
                start_new_session=True,  # its renderers and helpers share one group to end
                preexec_fn=wire_pipes,  # noqa: PLW1509 - only dup2 runs between fork and exec
            )
        except OSError as error:
            self._close_pipes()
            raise DevToolsError(f"{binary} does not start: {error}") from error
        finally:
            os.close(commands_read)
            os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        session: str | None = None,
        *,
        deadline: float = DEADLINE,
        **params: Any,
    ) -> dict[str, Any]:
        """Send one command and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        except OSError as error:
            raise DevToolsError(f"{method}: Chromium is gone ({error})") from error
        until = time.monotonic() + deadline
        while True:
            answer = self.receive(until)
            if answer is None:
                raise DevToolsError(f"{method}: no answer within {deadline:.0f} s")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise DevToolsError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self.events.append(answer)

    def receive(self, until: float) -> dict[str, Any] | None:
        """The next message, or None when none comes before ``until`` (monotonic)."""
        while b"\0" not in self._buffer:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._answers], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise DevToolsError(f"Chromium exited (code {self._process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def close(self) -> None:
        """Ask Chromium to quit, then end whatever of its process group is left."""
        try:
            with contextlib.suppress(DevToolsError, json.JSONDecodeError):
                self.call("Browser.close", deadline=10.0)  # it may close before it answers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        finally:
            self._close_pipes()

    def _close_pipes(self) -> None:
        for descriptor in (self._commands, self._answers):
            with contextlib.suppress(OSError):
                os.close(descriptor)
