"""Shared pieces of the sync-cycle tests: a seeded fake amoCRM and cycles on it.

The scenario is a support pipeline on a Wednesday after the November holidays: requests of
both CRMBP tariffs and both classes, a bot's message and a robot's move that must not count
as a reaction, a request on hold, resolved ones, one without a tariff, one waiting for the
customer's acceptance, plus leads of a sales pipeline the worker must never touch.

Expected field values never come from the worker: :mod:`tests.oracle` gives them (the
engine's state for the lead and its whole history as the fake holds them, by field *name*).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, LoggedRequest, PipelineRef
from sla.policy import Policy, default_policy
from sla.state import StageRoles
from tests.client_kit import FakeClock
from tests.oracle import support_roles
from worker.admin import provision
from worker.cycle import CycleOptions, SyncCycle
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions

MOSCOW = ZoneInfo("Europe/Moscow")
# Wednesday 5 November 2025, the first workday after the 3–4 November holidays.
START = datetime(2025, 11, 5, 12, 0, tzinfo=MOSCOW)
# The worker has run on the account since before every seeded request, so their breaches are
# news (spec §5); tests of the first start itself leave it unpinned.
WORKER_SINCE = datetime(2025, 9, 1, tzinfo=MOSCOW)
PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента", "Проверка клиентом")
HOLD, ACCEPTANCE = STAGES[2], STAGES[3]
WON, LOST = 142, 143
REACTION_TEXT = "Просрочена реакция: «{lead_name}» (#{lead_id}), тариф «{tariff}», срок {due}."
RESOLUTION_TEXT = "Просрочено решение: «{lead_name}» (#{lead_id}), тариф «{tariff}», срок {due}."


def at(day: int, hour: int, minute: int = 0, *, month: int = 11) -> float:
    return datetime(2025, month, day, hour, minute, tzinfo=MOSCOW).timestamp()


@dataclass
class World:
    fake: FakeAmoCRM
    clock: FakeClock
    client: AmoClient
    support: PipelineRef
    other: PipelineRef
    policy: Policy
    leads: dict[str, int] = field(default_factory=dict)  # the support pipeline's, by role
    other_leads: list[int] = field(default_factory=list)
    agents: tuple[int, int] = (0, 0)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def advance(self, delta: timedelta) -> datetime:
        self.clock.advance(delta.total_seconds())
        return self.now()

    def new_client(self) -> AmoClient:
        return make_client(self.fake, self.clock)

    @property
    def roles(self) -> StageRoles:
        return support_roles(self.support, first=STAGES[0], hold=HOLD, acceptance=ACCEPTANCE)


def make_client(
    fake: FakeAmoCRM, clock: FakeClock, transport: httpx.BaseTransport | None = None
) -> AmoClient:
    # The client's limiter sleeps on the shared virtual clock, so the fake sees requests
    # spaced as amoCRM would, and nothing waits for real.
    return AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=transport or fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )


def build_world(
    *,
    seed: bool = True,
    provisioned: bool = True,
    policy: Policy | None = None,
    **fake_options: Any,
) -> World:
    clock = FakeClock(wall=START.timestamp())
    fake_options.setdefault("max_requests_per_second", 7.0)
    fake = FakeAmoCRM(
        clock=clock.time, monotonic=clock.monotonic, account_name="Поддержка", **fake_options
    )
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    other = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    policy = policy or default_policy()
    world = World(fake, clock, make_client(fake, clock), support, other, policy)
    world.agents = (fake.add_user("Анна Смирнова"), fake.add_user("Олег Петров"))
    if provisioned:
        provision(
            world.client,
            dry_run=False,
            say=lambda line: None,
            next_response=policy.next_response is not None,
        )
    if seed:
        seed_scenario(world)
    return world


def seed_scenario(world: World) -> None:
    fake, support = world.fake, world.support
    anna, oleg = world.agents
    in_work, waiting = support.status(STAGES[1]), support.status(HOLD)
    first = support.status(STAGES[0])

    def lead(role: str, tags: list[str], created: float, user: int) -> int:
        lead_id = fake.add_lead(
            role, pipeline_id=support.id, tags=tags, created_at=created, responsible_user_id=user
        )
        world.leads[role] = lead_id
        return lead_id

    # Nobody answers; a chat bot's greeting (created_by 0) is not a reaction.
    silent = lead("priority_silent", ["Приоритет"], at(5, 10, 10), anna)
    fake.add_event(silent, "outgoing_chat_message", created_by=0, at=at(5, 10, 11))
    answered = lead("priority_answered", ["Приоритет"], at(5, 10, 0), oleg)
    fake.add_event(answered, "outgoing_chat_message", created_by=oleg, at=at(5, 10, 25))
    lead("priority_change_request", ["Приоритет", "Доработка"], at(5, 11, 30), anna)
    typical = lead("fact_typical_old", ["По факту"], at(30, 15, month=10), oleg)
    fake.move_lead(typical, in_work, by_user=oleg, at=at(5, 10, 55))
    lead("fact_non_standard", ["По факту", "Нестандартное"], at(5, 9, 15), anna)
    # A robot moves it out of the first stage: that is not a reaction either.
    robot = lead("fact_robot_moved", [" по факту "], at(5, 11, 0), oleg)
    fake.move_lead(robot, in_work, by_user=0, at=at(5, 11, 1))
    lead("priority_outage", ["Приоритет", "авария"], at(5, 9, 50), oleg)
    hold = lead("fact_on_hold", ["По факту"], at(5, 9, 0), anna)
    fake.add_event(hold, "outgoing_call", created_by=anna, at=at(5, 9, 5))
    fake.move_lead(hold, waiting, by_user=anna, at=at(5, 10, 5))
    back = lead("fact_hold_and_back", ["По факту"], at(5, 9, 30), anna)
    fake.add_event(back, "common_note_added", created_by=anna, at=at(5, 9, 40))
    fake.move_lead(back, waiting, by_user=anna, at=at(5, 10, 0))
    fake.move_lead(back, in_work, by_user=anna, at=at(5, 11, 0))
    done = lead("priority_resolved", ["Приоритет"], at(5, 10, 2), oleg)
    fake.add_event(done, "outgoing_chat_message", created_by=oleg, at=at(5, 10, 6))
    fake.move_lead(done, WON, by_user=oleg, at=at(5, 10, 20))
    late = lead("priority_resolved_late", ["Приоритет"], at(31, 10, 0, month=10), anna)
    fake.add_event(late, "outgoing_call", created_by=anna, at=at(31, 10, 30, month=10))
    fake.move_lead(late, LOST, by_user=anna, at=at(5, 11, 45))
    lead("no_tariff", ["счёт"], at(5, 10, 15), anna)
    accepted = lead("priority_acceptance", ["Приоритет"], at(1, 12, 0), anna)
    fake.add_event(accepted, "outgoing_chat_message", created_by=anna, at=at(1, 12, 20))
    fake.move_lead(accepted, support.status(ACCEPTANCE), by_user=anna, at=at(1, 17, 0))
    reopened = lead("priority_reopened", ["Приоритет"], at(5, 9, 0), oleg)
    fake.add_event(reopened, "outgoing_chat_message", created_by=oleg, at=at(5, 9, 10))
    fake.move_lead(reopened, WON, by_user=oleg, at=at(5, 9, 30))
    fake.move_lead(reopened, first, by_user=oleg, at=at(5, 11, 0))

    for name, tags in (("Новый клиент", ["Приоритет"]), ("Счёт на оплату", ["По факту"])):
        other = fake.add_lead(
            name, pipeline_id=world.other.id, tags=tags, created_at=at(5, 9, 0), created_by=anna
        )
        fake.add_event(other, "outgoing_chat_message", created_by=0, at=at(5, 9, 1))
        world.other_leads.append(other)


def stage_options(*, next_response: bool = False) -> StageOptions:
    return StageOptions(
        pipeline=PIPELINE,
        hold_stages=(HOLD,),
        acceptance_stages=(ACCEPTANCE,),
        next_response=next_response,
    )


def task_options() -> TaskOptions:
    return TaskOptions(reaction_text=REACTION_TEXT, resolution_text=RESOLUTION_TEXT)


def make_cycle(
    world: World,
    state_dir: Path,
    *,
    client: AmoClient | None = None,
    dry_run: bool = False,
    options: CycleOptions | None = None,
) -> SyncCycle:
    return SyncCycle(
        client or world.client,
        StateStore(state_dir / "state.sqlite3"),
        world.policy,
        options
        or CycleOptions(
            stages=stage_options(next_response=world.policy.next_response is not None),
            tasks=task_options(),
            first_start=WORKER_SINCE,
        ),
        lock_path=state_dir / "cycle.lock",
        dry_run=dry_run,
        wall_clock=world.now,
    )


# --- what the fake holds ---------------------------------------------------------------------


def sla_values_of(world: World, lead_id: int) -> list[Any]:
    raw = world.fake.lead(lead_id) or {}
    return [
        entry
        for entry in raw["custom_fields_values"] or ()
        if str(entry["field_name"]).startswith("SLA:")
    ]


def writes(log: list[LoggedRequest]) -> list[LoggedRequest]:
    return [r for r in log if r.method in {"PATCH", "POST"} and r.path.startswith("/api/v4/leads")]


def task_posts(log: list[LoggedRequest]) -> list[LoggedRequest]:
    return [r for r in log if r.method == "POST" and r.path == "/api/v4/tasks"]


def tasks_by_lead(world: World) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for task in world.fake.tasks:
        found.setdefault(int(task["entity_id"]), []).append(str(task["text"]))
    return found


def plant_raw_value(world: World, lead_id: int, field_name: str, raw: list[dict[str, Any]]) -> None:
    """Put a value into a lead field that amoCRM's own validation would refuse today.

    Such values come from imports and from fields whose type an admin replaced; the fake
    has no public way to hold one because its API validates like amoCRM does.
    """
    field_id = world.fake.field_id(field_name)
    assert field_id is not None
    with world.fake._lock:
        world.fake._entities["leads"][lead_id].fields[field_id] = raw


def delete_field(world: World, field_name: str) -> None:
    """Delete a lead field the way an admin does in amoCRM's settings: values and all."""
    field_id = world.fake.field_id(field_name)
    assert field_id is not None
    with world.fake._lock:
        del world.fake._fields["leads"][field_id]
        for entity in world.fake._entities["leads"].values():
            entity.fields.pop(field_id, None)
