"""A lead's SLA state: a pure function of (lead, history, policy, stage roles, now).

The rules are the spec's (``SLA.md`` §§1–5); the choices where it is silent are the
README's ("The rules it applies" and "Fine print of the engine"), each pinned by a named
example in ``tests/test_state.py`` and a property in ``tests/test_state_properties.py``.
Cost: a few ``between``/``add`` calls per running stretch, no per-minute loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum

from sla.calendar import BusinessCalendar
from sla.policy import (
    LadderClock,
    LadderStep,
    Policy,
    RequestClass,
    Targets,
    Tariff,
    normalize_tag,
)
from sla.tags import tariff_tags
from sla.words import duration_text, span_text

__all__ = [
    "ClockState",
    "LeadEvent",
    "LeadFacts",
    "NextResponseState",
    "SlaState",
    "SlaStatus",
    "StageRoles",
    "StepState",
    "WaitingPeriod",
    "compute_sla",
    "state_as_dict",
]

WON = 142
LOST = 143
STATUS_CHANGED = "lead_status_changed"
# The robot's actions that count as a reaction when the policy's robot_replies is on.
ROBOT_REPLY_TYPES = frozenset({"outgoing_chat_message", "outgoing_mail"})
_TICK = timedelta(seconds=1)  # precision of the state: a breach shows one second after due

Place = tuple[int, int]  # (pipeline_id, status_id)


@dataclass(frozen=True)
class StageRoles:
    pipeline_id: int
    first_status_id: int | None  # leaving it counts as a reaction (if made by a person)
    hold: frozenset[int] = frozenset()
    done: frozenset[int] = frozenset()  # 142 and 143 are always done
    acceptance: frozenset[int] = frozenset()  # done stages that wait for the customer's remarks
    accepted_status_id: int = WON

    def __post_init__(self) -> None:
        for name in ("hold", "done", "acceptance"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class LeadFacts:
    lead_id: int
    pipeline_id: int
    status_id: int
    created_at: datetime
    tags: tuple[str, ...]
    class_value: str | None
    agreed_due: datetime | None
    responsible_user_id: int
    problems: tuple[str, ...] = ()  # findings of the mapping from amoCRM (a bad field value...)


@dataclass(frozen=True, slots=True)
class LeadEvent:
    event_id: str
    type: str
    at: datetime
    created_by: int  # 0: a robot or a bot
    status_before: Place | None = None  # (pipeline_id, status_id) for lead_status_changed
    status_after: Place | None = None
    linked: tuple[str, int] | None = None  # (entity type, id) for entity_linked


class SlaStatus(StrEnum):
    ON_TIME = "В срок"
    AT_RISK = "Под угрозой"
    PAUSED = "На паузе"
    BREACHED = "Просрочено"
    MET = "Выполнено в срок"
    MET_LATE = "Выполнено с нарушением"
    NO_TARIFF = "Нет тарифа"


@dataclass(frozen=True, slots=True)
class ClockState:
    target: timedelta | None  # None: no tariff, or resolution by agreement
    due: datetime | None
    finished_at: datetime | None  # the reaction, or the entry into a done stage
    breached: bool
    running: bool
    used: timedelta  # business time used so far (up to finished_at when finished)
    remaining: timedelta | None  # target - used, never below zero


@dataclass(frozen=True, slots=True)
class WaitingPeriod:
    """One next-response period (spec §4.1): from the first customer message nobody had
    answered to a person's reply (``ended_by`` ``reply``) or a done stage (``done``)."""

    started_at: datetime
    clock: ClockState  # finished_at: when the period ended (None: the customer still waits)
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class NextResponseState:
    target: timedelta | None = None  # None: off, no tariff, or no target for the tariff
    periods: tuple[WaitingPeriod, ...] = ()

    @property
    def waiting(self) -> WaitingPeriod | None:
        """The period still open, if any (only the last one can be)."""
        last = self.periods[-1] if self.periods else None
        return last if last is not None and last.clock.finished_at is None else None

    @property
    def due(self) -> datetime | None:
        """The open period's due instant («SLA: ответ до»); None on hold, as other clocks."""
        waiting = self.waiting
        return waiting.clock.due if waiting is not None else None

    @property
    def breached(self) -> bool:
        """Whether any period of the request was breached («SLA: ответ просрочен»)."""
        return any(period.clock.breached for period in self.periods)


@dataclass(frozen=True, slots=True)
class StepState:
    """One escalation step of one clock (and waiting period) at ``now``."""

    step: LadderStep
    period: datetime | None  # the waiting period's start (next response), else None
    at: datetime | None  # the step's instant: the share reached, or the deadline (+ offset)
    fired: bool  # the instant came while the clock waited (a breach step: strictly after)
    owed: bool  # fired, and the clock still waits now: the worker owes its task
    due: datetime | None  # the clock's (or period's) due, for the task's text
    since: datetime  # when the clock (or period) began, for the task's text


