"""Escalation tasks, created exactly once per lead, clock, waiting period and step.

The engine says which steps of the escalation ladder (spec §4.1; by default one step, the
breach of each clock) owe a task now (:attr:`sla.state.StepState.owed`); this module names
each task (its ledger key and marker), picks its assignee and text, and creates it.

Two guards make "exactly once" hold across crashes, restarts and a lost state
directory:

1. the local ledger claims the task durably *before* the create request goes out,
   and records the task id when amoCRM answers;
2. any task the ledger cannot vouch for (no entry: a fresh state directory; or a
   claim without an id: a crash between the request and the record) is first
   looked for in amoCRM, among the lead's tasks, by the marker line every task
   text ends with. Only when none is found is it created.

The marker is a short line such as ``[SLA: реакция]``; agents see it as a label,
and it lets the worker recognise its own tasks whatever the text template says. The
breach of the reaction (to the responsible user) and of the resolution (to the
supervisor) keep the keys and markers they always had; every other step's names its clock,
its waiting period and the step: ``[SLA: ответ на сообщение 05.11.2025 14:02:07, срок →
ответственный]``.

Tasks are for breaches that happen while the worker runs (spec §5): a breach whose
deadline passed before the worker's first start on the account gets its fields and no
task, unless ``past_breach_age`` asks for those younger than an age (or all of them).

A task amoCRM refuses (an unknown responsible user, a task type the account lacks) is
left out of its batch like a rejected field write: it is logged with its lead, marked
rejected in the ledger and tried again after ``retry_rejected_after``; the other tasks
are created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import structlog

from amo_client.client import AmoClient
from amo_client.errors import AmoError, ValidationFailed
from amo_client.models import Lead, NewTask
from sla.policy import AssigneeKind, LadderClock, LadderStep
from sla.state import SlaState, StepState
from worker.store import StateStore, TaskMark

log = structlog.get_logger("worker.tasks")

TASKS_PER_LOOKUP = 50


class BreachClock(StrEnum):
    REACTION = "reaction"
    RESOLUTION = "resolution"


MARKERS: Mapping[BreachClock, str] = {
    BreachClock.REACTION: "[SLA: реакция]",
    BreachClock.RESOLUTION: "[SLA: решение]",
}
CLOCK_WORDS: Mapping[LadderClock, str] = {
    LadderClock.REACTION: "реакция",
    LadderClock.RESOLUTION: "решение",
    LadderClock.NEXT_RESPONSE: "ответ",
}
NEXT_RESPONSE_TEXT = (
    "Клиент ждёт ответа по обращению «{lead_name}» (#{lead_id}) с {since}, тариф «{tariff}»: "
    "срок ответа истёк {due}."
)


@dataclass(frozen=True)
class TaskOptions:
    reaction_text: str
    resolution_text: str
    task_type_id: int = 1
    due_after: timedelta = timedelta(hours=1)
    supervisor_user_id: int | None = None
    retry_rejected_after: timedelta = timedelta(hours=1)
    # Breaches older than the first start get a task when at most this old at that start:
    # zero (the default) gives none, None gives all.
    past_breach_age: timedelta | None = timedelta(0)
    display_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Moscow"))
    # The text of the next-response breach task of the default ladder.
    next_response_text: str = NEXT_RESPONSE_TEXT

    def default_text(self, clock: LadderClock) -> str:
        """The text of a step the policy gives none: the default ladder's breach tasks."""
        if clock is LadderClock.REACTION:
            return self.reaction_text
        if clock is LadderClock.RESOLUTION:
            return self.resolution_text
        return self.next_response_text


@dataclass(frozen=True)
class TaskPlan:
    """A task the worker owes: on a lead (``entity_type`` ``leads``) or a company.

    ``clock`` names it among the entity's tasks (a ladder step's :func:`step_key`, or a
    ledger's key such as ``package:2025-11-05``); the last line of ``text`` is its marker."""

    entity_id: int
    clock: str
    responsible_user_id: int
    text: str
    entity_type: str = "leads"

    @property
    def marker(self) -> str:
        return self.text.rsplit("\n", 1)[-1]


