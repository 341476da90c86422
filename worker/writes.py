"""Writing the planned SLA values into amoCRM, 50 leads a request.

A lead amoCRM rejects is left out of its batch and the rest is sent again (the
client does this); the rejected lead is logged by id and the cycle goes on. A stop
request is honoured between batches: the batch in flight lands whole. A lead accepted
after its acceptance period gets its note before it is moved.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from amo_client.client import AmoClient
from amo_client.models import (
    CustomFieldValues,
    EntityUpdate,
    FieldValue,
    Lead,
    NewNote,
    OutgoingValue,
    SelectValue,
)
from worker.fields import FIELD_SPECS, FieldMap, FieldType, SlaField, Value

log = structlog.get_logger("worker.cycle")

WRITE_BATCH = 50
BREACH_FLAGS = {
    "reaction": SlaField.REACTION_BREACHED,
    "resolution": SlaField.RESOLUTION_BREACHED,
    "next_response": SlaField.NEXT_RESPONSE_BREACHED,
}
# The worker's notes are service messages under this name: amoCRM shows who wrote them, and
# they are no person's note, so they never count as a reaction.
SERVICE = "amo-sla"
ACCEPTANCE_NOTE = (
    "Заявка принята автоматически: клиент не прислал замечаний в течение "
    "срока приёмки (1 рабочий день с уведомления)."
)


@dataclass(frozen=True)
class PlannedWrite:
    lead_id: int
    lead_name: str
    values: Mapping[int, Value]
    status_id: int | None = None  # set when the lead is moved (acceptance)
    # For a move out of acceptance: when the lead entered it. Only a note made since then is
    # this acceptance's note (a request accepted twice gets two).
    since: datetime | None = None
    # For a move: the stage the lead was read in. The move (and its note) is made only if
    # amoCRM still has the lead there just before the write.
    from_status_id: int | None = None


@dataclass(frozen=True)
class WriteOutcome:
    written: tuple[PlannedWrite, ...]
    failed: Mapping[int, str]  # lead id -> amoCRM's reason
    stopped: bool  # a stop request left some batches unsent


def apply_writes(
    client: AmoClient,
    writes: Sequence[PlannedWrite],
    fields: FieldMap,
    stop: threading.Event,
) -> WriteOutcome:
    written: list[PlannedWrite] = []
    failed: dict[int, str] = {}
    for start in range(0, len(writes), WRITE_BATCH):
        if stop.is_set():
            return WriteOutcome(tuple(written), failed, stopped=True)
        batch = _still_where_read(client, writes[start : start + WRITE_BATCH])
        moved = {w.lead_id: w.since for w in batch if w.status_id is not None}
        if moved:
            ensure_acceptance_notes(client, moved)
        result = client.update_leads([lead_update(w, fields) for w in batch])
        for lead_id, problem in result.failed.items():
            failed[lead_id] = problem
            log.warning("lead_invalid", lead_id=lead_id, problem=problem)
        landed = [w for w in batch if w.lead_id not in result.failed]
        for write in landed:
            _log_written(write, fields)
        written.extend(landed)
    return WriteOutcome(tuple(written), failed, stopped=False)


def _still_where_read(client: AmoClient, batch: Sequence[PlannedWrite]) -> list[PlannedWrite]:
    """The batch without the moves whose lead someone moved since it was read: a stage
    move and its note are made on the lead as amoCRM has it now, never on a stale copy
    (an agent who closes the request in the meantime gets no «accepted automatically»)."""
    expected = {w.lead_id: w.from_status_id for w in batch if w.status_id is not None}
    if not expected:
        return list(batch)
    now_in = {lead.id: lead.status_id for lead in client.iter_leads(ids=sorted(expected))}
    moved_away = {
        lead_id
        for lead_id, status_id in expected.items()
        if status_id is not None and now_in.get(lead_id) != status_id
    }
    for lead_id in sorted(moved_away):
        log.info(
            "move_skipped",
            lead_id=lead_id,
            problem="the lead left its stage after it was read; the next cycle reads it again",
        )
    return [w for w in batch if w.lead_id not in moved_away]


def acceptance_note(since: datetime | None) -> str:
    """The note of an acceptance that began at ``since``: the stamp tells one acceptance's
    note from another's, however close together they came."""
    if since is None:
        return ACCEPTANCE_NOTE
    return f"{ACCEPTANCE_NOTE}\n[Приёмка с {since.astimezone(UTC):%d.%m.%Y %H:%M:%S} UTC]"


