"""Known defects of next response and the escalation ladder (spec §4.1), each kept as a
strict expected failure until it is fixed.

The engine cases use ``tests/test_next_response.py``'s policy (the example preset
``sla/presets/crmbp_next_response.toml``) and week; the cycle case uses
``tests/test_cycle_ladder.py``'s account.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from amo_client.models import Lead
from sla.policy import LadderClock, PolicyError, load_policy
from sla.state import LeadEvent
from tests.cycle_kit import at
from tests.test_cycle_ladder import run_at, tasks_of, world_and_cycle
from tests.test_next_response import MONDAY, POLICY, PRESET, spans, state_of
from tests.test_state import AGENT, FIRST, WORK, compute, lead, msk
from worker.tasks import TaskOptions, past_breaches, plan_tasks


def event(event_id: str, kind: str, moment: datetime, by: int) -> LeadEvent:
    return LeadEvent(event_id=event_id, type=kind, at=moment, created_by=by)


def test_a_message_in_the_reactions_second_but_after_it_opens_a_period_like_after_any_reply() -> (
    None
):
    crossing = msk(13, 10, 10)
    # After a later reply, a message of the same second listed after it opens a period.
    later = state_of(
        [
            event("a-reply", "outgoing_chat_message", msk(14, 11), AGENT),
            event("b-message", "incoming_chat_message", msk(14, 11), 0),
        ],
        now=msk(14, 12),
    )
    assert [start for start, *_ in spans(later)] == [msk(14, 11)]
    # The same crossing at the first answer (the reaction): the message is never answered.
    facts = lead("Приоритет", created=MONDAY)
    first = compute(
        facts,
        [
            event("a-reply", "outgoing_chat_message", crossing, AGENT),
            event("b-message", "incoming_chat_message", crossing, 0),
        ],
        now=msk(13, 14),
        policy=POLICY,
    )
    assert [start for start, *_ in spans(first)] == [crossing]


def test_a_customer_message_listed_late_gives_the_same_wait_no_second_breach_task(
    tmp_path: Path,
) -> None:
    world, cycle = world_and_cycle(tmp_path)
    fake, anna = world.fake, world.agents[0]
    lead_id = fake.add_lead(
        "Не работает вход", pipeline_id=world.support.id, tags=["Приоритет"],
        created_at=at(5, 12, 0), responsible_user_id=anna,
    )  # fmt: skip
    fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=at(5, 12, 10))
    # The customer writes at 12:30 (the feed lists it four hours late) and again at 13:00.
    fake.add_event(
        lead_id, "incoming_chat_message", created_by=0, at=at(5, 12, 30), visible_after=4 * 3600
    )
    fake.add_event(lead_id, "incoming_chat_message", created_by=0, at=at(5, 13, 0))
    run_at(cycle, world, at(5, 13, 5))
    run_at(cycle, world, at(5, 16, 0) + 1)  # the wait's breach and its escalation
    assert len(tasks_of(world, lead_id)) == 2
    run_at(cycle, world, at(5, 19, 10))  # a full reconcile reads the late message
    # Nobody answered in between: one wait, one breach task and one escalation.
    assert len(tasks_of(world, lead_id)) == 2


def test_a_step_text_the_policy_accepts_renders_for_a_real_lead() -> None:
    addition = (
        '[[escalation.resolution]]\nat = "breach"\nto = "responsible"\ntext = "{lead_id:c}"\n'
    )
    try:
        policy = load_policy(PRESET.read_text(encoding="utf-8") + addition)
    except PolicyError:
        return  # refused at start: a configuration error, as spec §6 wants
    facts = lead("По факту", created=MONDAY)
    state = compute(facts, [event("a", "outgoing_chat_message", msk(13, 10, 5), AGENT)],
                    now=msk(24, 12), policy=policy)  # fmt: skip
    assert any(s.owed and s.step.clock is LadderClock.RESOLUTION for s in state.ladder)
    copy = Lead.model_validate(
        {"id": facts.lead_id, "name": "Вход", "pipeline_id": facts.pipeline_id,
         "status_id": WORK, "responsible_user_id": AGENT, "created_at": int(MONDAY.timestamp()),
         "updated_at": int(MONDAY.timestamp())}
    )  # fmt: skip
    options = TaskOptions(reaction_text="{due}", resolution_text="{due}")
    plans = plan_tasks({facts.lead_id: state}, lambda lead_id: copy, options)
    assert plans


def test_a_request_only_at_risk_before_the_first_start_is_no_past_breach() -> None:
    facts = lead("Приоритет", created=MONDAY, status=FIRST)
    # «Приоритет»: 80 % of the hour at 10:48, the breach at 11:00; the worker starts at 10:50.
    state = compute(facts, now=msk(13, 10, 55), policy=POLICY)
    assert not state.reaction.breached
    assert [s.step.trigger for s in state.ladder if s.owed] == ["80%"]
    options = TaskOptions(reaction_text="{due}", resolution_text="{due}")
    assert past_breaches({facts.lead_id: state}, msk(13, 10, 50), options) == []
