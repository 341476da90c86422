"""Next response and the escalation ladder (spec §4.1) on worked cases.

The policy is the example preset ``sla/presets/crmbp_next_response.toml``: CRMBP, with a
next response of 2 business hours for «Приоритет» (typical) and 8 for «По факту», and
its ladder. The week of 13–19 October 2025 has no holidays (``tests/test_state.py``);
«Приоритет» typical runs 10–18 on workdays and 12–18 on days off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sla.policy import LadderClock, Policy, default_policy, load_policy
from sla.state import LeadEvent, LeadFacts, SlaState, StepState, state_as_dict
from tests.test_state import (
    CHECK,
    FIRST,
    ROBOT,
    WAIT,
    WON,
    WORK,
    act,
    compute,
    lead,
    moved,
    msk,
)

PRESET = Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
POLICY = load_policy(PRESET.read_text(encoding="utf-8"))
MONDAY = msk(13, 10)
ANSWERED = msk(13, 10, 10)  # the agent's first answer: the reaction


def customer(at: datetime, kind: str = "incoming_chat_message") -> LeadEvent:
    """A customer's message: amoCRM records it with ``created_by`` 0."""
    return act(at, kind, by=ROBOT)


def state_of(
    events: Sequence[LeadEvent],
    *,
    now: datetime,
    tags: tuple[str, ...] = ("Приоритет",),
    status: int = WORK,
    policy: Policy = POLICY,
) -> SlaState:
    facts = lead(*tags, created=MONDAY, status=status)
    reacted = [moved(msk(13, 10, 5), FIRST, WORK), act(ANSWERED), *events]
    return compute(facts, reacted, now=now, policy=policy)


def spans(state: SlaState) -> list[tuple[datetime, datetime | None, datetime | None, bool]]:
    """(start, due, end, breached) of each waiting period."""
    return [
        (p.started_at, p.clock.due, p.clock.finished_at, p.clock.breached)
        for p in state.next_response.periods
    ]


def steps_of(state: SlaState, clock: LadderClock) -> list[StepState]:
    return [step for step in state.ladder if step.step.clock is clock]


# ---------------------------------------------------------------------------
# The named cases


def test_a_message_in_off_hours_waits_for_the_next_opening() -> None:
    # Friday 20:00: «Приоритет» typical reopens on Saturday at 12:00; two hours on, 14:00.
    state = state_of([customer(msk(17, 20))], now=msk(18, 11))
    assert spans(state) == [(msk(17, 20), msk(18, 14), None, False)]
    assert state.next_response.due == msk(18, 14)
    assert state.next_response.waiting is not None
    assert state.next_response.waiting.clock.used == timedelta(0)


def test_two_messages_before_one_reply_are_one_period() -> None:
    events = [customer(msk(14, 11)), customer(msk(14, 11, 30)), act(msk(14, 12))]
    state = state_of(events, now=msk(14, 15))
    assert spans(state) == [(msk(14, 11), msk(14, 13), msk(14, 12), False)]
    assert state.next_response.periods[0].ended_by == "reply"
    assert state.next_response.due is None
    assert not state.next_response.breached


def test_a_robots_reply_does_not_stop_the_clock() -> None:
    events = [customer(msk(14, 11)), act(msk(14, 11, 15), by=ROBOT)]
    state = state_of(events, now=msk(14, 13, 0, 1))
    assert spans(state) == [(msk(14, 11), msk(14, 13), None, True)]
    assert state.next_response.breached
    assert any("not an answer" in line and "by a robot" in line for line in state.trace)
    # An account whose chat integration posts the agents' replies as a robot's (spec §4).
    robot_replies = dataclasses.replace(POLICY, robot_replies=True)
    answered = state_of(events, now=msk(14, 13, 0, 1), policy=robot_replies)
    assert spans(answered) == [(msk(14, 11), msk(14, 13), msk(14, 11, 15), False)]


def test_a_message_on_hold_waits_paused_until_the_request_runs_again() -> None:
    events = [
        moved(msk(14, 11), WORK, WAIT),
        customer(msk(14, 12)),
        moved(msk(15, 15), WAIT, WORK),
    ]
    paused = state_of(events[:2], now=msk(15, 12), status=WAIT)
    assert spans(paused) == [(msk(14, 12), None, None, False)]  # no due while paused
    assert paused.next_response.waiting is not None
    assert paused.next_response.waiting.clock.used == timedelta(0)
    running = state_of(events, now=msk(15, 16))
    assert spans(running) == [(msk(14, 12), msk(15, 17), None, False)]


def test_a_message_after_the_request_is_done_opens_no_period() -> None:
    events = [moved(msk(14, 11), WORK, WON), customer(msk(14, 11, 30), "incoming_mail")]
    state = state_of(events, now=msk(16, 12), status=WON)
    assert state.next_response.periods == ()
    assert any("in a done stage, no waiting period" in line for line in state.trace)


