"""Plain-text tables for people: a cycle's planned writes and tasks, and leads' SLA fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from amo_client.models import Lead
from sla.policy import Policy
from worker.cycle import CycleReport
from worker.fields import SPEC_BY_KEY, FieldMap, FieldSpec, FieldType, SlaField, Value, read_value
from worker.setup import AccountSetup
from worker.text import table


def format_value(value: Value, spec: FieldSpec[SlaField], fields: FieldMap, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    if spec.type is FieldType.CHECKBOX:
        return "да" if value else "нет"
    if spec.type is FieldType.DATE_TIME and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).astimezone(zone).strftime("%d.%m.%Y %H:%M")
    if spec.type is FieldType.SELECT:
        names = {enum_id: text for text, enum_id in fields.status_enum_ids.items()}
        return names.get(int(value), str(value))
    return str(value)


def print_plan(
    report: CycleReport, setup: AccountSetup, policy: Policy, out: TextIO, *, dry_run: bool
) -> None:
    """The field writes and tasks of one cycle (planned, with ``dry_run``)."""
    spec_of = {field_id: SPEC_BY_KEY[key] for key, field_id in setup.fields.ids.items()}
    rows: list[list[str]] = []
    for write in report.writes:
        changes = [
            f"{spec_of[field_id].name} = "
            f"{format_value(value, spec_of[field_id], setup.fields, policy.zone)}"
            for field_id, value in write.values.items()
            if field_id in spec_of
        ]
        if write.status_id is not None:
            changes.append(f"→ стадия {setup.status_names.get(write.status_id, write.status_id)}")
        for index, change in enumerate(changes or ["—"]):
            first = index == 0
            rows.append(
                [str(write.lead_id) if first else "", write.lead_name if first else "", change]
            )
    verb = "would write" if dry_run else "written"
    print(f"{len(report.writes)} lead(s) {verb}:", file=out)
    for text in table(["lead", "name", "change"], rows):
        print(text, file=out)
    task_rows = [
        [
            str(plan.entity_id) if plan.entity_type == "leads" else f"company {plan.entity_id}",
            plan.clock,
            str(plan.responsible_user_id),
            plan.text.split("\n")[0],
        ]
        for plan in report.tasks
    ]
    print(file=out)
    print(f"{len(report.tasks)} task(s) due (created once; see the ledger):", file=out)
    for text in table(["on", "clock", "user", "text"], task_rows):
        print(text, file=out)
    if report.past_breaches and report.first_start is not None:
        since = report.first_start.astimezone(policy.zone).strftime("%d.%m.%Y %H:%M")
        ids = ", ".join(str(lead_id) for lead_id in report.past_breaches)
        print(file=out)
        print(
            f"{len(report.past_breaches)} request(s) breached before the worker's first start "
            f"on the account ({since}): their fields show it, no task (SLA_PAST_BREACH_TASKS "
            f"asks for one): {ids}",
            file=out,
        )


SHOWN_FIELDS: tuple[SlaField, ...] = (
    SlaField.STATUS,
    SlaField.REACTION_DUE,
    SlaField.REACTED_AT,
    SlaField.REACTION_BREACHED,
    SlaField.RESOLUTION_DUE,
    SlaField.RESOLUTION_BREACHED,
    SlaField.REMAINING_MINUTES,
)


def lead_field_rows(
    leads: Sequence[Lead],
    fields: FieldMap,
    zone: ZoneInfo,
    about: Mapping[int, str],
    stage_names: Mapping[int, str],
) -> tuple[list[str], list[list[str]]]:
    """Each lead's stage and SLA fields as amoCRM holds them, for a table."""
    headers = ["lead", "request", "stage", *(SPEC_BY_KEY[key].name for key in SHOWN_FIELDS)]
    rows = []
    for lead in leads:
        stage = stage_names.get(lead.status_id, str(lead.status_id))
        cells = [str(lead.id), about.get(lead.id, lead.name), stage]
        for key in SHOWN_FIELDS:
            field_id = fields.id_of(key)
            spec = SPEC_BY_KEY[key]
            value = read_value(lead.field(field_id), spec) if field_id is not None else None
            cells.append(format_value(value, spec, fields, zone))
        rows.append(cells)
    return headers, rows
