"""What the ledgers keep of a support request and of a note: the facts the quotas count,
and the time entry a note holds (spec §7)."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from amo_client.models import (
    Lead,
    Note,
)
from sla.ledger import (
    QuotaRequest,
    TimeEntry,
    Unreadable,
    parse_time_note,
)
from sla.policy import normalize_tag
from sla.state import LOST, WON, SlaState
from worker.ledgers.options import CALL_NOTES, LedgerOptions


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """A support request as the ledgers see it (kept for every request of the horizon)."""

    lead_id: int
    name: str
    company_id: int | None
    tariff: str | None
    tags: tuple[str, ...]  # normalized
    registered_at: int  # unix seconds
    status_id: int
    responsible_user_id: int
    done: bool = False  # in a done stage of the pipeline (acceptance stages included)

    @property
    def open(self) -> bool:
        return not self.done and self.status_id not in (WON, LOST)

    def quota_request(self, zone: ZoneInfo) -> QuotaRequest:
        """As the quotas count it; months are counted on the account's calendar (``zone``)."""
        return QuotaRequest(
            lead_id=self.lead_id,
            company_id=self.company_id,
            tariff=self.tariff,
            tags=frozenset(self.tags),
            registered_at=datetime.fromtimestamp(self.registered_at, zone),
            lost=self.status_id == LOST,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RequestFacts:
        raw = json.loads(text)
        tariff = raw["tariff"]
        return cls(
            **{
                **raw,
                "tags": tuple(map(sys.intern, raw["tags"])),
                "tariff": tariff if tariff is None else sys.intern(tariff),
            }
        )


def facts_of(lead: Lead, state: SlaState, done: Collection[int] = ()) -> RequestFacts:
    """``done``: the pipeline's done stages (acceptance ones included)."""
    return RequestFacts(
        lead_id=lead.id,
        name=lead.name or f"#{lead.id}",
        company_id=lead.company_id,
        tariff=state.tariff,
        # The same few tags on every request: one string each.
        tags=tuple(sorted({sys.intern(normalize_tag(tag)) for tag in lead.tag_names})),
        registered_at=int(state.registered_at.timestamp()),
        status_id=lead.status_id,
        responsible_user_id=lead.responsible_user_id,
        done=lead.status_id in done,
    )


@dataclass(frozen=True, slots=True)
class NoteRead:
    """A note as the ledgers keep it from a read: the entry it holds, or why it holds none
    (a first read brings every note of the horizon; a parsed note costs a few KB)."""

    note_id: int
    lead_id: int
    found: TimeEntry | Unreadable | None

    @classmethod
    def of(cls, note: Note, options: LedgerOptions) -> NoteRead:
        return cls(note.id, note.entity_id, entry_of(note, options))


def entry_of(note: Note, options: LedgerOptions) -> TimeEntry | Unreadable | None:
    """The time entry a note holds (its company is filled in later), or why it holds none."""
    at = note.created_at if note.created_at.tzinfo else note.created_at.replace(tzinfo=UTC)
    if note.note_type in CALL_NOTES:
        seconds = note.duration or 0
        if not options.call_time or seconds <= 0:
            return None
        return TimeEntry(
            note.id, note.entity_id, None, at, note.created_by, seconds, "звонок", options.unit
        )
    parsed = parse_time_note(note.text or "", marker=options.marker)
    if parsed is None or isinstance(parsed, Unreadable):
        return parsed
    return TimeEntry(
        note.id,
        note.entity_id,
        None,
        at,
        note.created_by,
        parsed.seconds,
        parsed.what,
        options.unit,
    )
