"""Next response and the escalation ladder in the sync cycle (spec §4.1): the two lead
fields, the ladder's tasks once per lead, clock, period and step, group heads, the first
start, a lost state, switching next response off, and what a steady cycle costs.

The account is the cycle tests' (``tests/cycle_kit.py``) under the example preset
``sla/presets/crmbp_next_response.toml``: «Приоритет» typical answers a customer within 2
business hours; its ladder adds an 80 % and a «breach + 2h» (group head) step to the
reaction, and a «breach + 1h» (supervisor) step to next response.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from sla.policy import default_policy, load_policy
from tests.cycle_kit import (
    WORKER_SINCE,
    World,
    at,
    build_world,
    make_cycle,
    stage_options,
    task_options,
)
from tests.oracle import engine_state, expected_fields, stored_fields
from worker.cycle import CycleOptions, SyncCycle
from worker.store import StateStore
from worker.tasks import MARKERS, BreachClock

PRESET = Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
POLICY = load_policy(PRESET.read_text(encoding="utf-8"))
NEXT_RESPONSE_MARKER = "[SLA: ответ на сообщение 05.11.2025 13:00:00, срок → ответственный]"
ESCALATION_MARKER = "[SLA: ответ на сообщение 05.11.2025 13:00:00, срок + 1 ч → руководитель]"


def world_and_cycle(
    tmp_path: Path, *, first_start: datetime = WORKER_SINCE
) -> tuple[World, SyncCycle]:
    world = build_world(seed=False, policy=POLICY)
    return world, ladder_cycle(world, tmp_path, first_start=first_start)


def ladder_cycle(
    world: World,
    tmp_path: Path,
    *,
    first_start: datetime = WORKER_SINCE,
    heads: dict[str, int] | None = None,
) -> SyncCycle:
    """The worker under the world's policy (with ``heads`` as its group heads), the second
    agent its supervisor."""
    options = CycleOptions(
        stages=stage_options(next_response=True),
        tasks=dataclasses.replace(task_options(), supervisor_user_id=world.agents[1]),
        first_start=first_start,
    )
    policy = world.policy
    if heads is not None:
        policy = dataclasses.replace(
            policy, ladder=dataclasses.replace(policy.ladder, group_heads=heads)
        )
    return SyncCycle(
        world.client,
        StateStore(tmp_path / "state.sqlite3"),
        policy,
        options,
        lock_path=tmp_path / "cycle.lock",
        wall_clock=world.now,
    )


def run_at(cycle: SyncCycle, world: World, moment: float) -> None:
    world.clock.advance(moment - world.clock.time())
    cycle.run(world.now())


def tasks_of(world: World, lead_id: int) -> list[tuple[int, str]]:
    """(assignee, marker) of each task on the lead, in the order made."""
    return [
        (int(task["responsible_user_id"]), str(task["text"]).rsplit("\n", 1)[-1])
        for task in world.fake.tasks
        if int(task["entity_id"]) == lead_id
    ]


def conversation(world: World) -> int:
    """A «Приоритет» request answered at 12:10; the customer writes at 12:30 (answered at
    12:40) and again at 13:00 (due 15:00)."""
    fake, anna = world.fake, world.agents[0]
    lead_id = fake.add_lead(
        "Не работает вход",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=at(5, 12, 0),
        responsible_user_id=anna,
    )
    fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=at(5, 12, 10))
    fake.customer_writes(lead_id, "chat", at=at(5, 12, 30))
    fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=at(5, 12, 40))
    fake.customer_writes(lead_id, "mail", at=at(5, 13, 0))
    return lead_id


def test_a_second_message_waiting_too_long_gets_the_fields_a_task_and_an_escalation(
    tmp_path: Path,
) -> None:
    world, cycle = world_and_cycle(tmp_path)
    anna, oleg = world.agents
    lead_id = conversation(world)

    run_at(cycle, world, at(5, 13, 5))
    assert stored_fields(world, lead_id)["SLA: ответ до"] == int(at(5, 15, 0))
    assert stored_fields(world, lead_id)["SLA: ответ просрочен"] is False
    assert tasks_of(world, lead_id) == []

    run_at(cycle, world, at(5, 15, 0) + 1)  # the breach
    assert stored_fields(world, lead_id)["SLA: ответ просрочен"] is True
    assert tasks_of(world, lead_id) == [(anna, NEXT_RESPONSE_MARKER)]

    run_at(cycle, world, at(5, 16, 0) + 1)  # an hour later: to the supervisor
    run_at(cycle, world, at(5, 16, 30))
    assert tasks_of(world, lead_id) == [(anna, NEXT_RESPONSE_MARKER), (oleg, ESCALATION_MARKER)]

    world.fake.add_event(lead_id, "outgoing_call", created_by=anna, at=at(5, 16, 40))
    run_at(cycle, world, at(5, 16, 45))
    fields = stored_fields(world, lead_id)
    assert (fields["SLA: ответ до"], fields["SLA: ответ просрочен"]) == (None, True)
    assert fields == expected_fields(engine_state(world, lead_id, world.now()), next_response=True)
    assert len(world.fake.tasks) == 2


def test_the_worker_wakes_at_the_periods_breach_and_at_each_step(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path)
    conversation(world)
    world.clock.advance(at(5, 13, 5) - world.clock.time())
    report = cycle.run(world.now())
    assert report.next_change_at == datetime.fromtimestamp(at(5, 15, 0) + 1, UTC)
    world.clock.advance(at(5, 15, 0) + 1 - world.clock.time())
    report = cycle.run(world.now())
    assert report.tasks_created == 1
    assert report.next_change_at == datetime.fromtimestamp(at(5, 16, 0) + 1, UTC)


def test_a_reaction_step_goes_to_the_head_of_the_responsible_users_group(tmp_path: Path) -> None:
    world = build_world(seed=False, policy=POLICY)
    fake = world.fake
    support = fake.add_user_group("Техподдержка")
    head = fake.add_user("Мария Козлова", group_id=support)
    ivan = fake.add_user("Иван Новиков", group_id=support)
    cycle = ladder_cycle(world, tmp_path, heads={"Техподдержка": head})
    silent = fake.add_lead(
        "Молчание", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 12, 0),
        responsible_user_id=ivan,
    )  # fmt: skip
    run_at(cycle, world, at(5, 12, 50))  # 80 % of the hour
    run_at(cycle, world, at(5, 13, 0) + 1)  # the breach
    run_at(cycle, world, at(5, 15, 0) + 1)  # two business hours after it
    assert [user for user, _ in tasks_of(world, silent)] == [ivan, ivan, head]
    assert [marker for _, marker in tasks_of(world, silent)] == [
        "[SLA: реакция, 80 % срока → ответственный]",
        MARKERS[BreachClock.REACTION],  # the breach keeps the marker it always had
        "[SLA: реакция, срок + 2 ч → руководитель группы]",
    ]


def test_a_group_is_found_by_its_id_too(tmp_path: Path) -> None:
    world = build_world(seed=False, policy=POLICY)
    group = world.fake.add_user_group("Вторая линия")
    head = world.fake.add_user("Мария Козлова", group_id=group)
    ivan = world.fake.add_user("Иван Новиков", group_id=group)
    cycle = ladder_cycle(world, tmp_path, heads={str(group): head})
    silent = world.fake.add_lead(
        "Молчание", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 12, 0),
        responsible_user_id=ivan,
    )  # fmt: skip
    run_at(cycle, world, at(5, 15, 0) + 1)
    assert [user for user, _ in tasks_of(world, silent)][-1] == head


def test_a_group_without_a_head_escalates_to_the_supervisor(tmp_path: Path) -> None:
    world = build_world(seed=False, policy=POLICY)
    cycle = ladder_cycle(world, tmp_path, heads={"Вторая линия": 1})
    silent = world.fake.add_lead(
        "Молчание", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 12, 0),
        responsible_user_id=world.agents[0],
    )  # fmt: skip
    run_at(cycle, world, at(5, 15, 0) + 1)
    assert [user for user, _ in tasks_of(world, silent)][-1] == world.agents[1]


def test_no_task_for_a_step_before_the_first_start(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path, first_start=datetime.fromtimestamp(at(5, 15, 30), UTC))
    lead_id = conversation(world)
    world.clock.advance(at(5, 15, 45) - world.clock.time())
    report = cycle.run(world.now())
    # Breached at 15:00, before the worker started: the field says so, no task (spec §5).
    assert stored_fields(world, lead_id)["SLA: ответ просрочен"] is True
    assert tasks_of(world, lead_id) == []
    assert lead_id in report.past_breaches
    run_at(cycle, world, at(5, 16, 0) + 1)  # the escalation comes after the first start
    assert tasks_of(world, lead_id) == [(world.agents[1], ESCALATION_MARKER)]


def test_a_lost_state_finds_the_ladders_tasks_by_their_markers(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path / "first")
    lead_id = conversation(world)
    run_at(cycle, world, at(5, 16, 0) + 1)
    assert len(tasks_of(world, lead_id)) == 2
    fresh = make_cycle(world, tmp_path / "second", options=cycle.options)
    report = fresh.run(world.now())
    assert report.tasks_created == 0
    assert len(tasks_of(world, lead_id)) == 2


def test_a_customer_message_filed_on_the_contact_counts(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path)
    fake, anna = world.fake, world.agents[0]
    lead_id = fake.add_lead(
        "Вопрос", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 12, 0),
        responsible_user_id=anna,
    )  # fmt: skip
    fake.link_contact(lead_id, fake.add_contact("Клиент"), by=anna, at=at(5, 12, 1))
    fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=at(5, 12, 5))
    fake.replies_filed_on = "contact"
    fake.customer_writes(lead_id, "chat", at=at(5, 12, 30))
    fake.replies_filed_on = "lead"
    run_at(cycle, world, at(5, 12, 35))
    assert stored_fields(world, lead_id)["SLA: ответ до"] == int(at(5, 14, 30))


def test_switching_next_response_off_clears_its_fields(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path / "on")
    lead_id = conversation(world)
    run_at(cycle, world, at(5, 15, 30))
    assert stored_fields(world, lead_id)["SLA: ответ просрочен"] is True
    options = dataclasses.replace(cycle.options, stages=stage_options())
    world.policy = default_policy()
    off = make_cycle(world, tmp_path / "off", options=options)
    off.run(world.now())
    raw = world.fake.lead(lead_id) or {}
    values = {e["field_name"]: e["values"][0]["value"] for e in raw["custom_fields_values"] or ()}
    assert values.get("SLA: ответ до") is None
    assert not values.get("SLA: ответ просрочен")


def test_a_steady_cycle_costs_the_same_with_next_response_on(tmp_path: Path) -> None:
    world, cycle = world_and_cycle(tmp_path)
    conversation(world)
    run_at(cycle, world, at(5, 13, 5))
    run_at(cycle, world, at(5, 13, 10))
    world.fake.reset_request_log()
    run_at(cycle, world, at(5, 13, 20))
    assert len(world.fake.request_log) == 2  # the leads and the events, one 204 each
    assert all(r.method == "GET" for r in world.fake.request_log)
