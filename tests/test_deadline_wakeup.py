"""The cycle at a reaction deadline, on a virtual clock: what the wake-up sees and writes.

The service schedules its wake-up at the cycle's ``next_change_at`` (``tests/test_service.py``);
these tests run the real cycle at that instant. ``bench/latency.py`` measures the same on
the wall clock, with the real scheduler.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sla.state import SlaStatus
from tests.cycle_kit import MOSCOW, World, build_world, make_cycle
from tests.oracle import stored_fields
from worker.tasks import MARKERS, BreachClock

# Wednesday 5 November 2025 (the world's clock starts at 12:00): a Приоритет typical request
# registered at 11:30 is due a reaction one business hour later; the engine counts it
# breached from due + 1 s.
REGISTERED = datetime(2025, 11, 5, 11, 30, tzinfo=MOSCOW)
DEADLINE = datetime(2025, 11, 5, 12, 30, tzinfo=MOSCOW)
BREACH_AT = DEADLINE + timedelta(seconds=1)


def world_before_the_deadline() -> tuple[World, int]:
    world = build_world(seed=False)
    lead_id = world.fake.add_lead(
        "Не открывается карточка сделки",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=REGISTERED.timestamp(),
        responsible_user_id=world.agents[0],
    )
    world.clock.advance((DEADLINE - timedelta(seconds=3)).timestamp() - world.clock.time())
    return world, lead_id


def test_the_run_before_the_deadline_names_the_breach_instant_and_the_wakeup_flags_and_tasks(
    tmp_path: Path,
) -> None:
    world, lead_id = world_before_the_deadline()
    cycle = make_cycle(world, tmp_path)

    first = cycle.run(world.now())
    state = cycle.state(lead_id, world.now())
    assert state is not None
    assert state.reaction.due == DEADLINE
    assert not state.reaction.breached
    assert first.next_change_at == BREACH_AT
    assert first.tasks_created == 0

    world.clock.advance((BREACH_AT - world.now()).total_seconds())
    wakeup = cycle.run(world.now())

    state = cycle.state(lead_id, world.now())
    assert state is not None
    assert state.reaction.breached
    assert wakeup.tasks_created == 1
    fields = stored_fields(world, lead_id)
    assert fields["SLA: реакция просрочена"] is True
    assert fields["SLA: статус"] == SlaStatus.BREACHED.value
    (task,) = world.fake.tasks
    assert task["entity_id"] == lead_id
    assert task["responsible_user_id"] == world.agents[0]
    assert MARKERS[BreachClock.REACTION] in task["text"]


def test_the_wakeup_reads_a_reply_from_just_before_the_deadline_first(tmp_path: Path) -> None:
    world, lead_id = world_before_the_deadline()
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    replied_at = world.advance(timedelta(seconds=2))
    world.fake.add_event(
        lead_id, "outgoing_chat_message", created_by=world.agents[0], at=replied_at.timestamp()
    )

    world.clock.advance((BREACH_AT - world.now()).total_seconds())
    wakeup = cycle.run(world.now())

    state = cycle.state(lead_id, world.now())
    assert state is not None
    assert state.reaction.finished_at == replied_at.replace(microsecond=0)
    assert not state.reaction.breached
    assert state.status is SlaStatus.ON_TIME
    assert wakeup.tasks_created == 0
    assert world.fake.tasks == []
    fields = stored_fields(world, lead_id)
    assert fields["SLA: реакция просрочена"] in (None, False)
    assert fields["SLA: реакция"] == int(replied_at.timestamp())
