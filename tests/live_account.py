"""Test helpers: the fake amoCRM on a loopback port, and ``python -m worker`` run against it.

The worker runs as a real process configured only through its environment, exactly as an
admin would start it; the fake stays in the test process, where its state can be inspected.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, FakeServer, PipelineRef
from worker.admin import provision

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе")
LEAD_WRITES = ("PATCH", "/api/v4/leads")


class SlowWritesAmoCRM(FakeAmoCRM):
    """The fake, with lead batch writes that take ``write_delay`` seconds to answer.

    ``writes_arrived`` counts the PATCH requests that reached it, so a test can act while
    one is in flight.
    """

    def __init__(self, *, write_delay: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.write_delay = write_delay
        self.writes_arrived = 0
        self._arrived = threading.Condition()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == LEAD_WRITES:
            with self._arrived:
                self.writes_arrived += 1
                self._arrived.notify_all()
            time.sleep(self.write_delay)
        return super().handle(request)

    def wait_for_write(self, count: int = 1, timeout: float = 20.0) -> None:
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: self.writes_arrived >= count, timeout)
        assert arrived, "no lead write reached the fake"


class LoopbackAccount:
    """A seeded support pipeline on a fake amoCRM served at ``http://127.0.0.1:PORT``."""

    def __init__(self, fake: SlowWritesAmoCRM, server: FakeServer) -> None:
        self.fake = fake
        self.server = server
        self.support: PipelineRef = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
        self.agent_id = fake.add_user("Анна Смирнова")

    @property
    def url(self) -> str:
        return self.server.url

    def provision(self) -> None:
        with AmoClient(
            self.fake.base_url,
            LongLivedToken(self.fake.long_lived_token),
            transport=self.fake.transport,
        ) as client:
            provision(client, dry_run=False, say=lambda _line: None)

    def add_leads(self, count: int, *, age_seconds: float = 1800.0) -> list[int]:
        created = time.time() - age_seconds
        return [
            self.fake.add_lead(
                f"Обращение {n}",
                pipeline_id=self.support.id,
                tags=["Приоритет"],
                created_at=created,
                responsible_user_id=self.agent_id,
            )
            for n in range(count)
        ]

    def leads_with_sla_fields(self) -> set[int]:
        reaction_due = self.fake.field_id("SLA: реакция до")
        assert reaction_due is not None
        return {
            lead_id
            for lead_id in self.fake.leads
            if self.fake.field_value(lead_id, reaction_due) is not None
        }

    def lead_write_batches(self) -> list[list[int]]:
        """The lead ids of each PATCH /api/v4/leads the fake answered, in order."""
        return [
            [int(item["id"]) for item in request.body]
            for request in self.fake.request_log
            if (request.method, request.path) == LEAD_WRITES and request.status == 200
        ]

    def env(self, state_dir: Path, **variables: str) -> dict[str, str]:
        """The process environment: nothing inherited that could configure the worker."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AMO_", "SLA_", "PYTHON"))
        }
        env.update(
            PYTHONPATH=str(ROOT),
            AMO_BASE_URL=self.url,
            AMO_LONG_LIVED_TOKEN=self.fake.long_lived_token,
            SLA_PIPELINE=PIPELINE,
            SLA_STATE_DIR=str(state_dir),
            # The worker has run on the account since before every seeded request.
            SLA_FIRST_START="2020-01-01T00:00:00+00:00",
        )
        env.update(variables)
        return {key: value for key, value in env.items() if value != ""}


@contextmanager
def loopback_account(write_delay: float = 0.0, **options: Any) -> Iterator[LoopbackAccount]:
    fake = SlowWritesAmoCRM(write_delay=write_delay, **options)
    with fake.serve("127.0.0.1", 0) as server:
        # HAL links (``_links.next``) must lead back to this server, never to a real host.
        fake.base_url = server.url
        yield LoopbackAccount(fake, server)


class WorkerProcess:
    """``python -m worker ARGS`` (or another ``module``) in ``cwd`` (no ``.env`` there), its
    stderr read line by line."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], cwd: Path, module: str = "worker"
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stderr,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"the worker ended before logging {name}: {self.lines}"
            self.lines.append(line)
            entry: dict[str, Any] = json.loads(line)
            if entry["event"] == name:
                return entry

    def finish(self, timeout: float = 20.0) -> Finished:
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return Finished(self.process.returncode, stdout, "".join(self.lines))


class Finished:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def entries(self) -> list[dict[str, Any]]:
        """Every stderr line as JSON; fails on the first line that is not one JSON object."""
        entries = []
        for number, line in enumerate(self.stderr.splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"stderr line {number} is not JSON: {line!r}") from None
            assert isinstance(entry, dict), line
            entries.append(entry)
        return entries

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if entry["event"] == name]


def run_worker(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> Finished:
    return WorkerProcess(args, env, cwd).finish(timeout)
