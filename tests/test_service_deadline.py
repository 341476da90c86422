"""Deadline latency: the real service, cycle and client against the fake amoCRM.

The poll interval is 10 minutes, so only the wake-up at the deadline can flag a breach
within the few seconds each test runs. Simulated time is the wall clock shifted to a few
seconds before a reaction deadline: APScheduler keeps running on real time, while the
cycle, the service's clock and the fake amoCRM all read the same shifted clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM
from config.settings import Settings
from sla.state import SlaStatus
from worker import app
from worker.admin import provision
from worker.cycle import CycleReport, SyncCycle
from worker.service import SyncService
from worker.tasks import MARKERS, BreachClock

MOSCOW = ZoneInfo("Europe/Moscow")
PIPELINE = "Техподдержка"
# Wednesday 5 November 2025, a workday: a Приоритет typical request registered at 10:00 is
# due a reaction one business hour later.
REGISTERED = datetime(2025, 11, 5, 10, 0, tzinfo=MOSCOW)
DEADLINE = datetime(2025, 11, 5, 11, 0, tzinfo=MOSCOW)
START_BEFORE_DEADLINE = timedelta(seconds=3)
POLL_INTERVAL = 600.0
LATENCY_LIMIT = timedelta(seconds=5)
# sla.state counts a clock as breached once it has run past its due instant: from due + 1 s.
BREACH_AT = DEADLINE + timedelta(seconds=1)


class ShiftedClock:
    """The wall clock moved to ``start`` at construction; it runs at real speed from there."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def unix(self) -> float:
        return self().timestamp()


@dataclass(frozen=True)
class Run:
    now: datetime
    report: CycleReport


@dataclass
class Recording:
    """The real cycle, every run's ``now`` and report kept for the assertions."""

    cycle: SyncCycle
    runs: list[Run] = field(default_factory=list)
    ran: threading.Condition = field(default_factory=threading.Condition)

    def run(self, now: datetime) -> CycleReport:
        report = self.cycle.run(now)
        with self.ran:
            self.runs.append(Run(now, report))
            self.ran.notify_all()
        return report

    def request_stop(self) -> None:
        self.cycle.request_stop()

    def wait_for(self, condition: Callable[[list[Run]], bool], timeout: float = 10.0) -> None:
        with self.ran:
            assert self.ran.wait_for(lambda: condition(self.runs), timeout), self.runs


