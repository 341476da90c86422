"""The worker as ``run`` assembles it, in this process, against the fake amoCRM on real clocks.

A support pipeline of open «Приоритет» requests created half an hour ago; the real sync
cycle, service and HTTP server (webhooks on or off) on a loopback port; the fake posting
its webhooks to that port over HTTP, as amoCRM would. The latency tests and
``bench.webhooks`` share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from sla.policy import default_policy
from worker.admin import provision
from worker.cycle import CycleOptions, SyncCycle
from worker.metrics import Metrics
from worker.service import SyncService
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions
from worker.webhooks import WEBHOOK_EVENTS, HttpServer, build_app

PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе")
SECRET = "rig-" + "0123456789abcdef" * 2
REACTED_FIELD = "SLA: реакция"


class TimedAmoCRM(FakeAmoCRM):
    """The fake, noting when (``time.monotonic()``) each API request arrived."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[float] = []
        self._arrivals_lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._arrivals_lock:
            self.arrivals.append(time.monotonic())
        return super().handle(request)

    def busiest_second(self, since: float = 0.0) -> int:
        """The most requests that arrived within any one second after ``since``."""
        with self._arrivals_lock:
            times = sorted(t for t in self.arrivals if t >= since)
        most, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most


@dataclass
class Rig:
    fake: TimedAmoCRM
    client: AmoClient
    service: SyncService
    server: HttpServer
    app: Starlette
    metrics: Metrics
    support: PipelineRef
    agent: int
    leads: list[int]
    webhooks: bool
    exit_codes: list[int] = field(default_factory=list)

    @property
    def hook_url(self) -> str:
        return f"{self.server.url}/amocrm/webhook/{SECRET}"

    def cycles_ok(self) -> int:
        return int(self.metrics.value("amo_sla_cycles_total", {"outcome": "ok"}))

    def reacted_at(self, lead_id: int) -> Any:
        field_id = self.fake.field_id(REACTED_FIELD)
        assert field_id is not None
        values = self.fake.field_value(lead_id, field_id)
        return values[0]["value"] if values else None

    def reply(self, lead_id: int, text: str = "Здравствуйте! Уже смотрим.") -> float:
        """An agent's reply in the lead's notes; returns time.monotonic() when it was made."""
        self.fake.add_note(lead_id, text, created_by=self.agent)
        return time.monotonic()

    def wait_reacted(self, lead_id: int, timeout: float) -> float | None:
        """time.monotonic() when the lead's «SLA: реакция» got a value, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reacted_at(lead_id) is not None:
                return time.monotonic()
            time.sleep(0.02)
        return None

    def wait_cycles(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.cycles_ok() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} good cycles did not finish in {timeout} s")
            time.sleep(0.02)


@contextmanager
def live_rig(
    state_dir: Path,
    *,
    leads: int = 5,
    webhooks: bool = True,
    poll_interval: float = 600.0,
    debounce: float = 1.0,
    min_interval: float = 3.0,
) -> Iterator[Rig]:
    fake = TimedAmoCRM(max_requests_per_second=7.0)
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    agent = fake.add_user("Анна Смирнова")
    fake.max_requests_per_second = None  # seeding is not the worker's traffic
    with AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    ) as seeding:
        provision(seeding, dry_run=False, say=lambda _line: None)
    fake.max_requests_per_second = 7.0
    created = time.time() - 1800
    lead_ids = [
        fake.add_lead(
            f"Обращение {n}",
            pipeline_id=support.id,
            tags=["Приоритет"],
            created_at=created,
            responsible_user_id=agent,
        )
        for n in range(leads)
    ]
    metrics = Metrics()
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        on_request=metrics.api_request,
        on_retry=metrics.api_retry,
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    cycle = SyncCycle(
        client,
        StateStore(state_dir / "state.sqlite3"),
        default_policy(),
        CycleOptions(
            stages=StageOptions(pipeline=PIPELINE),
            tasks=TaskOptions(reaction_text="{lead_name}", resolution_text="{lead_name}"),
        ),
        lock_path=state_dir / "cycle.lock",
    )
    service = SyncService(
        cycle,
        poll_interval=poll_interval,
        state_dir=state_dir,
        debounce=debounce,
        min_interval=min_interval,
        observer=metrics,
    )
    app = build_app(
        trigger=service.trigger,
        secret=SECRET if webhooks else None,
        subdomain=fake.subdomain,
        metrics=metrics,
        serve_metrics=True,
    )
    server = HttpServer(app, "127.0.0.1", 0)
    service.add_companion(server)
    rig = Rig(fake, client, service, server, app, metrics, support, agent, lead_ids, webhooks)
    thread = threading.Thread(
        target=lambda: rig.exit_codes.append(service.run(install_signal_handlers=False)),
        name="worker-service",
        daemon=True,
    )
    thread.start()
    try:
        # The first sync writes every request's fields, 50 a request at 7 requests a second.
        rig.wait_cycles(1, timeout=30.0 + leads / 50)
        if webhooks:
            fake.subscribe_webhook(rig.hook_url, WEBHOOK_EVENTS)
        yield rig
    finally:
        service.request_shutdown("rig closed")
        thread.join(timeout=30)
        fake.stop_webhooks()
        client.close()