def test_a_done_stage_ends_the_waiting_period() -> None:
    # The «thanks» problem the other way round: the customer wrote, the agent closed the
    # request without a message; the period ends there, in time.
    events = [customer(msk(14, 11)), moved(msk(14, 12), WORK, CHECK)]
    state = state_of(events, now=msk(16, 12), status=CHECK)
    assert spans(state) == [(msk(14, 11), msk(14, 13), msk(14, 12), False)]
    assert state.next_response.periods[0].ended_by == "done"


def test_a_reopen_starts_new_periods_only_after_it() -> None:
    events = [
        moved(msk(14, 11), WORK, WON),
        customer(msk(14, 11, 30)),  # while closed: no period
        moved(msk(14, 14), WON, WORK),  # reopened
        customer(msk(14, 14, 30), "incoming_call"),
    ]
    state = state_of(events, now=msk(14, 15))
    assert spans(state) == [(msk(14, 14, 30), msk(14, 16, 30), None, False)]


def test_a_tariff_change_recomputes_the_period_from_its_start() -> None:
    events = [customer(msk(14, 11))]
    # «По факту»: 8 workday hours from 11:00 Tuesday end at 11:00 Wednesday.
    po_faktu = state_of(events, now=msk(14, 12), tags=("По факту",))
    assert spans(po_faktu) == [(msk(14, 11), msk(15, 11), None, False)]
    # Retagged «Приоритет» at 12:00: the period is judged on 2 h from its own start.
    priority = state_of(events, now=msk(14, 13, 0, 1))
    assert spans(priority) == [(msk(14, 11), msk(14, 13), None, True)]


# ---------------------------------------------------------------------------
# More rules


def test_messages_before_the_reaction_belong_to_the_reaction_clock() -> None:
    facts = lead("Приоритет", created=MONDAY)
    events = [customer(msk(13, 10, 1)), customer(msk(13, 10, 2))]
    state = compute(facts, events, now=msk(13, 10, 30), policy=POLICY)
    assert state.next_response.periods == ()
    answered = compute(facts, [*events, act(msk(13, 10, 20))], now=msk(13, 10, 30), policy=POLICY)
    assert answered.next_response.periods == ()


def test_each_period_is_judged_on_its_own() -> None:
    events = [
        customer(msk(14, 10)),
        act(msk(14, 12, 30)),  # late: breached
        customer(msk(14, 15)),
        act(msk(14, 15, 20)),  # in time
        customer(msk(14, 17)),  # waits over the night: due Wednesday 11:00
    ]
    state = state_of(events, now=msk(15, 10, 30))
    assert spans(state) == [
        (msk(14, 10), msk(14, 12), msk(14, 12, 30), True),
        (msk(14, 15), msk(14, 17), msk(14, 15, 20), False),
        (msk(14, 17), msk(15, 11), None, False),
    ]
    assert state.next_response.breached  # «SLA: ответ просрочен»: any period
    assert state.next_response.due == msk(15, 11)  # «SLA: ответ до»: the one waiting


def test_an_internal_event_is_no_answer_and_a_note_by_a_person_is() -> None:
    events = [customer(msk(14, 11)), act(msk(14, 11, 10), "task_added")]
    assert spans(state_of(events, now=msk(14, 12)))[0][2] is None
    noted = [customer(msk(14, 11)), act(msk(14, 11, 10), "common_note_added")]
    assert spans(state_of(noted, now=msk(14, 12)))[0][2] == msk(14, 11, 10)


def test_without_a_next_response_table_there_are_no_periods() -> None:
    events = [customer(msk(14, 11))]
    state = state_of(events, now=msk(16, 12), policy=default_policy())
    assert state.next_response.periods == ()
    assert state.next_response.target is None
    assert [s.step.clock for s in state.ladder] == [LadderClock.REACTION, LadderClock.RESOLUTION]


def test_the_running_periods_breach_is_its_next_change() -> None:
    state = state_of([customer(msk(14, 11))], now=msk(14, 11, 30), tags=("По факту",))
    # By 11:30 nothing else is due sooner: the reaction is settled, the resolution due later,
    # and no next-response step of this ladder fires before the breach.
    assert state.next_change_at == msk(15, 11, 0, 1)


# ---------------------------------------------------------------------------
# The ladder


def test_reaction_steps_fire_at_their_share_and_after_the_breach() -> None:
    facts = lead("Приоритет", created=MONDAY)
    early = compute(facts, now=msk(13, 10, 30), policy=POLICY)
    share, breach, later = steps_of(early, LadderClock.REACTION)
    assert (share.step.trigger, breach.step.trigger, later.step.trigger) == (
        "80%",
        "breach",
        "breach+2h",
    )
    # 80 % of 1 h is 48 min; the deadline 11:00; two business hours later, 13:00.
    assert (share.at, breach.at, later.at) == (msk(13, 10, 48), msk(13, 11), msk(13, 13))
    assert not any(step.fired for step in (share, breach, later))
    assert early.next_change_at == msk(13, 10, 48)

    at_share = compute(facts, now=msk(13, 10, 48), policy=POLICY)
    assert [s.owed for s in steps_of(at_share, LadderClock.REACTION)] == [True, False, False]
    assert at_share.next_change_at == msk(13, 11, 0, 1)  # the breach: strictly after 11:00

    late = compute(facts, now=msk(13, 13, 0, 1), policy=POLICY)
    assert [s.owed for s in steps_of(late, LadderClock.REACTION)] == [True, True, True]