@dataclass(frozen=True, slots=True)
class SlaState:
    lead_id: int
    registered_at: datetime
    tariff: str | None
    request_class: RequestClass
    emergency: bool
    reaction: ClockState
    resolution: ClockState
    status: SlaStatus
    remaining_minutes: int | None  # the waiting clock's minutes while the lead is on hold
    next_change_at: datetime | None  # next instant the state changes by itself
    reaction_task_due: bool
    resolution_task_due: bool
    accept_now: bool
    trace: tuple[str, ...]  # human-readable derivation, when asked for (explain)
    problems: tuple[str, ...]  # bad-input findings for the worker to log
    next_response: NextResponseState = NextResponseState()
    ladder: tuple[StepState, ...] = ()  # every step of every clock with a deadline

    @property
    def tasks_due(self) -> bool:
        """Whether any escalation step owes a task now."""
        return any(step.owed for step in self.ladder)


class _Role(Enum):
    RUNNING = "running"
    HOLD = "hold"
    DONE = "done"
    OUTSIDE = "outside the support pipeline"


@dataclass(frozen=True, slots=True)
class _Stretch:
    start: datetime
    end: datetime | None  # None: still there
    place: Place
    role: _Role
    acceptance: bool


@dataclass(frozen=True, slots=True)
class _Interval:
    start: datetime
    end: datetime | None  # None: open, the clock runs on
    projectable: bool  # the clock ran to the end of it: deadlines may be projected past it


@dataclass(frozen=True, slots=True)
class _Clock:
    state: ClockState
    at_risk: bool
    at_risk_at: datetime | None
    # What the ladder needs to place its steps: the calendar and the running stretches.
    calendar: BusinessCalendar | None = None
    intervals: tuple[_Interval, ...] = ()


# ---------------------------------------------------------------------------


