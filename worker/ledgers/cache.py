"""The ledgers' inputs as last read, in memory and in the state file, and what one read
learnt of them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from amo_client.models import (
    Company,
    CustomFieldValues,
    FieldValue,
    SelectValue,
)
from sla.ledger import (
    UNIT_SECONDS,
    TimeEntry,
)
from worker.ledgers.company import CompanyWrite
from worker.ledgers.facts import RequestFacts
from worker.packed import PackedModels
from worker.store import StateStore


@dataclass
class LedgerCache:
    """The ledgers' inputs as last read: facts by lead, time entries by note, companies by id.

    Like the lead cache it is changed in place by :func:`apply` and rebuilt from the store
    (or, lost, from amoCRM)."""

    requests: dict[int, RequestFacts]
    entries: dict[int, TimeEntry]
    companies: PackedModels[Company]  # as JSON: a parsed company costs several KB
    # Companies a request left, planned again until their fields need no write.
    left: set[int] = field(default_factory=set)
    # Indexes over the above, kept by apply(): the requests of each company (None: of
    # none), the entries of each request.
    company_leads: dict[int | None, set[int]] = field(init=False, default_factory=dict)
    lead_notes: dict[int, set[int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for lead_id, facts in self.requests.items():
            self.company_leads.setdefault(facts.company_id, set()).add(lead_id)
        for note_id, entry in self.entries.items():
            self.lead_notes.setdefault(entry.lead_id, set()).add(note_id)

    def leads_of(self, companies: Iterable[int | None]) -> set[int]:
        return {lead_id for c in companies for lead_id in self.company_leads.get(c, ())}

    def entries_of(self, lead_ids: Iterable[int]) -> list[TimeEntry]:
        return [self.entries[n] for i in lead_ids for n in self.lead_notes.get(i, ())]

    def put_request(self, facts: RequestFacts) -> None:
        self.drop_request(facts.lead_id)
        self.requests[facts.lead_id] = facts
        self.company_leads.setdefault(facts.company_id, set()).add(facts.lead_id)

    def drop_request(self, lead_id: int) -> None:
        before = self.requests.pop(lead_id, None)
        if before is not None:
            leads = self.company_leads.get(before.company_id, set())
            leads.discard(lead_id)
            if not leads:
                self.company_leads.pop(before.company_id, None)

    def put_entry(self, note_id: int, entry: TimeEntry) -> None:
        self.drop_entry(note_id)
        self.entries[note_id] = entry
        self.lead_notes.setdefault(entry.lead_id, set()).add(note_id)

    def drop_entry(self, note_id: int) -> None:
        before = self.entries.pop(note_id, None)
        if before is not None:
            notes = self.lead_notes.get(before.lead_id, set())
            notes.discard(note_id)
            if not notes:
                self.lead_notes.pop(before.lead_id, None)


@dataclass(frozen=True)
class LedgerRead:
    """What one cycle learnt for the ledgers, to apply to the cache and store."""

    requests: Mapping[int, RequestFacts]  # new or changed
    dropped_requests: frozenset[int]
    entries: Mapping[int, TimeEntry]  # new or changed, by note id
    dropped_entries: frozenset[int]
    companies: PackedModels[Company]  # slimmed
    dropped_companies: frozenset[int]
    left_companies: frozenset[int]  # a request left them this cycle
    notes_cursor: int
    companies_cursor: int
    unreadable_notes: frozenset[int] = frozenset()  # time notes read that count nothing


NOTES_CURSOR = "notes_cursor"


COMPANIES_CURSOR = "companies_cursor"


LEFT_COMPANIES = "left_companies"


def load_ledger_cache(store: StateStore, *, unit: int = UNIT_SECONDS) -> LedgerCache:
    """The cache as stored, its time entries counted in units of ``unit`` seconds (the
    policy's now, whatever it was when they were stored)."""
    return LedgerCache(
        requests={
            lead_id: RequestFacts.from_json(data)
            for lead_id, data in store.load_rows("requests").items()
        },
        entries={
            note_id: _entry_from_json(data, unit)
            for note_id, data in store.load_rows("time_notes").items()
        },
        companies=_packed_companies(store.load_rows("companies")),
        left={int(i) for i in (store.get_meta(LEFT_COMPANIES) or "").split(",") if i},
    )


def _packed_companies(rows: Mapping[int, str]) -> PackedModels[Company]:
    companies = PackedModels(Company)
    for company_id, data in rows.items():
        companies.put_json(company_id, data)
    return companies


def apply(cache: LedgerCache, read: LedgerRead) -> None:
    for facts in read.requests.values():
        cache.put_request(facts)
    for lead_id in read.dropped_requests:
        cache.drop_request(lead_id)
    for note_id, entry in read.entries.items():
        cache.put_entry(note_id, entry)
    for note_id in read.dropped_entries:
        cache.drop_entry(note_id)
    cache.companies.take(read.companies)
    for company_id in read.dropped_companies:
        cache.companies.pop(company_id, None)
    cache.left |= read.left_companies - read.dropped_companies


def persist(store: StateStore, read: LedgerRead, cache: LedgerCache) -> None:
    """Store what ``read`` learnt (and the cache's companies left behind); call it inside
    the cycle's transaction."""
    store.save_rows("requests", ((i, f.to_json()) for i, f in read.requests.items()))
    store.drop_rows("requests", read.dropped_requests)
    store.save_rows("time_notes", ((i, _entry_to_json(e)) for i, e in read.entries.items()))
    store.drop_rows("time_notes", read.dropped_entries)
    store.drop_rows("companies", read.dropped_companies)
    save_companies(store, read.companies)
    store.set_int(NOTES_CURSOR, read.notes_cursor)
    store.set_int(COMPANIES_CURSOR, read.companies_cursor)
    store.set_meta(LEFT_COMPANIES, ",".join(str(i) for i in sorted(cache.left)))


def save_companies(store: StateStore, companies: Mapping[int, Company]) -> None:
    rows = (
        companies.json_items()
        if isinstance(companies, PackedModels)
        else (
            (i, c.model_dump_json(by_alias=True, exclude_none=True)) for i, c in companies.items()
        )
    )
    store.save_rows("companies", rows)


def _entry_to_json(entry: TimeEntry) -> str:
    raw = asdict(entry)
    raw["at"] = int(entry.at.timestamp())
    del raw["unit"]  # the policy's, given again when the cache is loaded
    return json.dumps(raw, ensure_ascii=False)


def _entry_from_json(text: str, unit: int) -> TimeEntry:
    raw = json.loads(text)
    raw.pop("unit", None)
    return TimeEntry(**{**raw, "at": datetime.fromtimestamp(raw["at"], UTC), "unit": unit})


def remember_written(cache: LedgerCache, written: Iterable[CompanyWrite]) -> dict[int, Company]:
    """Give the cached companies the values written to them, so the next plan compares with
    what amoCRM holds (a company whose requests all left is not read again until one comes
    back, and the read by update has passed the write by then). Returns the companies
    changed, for the store."""
    changed: dict[int, Company] = {}
    for write in written:
        if write.company_id not in cache.companies:
            continue
        company = cache.companies[write.company_id]
        by_id = {field.field_id: field for field in company.custom_fields_values or ()}
        for field_id, value in write.values.items():
            if value is None:
                by_id.pop(field_id, None)
            elif isinstance(value, SelectValue):
                by_id[field_id] = CustomFieldValues(
                    field_id=field_id, values=[FieldValue(enum_id=value.enum_id)]
                )
            else:
                stored = int(value.timestamp()) if isinstance(value, datetime) else value
                by_id[field_id] = CustomFieldValues(
                    field_id=field_id, values=[FieldValue(value=stored)]
                )
        company = company.model_copy(update={"custom_fields_values": list(by_id.values()) or None})
        cache.companies[write.company_id] = changed[write.company_id] = company
    return changed