def test_a_step_after_the_breach_waits_on_hold() -> None:
    facts = lead("Приоритет", created=MONDAY, status=WAIT)
    events = [moved(msk(13, 11, 30), FIRST, WAIT, by=ROBOT)]
    state = compute(facts, events, now=msk(14, 12), policy=POLICY)
    *_, later = steps_of(state, LadderClock.REACTION)
    assert later.at is None  # 30 min past the deadline, then on hold: not reached yet
    assert not later.fired
    assert "paused with its clock" in "\n".join(state.trace)


def test_a_reaction_stops_the_steps_it_came_before() -> None:
    facts = lead("Приоритет", created=MONDAY)
    state = compute(facts, [act(msk(13, 10, 50))], now=msk(14, 12), policy=POLICY)
    share, breach, later = steps_of(state, LadderClock.REACTION)
    assert share.fired  # at 10:48
    assert not share.owed  # answered since
    assert not breach.fired
    assert not later.fired


def test_next_response_steps_fire_once_per_period() -> None:
    events = [
        customer(msk(14, 10)),
        act(msk(14, 13, 30)),  # answered after both steps
        customer(msk(14, 15)),
    ]
    state = state_of(events, now=msk(15, 11, 0, 1))
    steps = steps_of(state, LadderClock.NEXT_RESPONSE)
    assert [(s.period, s.step.trigger, s.at, s.fired, s.owed) for s in steps] == [
        (msk(14, 10), "breach", msk(14, 12), True, False),
        (msk(14, 10), "breach+1h", msk(14, 13), True, False),
        (msk(14, 15), "breach", msk(14, 17), True, True),
        (msk(14, 15), "breach+1h", msk(14, 18), True, True),
    ]
    assert all(s.since == s.period for s in steps)


def test_the_number_of_breached_periods_is_the_number_of_fired_breach_steps() -> None:
    events = [
        customer(msk(14, 10)),
        act(msk(14, 12, 30)),
        customer(msk(14, 15)),
        act(msk(14, 15, 20)),
        customer(msk(14, 17)),
    ]
    state = state_of(events, now=msk(15, 12))
    breached = sum(p.clock.breached for p in state.next_response.periods)
    fired = [s for s in steps_of(state, LadderClock.NEXT_RESPONSE) if s.step.at_breach and s.fired]
    assert breached == len(fired) == 2


def test_an_agreed_date_gets_its_breach_steps_and_no_share() -> None:
    addition = "".join(
        f'[[escalation.resolution]]\nat = "{at}"\nto = 9100003\ntext = "Решение: {{due}}"\n'
        for at in ("90%", "breach")
    )
    policy = load_policy(PRESET.read_text(encoding="utf-8") + addition)
    facts = dataclasses.replace(
        lead("Приоритет", "Доработка", created=MONDAY), agreed_due=msk(15, 18)
    )
    state = compute(facts, [act(ANSWERED)], now=msk(16, 10), policy=policy)
    steps = steps_of(state, LadderClock.RESOLUTION)
    assert [(s.step.trigger, s.at, s.owed) for s in steps] == [("breach", msk(15, 18), True)]


def test_the_explain_dict_lists_periods_and_steps() -> None:
    state = state_of([customer(msk(14, 11))], now=msk(14, 13, 0, 1))
    shown = state_as_dict(state)
    assert shown["next_response_due"] == "2025-10-14T13:00:00+03:00"
    assert shown["next_response_breached"] is True
    assert shown["waiting_periods"] == [
        {
            "started_at": "2025-10-14T11:00:00+03:00",
            "due": "2025-10-14T13:00:00+03:00",
            "ended_at": None,
            "ended_by": None,
            "breached": True,
        }
    ]
    ladder = shown["ladder"]
    assert isinstance(ladder, list)
    assert {
        "clock": "next_response",
        "period": "2025-10-14T11:00:00+03:00",
        "step": "breach",
        "to": "responsible",
        "at": "2025-10-14T13:00:00+03:00",
        "fired": True,
        "owed": True,
    } in ladder


@pytest.mark.parametrize("kind", ["incoming_chat_message", "incoming_mail", "incoming_call"])
def test_every_customer_channel_opens_a_period(kind: str) -> None:
    state = state_of([customer(msk(14, 11), kind)], now=msk(14, 12))
    assert spans(state) == [(msk(14, 11), msk(14, 13), None, False)]


def test_lead_facts_carry_no_next_response_input() -> None:
    # The state depends on the lead's tags and history only: the same facts, no messages,
    # no periods (the fields are written empty).
    facts: LeadFacts = lead("Приоритет", created=MONDAY)
    state = compute(facts, [act(ANSWERED)], now=msk(14, 12), policy=POLICY)
    assert state.next_response.periods == ()
    assert state.next_response.due is None
    assert not state.next_response.breached