def ensure_acceptance_notes(client: AmoClient, moved: Mapping[int, datetime | None]) -> None:
    """Give each lead about to be accepted its note, unless it has this acceptance's note
    (stamped with ``moved[lead]``, when it entered acceptance).

    The note goes first and the move after it: a crash or a lost answer between the two
    leaves a note on a lead still in acceptance, and the next cycle finds the note and only
    moves the lead, so no lead is accepted without its note and none gets two."""
    noted = {
        note.entity_id
        for note in client.iter_notes(
            "leads", entity_ids=list(moved), note_types=("service_message",)
        )
        if _of_this_acceptance(note.text or "", note.created_at, moved[note.entity_id])
    }
    missing = [lead_id for lead_id in moved if lead_id not in noted]
    if missing:
        notes = [
            NewNote(entity_id=i, text=acceptance_note(moved[i]), service=SERVICE) for i in missing
        ]
        client.create_notes(notes)


def _of_this_acceptance(text: str, created_at: datetime, since: datetime | None) -> bool:
    if text.strip() == acceptance_note(since):
        return True
    # An unstamped note (as earlier versions wrote them): this acceptance's if made since.
    return text.strip() == ACCEPTANCE_NOTE and _since(created_at, since)


def _since(moment: datetime, since: datetime | None) -> bool:
    if since is None:
        return True
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware >= since


def _log_written(write: PlannedWrite, fields: FieldMap) -> None:
    for clock, flag in BREACH_FLAGS.items():
        if write.values.get(fields.id_of(flag) or 0) is True:
            log.warning("lead_breached", lead_id=write.lead_id, clock=clock)
    log.info(
        "lead_written", lead_id=write.lead_id, fields=len(write.values), moved_to=write.status_id
    )


def lead_update(write: PlannedWrite, fields: FieldMap) -> EntityUpdate:
    status_field = fields.id_of(SlaField.STATUS)
    values: dict[int, OutgoingValue] = {}
    for field_id, value in write.values.items():
        is_select = field_id == status_field and isinstance(value, int)
        values[field_id] = SelectValue(int(value)) if is_select and value is not None else value
    return EntityUpdate(write.lead_id, values, status_id=write.status_id)


def with_written(lead: Lead, write: PlannedWrite, fields: FieldMap) -> Lead:
    """The lead as amoCRM holds it after the write, so the next diff starts there."""
    status_field = fields.id_of(SlaField.STATUS)
    # amoCRM sends a number field's value back as text.
    numeric = {fields.id_of(s.key) for s in FIELD_SPECS if s.type is FieldType.NUMERIC}
    by_id = {field.field_id: field for field in lead.custom_fields_values or ()}
    for field_id, value in write.values.items():
        if value is None:
            by_id.pop(field_id, None)
            continue
        if field_id == status_field:
            stored = FieldValue(enum_id=value)
        elif field_id in numeric and not isinstance(value, bool):
            stored = FieldValue(value=str(value))
        else:
            stored = FieldValue(value=value)
        by_id[field_id] = CustomFieldValues(field_id=field_id, values=[stored])
    changes: dict[str, object] = {"custom_fields_values": list(by_id.values()) or None}
    if write.status_id is not None:
        changes["status_id"] = write.status_id
    return lead.model_copy(update=changes)
