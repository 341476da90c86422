"""The policy's next-response targets and escalation ladder (spec §4.1): reading and checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sla.policy import (
    DEFAULT_CUSTOMER_EVENT_TYPES,
    Assignee,
    AssigneeKind,
    Ladder,
    LadderClock,
    LadderStep,
    PolicyError,
    RequestClass,
    default_policy,
    load_policy,
)

PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"
CRMBP = (PRESETS / "crmbp.toml").read_text(encoding="utf-8")
EXAMPLE = (PRESETS / "crmbp_next_response.toml").read_text(encoding="utf-8")
TARGETS = '\n[next_response.targets]\n"Приоритет" = "2h"\n'


def test_the_seeds_presets_keep_next_response_off_and_the_default_ladder() -> None:
    for name in ("crmbp.toml", "prime_gate.toml", "hour_packages.toml"):
        policy = load_policy((PRESETS / name).read_text(encoding="utf-8"))
        assert policy.next_response is None, name
        assert policy.customer_event_types == frozenset()
        assert policy.ladder == Ladder()


def test_the_default_ladder_is_a_task_at_each_breach() -> None:
    ladder = default_policy().ladder
    assert [(s.trigger, s.to.kind) for s in ladder.of(LadderClock.REACTION)] == [
        ("breach", AssigneeKind.RESPONSIBLE)
    ]
    assert [(s.trigger, s.to.kind) for s in ladder.of(LadderClock.RESOLUTION)] == [
        ("breach", AssigneeKind.SUPERVISOR)
    ]
    assert [(s.trigger, s.to.kind) for s in ladder.of(LadderClock.NEXT_RESPONSE)] == [
        ("breach", AssigneeKind.RESPONSIBLE)
    ]
    assert all(s.text is None for clock in LadderClock for s in ladder.of(clock))


def test_the_example_preset_is_crmbp_with_next_response_and_a_ladder() -> None:
    policy = load_policy(EXAMPLE)
    crmbp = default_policy()
    assert policy.tariffs == crmbp.tariffs
    assert policy.calendars == crmbp.calendars
    assert policy.reaction_event_types == crmbp.reaction_event_types
    assert policy.next_response is not None
    assert policy.customer_event_types == DEFAULT_CUSTOMER_EVENT_TYPES
    assert policy.next_response.target("Приоритет", RequestClass.TYPICAL) == timedelta(hours=2)
    assert policy.next_response.target("Приоритет", RequestClass.NON_STANDARD) == timedelta(hours=4)
    assert policy.next_response.target("По факту", RequestClass.NON_STANDARD) == timedelta(hours=8)
    reaction = policy.ladder.of(LadderClock.REACTION)
    assert [(s.share, s.after, s.to.kind) for s in reaction] == [
        (0.8, None, AssigneeKind.RESPONSIBLE),
        (None, timedelta(0), AssigneeKind.RESPONSIBLE),
        (None, timedelta(hours=2), AssigneeKind.GROUP_HEAD),
    ]
    # Not listed in the file: the resolution keeps its default step.
    assert policy.ladder.of(LadderClock.RESOLUTION) == Ladder().of(LadderClock.RESOLUTION)


def test_steps_read_their_at_to_and_text() -> None:
    text = (
        CRMBP
        + TARGETS
        + """
[[escalation.next_response]]
at = " 50 % "
to = 9100003
text = "Половина срока: {lead_name}, с {since}"

[[escalation.next_response]]
at = "Breach + 1h30m"
to = "group_head"
text = "Через полтора часа после {due}"

