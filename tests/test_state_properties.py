"""Properties of the SLA state over random histories (hypothesis).

Histories: a lead registered at a random minute of autumn 2025, moved between running,
hold and done stages by people or robots, with random chat messages, calls, notes and
customer messages. The next-response properties run under the example preset that turns
next response and a ladder on (``sla/presets/crmbp_next_response.toml``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from sla.policy import LadderClock, Policy, default_policy, load_policy
from sla.state import LeadEvent, LeadFacts, SlaState, SlaStatus, StageRoles, compute_sla

MSK = ZoneInfo("Europe/Moscow")
PIPELINE = 7000001
FIRST, WORK, WAIT, CHECK = 70000011, 70000012, 70000013, 70000014
STAGES = (FIRST, WORK, WORK, WAIT, CHECK, 142, 143)
ROLES = StageRoles(
    pipeline_id=PIPELINE,
    first_status_id=FIRST,
    hold=frozenset({WAIT}),
    done=frozenset({CHECK}),
    acceptance=frozenset({CHECK}),
)
START = datetime(2025, 9, 1, tzinfo=MSK)
TARIFF_SPELLINGS = ("Приоритет", "приоритет", " ПРИОРИТЕТ ", "По факту", "по  факту", "ПО ФАКТУ ")
OTHER_TAGS = ("Доработка", "Нестандартное", "Типовое", "авария", "VIP", "Сайт", "")
ACTIONS = (
    "outgoing_chat_message",
    "incoming_chat_message",
    "incoming_chat_message",
    "incoming_mail",
    "incoming_call",
    "outgoing_call",
    "common_note_added",
    "task_added",
)
NEXT_RESPONSE = load_policy(
    (
        Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
    ).read_text(encoding="utf-8")
)


@dataclass(frozen=True)
class Case:
    facts: LeadFacts
    events: tuple[LeadEvent, ...]
    last_event: datetime


@st.composite
def cases(draw: st.DrawFn, *, tariff_tag: bool | None = None) -> Case:
    created = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 90)))
    with_tariff = draw(st.booleans()) if tariff_tag is None else tariff_tag
    tags = list(draw(st.lists(st.sampled_from(OTHER_TAGS), max_size=3)))
    if with_tariff:
        tags.insert(draw(st.integers(0, len(tags))), draw(st.sampled_from(TARIFF_SPELLINGS)))
    events: list[LeadEvent] = []
    moment, status = created, FIRST
    for index in range(draw(st.integers(0, 12))):
        moment += timedelta(minutes=draw(st.integers(0, 60 * 24 * 4)))
        by = draw(st.sampled_from((0, 0, 9100001)))
        if draw(st.booleans()):
            after = draw(st.sampled_from(STAGES))
            events.append(
                LeadEvent(
                    event_id=f"e{index:02d}",
                    type="lead_status_changed",
                    at=moment,
                    created_by=by,
                    status_before=(PIPELINE, status),
                    status_after=(PIPELINE, after),
                )
            )
            status = after
        else:
            kind = draw(st.sampled_from(ACTIONS))
            events.append(LeadEvent(f"e{index:02d}", kind, moment, by))
    agreed = None
    if draw(st.booleans()):
        agreed = created + timedelta(minutes=draw(st.integers(0, 60 * 24 * 20)))
    facts = LeadFacts(
        lead_id=1,
        pipeline_id=PIPELINE,
        status_id=status,
        created_at=created,
        tags=tuple(tags),
        class_value=None,
        agreed_due=agreed,
        responsible_user_id=9100001,
    )
    return Case(facts, tuple(events), moment)


def compute(case: Case, now: datetime, policy: Policy | None = None) -> SlaState:
    return compute_sla(case.facts, case.events, policy or default_policy(), ROLES, now)


def observable(state: SlaState) -> tuple[object, ...]:
    """Everything the worker writes or acts on."""
    return (
        state.next_response.due,
        state.next_response.breached,
        frozenset((step.step, step.period) for step in state.ladder if step.owed),
        state.reaction.due,
        state.reaction.finished_at,
        state.reaction.breached,
        state.resolution.due,
        state.resolution.finished_at,
        state.resolution.breached,
        state.status,
        state.remaining_minutes,
        state.reaction_task_due,
        state.resolution_task_due,
        state.accept_now,
    )


@settings(max_examples=300, deadline=None)
@given(case=cases(), offsets=st.tuples(st.integers(0, 60 * 24 * 40), st.integers(0, 60 * 24 * 40)))
def test_due_does_not_depend_on_now_while_nothing_happens(
    case: Case, offsets: tuple[int, int]
) -> None:
    early, late = (case.last_event + timedelta(minutes=minutes) for minutes in sorted(offsets))
    first, second = compute(case, early), compute(case, late)
    assert second.reaction.due == first.reaction.due
    assert second.resolution.due == first.resolution.due
    assert second.registered_at == first.registered_at


POLICIES = st.sampled_from([None, NEXT_RESPONSE])


@settings(max_examples=300, deadline=None)
@given(
    case=cases(),
    offset=st.integers(0, 60 * 24 * 30),
    share=st.floats(min_value=0, max_value=1, exclude_max=True),
    policy=POLICIES,
)
def test_nothing_changes_before_next_change_at(
    case: Case, offset: int, share: float, policy: Policy | None
) -> None:
    now = case.last_event + timedelta(minutes=offset)
    state = compute(case, now, policy)
    horizon = state.next_change_at or now + timedelta(days=60)
    assert horizon > now
    seconds = int((horizon - now).total_seconds() * share)
    later = compute(case, now + timedelta(seconds=seconds), policy)
    assert observable(later) == observable(state)


@settings(max_examples=300, deadline=None)
@given(case=cases(), offset=st.integers(0, 60 * 24 * 30), policy=POLICIES)
def test_the_state_does_change_at_next_change_at(
    case: Case, offset: int, policy: Policy | None
) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset), policy)
    if state.next_change_at is not None:
        assert observable(compute(case, state.next_change_at, policy)) != observable(state)


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_a_tariff_tag_never_gives_no_tariff(case: Case, offset: int) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset))
    assert state.status is not SlaStatus.NO_TARIFF
    assert state.tariff in {"Приоритет", "По факту"}


@settings(max_examples=300, deadline=None)
@given(case=cases(), offset=st.integers(0, 60 * 24 * 30))
def test_clock_bookkeeping_is_consistent(case: Case, offset: int) -> None:
    now = case.last_event + timedelta(minutes=offset)
    state = compute(case, now)
    for clock in (state.reaction, state.resolution):
        horizon = clock.finished_at or now
        assert clock.used <= max(horizon - state.registered_at, timedelta(0))
        if clock.target is not None:
            assert clock.remaining == max(clock.target - clock.used, timedelta(0))
            if clock.used > clock.target:
                assert clock.breached
        if clock.breached:
            assert clock.due is not None
            assert horizon > clock.due
    breached = state.reaction.breached or state.resolution.breached
    assert (state.status in {SlaStatus.BREACHED, SlaStatus.MET_LATE}) is breached
    if state.remaining_minutes is not None:
        assert state.status in {SlaStatus.PAUSED, SlaStatus.BREACHED}


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_on_hold_the_waiting_clock_shows_its_minutes(case: Case, offset: int) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset))
    if case.facts.status_id != WAIT:
        assert state.remaining_minutes is None
        return
    reaction, resolution = state.reaction, state.resolution
    settled = reaction.finished_at is not None or reaction.breached
    waiting = resolution if settled else reaction
    if waiting.target is None or waiting.breached:
        assert state.remaining_minutes is None
    else:
        assert waiting.due is None
        assert waiting.remaining is not None
        assert state.remaining_minutes == math.ceil(waiting.remaining.total_seconds() / 60)


@settings(max_examples=300, deadline=None)
@given(case=cases(), offset=st.integers(0, 60 * 24 * 30))
def test_the_trace_changes_nothing_but_the_trace(case: Case, offset: int) -> None:
    now = case.last_event + timedelta(minutes=offset)
    plain = compute(case, now)
    explained = compute_sla(case.facts, case.events, default_policy(), ROLES, now, explain=True)
    assert plain.trace == ()
    assert explained.trace
    assert replace(explained, trace=()) == plain


# --- next response (spec §4.1) -------------------------------------------------------------


def person_replies(case: Case) -> list[datetime]:
    """The instants of a person's answers of a reaction type (the preset has no robot
    replies)."""
    types = NEXT_RESPONSE.reaction_event_types
    return sorted(e.at for e in case.events if e.type in types and e.created_by != 0)


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_waiting_periods_never_overlap_and_follow_the_reaction(case: Case, offset: int) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset), NEXT_RESPONSE)
    periods = state.next_response.periods
    if periods:
        assert state.reaction.finished_at is not None
        assert periods[0].started_at > state.reaction.finished_at
    for earlier, later in itertools.pairwise(periods):
        assert earlier.clock.finished_at is not None
        assert earlier.clock.finished_at <= later.started_at
    assert all(p.clock.finished_at is not None for p in periods[:-1])


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_each_period_ends_at_the_first_persons_answer_after_its_start(
    case: Case, offset: int
) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset), NEXT_RESPONSE)
    replies = person_replies(case)
    for period in state.next_response.periods:
        end = period.clock.finished_at
        between = [at for at in replies if period.started_at < at and (end is None or at < end)]
        assert not between, (period, between)
        if period.ended_by == "reply":
            assert end in replies
        elif period.ended_by == "done":
            assert end is not None
        else:
            assert end is None


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_breached_periods_are_as_many_as_fired_breach_steps(case: Case, offset: int) -> None:
    state = compute(case, case.last_event + timedelta(minutes=offset), NEXT_RESPONSE)
    breached = [p.started_at for p in state.next_response.periods if p.clock.breached]
    fired = [
        step.period
        for step in state.ladder
        if step.step.clock is LadderClock.NEXT_RESPONSE and step.step.at_breach and step.fired
    ]
    assert fired == breached
    owed = [p for p in state.ladder if p.owed]
    assert all(step.fired for step in owed)
    assert state.next_response.breached is bool(breached)


@settings(max_examples=300, deadline=None)
@given(case=cases(tariff_tag=True), offset=st.integers(0, 60 * 24 * 30))
def test_next_response_changes_nothing_of_the_other_clocks(case: Case, offset: int) -> None:
    now = case.last_event + timedelta(minutes=offset)
    plain, with_periods = compute(case, now), compute(case, now, NEXT_RESPONSE)
    assert (with_periods.reaction, with_periods.resolution) == (plain.reaction, plain.resolution)
    assert with_periods.status is plain.status
    assert with_periods.remaining_minutes == plain.remaining_minutes