@dataclass
class World:
    clock: ShiftedClock
    fake: FakeAmoCRM
    client: AmoClient
    lead_id: int
    agent_id: int
    cycle: Recording
    service: SyncService
    thread: threading.Thread
    logs: list[MutableMapping[str, Any]]

    def field(self, name: str) -> Any:
        field_id = self.fake.field_id(name)
        assert field_id is not None, name
        values = self.fake.field_value(self.lead_id, field_id)
        return None if not values else values[0].get("enum_id", values[0].get("value"))

    def events(self, name: str) -> list[MutableMapping[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = ShiftedClock(DEADLINE - START_BEFORE_DEADLINE)
    fake = FakeAmoCRM(clock=clock.unix)
    support = fake.add_pipeline(PIPELINE, ["Новое обращение", "В работе"], unsorted=False)
    agent = fake.add_user("Анна Смирнова")
    lead_id = fake.add_lead(
        "Не открывается карточка сделки",
        pipeline_id=support.id,
        tags=["Приоритет"],
        created_at=REGISTERED.timestamp(),
        responsible_user_id=agent,
    )
    settings = Settings(
        _env_file=None,
        amo_base_url=fake.base_url,
        amo_long_lived_token=fake.long_lived_token,
        sla_pipeline=PIPELINE,
        sla_state_dir=tmp_path,
        sla_poll_interval=int(POLL_INTERVAL),
    )
    client = app.build_client(settings, transport=fake.transport)
    provision(client, dry_run=False, say=lambda _line: None)
    policy = app.build_policy(settings)
    cycle = Recording(app.build_cycle(settings, client, policy, wall_clock=clock))
    service = SyncService(cycle, poll_interval=POLL_INTERVAL, state_dir=tmp_path, clock=clock)
    with structlog.testing.capture_logs() as logs:
        thread = threading.Thread(
            target=lambda: service.run(install_signal_handlers=False), daemon=True
        )
        thread.start()
        world = World(clock, fake, client, lead_id, agent, cycle, service, thread, logs)
        try:
            yield world
        finally:
            service.request_shutdown()
            thread.join(10)
            client.close()
            cycle.cycle.store.close()
    assert not thread.is_alive(), "the service did not stop"


def after_deadline(runs: list[Run]) -> bool:
    return any(run.now > DEADLINE for run in runs)


def test_a_reaction_breach_is_flagged_and_tasked_within_seconds_of_the_deadline(
    world: World,
) -> None:
    world.cycle.wait_for(after_deadline)
    time.sleep(0.3)  # room for a wrong extra run
    world.service.request_shutdown()
    world.thread.join(10)

    first, wakeup = world.cycle.runs  # the poll at start and the wake-up; no other run
    assert first.now < DEADLINE
    before = first.report.states[world.lead_id]
    assert before.reaction.due == DEADLINE
    assert not before.reaction.breached
    assert first.report.next_change_at == BREACH_AT
    assert first.report.tasks_created == 0
    # The next poll would be 10 minutes later: this run is the wake-up.
    assert DEADLINE < wakeup.now <= DEADLINE + LATENCY_LIMIT
    (scheduled,) = world.events("wakeup_scheduled")
    assert datetime.fromisoformat(scheduled["next_change_at"]) == BREACH_AT
    assert scheduled["in_s"] < START_BEFORE_DEADLINE.total_seconds() + 1

    assert wakeup.report.states[world.lead_id].reaction.breached
    assert wakeup.report.tasks_created == 1
    # Everything the wake-up wrote was written by the time it finished, on the same clock.
    assert wakeup.report.finished_at - DEADLINE <= LATENCY_LIMIT
    assert world.field("SLA: реакция просрочена") is True
    status_field = world.fake.field_id("SLA: статус")
    assert status_field is not None
    assert world.field("SLA: статус") == world.fake.enum_id(status_field, SlaStatus.BREACHED)
    (task,) = world.fake.tasks
    assert task["entity_id"] == world.lead_id
    assert task["responsible_user_id"] == world.agent_id
    assert MARKERS[BreachClock.REACTION] in task["text"]
    # amoCRM's own record: when the flag landed and when the task was created.
    flagged = [
        event["created_at"]
        for event in world.fake.lead_events(world.lead_id)
        if event["type"] == f"custom_field_{world.fake.field_id('SLA: реакция просрочена')}"
        "_value_changed"
    ]
    assert flagged, world.fake.lead_events(world.lead_id)
    for moment in (*flagged, task["created_at"]):
        assert 0 <= moment - DEADLINE.timestamp() <= LATENCY_LIMIT.total_seconds()


def test_the_wakeup_reads_a_reaction_just_before_the_deadline_first(world: World) -> None:
    world.cycle.wait_for(lambda runs: len(runs) == 1)
    reacted_at = world.clock()
    assert reacted_at < DEADLINE
    world.fake.add_event(
        world.lead_id,
        "outgoing_chat_message",
        created_by=world.agent_id,
        at=reacted_at.timestamp(),
    )
    world.cycle.wait_for(after_deadline)
    world.service.request_shutdown()
    world.thread.join(10)

    first, wakeup = world.cycle.runs
    assert first.report.next_change_at == BREACH_AT
    assert DEADLINE < wakeup.now <= DEADLINE + LATENCY_LIMIT
    state = wakeup.report.states[world.lead_id]
    assert state.reaction.finished_at == reacted_at.replace(microsecond=0)
    assert not state.reaction.breached
    assert state.status is SlaStatus.ON_TIME
    assert wakeup.report.tasks_created == 0
    assert world.fake.tasks == []
    assert world.field("SLA: реакция просрочена") in (None, False)
    assert world.field("SLA: реакция") == int(reacted_at.timestamp())
    status_field = world.fake.field_id("SLA: статус")
    assert status_field is not None
    assert world.field("SLA: статус") == world.fake.enum_id(status_field, SlaStatus.ON_TIME)