[escalation.group_heads]
"Поддержка" = 9100004
"7" = 9100005
"""
    )
    ladder = load_policy(text).ladder
    half, later = ladder.of(LadderClock.NEXT_RESPONSE)
    assert (half.share, half.to, half.key) == (
        0.5,
        Assignee(AssigneeKind.USER, 9100003),
        "50%>user9100003",
    )
    assert half.label == "50 % срока → пользователь 9100003"
    assert (later.after, later.key) == (timedelta(hours=1, minutes=30), "breach+1h30m>group_head")
    assert later.label == "срок + 1 ч 30 мин → руководитель группы"
    assert dict(ladder.group_heads) == {"Поддержка": 9100004, "7": 9100005}


def test_an_empty_list_gives_a_clock_no_steps() -> None:
    policy = load_policy(CRMBP + "\n[escalation]\nreaction = []\n")
    assert policy.ladder.of(LadderClock.REACTION) == ()
    assert policy.ladder.of(LadderClock.RESOLUTION) == Ladder().of(LadderClock.RESOLUTION)


def test_per_class_targets_leave_an_unlisted_class_without_one() -> None:
    policy = load_policy(CRMBP + '\n[next_response.targets]\n"По факту" = { typical = "8h" }\n')
    assert policy.next_response is not None
    assert policy.next_response.target("По факту", RequestClass.TYPICAL) == timedelta(hours=8)
    assert policy.next_response.target("По факту", RequestClass.NON_STANDARD) is None
    assert policy.next_response.target("Приоритет", RequestClass.TYPICAL) is None


def test_a_step_built_in_code_is_checked() -> None:
    with pytest.raises(PolicyError) as caught:
        LadderStep(LadderClock.REACTION)
    assert caught.value.key == "escalation.reaction"
    with pytest.raises(PolicyError, match="at most 100%"):
        LadderStep(LadderClock.REACTION, share=1.5)
    with pytest.raises(PolicyError, match="before the breach"):
        LadderStep(LadderClock.REACTION, after=timedelta(hours=-1))
    step = LadderStep(LadderClock.REACTION, after=timedelta(0))
    with pytest.raises(PolicyError, match="a second step"):
        Ladder(steps={LadderClock.REACTION: (step, step)})


def step(at: str = '"80%"', to: str = '"responsible"', text: str = '"x"', more: str = "") -> str:
    """One reaction step after the targets, as TOML (each value already in TOML)."""
    lines = [f"at = {at}" if at else "", f"to = {to}", f"text = {text}" if text else "", more]
    return TARGETS + "\n[[escalation.reaction]]\n" + "\n".join(filter(None, lines)) + "\n"


MESSAGES = "\n[next_response]\ncustomer_events = {}\n"
BAD = [
    pytest.param(TARGETS.replace("2h", "0h"), 'next_response.targets."Приоритет"',
                 "more than zero", id="zero-target"),
    pytest.param('\n[next_response.targets]\n"VIP" = "2h"\n', "next_response.targets.VIP",
                 "no tariff is named 'VIP'", id="unknown-tariff"),
    pytest.param(MESSAGES.format("[]") + TARGETS, "next_response.customer_events",
                 "at least one", id="no-customer-events"),
    pytest.param(MESSAGES.format('["outgoing_call"]') + TARGETS, "next_response.customer_events",
                 "a reaction event type too", id="reply-as-message"),
    pytest.param("\n[next_response]\n", "next_response.targets", "missing table", id="no-targets"),
    pytest.param('\n[next_response]\ncolour = "red"\n', "next_response.colour", "unknown key",
                 id="unknown-key"),
    pytest.param(step().replace(TARGETS, "").replace("reaction", "next_response"),
                 "escalation.next_response", "next response is off", id="ladder-without-targets"),
    pytest.param(step(at='"soon"'), "escalation.reaction[0].at", 'expected "80%"', id="bad-at"),
    pytest.param(step(at='"120%"'), "escalation.reaction[0].at", "at most 100%",
                 id="share-over-100"),
    pytest.param(step(at='"breach + soon"'), "escalation.reaction[0].at", "duration",
                 id="bad-offset"),
    pytest.param(step(to='"boss"'), "escalation.reaction[0].to",
                 "expected responsible, supervisor, group_head", id="bad-to"),
    pytest.param(step(to="-5"), "escalation.reaction[0].to", "expected a user id",
                 id="negative-user"),
    pytest.param(step(text='"{who}"'), "escalation.reaction[0].text",
                 "unknown placeholder {who}", id="bad-placeholder"),
    pytest.param(step(text=""), "escalation.reaction[0].text", "missing", id="no-text"),
    pytest.param(step(at=""), "escalation.reaction[0].at", "missing", id="no-at"),
    pytest.param(step(more="when = 1"), "escalation.reaction[0].when", "unknown key",
                 id="unknown-step-key"),
    pytest.param(step() + step().replace(TARGETS, ""), "escalation.reaction[1]", "a second step",
                 id="twice"),
    pytest.param(TARGETS + '\n[escalation]\nreaction = "80%"\n', "escalation.reaction",
                 "expected a list of steps", id="not-a-list"),
    pytest.param(TARGETS + "\n[escalation]\nfirst_response = []\n", "escalation.first_response",
                 "unknown key", id="unknown-clock"),
    pytest.param(TARGETS + '\n[escalation.group_heads]\n"Поддержка" = "Мария"\n',
                 'escalation.group_heads."Поддержка"', "expected a user id", id="bad-head"),
]  # fmt: skip


@pytest.mark.parametrize(("addition", "key", "fragment"), BAD)
def test_bad_additions_name_the_key(addition: str, key: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(CRMBP + addition)
    assert caught.value.key == key, str(caught.value)
    assert fragment in caught.value.problem
