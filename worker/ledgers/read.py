"""Reading what the ledgers need from amoCRM: time notes and companies changed since the
cursors, a returning request's notes by id, a newly linked company by id."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime

import structlog

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem
from amo_client.models import (
    Company,
)
from sla.ledger import (
    TimeEntry,
    Unreadable,
)
from worker.ledgers.cache import COMPANIES_CURSOR, NOTES_CURSOR, LedgerCache, LedgerRead
from worker.ledgers.company import holds_values, slim_company
from worker.ledgers.facts import NoteRead, RequestFacts
from worker.ledgers.options import LedgerOptions
from worker.packed import PackedModels
from worker.store import StateStore

log = structlog.get_logger("worker.ledgers")


def _first_notes_from(
    requests: Iterable[RequestFacts], now: datetime, options: LedgerOptions
) -> datetime:
    """Where a first start reads notes from: the horizon, or the registration of the oldest
    of ``requests`` when it is older (the open and tracked ones: each of their entries counts
    toward their «SLA: затрачено, мин»)."""
    oldest = min((f.registered_at for f in requests), default=None)
    since = now - options.horizon
    if oldest is not None:
        since = min(since, datetime.fromtimestamp(oldest, UTC))
    return since


def read_notes(
    client: AmoClient,
    *,
    cursor: int | None,
    since: datetime,
    now: datetime,
    options: LedgerOptions,
    check_stop: Callable[[], None],
) -> tuple[list[NoteRead], int]:
    """Notes of the ledgers' types changed since the cursor, account-wide (since ``since``
    without one)."""
    if cursor is not None:
        since = datetime.fromtimestamp(cursor, UTC) - options.overlap
    notes: list[NoteRead] = []
    started: datetime | None = None
    for note in client.iter_notes(
        "leads", updated_from=since, note_types=options.note_types, on_invalid=_skipped_note
    ):
        check_stop()
        started = started or client.server_time
        notes.append(NoteRead.of(note, options))
    clock = started or client.server_time or now
    if cursor is not None and not notes:
        return notes, cursor  # an empty answer moves nothing: the next read covers it again
    return notes, max(cursor or 0, int((clock - options.overlap).timestamp()))


def read_companies(
    client: AmoClient,
    *,
    cursor: int | None,
    wanted: Collection[int],
    by_id: Collection[int],
    now: datetime,
    options: LedgerOptions,
    check_stop: Callable[[], None],
    keep: Collection[int] | None = None,
) -> tuple[PackedModels[Company], frozenset[int], int]:
    """The wanted companies changed since the cursor, and the ``by_id`` ones read by id,
    with only the ``keep`` fields (all without it); also those of ``by_id`` amoCRM no
    longer has."""
    # Packed as they arrive: a parsed company costs several KB even slimmed, and a full
    # reconcile reads every linked company.
    companies: PackedModels[Company] = PackedModels(Company)
    clock: datetime | None = None
    changed_seen = False
    if cursor is not None:
        since = datetime.fromtimestamp(cursor, UTC) - options.overlap
        for company in client.iter_companies(updated_from=since, on_invalid=_skipped_company):
            check_stop()
            clock = clock or client.server_time
            changed_seen = True
            if company.id in wanted:
                companies[company.id] = slim_company(company, keep)
    asked = sorted(set(by_id) - set(companies))
    unreadable: set[int] = set()

    def skipped(item: InvalidItem) -> None:
        if isinstance(item.item_id, int):
            unreadable.add(item.item_id)
        _skipped_company(item)

    for company in client.iter_companies(ids=asked, on_invalid=skipped):
        check_stop()
        clock = clock or client.server_time
        companies[company.id] = slim_company(company, keep)
    clock = clock or client.server_time or now
    # Absence from a list is no evidence: each company left out is asked for on its own,
    # and only amoCRM's answer for that id (nothing there) says it is gone.
    gone: set[int] = set()
    for company_id in sorted(set(asked) - companies.keys() - unreadable):
        check_stop()
        # amoCRM's word for that id, twice: one odd empty answer is no evidence either
        found = client.company(company_id) or client.company(company_id)
        if found is None:
            gone.add(company_id)
        else:
            companies[company_id] = slim_company(found, keep)
    # An empty answer to the changed-companies read moves nothing (absence is not evidence).
    next_cursor = (
        cursor
        if cursor is not None and not changed_seen
        else max(cursor or 0, int((clock - options.overlap).timestamp()))
    )
    return companies, frozenset(gone), next_cursor


def _skipped_note(item: InvalidItem) -> None:
    log.warning("note_invalid", note_id=item.item_id, problem=item.problem)


def _skipped_company(item: InvalidItem) -> None:
    log.warning("company_invalid", company_id=item.item_id, problem=item.problem)


def _aged_out(cache: LedgerCache, tracked: Collection[int], horizon: int) -> set[int]:
    """The closed requests the cycle no longer tracks of which nothing falls within the
    horizon: their registration (quotas) and their time entries (packages)."""
    newest_entry: dict[int, int] = {}
    for entry in cache.entries.values():
        at = int(entry.at.timestamp())
        newest_entry[entry.lead_id] = max(at, newest_entry.get(entry.lead_id, at))
    return {
        i
        for i, f in cache.requests.items()
        if i not in tracked
        and not f.open
        and f.registered_at < horizon
        and newest_entry.get(i, 0) < horizon
    }


def read_ledgers(
    client: AmoClient,
    store: StateStore,
    cache: LedgerCache,
    *,
    facts: Mapping[int, RequestFacts],
    tracked: Collection[int],
    gone: Collection[int],
    deleted_notes: Collection[int],
    now: datetime,
    full: bool,
    options: LedgerOptions,
    check_stop: Callable[[], None],
    written_fields: Collection[int] = (),
    company_fields: Collection[int] | None = None,
) -> LedgerRead:
    """Read the notes and companies that changed; ``facts`` are the requests this cycle
    computed (every tracked one at a full reconcile), ``tracked`` the cycle's leads.

    ``written_fields`` are the company fields that hold uses (minutes, quota counts);
    ``company_fields`` the ones the ledgers read or write (the rest is not kept)."""
    changed = {i: f for i, f in facts.items() if cache.requests.get(i) != f}
    horizon = int((now - options.horizon).timestamp())
    dropped_requests = {i for i in gone if i in cache.requests}
    if full:
        dropped_requests |= _aged_out(cache, tracked, horizon)
    changed = {i: f for i, f in changed.items() if i not in dropped_requests}

    def held(lead_id: int) -> bool:
        """A request of the ledgers after this read."""
        return lead_id in changed or (lead_id in cache.requests and lead_id not in dropped_requests)

    # Companies a request left (linked elsewhere, or the lead deleted): their fields are
    # planned again, even with no request left to them.
    left_companies = frozenset(
        before.company_id
        for lead_id in sorted(changed.keys() | dropped_requests)
        if (before := cache.requests.get(lead_id)) is not None
        and before.company_id is not None
        and (lead_id not in changed or changed[lead_id].company_id != before.company_id)
    )

    cursor = store.get_int(NOTES_CURSOR)
    notes, notes_cursor = read_notes(
        client,
        cursor=cursor,
        since=now
        if cursor is not None
        else _first_notes_from(
            [
                f
                for f in {**cache.requests, **changed}.values()
                if (f.open or f.lead_id in tracked) and held(f.lead_id)
            ],
            now,
            options,
        ),
        now=now,
        options=options,
        check_stop=check_stop,
    )
    # A request older than the cursor that the ledgers did not hold (reopened after it left
    # them, restored, moved into the pipeline), or held closed (its notes were not read: the
    # first read starts at the open requests), has notes the cursor is already past.
    returning = sorted(
        i
        for i, f in changed.items()
        if cursor is not None
        and f.registered_at < cursor
        and ((before := cache.requests.get(i)) is None or (not before.open and f.open))
    )
    for old_note in client.iter_notes(
        "leads", entity_ids=returning, note_types=options.note_types, on_invalid=_skipped_note
    ):
        check_stop()
        notes.append(NoteRead.of(old_note, options))
    entries: dict[int, TimeEntry] = {}
    # An entry leaves with its request, and one on no request of the ledgers (another
    # pipeline's lead, a request dropped earlier) once it is older than the horizon.
    dropped_entries = set(deleted_notes) | {
        note_id for lead_id in dropped_requests for note_id in cache.lead_notes.get(lead_id, ())
    }
    if full:
        dropped_entries |= {
            i
            for i, e in cache.entries.items()
            if not held(e.lead_id) and e.at.timestamp() < horizon
        }
    unreadable_notes: set[int] = set()
    for note in notes:
        found = note.found
        if isinstance(found, TimeEntry):
            entries[note.note_id] = found
            dropped_entries.discard(note.note_id)
            continue
        if note.note_id in cache.entries:
            dropped_entries.add(note.note_id)  # edited into something that is no entry
        if isinstance(found, Unreadable) and held(note.lead_id):
            unreadable_notes.add(note.note_id)
            log.warning(
                "lead_problem",
                lead_id=note.lead_id,
                note_id=note.note_id,
                problem=f"time note {note.note_id}: {found.problem}; it counts nothing",
            )
    wanted = {
        company_id
        for company_id, leads in cache.company_leads.items()
        if company_id is not None and any(held(i) for i in leads)
    } | {f.company_id for f in changed.values() if f.company_id is not None}
    # By id: every wanted company at a full reconcile (which also finds those deleted in
    # amoCRM), else those newly linked and not held yet.
    linked = {f.company_id for f in changed.values() if f.company_id is not None}
    by_id = wanted if full else linked - cache.companies.keys()
    companies, gone_companies, companies_cursor = read_companies(
        client,
        cursor=store.get_int(COMPANIES_CURSOR),
        wanted=wanted,
        by_id=by_id,
        now=now,
        options=options,
        check_stop=check_stop,
        keep=company_fields,
    )
    if store.get_int(COMPANIES_CURSOR) is None and written_fields:
        # The ledgers' first run on this state (a new or lost state directory): a company
        # the worker wrote uses into before, and that no request of the ledgers links to
        # now, is planned again, so uses a lost state knew of do not stay on its card.
        for company in client.iter_companies(
            updated_from=now - options.horizon, on_invalid=_skipped_company
        ):
            check_stop()
            if company.id in wanted or not holds_values(company, written_fields):
                continue
            companies[company.id] = slim_company(company, company_fields)
            left_companies |= {company.id}
    for company_id in sorted(gone_companies & cache.companies.keys()):
        log.warning(
            "company_problem",
            company_id=company_id,
            problem="amoCRM no longer has this company; its ledger is dropped",
        )
    return LedgerRead(
        requests=changed,
        dropped_requests=frozenset(dropped_requests),
        entries=entries,
        dropped_entries=frozenset(dropped_entries - entries.keys()),
        companies=companies,
        notes_cursor=notes_cursor,
        dropped_companies=gone_companies,
        left_companies=left_companies,
        companies_cursor=companies_cursor,
        unreadable_notes=frozenset(unreadable_notes),
    )