def is_news(due: datetime, first_start: datetime | None, options: TaskOptions) -> bool:
    """Whether a step whose instant is ``due`` (a breach: the deadline) gets a task: it came
    after the first start, or the admin asked for past ones of its age (spec §5)."""
    if first_start is None or due >= first_start or options.past_breach_age is None:
        return True
    return first_start - due <= options.past_breach_age


def past_breaches(
    states: Mapping[int, SlaState], first_start: datetime | None, options: TaskOptions
) -> list[int]:
    """The leads whose due escalation task is withheld as older than the first start."""
    return [
        lead_id
        for lead_id, state in sorted(states.items())
        if any(
            step.at is not None and not is_news(step.at, first_start, options)
            for step in _owed(state, options)
        )
    ]


def created_tasks(store: StateStore, plans: Sequence[TaskPlan]) -> set[tuple[str, int, str]]:
    """The planned tasks the task ledger holds as created, as (entity type, id, clock)."""
    return {
        (plan.entity_type, plan.entity_id, plan.clock)
        for plan in plans
        if (entry := store.ledger_entry(plan.entity_id, plan.clock, entity=plan.entity_type))
        is not None
        and entry.mark is TaskMark.CREATED
    }


def _owed(state: SlaState, options: TaskOptions) -> list[StepState]:
    """The steps that owe a task now and have someone to give it to (a supervisor step
    waits for SLA_SUPERVISOR_USER_ID)."""
    return [
        step
        for step in state.ladder
        if step.owed
        and step.at is not None
        and (step.step.to.kind is not AssigneeKind.SUPERVISOR or options.supervisor_user_id)
    ]


def _legacy(step: LadderStep) -> BreachClock | None:
    """The two breach tasks the worker always made keep their keys and markers."""
    if not step.at_breach:
        return None
    if step.clock is LadderClock.REACTION and step.to.kind is AssigneeKind.RESPONSIBLE:
        return BreachClock.REACTION
    if step.clock is LadderClock.RESOLUTION and step.to.kind is AssigneeKind.SUPERVISOR:
        return BreachClock.RESOLUTION
    return None


def step_key(step: StepState) -> str:
    """The task's name in the ledger: ``reaction`` and ``resolution`` for the default breach
    tasks, else the clock, the waiting period's start and the step:
    ``next_response@1762344127:breach>responsible``."""
    legacy = _legacy(step.step)
    if legacy is not None:
        return legacy.value
    period = f"@{int(step.period.timestamp())}" if step.period is not None else ""
    return f"{step.step.clock.value}{period}:{step.step.key}"


def step_marker(step: StepState, zone: ZoneInfo) -> str:
    """The task's last line, by which the worker finds it in amoCRM after a lost state."""
    legacy = _legacy(step.step)
    if legacy is not None:
        return MARKERS[legacy]
    period = ""
    if step.period is not None:
        period = f" на сообщение {step.period.astimezone(zone):%d.%m.%Y %H:%M:%S}"
    return f"[SLA: {CLOCK_WORDS[step.step.clock]}{period}, {step.step.label}]"


def is_ladder_key(clock: str) -> bool:
    """Whether a lead task's key is an escalation step's (not a ledger's)."""
    return clock.split(":", 1)[0].split("@", 1)[0] in {c.value for c in LadderClock}


HeadOf = Callable[[int], int | None]  # a user's group head, if the account names one