def compute_sla(
    lead: LeadFacts,
    events: Sequence[LeadEvent],
    policy: Policy,
    roles: StageRoles,
    now: datetime,
    *,
    explain: bool = False,
) -> SlaState:
    """The lead's SLA state at ``now``.

    ``explain``: also write the derivation's human-readable ``trace`` (otherwise empty)."""
    for label, moment in (("now", now), ("created_at", lead.created_at)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{label} must be an aware datetime, got {moment.isoformat()}")
    return _Derivation(lead, events, policy, roles, now, explain=explain).state()


def state_as_dict(state: SlaState) -> dict[str, object]:
    """The explain JSON: ISO datetimes, status text, class value."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "registered_at": iso(state.registered_at),
        "tariff": state.tariff,
        "request_class": state.request_class.value,
        "reaction_due": iso(state.reaction.due),
        "reacted_at": iso(state.reaction.finished_at),
        "reaction_breached": state.reaction.breached,
        "resolution_due": iso(state.resolution.due),
        "resolved_at": iso(state.resolution.finished_at),
        "resolution_breached": state.resolution.breached,
        "status": state.status.value,
        "remaining_minutes": state.remaining_minutes,
        "next_response_due": iso(state.next_response.due),
        "next_response_breached": state.next_response.breached,
        "waiting_periods": [
            {
                "started_at": iso(period.started_at),
                "due": iso(period.clock.due),
                "ended_at": iso(period.clock.finished_at),
                "ended_by": period.ended_by,
                "breached": period.clock.breached,
            }
            for period in state.next_response.periods
        ],
        "ladder": [
            {
                "clock": step.step.clock.value,
                "period": iso(step.period),
                "step": step.step.trigger,
                "to": step.step.to.key,
                "at": iso(step.at),
                "fired": step.fired,
                "owed": step.owed,
            }
            for step in state.ladder
        ],
        "next_change_at": iso(state.next_change_at),
    }


class _Derivation:
    """One compute_sla call: the inputs, and the trace and problems found on the way."""

    def __init__(
        self,
        lead: LeadFacts,
        events: Sequence[LeadEvent],
        policy: Policy,
        roles: StageRoles,
        now: datetime,
        *,
        explain: bool,
    ) -> None:
        self.explain = explain
        self.lead = lead
        self.policy = policy
        self.roles = roles
        self.zone = policy.zone
        self.now = now.astimezone(self.zone)
        self.events = sorted(events, key=lambda event: (event.at, event.event_id))
        self.trace: list[str] = []
        self.problems: list[str] = []

    # --- notes ----------------------------------------------------------------------------------
    def t(self, moment: datetime | None) -> str:
        """An instant in the trace: local wall time of the policy's zone."""
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")

    def note(self, text: str | Callable[[], str]) -> None:
        """Adds a line to the trace; a callable's text is made only when the trace is asked
        for (a loop that formats its line guards the call with ``self.explain`` instead)."""
        if self.explain:
            self.trace.append(text if isinstance(text, str) else text())

    def problem(self, text: str) -> None:
        self.problems.append(text)
        if self.explain:
            self.trace.append(f"problem: {text}")

    # --- the whole state ------------------------------------------------------------------------
    def state(self) -> SlaState:
        lead, policy = self.lead, self.policy
        for problem in lead.problems:
            self.problem(problem)
        self.note(
            lambda: (
                f"policy {policy.name or '(unnamed)'}; times in {self.zone.key}; "
                f"now {self.t(self.now)}"
            )
        )
        tariff = self.tariff()
        request_class = self.request_class()
        emergency = self.emergency()
        targets = tariff.targets[request_class] if tariff is not None else None

        registered_at, entry_id = self.registration()
        history = [event for event in self.events if event.at >= registered_at]
        for event in history:
            if event.at > self.now:
                self.problem(f"event {event.event_id} ({event.type}) is dated after now")
        stretches = self.timeline(history, entry_id, registered_at)
        role = stretches[-1].role

        reaction_event = self.reaction(history, entry_id)
        reacted_at = reaction_event.at.astimezone(self.zone) if reaction_event else None
        resolved_at = None
        if role is _Role.DONE:
            resolved_at = _trailing_start(stretches, lambda s: s.role is _Role.DONE)
            self.note(lambda: f"resolved: in a done stage since {self.t(resolved_at)}")

        reaction = self.reaction_clock(targets, emergency, registered_at, reacted_at, stretches)
        resolution = self.resolution_clock(targets, registered_at, resolved_at, stretches)
        accept_now, accept_at = self.acceptance(stretches, targets)
        next_response, periods = self.next_response(
            tariff, request_class, self.reaction_calendar(targets, emergency), history=history,
            reacted_at=reacted_at, stretches=stretches,
        )  # fmt: skip
        waits = (
            (LadderClock.REACTION, None, reaction, reaction.state.finished_at is None
             and role is not _Role.DONE),
            (LadderClock.RESOLUTION, None, resolution, resolution.state.finished_at is None),
            *((LadderClock.NEXT_RESPONSE, period.started_at, clock,
               period.clock.finished_at is None) for period, clock in periods),
        )  # fmt: skip
        ladder, upcoming = self.ladder(waits, registered_at) if targets else ((), ())

        status = _status(tariff, reaction, resolution, role)
        remaining_minutes = _waiting_minutes(role, reaction.state, resolution.state)
        self.note(
            lambda: (
                f"status {status.value}"
                + (
                    f"; {duration_text(remaining_minutes)} of business time left"
                    if remaining_minutes is not None
                    else ""
                )
            )
        )
        next_change_at = self.next_change(
            status,
            (reaction, resolution),
            accept_now,
            accept_at,
            [*upcoming, *(_breach_instant(clock) for _, clock in periods)],
        )

        return SlaState(
            lead_id=lead.lead_id,
            registered_at=registered_at,
            tariff=tariff.name if tariff is not None else None,
            request_class=request_class,
            emergency=emergency,
            reaction=reaction.state,
            resolution=resolution.state,
            status=status,
            remaining_minutes=remaining_minutes,
            next_change_at=next_change_at,
            reaction_task_due=reaction.state.breached
            and reaction.state.finished_at is None
            and role is not _Role.DONE,
            resolution_task_due=resolution.state.breached and resolution.state.finished_at is None,
            accept_now=accept_now,
            trace=tuple(self.trace),
            problems=tuple(self.problems),
            next_response=next_response,
            ladder=ladder,
        )

    def next_change(
        self,
        status: SlaStatus,
        clocks: tuple[_Clock, _Clock],
        accept_now: bool,
        accept_at: datetime | None,
        more: Sequence[datetime | None] = (),
    ) -> datetime | None:
        """The next instant the state changes by itself: a due or at-risk instant, an
        acceptance, and ``more`` (a waiting period's breach, an escalation step's instant)."""
        candidates = [accept_at] if accept_at is not None and not accept_now else []
        candidates += [moment for moment in more if moment is not None]
        for clock in clocks:
            state = clock.state
            if state.finished_at is not None or state.breached or state.due is None:
                continue
            if state.running or state.target is None:  # an agreed date passes on the wall clock
                candidates.append(state.due + _TICK)
            # Reaching the at-risk share changes only an «В срок» status.
            if status is SlaStatus.ON_TIME and state.running and clock.at_risk_at is not None:
                candidates.append(clock.at_risk_at)
        future = [moment for moment in candidates if moment > self.now]
        next_change_at = min(future).astimezone(self.zone) if future else None
        self.note(lambda: f"next change by itself: {self.t(next_change_at)}")
        return next_change_at

    # --- tags -----------------------------------------------------------------------------------
    def tariff(self) -> Tariff | None:
        lead, policy = self.lead, self.policy
        self.note(lambda: "tags: " + (", ".join(f"«{tag}»" for tag in lead.tags) or "none"))
        matches = tariff_tags(policy, lead.tags)
        if matches:
            tariff, tag = matches[0]
            self.note(lambda: f"tariff «{tariff.name}» (tag «{tag}»)")
            if len(matches) > 1:
                others = ", ".join(f"«{other.name}»" for other, _ in matches[1:])
                self.problem(f"several tariff tags: «{tariff.name}» wins over {others}")
            return tariff
        if policy.default_tariff is not None:
            self.note(lambda: f"no tariff tag: default tariff «{policy.default_tariff}»")
            return policy.tariff_named(policy.default_tariff)
        self.note(lambda: "no tariff tag and no default tariff: «Нет тарифа»")
        return None

    def request_class(self) -> RequestClass:
        lead = self.lead
        spellings = {
            kind: {normalize_tag(kind.value)}
            | {normalize_tag(tag) for tag in self.policy.class_tags[kind]}
            for kind in RequestClass
        }
        if lead.class_value is not None and normalize_tag(lead.class_value):
            value = normalize_tag(lead.class_value)
            for kind in RequestClass:
                if value in spellings[kind]:
                    if self.explain:
                        self.note(f"class {kind.value} (field value «{lead.class_value}»)")
                    return kind
            self.problem(f"class field value «{lead.class_value}» names no request class")
        carried = {normalize_tag(tag): tag for tag in lead.tags}
        found = {
            kind: [carried[tag] for tag in sorted(spellings[kind]) if tag in carried]
            for kind in RequestClass
        }
        non_standard, typical = found[RequestClass.NON_STANDARD], found[RequestClass.TYPICAL]
        if non_standard:
            if typical:
                self.problem(
                    f"tags of both classes: non_standard («{non_standard[0]}») wins over "
                    f"typical («{typical[0]}»)"
                )
            self.note(lambda: f"class non_standard (tag «{non_standard[0]}»)")
            return RequestClass.NON_STANDARD
        if typical:
            self.note(lambda: f"class typical (tag «{typical[0]}»)")
        else:
            self.note(lambda: "class typical (nothing says otherwise)")
        return RequestClass.TYPICAL

    def emergency(self) -> bool:
        emergency_tags = {normalize_tag(tag) for tag in self.policy.emergency_tags}
        hit = next((tag for tag in self.lead.tags if normalize_tag(tag) in emergency_tags), None)
        if hit is None:
            return False
        if self.policy.emergency_reaction_calendar is not None:
            self.note(lambda: f"emergency (tag «{hit}»): reaction on the emergency calendar")
        else:
            self.note(lambda: f"emergency (tag «{hit}»); the policy has no emergency calendar")
        return True

    # --- history --------------------------------------------------------------------------------
    def role(self, place: Place) -> tuple[_Role, bool]:
        """The stage role of a (pipeline, status) and whether it is an acceptance stage."""
        roles = self.roles
        pipeline, status = place
        acceptance = pipeline == roles.pipeline_id and status in roles.acceptance
        if status in (WON, LOST) or acceptance or status in roles.done:
            return _Role.DONE, acceptance
        if pipeline != roles.pipeline_id:
            return _Role.OUTSIDE, False
        if status in roles.hold:
            return _Role.HOLD, False
        return _Role.RUNNING, False

    def is_entry(self, event: LeadEvent) -> bool:
        pipeline = self.roles.pipeline_id
        return (
            event.type == STATUS_CHANGED
            and event.status_after is not None
            and event.status_after[0] == pipeline
            and event.status_before is not None
            and event.status_before[0] != pipeline
        )

    def registration(self) -> tuple[datetime, str | None]:
        lead, pipeline = self.lead, self.roles.pipeline_id
        if lead.pipeline_id != pipeline:
            self.problem(
                f"the lead is in pipeline {lead.pipeline_id}, not the support pipeline "
                f"{pipeline}: its clocks stop there"
            )
        entries = [event for event in self.events if self.is_entry(event)]
        if entries:
            entry = entries[-1]
            registered_at = entry.at.astimezone(self.zone)
            source = entry.status_before[0] if entry.status_before is not None else "?"
            self.note(
                lambda: (
                    f"registered {self.t(registered_at)}: moved into pipeline {pipeline} from "
                    f"pipeline {source} (event {entry.event_id})"
                )
            )
        else:
            entry = None
            registered_at = lead.created_at.astimezone(self.zone)
            self.note(lambda: f"registered {self.t(registered_at)} (created_at)")
        if registered_at > self.now:
            self.problem(
                f"registered {self.t(registered_at)}, after now ({self.t(self.now)}): "
                "the clocks have not started"
            )
        return registered_at, entry.event_id if entry is not None else None

    def timeline(
        self, history: Sequence[LeadEvent], entry_id: str | None, registered_at: datetime
    ) -> list[_Stretch]:
        moves = [e for e in history if e.type == STATUS_CHANGED and e.event_id != entry_id]
        current_place: Place = (self.lead.pipeline_id, self.lead.status_id)
        entry = next((e for e in history if e.event_id == entry_id), None)
        place: Place
        if entry is not None and entry.status_after is not None:
            place = entry.status_after
        elif moves and moves[0].status_before is not None:
            place = moves[0].status_before
        else:
            place = current_place
        starts: list[tuple[datetime, Place]] = [(registered_at, place)]
        for move in moves:
            if move.status_after is None:
                self.problem(f"status change {move.event_id} names no new status; skipped")
                continue
            if move.status_before is not None and move.status_before != place:
                self.problem(
                    f"history gap: event {move.event_id} moves the lead from "
                    f"{_place(move.status_before)} but the history had it in {_place(place)}"
                )
            place = move.status_after
            starts.append((move.at.astimezone(self.zone), place))
        if place != current_place:
            self.problem(
                f"history gap: the history ends in {_place(place)} but the lead is in "
                f"{_place(current_place)}; taken to be there since {self.t(starts[-1][0])}"
            )
            starts[-1] = (starts[-1][0], current_place)
        stretches: list[_Stretch] = []
        for index, (start, stretch_place) in enumerate(starts):
            end = starts[index + 1][0] if index + 1 < len(starts) else None
            role, acceptance = self.role(stretch_place)
            stretches.append(_Stretch(start, end, stretch_place, role, acceptance))
            self.note(lambda: _stretch_line(self.t, stretches[-1]))
        return stretches

    def reaction(self, history: Sequence[LeadEvent], entry_id: str | None) -> LeadEvent | None:
        for event in history:
            why = self.reaction_kind(event, entry_id)
            if why is None:
                continue
            if event.created_by == 0 and not (
                self.policy.robot_replies and event.type in ROBOT_REPLY_TYPES
            ):
                if self.explain:
                    self.note(
                        f"not a reaction: {why} at {self.t(event.at)} by a robot "
                        f"(event {event.event_id})"
                    )
                continue
            if self.explain:
                who = "a robot (robot replies on)" if event.created_by == 0 else "user"
                self.note(
                    f"reaction: {why} at {self.t(event.at)} by {who} {event.created_by} "
                    f"(event {event.event_id})"
                )
            return event
        self.note(lambda: "no reaction yet")
        return None

    def reaction_kind(self, event: LeadEvent, entry_id: str | None) -> str | None:
        if event.type in self.policy.reaction_event_types:
            return event.type
        if event.type != STATUS_CHANGED or event.event_id == entry_id:
            return None
        if event.status_after is None:
            return None
        first = self.roles.first_status_id
        first_place = (self.roles.pipeline_id, first) if first is not None else None
        if first_place is not None and event.status_before == first_place != event.status_after:
            return "moved out of the first stage"
        done_before = (
            event.status_before is not None and self.role(event.status_before)[0] is _Role.DONE
        )
        if self.role(event.status_after)[0] is _Role.DONE and not done_before:
            # Closing a request answers it; moving a closed one on (acceptance -> won) does not.
            return "moved into a done stage"
        return None

    # --- clocks ---------------------------------------------------------------------------------
    def reaction_clock(
        self,
        targets: Targets | None,
        emergency: bool,
        registered_at: datetime,
        reacted_at: datetime | None,
        stretches: Sequence[_Stretch],
    ) -> _Clock:
        calendar = self.reaction_calendar(targets, emergency)
        if targets is None or calendar is None:
            return self.untimed_clock("reaction", registered_at, reacted_at, stretches)
        return self.timed_clock(
            "reaction", calendar, targets.reaction, (registered_at, reacted_at), stretches
        )

    def reaction_calendar(
        self, targets: Targets | None, emergency: bool
    ) -> BusinessCalendar | None:
        """The calendar of the reaction (and of the next responses): an emergency's own
        where the policy has one."""
        if targets is None:
            return None
        if emergency and self.policy.emergency_reaction_calendar is not None:
            return self.policy.emergency_reaction_calendar
        return targets.calendar

    def resolution_clock(
        self,
        targets: Targets | None,
        registered_at: datetime,
        resolved_at: datetime | None,
        stretches: Sequence[_Stretch],
    ) -> _Clock:
        if targets is None:
            return self.untimed_clock("resolution", registered_at, resolved_at, stretches)
        agreed = self.lead.agreed_due
        if targets.resolution is not None:
            if agreed is not None:
                self.note(
                    lambda: (
                        f"agreed date {self.t(agreed)} ignored: this class has a resolution target"
                    )
                )
            return self.timed_clock(
                "resolution",
                targets.calendar,
                targets.resolution,
                (registered_at, resolved_at),
                stretches,
            )
        intervals = _running_intervals(stretches, registered_at, resolved_at)
        running = resolved_at is None and bool(intervals) and intervals[-1].end is None
        horizon = resolved_at if resolved_at is not None else self.now
        used = _used(targets.calendar, intervals, horizon)
        finished = f"; finished {self.t(resolved_at)}" if resolved_at is not None else ""
        if agreed is None:
            self.note(lambda: f"resolution by agreement: no agreed date yet, so no due{finished}")
            state = ClockState(None, None, resolved_at, False, running, used, None)
            return _Clock(state, False, None)
        agreed = agreed.astimezone(self.zone)
        breached = horizon > agreed
        self.note(
            lambda: (
                f"resolution by agreement: due {self.t(agreed)} (the agreed date)"
                + ("; BREACHED" if breached else "")
                + finished
            )
        )
        state = ClockState(None, agreed, resolved_at, breached, running, used, None)
        return _Clock(state, False, None, targets.calendar)

    def untimed_clock(
        self,
        label: str,
        start: datetime,
        stop: datetime | None,
        stretches: Sequence[_Stretch],
    ) -> _Clock:
        intervals = _running_intervals(stretches, start, stop)
        running = stop is None and bool(intervals) and intervals[-1].end is None
        self.note(lambda: f"{label}: no target" + (f", finished {self.t(stop)}" if stop else ""))
        return _Clock(ClockState(None, None, stop, False, running, timedelta(0), None), False, None)

    def timed_clock(
        self,
        label: str,
        calendar: BusinessCalendar,
        target: timedelta,
        span: tuple[datetime, datetime | None],
        stretches: Sequence[_Stretch],
    ) -> _Clock:
        """A clock with a target: runs from ``span[0]`` until ``span[1]`` (None: not yet)."""
        start, stop = span
        intervals = _running_intervals(stretches, start, stop)
        running = stop is None and bool(intervals) and intervals[-1].end is None
        horizon = stop if stop is not None else self.now
        used = _used(calendar, intervals, horizon)
        due = _reach(calendar, intervals, target)
        threshold = _threshold(target, self.policy.at_risk_fraction)
        at_risk_at = _reach(calendar, intervals, threshold)
        breached = due is not None and horizon > due
        if not breached and not running and stop is None:
            due = None  # on hold: the deadline is computed again when the clock runs on
        due = due.astimezone(self.zone) if due is not None else None
        at_risk_at = at_risk_at.astimezone(self.zone) if at_risk_at is not None else None

        def counted() -> str:
            return ", ".join(
                f"{self.t(interval.start)} – "
                + (self.t(interval.end) if interval.end is not None else "now")
                + f" ({span_text(calendar.between(interval.start, interval.end or horizon))})"
                for interval in intervals
            )

        self.note(
            lambda: (
                f"{label} clock: target {span_text(target)} on {self.calendar_name(calendar)}; "
                f"counted {counted() or 'nothing'}; used {span_text(used)}; due {self.t(due)}"
                + ("; BREACHED" if breached else "")
                + (f"; finished {self.t(stop)}" if stop is not None else "")
                + ("; running" if running else "")
            )
        )
        state = ClockState(
            target=target,
            due=due,
            finished_at=stop,
            breached=breached,
            running=running,
            used=used,
            remaining=max(target - used, timedelta(0)),
        )
        return _Clock(state, running and used >= threshold, at_risk_at, calendar, tuple(intervals))

    def calendar_name(self, calendar: BusinessCalendar) -> str:
        for name, candidate in self.policy.calendars.items():
            if candidate is calendar:
                return f"calendar «{name}»"
        workdays = str(calendar.workday_hours) or "closed"
        days_off = str(calendar.non_working_hours) or "closed"
        return f"calendar workdays {workdays}, days off {days_off}"

    # --- next response (spec §4.1) ----------------------------------------------------------
    def next_response(
        self,
        tariff: Tariff | None,
        request_class: RequestClass,
        calendar: BusinessCalendar | None,
        *,
        history: Sequence[LeadEvent],
        reacted_at: datetime | None,
        stretches: Sequence[_Stretch],
    ) -> tuple[NextResponseState, list[tuple[WaitingPeriod, _Clock]]]:
        """The waiting periods after the reaction, each judged like a clock of its own."""
        found = self.policy.next_response
        if found is None:
            return NextResponseState(), []
        target = found.target(tariff.name, request_class) if tariff is not None else None
        if target is None or calendar is None:
            self.note("next response: no target for this tariff and class")
            return NextResponseState(), []
        self.note(
            lambda: f"next response: target {span_text(target)} on {self.calendar_name(calendar)}"
        )
        spans = self.waiting_spans(found.customer_events, history, reacted_at, stretches)
        periods: list[tuple[WaitingPeriod, _Clock]] = []
        for number, (start, end, ended_by) in enumerate(spans, start=1):
            clock = self.timed_clock(
                f"next response #{number}", calendar, target, (start, end), stretches
            )
            periods.append((WaitingPeriod(start, clock.state, ended_by), clock))
        return NextResponseState(target, tuple(period for period, _ in periods)), periods

    def waiting_spans(
        self,
        customer_events: frozenset[str],
        history: Sequence[LeadEvent],
        reacted_at: datetime | None,
        stretches: Sequence[_Stretch],
    ) -> list[tuple[datetime, datetime | None, str | None]]:
        """(start, end, why it ended) of each waiting period, in order: the first customer
        message after the reaction that nobody answered yet opens one, outside done stages;
        a person's reply or the entry into a done stage closes it."""
        if reacted_at is None:
            if self.explain and any(e.type in customer_events for e in history):
                self.note("customer messages before the reaction: the reaction clock covers them")
            return []
        done_entries = [
            stretch.start
            for index, stretch in enumerate(stretches)
            if stretch.role is _Role.DONE and index and stretches[index - 1].role is not _Role.DONE
        ]
        marks: list[tuple[datetime, int, LeadEvent | None]] = [
            (moment.astimezone(self.zone), 0, None) for moment in done_entries
        ]
        marks += [(event.at.astimezone(self.zone), 1, event) for event in history]
        marks.sort(key=lambda mark: (mark[0], mark[1], mark[2].event_id if mark[2] else ""))
        spans: list[tuple[datetime, datetime | None, str | None]] = []
        start: datetime | None = None
        for moment, _, event in marks:
            if event is None:
                if start is not None:
                    if self.explain:
                        self.note(f"the waiting period ends: a done stage at {self.t(moment)}")
                    spans.append((start, moment, "done"))
                    start = None
                continue
            if event.type in customer_events:
                start = self.customer_message(event, moment, start, reacted_at, stretches)
            elif start is not None and self.is_reply(event):
                if self.explain:
                    self.note(
                        f"the waiting period ends: {event.type} at {self.t(moment)} by user "
                        f"{event.created_by} (event {event.event_id})"
                    )
                spans.append((start, moment, "reply"))
                start = None
        if start is not None:
            spans.append((start, None, None))
        return spans

    def customer_message(
        self,
        event: LeadEvent,
        moment: datetime,
        start: datetime | None,
        reacted_at: datetime,
        stretches: Sequence[_Stretch],
    ) -> datetime | None:
        """Where a customer's message leaves the waiting period: opened by it, or as it was."""
        if moment <= reacted_at:
            return start
        what = f"customer message {event.type} at {self.t(moment)} (event {event.event_id})"
        if start is not None:
            self.note(lambda: f"{what}: the customer waits already since {self.t(start)}")
            return start
        if _role_at(stretches, moment) is _Role.DONE:
            self.note(lambda: f"{what}: in a done stage, no waiting period")
            return None
        self.note(lambda: f"{what}: a waiting period starts")
        return moment

    def is_reply(self, event: LeadEvent) -> bool:
        """A person's answer of a reaction type (a robot's message only with robot replies)."""
        if event.type not in self.policy.reaction_event_types:
            return False
        if event.created_by != 0:
            return True
        if self.policy.robot_replies and event.type in ROBOT_REPLY_TYPES:
            return True
        if self.explain:
            self.note(
                f"not an answer: {event.type} at {self.t(event.at)} by a robot "
                f"(event {event.event_id})"
            )
        return False

    # --- the escalation ladder (spec §4.1) ----------------------------------------------------
    def ladder(
        self,
        waits: Sequence[tuple[LadderClock, datetime | None, _Clock, bool]],
        registered_at: datetime,
    ) -> tuple[tuple[StepState, ...], list[datetime]]:
        """Every step of every clock with a deadline, and the instants steps fire later on.

        ``waits``: per clock (and waiting period) its period start, the clock, and whether
        it still waits now (unfinished; a reaction also not in a done stage)."""
        steps: list[StepState] = []
        upcoming: list[datetime] = []
        for kind, period, clock, waiting in waits:
            state = clock.state
            horizon = state.finished_at or self.now
            for step in self.policy.ladder.of(kind):
                if state.due is None and state.target is None:
                    continue  # no deadline: no tariff, or an agreement with no date yet
                if step.share is not None and state.target is None:
                    continue  # a share of an agreed date means nothing
                at = _step_instant(step, clock)
                after_deadline = step.share is None
                fired = at is not None and (at < horizon if after_deadline else at <= horizon)
                if waiting and at is not None and not fired:
                    upcoming.append(at + _TICK if after_deadline else at)
                steps.append(
                    StepState(
                        step=step,
                        period=period,
                        at=at.astimezone(self.zone) if at is not None else None,
                        fired=fired,
                        owed=fired and waiting,
                        due=state.due,
                        since=period or registered_at,
                    )
                )
                if self.explain:
                    self.note(self.step_line(kind, period, steps[-1], waiting))
        return tuple(steps), upcoming

    def step_line(
        self, kind: LadderClock, period: datetime | None, step: StepState, waiting: bool
    ) -> str:
        name = kind.value.replace("_", " ")
        of = f" of the period from {self.t(period)}" if period is not None else ""
        if step.fired:
            outcome = f"fired at {self.t(step.at)}" + ("" if waiting else " (since answered)")
        elif step.at is None:
            outcome = "paused with its clock" if waiting else "never reached"
        elif waiting:
            outcome = f"due at {self.t(step.at)}"
        else:
            outcome = "never reached: the clock stopped first"
        return f"ladder {name}{of}: step «{step.step.label}» {outcome}"

    # --- acceptance -----------------------------------------------------------------------------
    def acceptance(
        self, stretches: Sequence[_Stretch], targets: Targets | None
    ) -> tuple[bool, datetime | None]:
        if not stretches[-1].acceptance:
            return False, None
        entered = _trailing_start(stretches, lambda stretch: stretch.acceptance)
        calendar = self.policy.acceptance_calendar
        if calendar is None:
            calendar = targets.calendar if targets else BusinessCalendar.always_open(self.zone)
        deadline = calendar.add(entered, self.policy.acceptance_period).astimezone(self.zone)
        accept_now = self.now >= deadline
        self.note(
            lambda: (
                f"acceptance: waiting since {self.t(entered)}, accepted at {self.t(deadline)}"
                + ("; accept now" if accept_now else "")
            )
        )
        return accept_now, deadline


def _role_at(stretches: Sequence[_Stretch], moment: datetime) -> _Role:
    """The stage role the lead was in at ``moment`` (a stretch starting then counts)."""
    role = stretches[0].role
    for stretch in stretches:
        if stretch.start > moment:
            break
        role = stretch.role
    return role


def _step_instant(step: LadderStep, clock: _Clock) -> datetime | None:
    """When the clock has used the step's share of its target, or reached its deadline plus
    the step's business time (an agreed date plus it, on the clock's calendar); None while
    the clock waits on hold short of it, or stopped short of it."""
    state, calendar = clock.state, clock.calendar
    if calendar is None:
        return None
    if state.target is None:  # an agreed date
        if state.due is None or step.after is None:
            return None
        return calendar.add(state.due, step.after) if step.after else state.due
    if step.share is not None:
        amount = _threshold(state.target, step.share)
    else:
        amount = state.target + (step.after or timedelta(0))
    return _reach(calendar, clock.intervals, amount)


def _breach_instant(clock: _Clock) -> datetime | None:
    """When a running, not yet breached waiting period turns breached."""
    state = clock.state
    if not state.running or state.breached or state.due is None:
        return None
    return state.due + _TICK


def _stretch_line(t: Callable[[datetime | None], str], stretch: _Stretch) -> str:
    kind = "acceptance" if stretch.acceptance else stretch.role.value
    until = f" to {t(stretch.end)}" if stretch.end is not None else " (current)"
    return f"stage {_place(stretch.place)} ({kind}) from {t(stretch.start)}{until}"


def _place(place: Place) -> str:
    return f"status {place[1]} of pipeline {place[0]}"


def _trailing_start(stretches: Sequence[_Stretch], keep: Callable[[_Stretch], bool]) -> datetime:
    start = stretches[-1].start
    for stretch in reversed(stretches):
        if not keep(stretch):
            break
        start = stretch.start
    return start


def _running_intervals(
    stretches: Sequence[_Stretch], start: datetime, stop: datetime | None
) -> list[_Interval]:
    """The running stretches of a clock that starts at ``start`` and stops at ``stop``."""
    intervals: list[_Interval] = []
    for stretch in stretches:
        if stretch.role is not _Role.RUNNING:
            continue
        low = max(stretch.start, start)
        high = stretch.end
        if stop is not None:
            if stop < low:
                break
            if high is None or stop <= high:  # stopped while running: deadline still projectable
                intervals.append(_Interval(low, stop, True))
                break
        if high is None or high > low:
            intervals.append(_Interval(low, high, high is None))
    return intervals


def _reach(
    calendar: BusinessCalendar, intervals: Sequence[_Interval], amount: timedelta
) -> datetime | None:
    """The instant the clock has used ``amount``, projected past the last interval when the
    clock ran to its end; None when it stopped short of it."""
    used = timedelta(0)
    for index, interval in enumerate(intervals):
        last = index == len(intervals) - 1
        if interval.end is None or (last and interval.projectable):
            return calendar.add(interval.start, amount - used)
        length = calendar.between(interval.start, interval.end)
        if used + length >= amount:
            return calendar.add(interval.start, amount - used)
        used += length
    return None


def _used(
    calendar: BusinessCalendar, intervals: Sequence[_Interval], horizon: datetime
) -> timedelta:
    total = timedelta(0)
    for interval in intervals:
        end = interval.end if interval.end is not None else horizon
        total += calendar.between(interval.start, end)
    return total


def _threshold(target: timedelta, fraction: float) -> timedelta:
    seconds = round(target.total_seconds() * fraction, 6)
    return timedelta(seconds=math.ceil(seconds))


def _waiting_minutes(role: _Role, reaction: ClockState, resolution: ClockState) -> int | None:
    """Business minutes left, rounded up, of the clock that waits while the lead is stopped
    (on hold or outside the pipeline): the reaction until it is settled (met or breached),
    then the resolution. None while running or done, for a breached clock (its due stays
    shown) and for a clock without a target (no tariff, resolution by agreement)."""
    if role not in (_Role.HOLD, _Role.OUTSIDE):
        return None
    settled = reaction.finished_at is not None or reaction.breached
    waiting = resolution if settled else reaction
    if waiting.breached or waiting.remaining is None:
        return None
    return math.ceil(waiting.remaining.total_seconds() / 60)


def _status(tariff: Tariff | None, reaction: _Clock, resolution: _Clock, role: _Role) -> SlaStatus:
    if tariff is None:
        return SlaStatus.NO_TARIFF
    if reaction.state.breached or resolution.state.breached:
        return SlaStatus.MET_LATE if role is _Role.DONE else SlaStatus.BREACHED
    if role is _Role.DONE:
        return SlaStatus.MET
    if role is not _Role.RUNNING:
        return SlaStatus.PAUSED
    if reaction.at_risk or resolution.at_risk:
        return SlaStatus.AT_RISK
    return SlaStatus.ON_TIME
