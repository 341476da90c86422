"""Breach tasks, created exactly once per lead and clock.

Two guards make "exactly once" hold across crashes, restarts and a lost state
directory:

1. the local ledger claims the task durably *before* the create request goes out,
   and records the task id when amoCRM answers;
2. any task the ledger cannot vouch for (no entry: a fresh state directory; or a
   claim without an id: a crash between the request and the record) is first
   looked for in amoCRM, among the lead's tasks, by the marker line every task
   text ends with. Only when none is found is it created.

The marker is a short line such as ``[SLA: реакция]``; agents see it as a label,
and it lets the worker recognise its own tasks whatever the text template says.

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
from amo_client.errors import ValidationFailed
from amo_client.models import Lead, NewTask
from sla.state import SlaState
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


@dataclass(frozen=True)
class TaskPlan:
    """A task the worker owes: on a lead (``entity_type`` ``leads``) or a company.

    ``clock`` names it among the entity's tasks (a :class:`BreachClock`, or a ledger's key
    such as ``package:2025-11-05``); the last line of ``text`` is its marker."""

    entity_id: int
    clock: str
    responsible_user_id: int
    text: str
    entity_type: str = "leads"

    @property
    def marker(self) -> str:
        return self.text.rsplit("\n", 1)[-1]


def is_news(due: datetime, first_start: datetime | None, options: TaskOptions) -> bool:
    """Whether a breach of a clock due at ``due`` gets a task: it happened after the first
    start, or the admin asked for past breaches of its age."""
    if first_start is None or due >= first_start or options.past_breach_age is None:
        return True
    return first_start - due <= options.past_breach_age


def past_breaches(
    states: Mapping[int, SlaState], first_start: datetime | None, options: TaskOptions
) -> list[int]:
    """The leads whose due breach task is withheld as older than the first start."""
    return [
        lead_id
        for lead_id, state in sorted(states.items())
        if any(
            due is not None and not is_news(due, first_start, options)
            for due in _task_dues(state, options)
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


def _task_dues(state: SlaState, options: TaskOptions) -> list[datetime | None]:
    dues: list[datetime | None] = []
    if state.reaction_task_due:
        dues.append(state.reaction.due)
    if options.supervisor_user_id is not None and state.resolution_task_due:
        dues.append(state.resolution.due)
    return dues


def plan_tasks(
    states: Mapping[int, SlaState],
    lead_of: Callable[[int], Lead],
    options: TaskOptions,
    first_start: datetime | None = None,
) -> list[TaskPlan]:
    """The breach tasks the states call for (before the ledger is consulted).

    ``lead_of`` is asked only for the leads whose state has a task due, one at a time."""
    plans: list[TaskPlan] = []
    for lead_id, state in sorted(states.items()):
        reaction = (
            state.reaction_task_due
            and state.reaction.due is not None
            and is_news(state.reaction.due, first_start, options)
        )
        resolution = (
            options.supervisor_user_id is not None
            and state.resolution_task_due
            and state.resolution.due is not None
            and is_news(state.resolution.due, first_start, options)
        )
        if not (reaction or resolution):
            continue
        lead = lead_of(lead_id)
        if reaction and state.reaction.due is not None:
            plans.append(
                TaskPlan(
                    lead_id,
                    BreachClock.REACTION,
                    lead.responsible_user_id,
                    render_text(options.reaction_text, lead, state, state.reaction.due, options)
                    + "\n"
                    + MARKERS[BreachClock.REACTION],
                )
            )
        supervisor = options.supervisor_user_id
        if resolution and supervisor is not None and state.resolution.due is not None:
            plans.append(
                TaskPlan(
                    lead_id,
                    BreachClock.RESOLUTION,
                    supervisor,
                    render_text(options.resolution_text, lead, state, state.resolution.due, options)
                    + "\n"
                    + MARKERS[BreachClock.RESOLUTION],
                )
            )
    return plans


def render_text(
    template: str, lead: Lead, state: SlaState, due: datetime, options: TaskOptions
) -> str:
    return template.format(
        lead_id=lead.id,
        lead_name=lead.name or f"#{lead.id}",
        tariff=state.tariff or "—",
        request_class="нестандартное" if state.request_class == "non_standard" else "типовое",
        due=due.astimezone(options.display_zone).strftime("%d.%m.%Y %H:%M"),
    )


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
