"""A lead's SLA state on worked cases: the CRMBP table row by row, then each rule of spec §4.

All cases run in October 2025, Moscow time: 10–26 October are ordinary weeks (checked
below), so business hours can be counted by hand.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sla.calendar import DayKind, ProductionCalendar
from sla.policy import Policy, RequestClass, default_policy, load_policy
from sla.state import (
    LeadEvent,
    LeadFacts,
    SlaState,
    SlaStatus,
    StageRoles,
    compute_sla,
    state_as_dict,
)

MSK = ZoneInfo("Europe/Moscow")
PIPELINE = 7000001
OTHER_PIPELINE = 7000099
FIRST, WORK, WAIT, CHECK = 70000011, 70000012, 70000013, 70000014
WON, LOST = 142, 143
AGENT, ROBOT = 9100001, 0
ROLES = StageRoles(
    pipeline_id=PIPELINE,
    first_status_id=FIRST,
    hold=frozenset({WAIT}),
    done=frozenset({CHECK}),
    acceptance=frozenset({CHECK}),
)
PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"
_ids = itertools.count(1)


def msk(day: int, hour: int = 0, minute: int = 0, second: int = 0, *, month: int = 10) -> datetime:
    return datetime(2025, month, day, hour, minute, second, tzinfo=MSK)


# Friday 10 October 2025, 17:30: half an hour before closing, a weekend ahead.
FRIDAY_EVENING = msk(10, 17, 30)
MONDAY = msk(13, 10)


def lead(
    *tags: str,
    created: datetime = FRIDAY_EVENING,
    status: int = FIRST,
    pipeline: int = PIPELINE,
    class_value: str | None = None,
    agreed: datetime | None = None,
) -> LeadFacts:
    return LeadFacts(
        lead_id=31000001,
        pipeline_id=pipeline,
        status_id=status,
        created_at=created,
        tags=tags,
        class_value=class_value,
        agreed_due=agreed,
        responsible_user_id=AGENT,
    )


def act(at: datetime, kind: str = "outgoing_chat_message", *, by: int = AGENT) -> LeadEvent:
    return LeadEvent(event_id=f"e{next(_ids):04d}", type=kind, at=at, created_by=by)


def moved(
    at: datetime,
    before: int,
    after: int,
    *,
    by: int = AGENT,
    from_pipeline: int = PIPELINE,
    to_pipeline: int = PIPELINE,
) -> LeadEvent:
    return LeadEvent(
        event_id=f"e{next(_ids):04d}",
        type="lead_status_changed",
        at=at,
        created_by=by,
        status_before=(from_pipeline, before),
        status_after=(to_pipeline, after),
    )


def compute(
    facts: LeadFacts,
    events: Sequence[LeadEvent] = (),
    *,
    now: datetime,
    policy: Policy | None = None,
    roles: StageRoles = ROLES,
) -> SlaState:
    return compute_sla(facts, events, policy or default_policy(), roles, now, explain=True)


def test_the_worked_weeks_have_no_holidays() -> None:
    production = ProductionCalendar()
    for day in range(10, 27):
        expected = DayKind.NON_WORKING if date(2025, 10, day).weekday() >= 5 else DayKind.WORKDAY
        assert production.day_kind(date(2025, 10, day)) is expected


# ---------------------------------------------------------------------------
# The CRMBP table (spec §2), registered Friday 17:30


def test_crmbp_priority_typical_reaction_due_is_one_hour_counting_saturday_12_to_18() -> None:
    state = compute(lead("Приоритет"), now=FRIDAY_EVENING)
    assert (state.tariff, state.request_class) == ("Приоритет", RequestClass.TYPICAL)
    # 17:30–18:00 on Friday, then Saturday opens at 12:00 for typical requests.
    assert state.reaction.due == msk(11, 12, 30)


def test_crmbp_priority_typical_resolution_due_is_twelve_hours_over_the_weekend() -> None:
    state = compute(lead("Приоритет"), now=FRIDAY_EVENING)
    # Friday 0.5 h + Saturday 6 h + Sunday 5.5 h.
    assert state.resolution.due == msk(12, 17, 30)
    assert state.resolution.target == timedelta(hours=12)


def test_crmbp_priority_non_standard_reaction_due_is_three_workday_hours() -> None:
    state = compute(lead("Приоритет", "Доработка"), now=FRIDAY_EVENING)
    assert state.request_class is RequestClass.NON_STANDARD
    # Friday 0.5 h, the weekend is closed for non-standard requests, Monday 2.5 h.
    assert state.reaction.due == msk(13, 12, 30)


def test_crmbp_priority_non_standard_resolution_by_agreement_has_no_due_without_a_date() -> None:
    state = compute(lead("Приоритет", "Нестандартное"), now=FRIDAY_EVENING)
    assert state.resolution.target is None
    assert state.resolution.due is None
    assert not state.resolution.breached


def test_crmbp_priority_non_standard_resolution_due_is_the_agreed_date() -> None:
    agreed = msk(17, 18)
    state = compute(lead("Приоритет", "Доработка", agreed=agreed), now=FRIDAY_EVENING)
    assert state.resolution.due == agreed


def test_crmbp_po_faktu_typical_reaction_due_is_24_workday_hours() -> None:
    state = compute(lead("По факту"), now=FRIDAY_EVENING)
    # Friday 0.5 h + Monday 8 + Tuesday 8 + Wednesday 7.5.
    assert state.reaction.due == msk(15, 17, 30)


def test_crmbp_po_faktu_typical_resolution_due_is_72_workday_hours() -> None:
    state = compute(lead("По факту"), now=FRIDAY_EVENING)
    # Friday 0.5 h + eight full workdays (13–17, 20–22 October) + Thursday 7.5 h.
    assert state.resolution.due == msk(23, 17, 30)


def test_crmbp_po_faktu_non_standard_reaction_due_is_24_workday_hours() -> None:
    state = compute(lead("По факту", "Доработка"), now=FRIDAY_EVENING)
    assert state.request_class is RequestClass.NON_STANDARD
    assert state.reaction.due == msk(15, 17, 30)


def test_crmbp_po_faktu_non_standard_resolution_by_agreement() -> None:
    without = compute(lead("По факту", "Доработка"), now=FRIDAY_EVENING)
    assert without.resolution.due is None
    agreed = msk(24, 12)
    with_date = compute(lead("По факту", "Доработка", agreed=agreed), now=FRIDAY_EVENING)
    assert with_date.resolution.due == agreed


def test_crmbp_an_emergency_tag_changes_nothing() -> None:
    # CRMBP has no emergency rule (spec §2): «авария» is one more tag.
    for now in (FRIDAY_EVENING, msk(10, 19), msk(11, 12, 45)):
        plain = compute(lead("Приоритет"), now=now)
        tagged = compute(lead("Приоритет", "Авария"), now=now)
        assert not tagged.emergency
        assert state_as_dict(tagged) == state_as_dict(plain)
    # Half an hour on Friday, half an hour from noon on Saturday: not round the clock.
    assert tagged.reaction.due == msk(11, 12, 30)
    assert tagged.reaction.breached


def prime_gate() -> Policy:
    return load_policy((PRESETS / "prime_gate.toml").read_text(encoding="utf-8"))


SATURDAY_MORNING = msk(11, 10)


def test_prime_gate_an_emergency_gets_a_reaction_on_a_day_off() -> None:
    facts = lead("Дата Дривен", "Авария", created=SATURDAY_MORNING)
    state = compute(facts, now=SATURDAY_MORNING, policy=prime_gate())
    assert state.emergency
    assert state.reaction.due == msk(11, 12)  # 2 h on the emergency calendar, open 09–18
    # The resolution stays on the workday calendar: 18 h from Monday 09:00.
    assert state.resolution.due == msk(14, 18)
    late = compute(facts, now=msk(11, 12, 0, 1), policy=prime_gate())
    assert late.reaction.breached
    assert late.reaction_task_due


def test_prime_gate_other_requests_get_no_reaction_on_a_day_off() -> None:
    facts = lead("Дата Дривен", created=SATURDAY_MORNING)
    state = compute(facts, now=SATURDAY_MORNING, policy=prime_gate())
    assert not state.emergency
    assert state.reaction.due == msk(13, 11)  # 2 h from Monday 09:00
    sunday = compute(facts, now=msk(12, 17), policy=prime_gate())
    assert sunday.reaction.used == timedelta(0)
    assert sunday.status is SlaStatus.ON_TIME


# ---------------------------------------------------------------------------
# Worked cases over holidays and closing times, through the built-in policy: the
# calendar tests check the arithmetic, these check that the CRMBP policy picks the
# calendar and target that give it.


def test_crmbp_priority_reaction_from_friday_evening_lands_on_the_working_saturday() -> None:
    # Saturday 1 November 2025 is a transferred working day: workday hours 10–18, not 12–18.
    created = datetime(2025, 10, 31, 17, 30, tzinfo=MSK)
    state = compute(lead("Приоритет", created=created), now=created)
    assert state.reaction.due == datetime(2025, 11, 1, 10, 30, tzinfo=MSK)


def test_crmbp_po_faktu_reaction_over_the_november_holidays() -> None:
    # Thu 30 Oct 15:00: Thu 3 h + Fri 8 + working Sat 1 Nov 8; 2–4 Nov off; Wed 5 h.
    created = datetime(2025, 10, 30, 15, tzinfo=MSK)
    state = compute(lead("По факту", created=created), now=created)
    assert state.reaction.due == datetime(2025, 11, 5, 15, tzinfo=MSK)


def test_crmbp_po_faktu_reaction_over_the_new_year_holidays() -> None:
    # 19:00 is after closing; 31 December to 11 January are off; 12–14 January give 24 h.
    created = datetime(2025, 12, 30, 19, tzinfo=MSK)
    state = compute(lead("По факту", created=created), now=created)
    assert state.reaction.due == datetime(2026, 1, 14, 18, tzinfo=MSK)


def test_crmbp_priority_reaction_on_a_holiday_runs_in_days_off_hours() -> None:
    # Sunday 4 January 2026, a holiday: open 12–18, so 11:00 waits for noon.
    created = datetime(2026, 1, 4, 11, tzinfo=MSK)
    state = compute(lead("Приоритет", created=created), now=created)
    assert state.reaction.due == datetime(2026, 1, 4, 13, tzinfo=MSK)


def test_crmbp_deadline_on_closing_time_stays_at_closing_time() -> None:
    priority = compute(lead("Приоритет", created=msk(15, 17)), now=msk(15, 17))
    assert priority.reaction.due == msk(15, 18)
    # 24 workday hours from Monday 10:00 are three full days: Wednesday 18:00, not Thursday 10:00.
    po_faktu = compute(lead("По факту", created=MONDAY), now=MONDAY)
    assert po_faktu.reaction.due == msk(15, 18)


# ---------------------------------------------------------------------------
# Tags


def test_tariff_tags_match_ignoring_case_and_spaces() -> None:
    assert compute(lead("  приоритет "), now=FRIDAY_EVENING).tariff == "Приоритет"
    assert compute(lead("ПО  ФАКТУ"), now=FRIDAY_EVENING).tariff == "По факту"


def test_conflicting_tariff_tags_first_in_policy_order_wins_and_is_reported() -> None:
    state = compute(lead("По факту", "Приоритет"), now=FRIDAY_EVENING)
    assert state.tariff == "Приоритет"
    assert any("several tariff tags" in problem for problem in state.problems)
    assert any("«По факту»" in problem for problem in state.problems)


def test_no_tariff_tag_gives_no_tariff_and_no_deadlines() -> None:
    reacted = msk(13, 11)
    state = compute(lead("VIP"), [act(reacted)], now=msk(20, 12))
    assert state.tariff is None
    assert state.status is SlaStatus.NO_TARIFF
    assert state.reaction.due is None
    assert state.resolution.due is None
    assert state.reaction.finished_at == reacted
    assert state.next_change_at is None
    assert not state.reaction_task_due


def test_default_tariff_applies_to_leads_without_a_tariff_tag() -> None:
    text = (PRESETS / "crmbp.toml").read_text(encoding="utf-8")
    policy = load_policy(
        text.replace('# default_tariff = "По факту"', 'default_tariff = "По факту"')
    )
    state = compute(lead("VIP"), now=FRIDAY_EVENING, policy=policy)
    assert state.tariff == "По факту"
    assert state.reaction.due == msk(15, 17, 30)


def test_class_from_the_select_field_wins_over_tags() -> None:
    state = compute(lead("Приоритет", class_value="Нестандартное"), now=FRIDAY_EVENING)
    assert state.request_class is RequestClass.NON_STANDARD
    typical = compute(lead("Приоритет", "Доработка", class_value="typical"), now=FRIDAY_EVENING)
    assert typical.request_class is RequestClass.TYPICAL


def test_unknown_class_field_value_is_reported_and_tags_decide() -> None:
    state = compute(lead("Приоритет", "Доработка", class_value="Срочно"), now=FRIDAY_EVENING)
    assert state.request_class is RequestClass.NON_STANDARD
    assert any("«Срочно»" in problem for problem in state.problems)


def test_tags_of_both_classes_non_standard_wins_and_is_reported() -> None:
    state = compute(lead("Приоритет", "Типовое", "Доработка"), now=FRIDAY_EVENING)
    assert state.request_class is RequestClass.NON_STANDARD
    assert any("both classes" in problem for problem in state.problems)


# ---------------------------------------------------------------------------
# Registration


def test_registration_is_the_move_into_the_support_pipeline() -> None:
    created = msk(13, 9)
    entry = moved(msk(13, 14), 5, FIRST, by=ROBOT, from_pipeline=OTHER_PIPELINE)
    before = act(msk(13, 12))  # still in the sales pipeline: not a reaction to this request
    state = compute(lead("Приоритет", created=created), [before, entry], now=msk(13, 14, 10))
    assert state.registered_at == msk(13, 14)
    assert state.reaction.due == msk(13, 15)
    assert state.reaction.finished_at is None


def test_registration_is_the_latest_entry_when_the_lead_came_back() -> None:
    events = [
        moved(msk(13, 11), FIRST, 5, to_pipeline=OTHER_PIPELINE),
        moved(msk(14, 11), 5, FIRST, from_pipeline=OTHER_PIPELINE),
    ]
    state = compute(lead("Приоритет", created=msk(13, 10)), events, now=msk(14, 11))
    assert state.registered_at == msk(14, 11)
    assert state.reaction.due == msk(14, 12)


def test_created_in_the_future_is_reported_and_the_clocks_have_not_started() -> None:
    now = msk(13, 11)
    state = compute(lead("Приоритет", created=msk(13, 12)), now=now)
    assert any("after now" in problem for problem in state.problems)
    assert state.status is SlaStatus.ON_TIME
    assert state.reaction.used == timedelta(0)
    assert state.reaction.due == msk(13, 13)
    assert state.next_change_at == msk(13, 12, 48)


# ---------------------------------------------------------------------------
# Reaction


def test_a_robot_message_does_not_count_as_the_reaction() -> None:
    events = [act(FRIDAY_EVENING + timedelta(seconds=4), by=ROBOT), act(msk(11, 12, 20))]
    state = compute(lead("Приоритет"), events, now=msk(11, 13))
    assert state.reaction.finished_at == msk(11, 12, 20)
    assert not state.reaction.breached
    assert any("by a robot" in line for line in state.trace)


ROBOT_REPLIES = [
    # (the robot's event, counts with robot replies on)
    pytest.param("outgoing_chat_message", True, id="chat-message"),
    pytest.param("outgoing_mail", True, id="e-mail"),
    pytest.param("outgoing_call", False, id="call"),
    pytest.param("common_note_added", False, id="note"),
]


@pytest.mark.parametrize(("event_type", "reacts"), ROBOT_REPLIES)
def test_with_robot_replies_on_only_a_robots_outgoing_message_reacts(
    event_type: str, reacts: bool
) -> None:
    events = [act(msk(13, 10, 20), event_type, by=ROBOT)]
    facts = lead("Приоритет", created=msk(13, 10))
    robot_replies = dataclasses.replace(default_policy(), robot_replies=True)

    off = compute(facts, events, now=msk(13, 11))
    on = compute(facts, events, now=msk(13, 11), policy=robot_replies)

    assert off.reaction.finished_at is None
    assert on.reaction.finished_at == (msk(13, 10, 20) if reacts else None)


def test_only_robots_means_no_reaction_and_a_breach_with_a_task() -> None:
    events = [
        act(msk(13, 9, 15, 3), by=ROBOT),
        moved(msk(13, 9, 16), FIRST, WORK, by=ROBOT),
        act(msk(13, 9, 16), "entity_responsible_changed", by=ROBOT),
    ]
    state = compute(lead("По факту", created=msk(13, 9, 15), status=WORK), events, now=msk(16, 11))
    assert state.reaction.finished_at is None
    assert state.reaction.due == msk(15, 18)
    assert state.reaction.breached
    assert state.status is SlaStatus.BREACHED
    assert state.reaction_task_due
    assert not state.resolution_task_due


@pytest.mark.parametrize(
    "kind", ["outgoing_chat_message", "outgoing_call", "outgoing_mail", "common_note_added"]
)
def test_each_default_reaction_type_by_a_person_counts(kind: str) -> None:
    state = compute(lead("Приоритет"), [act(msk(11, 12), kind)], now=msk(11, 13))
    assert state.reaction.finished_at == msk(11, 12)


@pytest.mark.parametrize("kind", ["incoming_chat_message", "incoming_call", "task_added"])
def test_other_event_types_do_not_count(kind: str) -> None:
    state = compute(lead("Приоритет"), [act(msk(11, 12), kind)], now=msk(11, 13))
    assert state.reaction.finished_at is None


def test_a_person_moving_the_lead_out_of_the_first_stage_reacts() -> None:
    events = [moved(msk(13, 10, 5), FIRST, WORK, by=ROBOT)]
    robot = compute(lead("Приоритет", created=MONDAY, status=WORK), events, now=msk(13, 10, 30))
    assert robot.reaction.finished_at is None
    person = [moved(msk(13, 10, 5), FIRST, WORK)]
    state = compute(lead("Приоритет", created=MONDAY, status=WORK), person, now=msk(13, 10, 30))
    assert state.reaction.finished_at == msk(13, 10, 5)


def test_a_person_closing_the_request_reacts() -> None:
    events = [moved(msk(13, 10), FIRST, WORK, by=ROBOT), moved(msk(13, 10, 40), WORK, WON)]
    state = compute(lead("Приоритет", created=MONDAY, status=WON), events, now=msk(13, 12))
    assert state.reaction.finished_at == msk(13, 10, 40)
    assert state.status is SlaStatus.MET


def test_a_robot_closing_the_request_stops_the_reaction_clock_without_a_task() -> None:
    events = [moved(msk(13, 10, 30), FIRST, LOST, by=ROBOT)]
    state = compute(lead("Приоритет", created=MONDAY, status=LOST), events, now=msk(14, 12))
    assert state.reaction.finished_at is None
    assert state.reaction.used == timedelta(minutes=30)
    assert not state.reaction.breached
    assert not state.reaction_task_due
    assert state.status is SlaStatus.MET


def test_a_reaction_exactly_at_due_is_on_time() -> None:
    state = compute(lead("Приоритет", created=MONDAY), [act(msk(13, 11))], now=msk(13, 12))
    assert state.reaction.due == msk(13, 11)
    assert not state.reaction.breached


def test_a_deadline_at_closing_time_is_breached_right_after_closing() -> None:
    # 24 workday hours from Monday 10:00 end at Wednesday 18:00 sharp.
    facts = lead("По факту", created=MONDAY)
    assert not compute(facts, now=msk(15, 18)).reaction.breached
    late = compute(facts, now=msk(15, 18, 0, 1))
    assert late.reaction.breached
    assert late.reaction.used == timedelta(hours=24)
    answered_at_night = compute(facts, [act(msk(15, 18, 30))], now=msk(16, 11))
    assert answered_at_night.reaction.breached


# ---------------------------------------------------------------------------
# Hold, remaining minutes


def _on_hold_po_faktu() -> list[LeadEvent]:
    return [
        act(msk(13, 10, 30), "common_note_added"),
        moved(msk(13, 10, 31), FIRST, WORK),
        moved(msk(13, 12), WORK, WAIT),
    ]


def test_hold_pauses_the_clock_and_shows_the_remaining_minutes() -> None:
    facts = lead("По факту", created=MONDAY, status=WAIT)
    state = compute(facts, _on_hold_po_faktu(), now=msk(13, 15))
    assert state.status is SlaStatus.PAUSED
    assert state.resolution.due is None
    assert not state.resolution.running
    assert state.resolution.used == timedelta(hours=2)
    assert state.remaining_minutes == 70 * 60
    assert state.next_change_at is None


def test_remaining_minutes_stay_constant_while_on_hold() -> None:
    facts = lead("По факту", created=MONDAY, status=WAIT)
    first = compute(facts, _on_hold_po_faktu(), now=msk(13, 15))
    later = compute(facts, _on_hold_po_faktu(), now=msk(20, 15))
    assert later.remaining_minutes == first.remaining_minutes
    assert state_as_dict(later) == state_as_dict(first)


def test_the_due_is_computed_again_when_the_clock_runs_on() -> None:
    events = [*_on_hold_po_faktu(), moved(msk(14, 14), WAIT, WORK, by=ROBOT)]
    state = compute(lead("По факту", created=MONDAY, status=WORK), events, now=msk(14, 15))
    # 2 h used before the hold; 70 h left from Tuesday 14:00: Tue 4, then eight full
    # workdays (15–17, 20–24 October) and 2 h on Monday 27 October.
    assert state.resolution.due == msk(27, 12)
    assert state.remaining_minutes is None
    assert state.status is SlaStatus.ON_TIME


def test_remaining_minutes_round_up_and_belong_to_the_pending_reaction() -> None:
    events = [moved(msk(13, 10, 0, 30), FIRST, WAIT, by=ROBOT)]
    state = compute(lead("По факту", created=MONDAY, status=WAIT), events, now=msk(13, 12))
    assert state.reaction.used == timedelta(seconds=30)
    assert state.remaining_minutes == 24 * 60  # 23 h 59 min 30 s, rounded up


def test_hold_does_not_hide_a_breach() -> None:
    events = [moved(msk(13, 12), FIRST, WAIT, by=ROBOT)]
    state = compute(lead("Приоритет", created=MONDAY, status=WAIT), events, now=msk(13, 13))
    assert state.reaction.breached
    assert state.reaction.due == msk(13, 11)
    assert state.status is SlaStatus.BREACHED


def test_on_hold_after_a_missed_reaction_the_resolution_minutes_show() -> None:
    # No reaction by the 11:00 due; on hold from 12:00. The reaction is settled (breached),
    # so the card shows what is left of the 12 h resolution: 10 h after 10:00–12:00.
    events = [moved(msk(13, 12), FIRST, WAIT, by=ROBOT)]
    state = compute(lead("Приоритет", created=MONDAY, status=WAIT), events, now=msk(13, 13))
    assert state.resolution.due is None
    assert state.remaining_minutes == 10 * 60
    later = compute(lead("Приоритет", created=MONDAY, status=WAIT), events, now=msk(16, 13))
    assert later.remaining_minutes == 10 * 60


def test_on_hold_after_a_late_reaction_the_resolution_minutes_show() -> None:
    events = [
        act(msk(13, 11, 30)),  # half an hour after the 11:00 reaction due
        moved(msk(13, 12, 15), FIRST, WAIT),
    ]
    state = compute(lead("Приоритет", created=MONDAY, status=WAIT), events, now=msk(13, 14))
    assert state.reaction.breached
    assert state.reaction.finished_at == msk(13, 11, 30)
    assert state.status is SlaStatus.BREACHED
    assert state.resolution.due is None
    assert state.remaining_minutes == 12 * 60 - 135


def test_on_hold_a_breached_resolution_shows_its_due_and_no_minutes() -> None:
    # Priority, typical: 12 h on the 10–18 calendar from Monday 10:00 is Tuesday 14:00.
    events = [
        act(msk(13, 10, 10), "common_note_added"),
        moved(msk(13, 10, 11), FIRST, WORK),
        moved(msk(14, 15), WORK, WAIT),
    ]
    state = compute(lead("Приоритет", created=MONDAY, status=WAIT), events, now=msk(14, 16))
    assert state.resolution.breached
    assert state.resolution.due == msk(14, 14)
    assert state.remaining_minutes is None


def test_on_hold_a_resolution_by_agreement_shows_no_minutes() -> None:
    events = [
        act(msk(13, 10, 30), "common_note_added"),
        moved(msk(13, 10, 31), FIRST, WORK),
        moved(msk(13, 12), WORK, WAIT),
    ]
    facts = lead("Приоритет", "Доработка", created=MONDAY, status=WAIT)
    without_date = compute(facts, events, now=msk(13, 15))
    assert without_date.status is SlaStatus.PAUSED
    assert without_date.resolution.due is None
    assert without_date.remaining_minutes is None
    # An agreed date does not pause on hold: it is the due, and there is no minute count.
    agreed = msk(17, 18)
    with_date = compute(dataclasses.replace(facts, agreed_due=agreed), events, now=msk(13, 15))
    assert with_date.status is SlaStatus.PAUSED
    assert with_date.resolution.due == agreed
    assert with_date.remaining_minutes is None


# ---------------------------------------------------------------------------
# Done and reopened


def _closed_monday_noon() -> list[LeadEvent]:
    return [
        act(msk(13, 10, 10), "common_note_added"),
        moved(msk(13, 10, 11), FIRST, WORK),
        moved(msk(13, 12), WORK, WON),
    ]


def test_done_stops_the_resolution_clock_in_time() -> None:
    state = compute(lead("Приоритет", created=MONDAY, status=WON), _closed_monday_noon(),
                    now=msk(13, 15))  # fmt: skip
    assert state.status is SlaStatus.MET
    assert state.resolution.finished_at == msk(13, 12)
    assert state.resolution.used == timedelta(hours=2)
    # The deadline as it stood when the request was closed.
    assert state.resolution.due == msk(14, 14)
    assert state.next_change_at is None


def test_a_reopened_lead_runs_on_from_the_time_already_used() -> None:
    events = [*_closed_monday_noon(), moved(msk(14, 10), WON, WORK)]
    state = compute(lead("Приоритет", created=MONDAY, status=WORK), events, now=msk(14, 11))
    assert state.resolution.finished_at is None
    assert state.resolution.used == timedelta(hours=3)
    # 10 h left from Tuesday 10:00: Tuesday 8 h, Wednesday 2 h.
    assert state.resolution.due == msk(15, 12)
    assert state.reaction.finished_at == msk(13, 10, 10)
    assert state.status is SlaStatus.ON_TIME


def test_done_after_the_due_is_met_late() -> None:
    events = [*_closed_monday_noon()[:2], moved(msk(15, 10), WORK, WON)]
    state = compute(lead("Приоритет", created=MONDAY, status=WON), events, now=msk(15, 11))
    assert state.resolution.breached
    assert state.resolution.due == msk(14, 14)
    assert state.status is SlaStatus.MET_LATE
    assert not state.resolution_task_due


def test_a_late_reaction_makes_the_finished_request_met_late() -> None:
    events = [act(msk(13, 11, 30)), moved(msk(13, 12), FIRST, WON)]
    state = compute(lead("Приоритет", created=MONDAY, status=WON), events, now=msk(13, 13))
    assert state.reaction.breached
    assert not state.resolution.breached
    assert state.status is SlaStatus.MET_LATE


# ---------------------------------------------------------------------------
# The agreed date


def test_agreed_date_passing_without_resolution_is_a_breach_with_a_task() -> None:
    facts = lead("Приоритет", "Доработка", created=MONDAY, status=WORK, agreed=msk(15, 18))
    events = [act(msk(13, 10, 30), "outgoing_call"), moved(msk(13, 10, 31), FIRST, WORK)]
    before = compute(facts, events, now=msk(15, 17))
    assert before.status is SlaStatus.ON_TIME
    assert before.next_change_at == msk(15, 18, 0, 1)
    after = compute(facts, events, now=msk(16, 10))
    assert after.resolution.breached
    assert after.status is SlaStatus.BREACHED
    assert after.resolution_task_due
    assert not after.reaction_task_due


def test_resolved_before_the_agreed_date_is_met() -> None:
    facts = lead("Приоритет", "Доработка", created=MONDAY, status=WON, agreed=msk(15, 18))
    events = [act(msk(13, 10, 30), "outgoing_call"), moved(msk(15, 17), FIRST, WON)]
    state = compute(facts, events, now=msk(16, 10))
    assert state.status is SlaStatus.MET
    assert state.resolution.finished_at == msk(15, 17)
    assert not state.resolution.breached


def test_an_agreed_date_passes_even_on_hold() -> None:
    facts = lead("Приоритет", "Доработка", created=MONDAY, status=WAIT, agreed=msk(15, 18))
    events = [act(msk(13, 10, 30), "outgoing_call"), moved(msk(13, 11), FIRST, WAIT)]
    on_hold = compute(facts, events, now=msk(15, 12))
    assert on_hold.status is SlaStatus.PAUSED
    assert on_hold.next_change_at == msk(15, 18, 0, 1)
    assert compute(facts, events, now=msk(16, 12)).status is SlaStatus.BREACHED


def test_an_agreed_date_is_ignored_when_the_class_has_a_target() -> None:
    state = compute(lead("Приоритет", agreed=msk(11, 10)), now=FRIDAY_EVENING)
    assert state.resolution.due == msk(12, 17, 30)


# ---------------------------------------------------------------------------
# Statuses and next_change_at


@pytest.mark.parametrize(
    ("now", "status", "next_change_at"),
    [
        (msk(13, 10, 30), SlaStatus.ON_TIME, msk(13, 10, 48)),  # at risk after 48 of 60 min
        (msk(13, 10, 48), SlaStatus.AT_RISK, msk(13, 11, 0, 1)),  # breach one second after due
        (msk(13, 11), SlaStatus.AT_RISK, msk(13, 11, 0, 1)),
        # Breached: the resolution's own breach (Tuesday 14:00) is the next change.
        (msk(13, 11, 0, 1), SlaStatus.BREACHED, msk(14, 14, 0, 1)),
    ],
)
def test_status_and_next_change_through_the_reaction_hour(
    now: datetime, status: SlaStatus, next_change_at: datetime
) -> None:
    state = compute(lead("Приоритет", created=MONDAY), now=now)
    assert state.status is status
    assert state.next_change_at == next_change_at
    assert state.reaction_task_due is (status is SlaStatus.BREACHED)


def test_resolution_at_risk_after_the_reaction() -> None:
    # 80 % of 12 h is 9 h 36 min: Monday 8 h, Tuesday 1 h 36 min.
    events = [act(msk(13, 10, 5))]
    assert compute(lead("Приоритет", created=MONDAY), events, now=msk(14, 11, 35)).status is (
        SlaStatus.ON_TIME
    )
    state = compute(lead("Приоритет", created=MONDAY), events, now=msk(14, 11, 36))
    assert state.status is SlaStatus.AT_RISK
    assert state.next_change_at == msk(14, 14, 0, 1)


def test_the_due_is_the_same_whatever_the_now() -> None:
    facts = lead("По факту", created=MONDAY)
    events = [act(msk(13, 11))]
    states = [compute(facts, events, now=now) for now in (msk(13, 12), msk(16, 9), msk(20, 17))]
    # 72 workday hours from Monday 10:00 are nine full workdays.
    assert {state.resolution.due for state in states} == {msk(23, 18)}
    assert {state.reaction.due for state in states} == {msk(15, 18)}


def test_acceptance_after_one_business_day_in_the_acceptance_stage() -> None:
    events = [act(msk(13, 10, 5)), moved(msk(13, 16), FIRST, CHECK)]
    facts = lead("Приоритет", created=MONDAY, status=CHECK)
    waiting = compute(facts, events, now=msk(14, 15, 59))
    assert waiting.status is SlaStatus.MET
    assert not waiting.accept_now
    # 8 workday hours from Monday 16:00: Monday 2 h, Tuesday 6 h.
    assert waiting.next_change_at == msk(14, 16)
    accepted = compute(facts, events, now=msk(14, 16))
    assert accepted.accept_now
    assert accepted.next_change_at is None


def test_a_done_stage_that_is_not_acceptance_never_accepts() -> None:
    events = [act(msk(13, 10, 5)), moved(msk(13, 16), FIRST, WON)]
    state = compute(lead("Приоритет", created=MONDAY, status=WON), events, now=msk(20, 10))
    assert not state.accept_now


# ---------------------------------------------------------------------------
# Bad history


def test_a_history_gap_is_reported_and_the_later_event_trusted() -> None:
    events = [moved(msk(13, 10, 30), FIRST, WORK), moved(msk(13, 12), WAIT, WORK)]
    state = compute(lead("По факту", created=MONDAY, status=WORK), events, now=msk(13, 13))
    assert any("history gap" in problem for problem in state.problems)
    assert state.status is SlaStatus.ON_TIME


def test_the_current_status_is_the_ground_truth_when_the_history_ends_elsewhere() -> None:
    events = [moved(msk(13, 10, 30), FIRST, WORK)]
    state = compute(lead("По факту", created=MONDAY, status=WAIT), events, now=msk(13, 15))
    assert any("but the lead is in" in problem for problem in state.problems)
    assert state.status is SlaStatus.PAUSED
    # Taken to be on hold since the last recorded move.
    assert state.reaction.used == timedelta(minutes=30)


def test_a_lead_outside_the_support_pipeline_is_reported_and_paused() -> None:
    facts = lead("Приоритет", created=MONDAY, pipeline=OTHER_PIPELINE, status=5)
    state = compute(facts, now=msk(13, 10, 30))
    assert any("not the support pipeline" in problem for problem in state.problems)
    assert state.status is SlaStatus.PAUSED


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute(lead("Приоритет"), now=datetime(2025, 10, 13, 10))


def test_explain_dict_has_the_documented_keys_in_iso() -> None:
    state = compute(lead("Приоритет"), [act(msk(11, 12, 20))], now=msk(11, 13))
    assert state_as_dict(state) == {
        "registered_at": "2025-10-10T17:30:00+03:00",
        "tariff": "Приоритет",
        "request_class": "typical",
        "reaction_due": "2025-10-11T12:30:00+03:00",
        "reacted_at": "2025-10-11T12:20:00+03:00",
        "reaction_breached": False,
        "resolution_due": "2025-10-12T17:30:00+03:00",
        "resolved_at": None,
        "resolution_breached": False,
        "status": "В срок",
        "remaining_minutes": None,
        # The built-in policy has no next response; its ladder is a task at each breach.
        "next_response_due": None,
        "next_response_breached": False,
        "waiting_periods": [],
        "ladder": [
            {
                "clock": "reaction",
                "period": None,
                "step": "breach",
                "to": "responsible",
                "at": "2025-10-11T12:30:00+03:00",
                "fired": False,
                "owed": False,
            },
            {
                "clock": "resolution",
                "period": None,
                "step": "breach",
                "to": "supervisor",
                "at": "2025-10-12T17:30:00+03:00",
                "fired": False,
                "owed": False,
            },
        ],
        # The resolution reaches 80 % of 12 h (9 h 36 min) on Sunday at 15:06.
        "next_change_at": "2025-10-12T15:06:00+03:00",
    }


def test_moving_a_request_into_a_done_stage_answers_it() -> None:
    events = [
        moved(MONDAY + timedelta(minutes=5), FIRST, WORK, by=ROBOT),
        moved(MONDAY + timedelta(minutes=20), WORK, CHECK),
    ]
    state = compute(
        lead("Приоритет", created=MONDAY, status=CHECK), events, now=MONDAY + timedelta(hours=3)
    )
    assert state.reaction.finished_at == MONDAY + timedelta(minutes=20)


def test_moving_a_closed_request_on_from_acceptance_is_no_reaction() -> None:
    # A robot closed it unanswered; accepting it afterwards answers nothing.
    events = [
        moved(MONDAY + timedelta(minutes=5), FIRST, CHECK, by=0),
        moved(MONDAY + timedelta(days=1), CHECK, WON),
    ]
    state = compute(
        lead("Приоритет", created=MONDAY, status=WON),
        events,
        now=MONDAY + timedelta(days=1, hours=1),
    )
    assert state.reaction.finished_at is None
