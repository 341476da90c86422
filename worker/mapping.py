"""amoCRM API v4 objects -> the SLA engine's inputs.

A value that cannot be read (a text where a date belongs, a field with several
values) never stops the lead: it is left out and named in ``LeadFacts.problems``,
which the engine passes on to the worker's log.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from amo_client.models import CustomFieldValues, Event, Lead, StatusRef
from sla.state import LeadEvent, LeadFacts

__all__ = ["lead_events", "lead_facts"]

AGREED_DUE_FIELD_NAME = "SLA: срок по согласованию"


def lead_facts(
    lead: Lead, *, agreed_due_field_id: int | None, class_field_id: int | None
) -> LeadFacts:
    """The SLA inputs of one lead (``GET /api/v4/leads`` item)."""
    problems: list[str] = []
    agreed_due = None
    if agreed_due_field_id is not None:
        agreed_due = _agreed_due(lead.field(agreed_due_field_id), problems)
    class_value = None
    if class_field_id is not None:
        class_value = _class_value(lead.field(class_field_id), problems)
    return LeadFacts(
        lead_id=lead.id,
        pipeline_id=lead.pipeline_id,
        status_id=lead.status_id,
        created_at=_aware(lead.created_at),
        tags=lead.tag_names,
        class_value=class_value,
        agreed_due=agreed_due,
        responsible_user_id=lead.responsible_user_id,
        problems=tuple(problems),
    )


def lead_events(events: Iterable[Event]) -> list[LeadEvent]:
    """Lead events (``GET /api/v4/events`` items) in time order; other entities are dropped."""
    mapped = [
        LeadEvent(
            event_id=event.id,
            type=sys.intern(event.type),  # a few types over every cached event
            at=_aware(event.created_at),
            created_by=event.created_by,
            status_before=_place(event.status_before),
            status_after=_place(event.status_after),
            linked=_linked(event) if event.type == "entity_linked" else None,
        )
        for event in events
        if event.entity_type == "lead"
    ]
    return sorted(mapped, key=lambda event: (event.at, event.event_id))


def _linked(event: Event) -> tuple[str, int] | None:
    """The entity an ``entity_linked`` event names: ``value_after[0].link.entity``."""
    for item in event.value_after or ():
        entity = (item.get("link") or {}).get("entity") if isinstance(item, dict) else None
        if isinstance(entity, dict) and isinstance(entity.get("id"), int):
            return (str(entity.get("type")), entity["id"])
    return None


def _place(status: StatusRef | None) -> tuple[int, int] | None:
    return (status.pipeline_id, status.id) if status is not None else None


def _aware(moment: datetime) -> datetime:
    # amoCRM sends unix seconds, which parse as UTC; a naive value can only be UTC too.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _label(field: CustomFieldValues) -> str:
    return f"field {field.field_id}" + (f" «{field.field_name}»" if field.field_name else "")


def _agreed_due(field: CustomFieldValues | None, problems: list[str]) -> datetime | None:
    if field is None or not field.values:
        return None
    if len(field.values) > 1:
        problems.append(f"{_label(field)} has {len(field.values)} values; the first is used")
    raw = field.values[0].value
    moment: datetime | None = None
    try:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            moment = datetime.fromtimestamp(raw, UTC)
        elif isinstance(raw, str) and raw.strip():
            text = raw.strip()
            moment = (
                datetime.fromtimestamp(int(text), UTC)
                if text.lstrip("-").isdigit()
                else datetime.fromisoformat(text)
            )
        if moment is not None and field.field_type == "date":
            # A date without a time allows the whole of that day.
            moment += timedelta(days=1)
    except (ValueError, OverflowError, OSError):
        moment = None  # out of any calendar's range, or not a date at all
    if moment is not None and moment.tzinfo is None:
        problems.append(f"{_label(field)} value {raw!r} has no time zone; ignored")
        return None
    if moment is None:
        problems.append(f"{_label(field)} value {raw!r} is not a date; ignored")
        return None
    return moment


def _class_value(field: CustomFieldValues | None, problems: list[str]) -> str | None:
    if field is None or not field.values:
        return None
    raw = field.values[0].value
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    problems.append(f"{_label(field)} value {raw!r} is not a text; ignored")
    return None