def plan_tasks(
    states: Mapping[int, SlaState],
    lead_of: Callable[[int], Lead],
    options: TaskOptions,
    first_start: datetime | None = None,
    head_of: HeadOf = lambda user_id: None,
) -> list[TaskPlan]:
    """The escalation tasks the states call for (before the ledger is consulted).

    ``lead_of`` is asked only for the leads whose state owes a task, one at a time;
    ``head_of`` only for a step that goes to the head of the responsible user's group."""
    plans: list[TaskPlan] = []
    for lead_id, state in sorted(states.items()):
        steps = [
            step
            for step in _owed(state, options)
            if step.at is not None and is_news(step.at, first_start, options)
        ]
        if not steps:
            continue
        lead = lead_of(lead_id)
        for step in steps:
            text = step.step.text or options.default_text(step.step.clock)
            plans.append(
                TaskPlan(
                    lead_id,
                    step_key(step),
                    _assignee(step.step, lead, options, head_of),
                    render_text(text, lead, state, step.due, options, since=step.since)
                    + "\n"
                    + step_marker(step, options.display_zone),
                )
            )
    return plans


def _assignee(step: LadderStep, lead: Lead, options: TaskOptions, head_of: HeadOf) -> int:
    """Who gets the step's task; a group without a head named in the policy escalates to the
    supervisor, or without one to the responsible user."""
    kind = step.to.kind
    if kind is AssigneeKind.USER and step.to.user_id is not None:
        return step.to.user_id
    if kind is AssigneeKind.SUPERVISOR and options.supervisor_user_id is not None:
        return options.supervisor_user_id
    if kind is AssigneeKind.GROUP_HEAD:
        head = head_of(lead.responsible_user_id)
        if head is not None:
            return head
        return options.supervisor_user_id or lead.responsible_user_id
    return lead.responsible_user_id


def render_text(
    template: str,
    lead: Lead,
    state: SlaState,
    due: datetime | None,
    options: TaskOptions,
    *,
    since: datetime | None = None,
) -> str:
    def shown(moment: datetime | None) -> str:
        return (
            "—"
            if moment is None
            else moment.astimezone(options.display_zone).strftime("%d.%m.%Y %H:%M")
        )

    return template.format(
        lead_id=lead.id,
        lead_name=lead.name or f"#{lead.id}",
        tariff=state.tariff or "—",
        request_class="нестандартное" if state.request_class == "non_standard" else "типовое",
        due=shown(due),
        since=shown(since or state.registered_at),
    )


class GroupHeads:
    """The head of each user's group, as the policy's ``group_heads`` names them by the
    group's name or id; the account's users and groups are read at the first question
    (two requests), and a failed read names no head."""

    def __init__(self, client: AmoClient, heads: Mapping[str, int]) -> None:
        self._client = client
        self._heads = heads
        self._groups: dict[int, int | None] | None = None  # user id: group id
        self._names: dict[int, str] = {}  # group id: name

    def __call__(self, user_id: int) -> int | None:
        if not self._heads:
            return None
        if self._groups is None:
            self._groups = self._read()  # None when the read failed: asked again next time
        group = (self._groups or {}).get(user_id)
        if group is None:
            return None
        return self._heads.get(str(group)) or self._heads.get(self._names.get(group, ""))

    def _read(self) -> dict[int, int | None] | None:
        try:
            self._names = {group.id: group.name for group in self._client.user_groups()}
            return {user.id: user.rights.group_id for user in self._client.iter_users()}
        except AmoError as error:
            log.warning("group_heads_unread", problem=str(error))
            return None


def ensure_tasks(
    client: AmoClient,
    store: StateStore,
    plans: Sequence[TaskPlan],
    options: TaskOptions,
    now: datetime,
) -> int:
    """Create the planned tasks that do not exist yet; returns how many were created."""
    at = int(now.timestamp())
    pending = [plan for plan in plans if _wanted(store, plan, at, options)]
    if not pending:
        return 0
    existing = _existing_tasks(client, pending)
    to_create: list[TaskPlan] = []
    for plan in pending:
        task_id = existing.get((plan.entity_type, plan.entity_id, plan.clock))
        if task_id is not None:
            store.record_task(plan.entity_id, plan.clock, task_id, at, entity=plan.entity_type)
            log.info("task_skipped_existing", **_about(plan), task_id=task_id)
        else:
            to_create.append(plan)
    created = 0
    for start in range(0, len(to_create), TASKS_PER_LOOKUP):
        created += _create(client, store, to_create[start : start + TASKS_PER_LOOKUP], options, at)
    return created


