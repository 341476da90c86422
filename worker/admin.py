"""The admin's commands against a live account: ``check`` and ``provision``.

``check`` answers "will the worker run here?" with every problem at once: the
token, the pipeline and its stages, the SLA fields and their types, the
account's API filtering, the breach tasks' type and supervisor, and with
webhooks on, whether amoCRM has the webhook and has not disabled it. ``provision``
creates the SLA fields the account lacks, with the right types and select
options, and adds the options a «SLA: статус» select lacks; run twice, it
changes nothing the second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from amo_client.client import AmoClient
from amo_client.errors import AmoError
from amo_client.models import Account, CustomField, Lead, NewCustomField, Webhook
from config.settings import WEBHOOK_PATH
from sla.policy import AssigneeKind, LadderClock, LadderStep, Policy, RequestClass
from sla.tags import lookalike_tariff, tariff_tags
from worker.fields import (
    COMPANY_FIELD_SPECS,
    FIELD_SPECS,
    SPEC_BY_KEY,
    STATUS_OPTIONS,
    FieldSpec,
    K,
    Ledger,
    SlaField,
)
from worker.setup import SetupError, StageOptions, missing_fields, resolve_setup
from worker.webhooks import WEBHOOK_EVENTS

Say = Callable[[str], None]


@dataclass(frozen=True)
class CheckResult:
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # what works, but likely not as the admin meant

    @property
    def ok(self) -> bool:
        return not self.problems


def check_account(
    client: AmoClient,
    stages: StageOptions,
    *,
    task_type_id: int = 1,
    supervisor_user_id: int | None = None,
) -> CheckResult:
    """Every mismatch between the configuration and the account, and what was confirmed.

    ``task_type_id`` and ``supervisor_user_id`` are SLA_TASK_TYPE_ID and
    SLA_SUPERVISOR_USER_ID: the breach tasks need a task type the account has and, for
    the resolution task, an active user."""
    problems: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    try:
        account = client.account()
    except AmoError as error:
        return CheckResult((f"the account cannot be read: {error}",), ())
    notes.append(f"token works: account «{account.name}» ({account.id}), zone {account.timezone}")
    if account.is_api_filter_enabled is False:
        problems.append(
            "API filtering is off in the account (is_api_filter_enabled: false): amoCRM then "
            "ignores filter[...] and every poll reads all leads of the account. Have it turned "
            "on for the account (amoCRM support does it on request)"
        )
    elif account.is_api_filter_enabled:
        notes.append("API filtering is on")
    _check_task_type(account, task_type_id, problems, notes)
    if supervisor_user_id is not None:
        _check_supervisor(client, supervisor_user_id, problems, notes)
    try:
        pipelines = client.pipelines()
        fields = list(client.iter_lead_custom_fields())
        company_fields = list(client.iter_company_custom_fields()) if stages.ledgers else []
    except AmoError as error:
        return CheckResult(
            (*problems, f"pipelines or fields cannot be read: {error}"), tuple(notes), ()
        )
    try:
        setup = resolve_setup(stages, pipelines, fields, company_fields)
    except SetupError as error:
        problems.extend(error.problems)
    else:
        warnings.extend(setup.loose_names)
        names = setup.status_names
        notes.append(f"pipeline «{setup.pipeline_name}» ({setup.pipeline_id})")
        first = setup.roles.first_status_id
        notes.append(f"first stage: {names.get(first, '—') if first is not None else '—'}")
        for label, ids in (
            ("hold", setup.roles.hold),
            ("done", setup.roles.done),
            ("acceptance", setup.roles.acceptance),
        ):
            listed = ", ".join(names.get(i, str(i)) for i in sorted(ids)) or "—"
            notes.append(f"{label} stages: {listed}")
        notes.append(f"all {len(setup.fields.ids)} SLA fields found with the right types")
        if setup.ledgers:
            notes.append(
                f"ledgers on: {', '.join(sorted(setup.ledgers))}; all "
                f"{len(setup.company_fields.ids)} company fields found with the right types"
            )
    return CheckResult(tuple(problems), tuple(notes), tuple(warnings))


def policy_lines(policy: Policy, source: str, leads: Sequence[Lead]) -> tuple[list[str], list[str]]:
    """What the policy makes of the open requests: notes (the tariffs and their tags, the
    requests of each) and warnings (tags that look like a tariff spelled otherwise)."""
    tariffs = "; ".join(
        f"«{tariff.name}» (tags: {', '.join(f'«{tag}»' for tag in tariff.tags)})"
        for tariff in policy.tariffs
    )
    fallback = f"«{policy.default_tariff}»" if policy.default_tariff else "«Нет тарифа»"
    notes = [f"policy: {source}: {tariffs}; a request with no tariff tag gets {fallback}"]
    counts = Counter(
        found[0][0].name if (found := tariff_tags(policy, lead.tag_names)) else None
        for lead in leads
    )
    by_tariff = ", ".join(f"«{name}» {counts.get(name, 0)}" for name in policy.tariff_names)
    notes.append(
        f"{len(leads)} open request(s) by tariff tag: {by_tariff}; "
        f"with no tariff tag: {counts.get(None, 0)}"
    )
    lookalikes: Counter[tuple[str, str]] = Counter()
    for lead in leads:
        for tag in lead.tag_names:
            tariff = lookalike_tariff(policy, tag)
            if tariff is not None:
                lookalikes[(tag, tariff.name)] += 1
    warnings = [
        f"tag «{tag}» on {count} open request(s) looks like tariff «{name}» spelled "
        f"otherwise; it names no tariff (fix the tag in amoCRM, or add the spelling to the "
        "tariff: SLA_TARIFF_TAGS or the policy file)"
        for (tag, name), count in sorted(lookalikes.items())
    ]
    return notes, warnings


CLOCK_NAMES = {
    LadderClock.REACTION: "reaction",
    LadderClock.RESOLUTION: "resolution",
    LadderClock.NEXT_RESPONSE: "next response",
}


def ladder_lines(policy: Policy, supervisor_user_id: int | None) -> tuple[list[str], list[str]]:
    """The next-response targets and the escalation ladder as ``check`` prints them (notes),
    and the steps that cannot reach anyone as configured (warnings)."""
    notes: list[str] = []
    warnings: list[str] = []
    found = policy.next_response
    if found is None:
        notes.append("next response: off (the policy has no [next_response] table)")
    else:
        targets = []
        for tariff in policy.tariff_names:
            per_class = [
                f"{kind.value} {_span(target)}"
                for kind in RequestClass
                if (target := found.target(tariff, kind)) is not None
            ]
            targets.append(f"«{tariff}» {', '.join(per_class) or 'none'}")
        events = ", ".join(sorted(found.customer_events))
        notes.append(f"next response: {'; '.join(targets)} (customer messages: {events})")
    for clock in LadderClock:
        if clock is LadderClock.NEXT_RESPONSE and found is None:
            continue
        steps = policy.ladder.of(clock)
        notes += [
            f"escalation, {CLOCK_NAMES[clock]}: {_step_text(step, supervisor_user_id)}"
            for step in steps
        ] or [f"escalation, {CLOCK_NAMES[clock]}: no steps"]
        for step in steps:
            if step.text is None:
                continue  # the default ladder: no supervisor, no resolution task, as always
            if step.to.kind is AssigneeKind.SUPERVISOR and supervisor_user_id is None:
                warnings.append(
                    f"escalation, {CLOCK_NAMES[clock]}: step «{step.trigger}» goes to the "
                    "supervisor, but SLA_SUPERVISOR_USER_ID is not set: it creates no task"
                )
            if step.to.kind is AssigneeKind.GROUP_HEAD and not policy.ladder.group_heads:
                warnings.append(
                    f"escalation, {CLOCK_NAMES[clock]}: step «{step.trigger}» goes to the "
                    "head of the responsible user's group, but [escalation.group_heads] names "
                    "none: it goes to the supervisor, else the responsible user"
                )
    return notes, warnings


def _step_text(step: LadderStep, supervisor_user_id: int | None) -> str:
    if step.share is not None:
        when = f"at {step.trigger} of the target"
    elif step.at_breach or step.after is None:
        when = "at the breach"
    else:
        when = f"{_span(step.after)} after the breach"
    kind = step.to.kind
    if kind is AssigneeKind.SUPERVISOR:
        who = (
            f"the supervisor ({supervisor_user_id})"
            if supervisor_user_id is not None
            else "the supervisor (SLA_SUPERVISOR_USER_ID not set: no task)"
        )
    elif kind is AssigneeKind.GROUP_HEAD:
        who = "the head of the responsible user's group"
    elif kind is AssigneeKind.USER:
        who = f"user {step.to.user_id}"
    else:
        who = "the responsible user"
    text = "the default text" if step.text is None else f"«{step.text}»"
    return f"{when} → {who}: {text}"


def _span(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}m" if rest else f"{hours}h"


def shown_destination(destination: str) -> str:
    """The webhook's address with its secret masked, for the admin's eyes and the logs."""
    base, sep, _ = destination.rpartition(WEBHOOK_PATH)
    return f"{base}{WEBHOOK_PATH}***" if sep else destination


def check_webhook(
    client: AmoClient, destination: str | None, public_url: str | None
) -> CheckResult:
    """Whether amoCRM sends the worker its webhooks: subscribed, to every event, not disabled.

    ``destination`` is the full address (with the secret), None when SLA_WEBHOOK_URL is not
    set; ``public_url`` is SLA_WEBHOOK_URL, to find subscriptions with an older secret."""
    if destination is None or public_url is None:
        return CheckResult(
            (
                "SLA_WEBHOOK_URL: not set; amoCRM needs the public HTTPS address of the worker "
                "to send webhooks to (see the README, «Webhooks»)",
            ),
            (),
        )
    try:
        hooks = client.webhooks()
    except AmoError as error:
        return CheckResult((f"the account's webhooks cannot be read: {error}",), ())
    problems: list[str] = []
    notes: list[str] = []
    ours = next((hook for hook in hooks if hook.destination == destination), None)
    shown = shown_destination(destination)
    if ours is None:
        problems.append(
            f"the webhook {shown} is not registered: run `python -m worker webhook register`"
        )
    elif ours.disabled:
        problems.append(
            f"amoCRM has disabled the webhook {shown} after too many failed answers; make sure "
            f"{public_url}{WEBHOOK_PATH}… answers from the internet, then switch it back on in "
            "amoCRM's webhook settings (or `webhook unregister` and `webhook register`)"
        )
    else:
        missing = [event for event in WEBHOOK_EVENTS if event not in ours.settings]
        if missing:
            problems.append(
                f"the webhook {shown} lacks the events {', '.join(missing)}: run "
                "`python -m worker webhook register` to subscribe them"
            )
        else:
            notes.append(f"webhook {shown} registered and enabled: {', '.join(ours.settings)}")
    problems.extend(
        f"another subscription to {shown_destination(hook.destination)} has an old secret: "
        "every hook to it gets 404; remove it in amoCRM's webhook settings"
        for hook in _stale(hooks, destination, public_url)
    )
    return CheckResult(tuple(problems), tuple(notes))


def _stale(hooks: Iterable[Webhook], destination: str, public_url: str) -> list[Webhook]:
    prefix = public_url + WEBHOOK_PATH
    return [h for h in hooks if h.destination.startswith(prefix) and h.destination != destination]


def _check_task_type(account: Account, wanted: int, problems: list[str], notes: list[str]) -> None:
    types = {task_type.id: task_type.name for task_type in account.embedded.task_types}
    if wanted in types:
        notes.append(f"breach tasks: task type «{types[wanted]}» ({wanted})")
        return
    known = ", ".join(f"{type_id} «{name}»" for type_id, name in sorted(types.items()))
    problems.append(
        f"SLA_TASK_TYPE_ID: the account has no task type {wanted}; "
        + (f"it has {known}" if known else "it reports none")
    )


def _check_supervisor(
    client: AmoClient, wanted: int, problems: list[str], notes: list[str]
) -> None:
    try:
        user = next((user for user in client.iter_users() if user.id == wanted), None)
    except AmoError as error:
        notes.append(
            f"SLA_SUPERVISOR_USER_ID {wanted} not confirmed: users cannot be read: {error}"
        )
        return
    if user is None:
        problems.append(f"SLA_SUPERVISOR_USER_ID: the account has no user {wanted}")
    elif not user.rights.is_active:
        problems.append(
            f"SLA_SUPERVISOR_USER_ID: user «{user.name}» ({wanted}) is deactivated in the "
            "account, so nobody would see the resolution-breach tasks"
        )
    else:
        notes.append(f"resolution-breach tasks go to «{user.name}» ({wanted})")


@dataclass(frozen=True)
class ProvisionPlan:
    """What ``provision`` changes: the fields to create and the options to add to an
    existing «SLA: статус» select (``status_field``), in that order."""

    new_fields: tuple[NewCustomField, ...] = ()
    status_field: CustomField | None = None
    new_options: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # names of the SLA fields already in place

    @property
    def empty(self) -> bool:
        return not self.new_fields and not self.new_options


def plan_provision(
    fields: Sequence[CustomField],
    field_ids: Mapping[SlaField, int] | None = None,
    ledgers: frozenset[Ledger] = frozenset(),
    next_response: bool = False,
) -> ProvisionPlan:
    """The changes that give the account every SLA field and every status option.

    A field mapped by id (``field_ids``, the SLA_FIELD_* settings) is never created; the
    status select is the mapped one, else the one named «SLA: статус»."""
    mapped = dict(field_ids or {})
    new_fields = tuple(
        _new_field(spec)
        for spec in missing_fields(fields, FIELD_SPECS, ledgers, next_response)
        if spec.key not in mapped
    )
    status_field = _status_field(fields, mapped.get(SlaField.STATUS))
    new_options: tuple[str, ...] = ()
    if status_field is not None:
        present = {enum.value for enum in status_field.enums or ()}
        new_options = tuple(option for option in STATUS_OPTIONS if option not in present)
    created = {new.name for new in new_fields}
    kept = tuple(
        sorted(
            spec.name
            for spec in FIELD_SPECS
            if spec.needed(ledgers, next_response) and spec.name not in created
        )
    )
    return ProvisionPlan(
        new_fields=new_fields,
        status_field=status_field if new_options else None,
        new_options=new_options,
        kept=kept,
    )


def _status_field(fields: Iterable[CustomField], mapped: int | None) -> CustomField | None:
    spec = SPEC_BY_KEY[SlaField.STATUS]
    if mapped is not None:
        found = next((f for f in fields if f.id == mapped), None)
    else:
        found = next((f for f in fields if f.name.strip() == spec.name), None)
    return found if found is not None and found.type == spec.type.value else None


def status_enums_update(status_field: CustomField, new_options: Sequence[str]) -> dict[str, Any]:
    """The PATCH item that adds ``new_options`` to a select. amoCRM drops the options a PATCH
    leaves out, so every existing one is sent again with its id, before the new ones."""
    existing = list(status_field.enums or ())
    last_sort = max((enum.sort for enum in existing), default=0)
    enums: list[dict[str, Any]] = [
        {"id": enum.id, "value": enum.value, "sort": enum.sort} for enum in existing
    ]
    enums += [
        {"value": option, "sort": last_sort + 10 * (index + 1)}
        for index, option in enumerate(new_options)
    ]
    return {"id": status_field.id, "enums": enums}


def provision(
    client: AmoClient,
    *,
    dry_run: bool,
    say: Say,
    field_ids: Mapping[SlaField, int] | None = None,
    ledgers: frozenset[Ledger] = frozenset(),
    next_response: bool = False,
) -> ProvisionPlan:
    """Create the missing SLA fields and add the missing status options (or only list the
    changes, with ``dry_run``); with ``ledgers``, their lead and company fields too; with
    ``next_response`` (the policy has its targets), its two lead fields."""
    provision_companies(client, dry_run=dry_run, say=say, ledgers=ledgers)
    plan = plan_provision(list(client.iter_lead_custom_fields()), field_ids, ledgers, next_response)
    for name in plan.kept:
        say(f"exists: «{name}»")
    if plan.empty:
        say("nothing to create: every SLA field exists, with every status option")
        return plan
    for new in plan.new_fields:
        options = f" with options {', '.join(new.enums)}" if new.enums else ""
        verb = "would create" if dry_run else "creating"
        say(f"{verb}: «{new.name}» ({new.type}){options}")
    status_field = plan.status_field
    if status_field is not None:
        verb = "would add" if dry_run else "adding"
        say(
            f"{verb} options to «{status_field.name}» ({status_field.id}): "
            + ", ".join(plan.new_options)
        )
    if dry_run:
        return plan
    if plan.new_fields:
        for made in client.create_lead_custom_fields(plan.new_fields):
            say(f"created: «{made.name}» id {made.id}")
    if status_field is not None:
        client.update_lead_custom_fields([status_enums_update(status_field, plan.new_options)])
        say(f"added options to «{status_field.name}»: {', '.join(plan.new_options)}")
    return plan


def _new_field(spec: FieldSpec[K]) -> NewCustomField:
    return NewCustomField(name=spec.name, type=spec.type.value, enums=spec.options)


def provision_companies(
    client: AmoClient, *, dry_run: bool, say: Say, ledgers: frozenset[Ledger]
) -> tuple[NewCustomField, ...]:
    """Create the company ledger fields the account lacks (or only list them)."""
    if not ledgers:
        return ()
    fields = list(client.iter_company_custom_fields())
    new_fields = tuple(
        _new_field(spec) for spec in missing_fields(fields, COMPANY_FIELD_SPECS, ledgers)
    )
    for spec in COMPANY_FIELD_SPECS:
        if spec.needed(ledgers) and spec.name not in {new.name for new in new_fields}:
            say(f"exists: company field «{spec.name}»")
    for new in new_fields:
        options = f" with options {', '.join(new.enums)}" if new.enums else ""
        verb = "would create" if dry_run else "creating"
        say(f"{verb}: company field «{new.name}» ({new.type}){options}")
    if new_fields and not dry_run:
        for made in client.create_company_custom_fields(new_fields):
            say(f"created: company field «{made.name}» id {made.id}")
    return new_fields
