"""The admin's commands against a live account: ``check`` and ``provision``.

``check`` answers "will the worker run here?" with every problem at once: the
token, the pipeline and its stages, the SLA fields and their types, the
account's API filtering. ``provision`` creates the SLA fields the account lacks,
with the right types and select options; run twice, it creates nothing the
second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amo_client.client import AmoClient
from amo_client.errors import AmoError
from amo_client.models import CustomField, NewCustomField
from worker.fields import FIELD_SPECS, STATUS_OPTIONS, FieldSpec, FieldType
from worker.setup import SetupError, StageOptions, missing_fields, resolve_setup

Say = Callable[[str], None]


@dataclass(frozen=True)
class CheckResult:
    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_account(client: AmoClient, stages: StageOptions) -> CheckResult:
    """Every mismatch between the configuration and the account, and what was confirmed."""
    problems: list[str] = []
    notes: list[str] = []
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
    try:
        pipelines = client.pipelines()
        fields = list(client.iter_lead_custom_fields())
    except AmoError as error:
        return CheckResult(
            (*problems, f"pipelines or fields cannot be read: {error}"), tuple(notes)
        )
    try:
        setup = resolve_setup(stages, pipelines, fields)
    except SetupError as error:
        problems.extend(error.problems)
    else:
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
    return CheckResult(tuple(problems), tuple(notes))


def planned_fields(fields: list[CustomField]) -> list[NewCustomField]:
    return [_new_field(spec) for spec in missing_fields(fields)]


def provision(client: AmoClient, *, dry_run: bool, say: Say) -> list[NewCustomField]:
    """Create the missing SLA fields (or only list them, with ``dry_run``)."""
    existing = list(client.iter_lead_custom_fields())
    wanted = planned_fields(existing)
    present = {spec.name for spec in FIELD_SPECS} - {field.name for field in wanted}
    for name in sorted(present):
        say(f"exists: «{name}»")
    if not wanted:
        say("nothing to create: every SLA field exists")
        return []
    for field in wanted:
        options = f" with options {', '.join(field.enums)}" if field.enums else ""
        verb = "would create" if dry_run else "creating"
        say(f"{verb}: «{field.name}» ({field.type}){options}")
    if not dry_run:
        created = client.create_lead_custom_fields(wanted)
        for made in created:
            say(f"created: «{made.name}» id {made.id}")
    return wanted


def _new_field(spec: FieldSpec) -> NewCustomField:
    enums = STATUS_OPTIONS if spec.type is FieldType.SELECT else ()
    return NewCustomField(name=spec.name, type=spec.type.value, enums=enums)