def _create(
    client: AmoClient, store: StateStore, batch: Sequence[TaskPlan], options: TaskOptions, at: int
) -> int:
    """Create one batch; the tasks amoCRM rejects are marked and the rest sent again."""
    for plan in batch:
        store.claim_task(plan.entity_id, plan.clock, at, entity=plan.entity_type)
    pending = list(batch)
    while pending:
        try:
            created = client.create_tasks([_new_task(plan, options, at) for plan in pending])
        except ValidationFailed as error:
            bad = error.bad_indexes() & set(range(len(pending)))
            if not bad:
                raise
            for index in sorted(bad):
                plan = pending[index]
                store.reject_task(plan.entity_id, plan.clock, at, entity=plan.entity_type)
                problem = "; ".join(str(i) for i in error.items if i.request_index == index)
                log.warning(
                    "task_rejected",
                    **_about(plan),
                    responsible_user_id=plan.responsible_user_id,
                    problem=problem,
                )
            pending = [plan for i, plan in enumerate(pending) if i not in bad]
            continue
        for plan, task in zip(pending, created, strict=True):
            store.record_task(plan.entity_id, plan.clock, task.id, at, entity=plan.entity_type)
            log.info(
                "task_created",
                **_about(plan),
                task_id=task.id,
                responsible_user_id=plan.responsible_user_id,
            )
        return len(created)
    return 0


def _about(plan: TaskPlan) -> dict[str, object]:
    """The log fields that name a task: the lead, or the company, and the clock."""
    key = "lead_id" if plan.entity_type == "leads" else "company_id"
    return {key: plan.entity_id, "clock": plan.clock}


def _new_task(plan: TaskPlan, options: TaskOptions, at: int) -> NewTask:
    return NewTask(
        text=plan.text,
        entity_id=plan.entity_id,
        entity_type=plan.entity_type,
        responsible_user_id=plan.responsible_user_id or None,
        task_type_id=options.task_type_id,
        complete_till=at + int(options.due_after.total_seconds()),
    )


def _wanted(store: StateStore, plan: TaskPlan, at: int, options: TaskOptions) -> bool:
    """Whether the ledger leaves this task to be made: not created, not refused just now."""
    entry = store.ledger_entry(plan.entity_id, plan.clock, entity=plan.entity_type)
    if entry is None or entry.mark is TaskMark.CLAIMED:
        return True
    if entry.mark is TaskMark.REJECTED:
        return at - entry.at >= options.retry_rejected_after.total_seconds()
    return False


def _existing_tasks(
    client: AmoClient, plans: Sequence[TaskPlan]
) -> dict[tuple[str, int, str], int]:
    """The planned tasks amoCRM already has, found by their markers, by (entity, id, clock)."""
    found: dict[tuple[str, int, str], int] = {}
    for entity_type in sorted({plan.entity_type for plan in plans}):
        wanted = [plan for plan in plans if plan.entity_type == entity_type]
        ids = sorted({plan.entity_id for plan in wanted})
        for start in range(0, len(ids), TASKS_PER_LOOKUP):
            chunk = ids[start : start + TASKS_PER_LOOKUP]
            # Completed tasks count too: a task an agent already closed was still created once.
            # "None there" means creating one: an empty answer is asked again first.
            for task in client.iter_tasks(
                entity_type=entity_type, entity_ids=chunk, confirm_empty=True
            ):
                for plan in wanted:
                    if task.entity_id == plan.entity_id and plan.marker in (task.text or ""):
                        found.setdefault((entity_type, plan.entity_id, plan.clock), task.id)
    return found
