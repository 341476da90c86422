"""Reading the report's inputs from amoCRM and recomputing every request with the engine.

The numbers come from each request's history, never from its SLA fields: the lead and
its events go through :func:`worker.mapping.lead_facts` and :func:`sla.state.compute_sla`,
as ``explain`` and the cycle compute them, with the policy in force now. So a stale card
or a changed policy does not show in the report.

Requests it spends (amoCRM allows 7 a second):

* the users, the account setup (pipelines, fields);
* the support pipeline's leads changed since the previous period (of the same length, for
  the trend) began (250 a page): a request registered in either was changed then; and the
  pipeline's open leads, for what is at risk or breached now, whenever registered;
* each request's history: none for a lead whose history the worker's cache holds (the
  account-wide feed since the cache's cursor brings those up to date, one request when
  quiet), ten leads a request for the others;
* with hour packages on: the time notes since a month before the period (a package valid
  in the period began at most a month before it), the leads they are on that were not
  read yet, and the companies (250 a request);
* with quotas: the support pipeline's leads of the quotas' window before the period.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from amo_client.client import AmoClient
from amo_client.models import Company, Event, Lead
from sla.ledger import TimeEntry, months_before, quota_summary, quota_uses
from sla.policy import Policy
from sla.state import LOST, WON, LeadEvent, SlaState, compute_sla
from worker.cache import TrackedLead, load_tracked, slim
from worker.cycle import EVENTS_CURSOR
from worker.events import STRUCTURAL_EVENTS
from worker.fields import SlaField
from worker.ledgers.facts import RequestFacts, entry_of, facts_of
from worker.ledgers.options import LEDGER_EVENTS, LedgerOptions
from worker.ledgers.plan import plan_ledgers
from worker.mapping import lead_events, lead_facts
from worker.replies import CONTACT_LINKS, FILED_ON, contact_replies
from worker.setup import AccountSetup
from worker.sla_report.figures import (
    CompanyHours,
    CompanyQuota,
    Figures,
    Period,
    Request,
    company_hours,
)
from worker.store import StateStore

log = structlog.get_logger("worker.sla_report")

PACKAGE_LOOKBACK = timedelta(days=32)  # a package valid in the period was paid this recently
OVERLAP = timedelta(minutes=1)


@dataclass
class ReadStats:
    """What one report cost and where its histories came from."""

    requests: int = 0
    leads: int = 0  # support leads read
    from_cache: int = 0  # histories the cache held
    read_by_id: int = 0  # histories read from amoCRM, ten leads a request
    history_requests: int = 0
    computed: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    """Where the report reads from."""

    client: AmoClient
    setup: AccountSetup
    policy: Policy
    ledgers: LedgerOptions = field(default_factory=LedgerOptions)
    cache: Path | None = None  # the worker's state file (opened read-only)
    lead_url: str = ""  # a lead card's address with {id}
    progress: Callable[[str], None] = lambda line: None


def lead_url(base_url: str | None) -> str:
    return f"{base_url.rstrip('/')}/leads/detail/{{id}}" if base_url else ""


def collect(sources: Sources, period: Period, now: datetime) -> tuple[Figures, ReadStats]:
    """The report's figures for the requests registered in ``period``, computed at ``now``,
    with the previous period's for the trend and the open requests for what waits now."""
    client, setup, policy, options = sources.client, sources.setup, sources.policy, sources.ledgers
    stats = ReadStats()
    before = client.requests_sent
    users = {user.id: user.name for user in client.iter_users()}
    previous = period.previous()
    leads = _support_leads(client, setup, since=previous.start)
    sources.progress(f"{len(leads)} support leads changed since {previous.start:%d.%m.%Y}")
    # Open now, however long ago last changed: what is at risk or breached right now.
    open_ids = _open_lead_ids(client, setup)
    missing_open = sorted(open_ids - leads.keys())
    if missing_open:
        leads.update(_support_leads(client, setup, since=previous.start, ids=missing_open))
    stats.leads = len(leads)
    candidates = [
        lead for lead in leads.values() if lead.created_at < period.end or lead.id in open_ids
    ]
    histories = lead_histories(sources, candidates, now, stats)
    requests: list[Request] = []
    earlier: list[Request] = []
    waiting: list[Request] = []
    states: dict[int, SlaState] = {}
    done_stages = setup.roles.done | {WON, LOST}
    for lead in candidates:
        try:
            state = compute_state(lead, histories.get(lead.id, ()), setup, policy, now)
        except (ValueError, TypeError) as error:
            stats.skipped.append(f"lead {lead.id}: {error}")
            continue
        stats.computed += 1
        states[lead.id] = state
        request = Request(
            lead_id=lead.id,
            name=lead.name or f"#{lead.id}",
            company_id=lead.company_id,
            responsible_user_id=lead.responsible_user_id,
            state=state,
            done=lead.status_id in done_stages,
        )
        if period.holds(state.registered_at):
            requests.append(request)
        elif previous.holds(state.registered_at):
            earlier.append(request)
        if lead.id in open_ids and not request.done:
            waiting.append(request)
    for found in (requests, earlier, waiting):
        found.sort(key=lambda r: (r.state.registered_at, r.lead_id))
    sources.progress(
        f"{len(requests)} requests registered in the period, {len(earlier)} in the one before"
    )

    entries: list[TimeEntry] = []
    if options.packages:
        entries = _entries(client, setup, options=options, leads=leads, period=period, now=now)
    company_ids = {r.company_id for r in (*requests, *earlier) if r.company_id is not None}
    company_ids |= {e.company_id for e in entries if e.company_id is not None}
    companies = (
        {c.id: c for c in client.iter_companies(ids=sorted(company_ids))} if company_ids else {}
    )
    hours = None
    if options.packages:
        hours = _hours(
            companies,
            entries,
            leads,
            setup=setup,
            options=options,
            policy=policy,
            period=period,
            now=now,
        )
    quotas = None
    if options.quotas:
        quotas = _quotas(
            sources,
            leads=leads,
            states=states,
            requests=requests,
            companies=companies,
            period=period,
            now=now,
        )
    stats.requests = client.requests_sent - before
    figures = Figures(
        period=period,
        now=now,
        requests=tuple(requests),
        users=users,
        companies={i: c.name or f"#{i}" for i, c in companies.items()},
        hours=hours,
        quotas=quotas,
        lead_url=sources.lead_url,
        tariffs=policy.tariff_names,
        problems=tuple(stats.skipped),
        lead_names={i: lead.name or f"#{i}" for i, lead in leads.items()},
        goals=policy.goals,
        time_terms=policy.time_terms,
        previous=previous,
        previous_requests=tuple(earlier),
        open_now=tuple(waiting),
    )
    return figures, stats


def _open_lead_ids(client: AmoClient, setup: AccountSetup) -> set[int]:
    """The support pipeline's leads in an open stage now (250 a page)."""
    if not setup.open_status_ids:
        return set()
    return {
        lead.id
        for lead in client.iter_leads(
            pipeline_id=setup.pipeline_id, status_ids=setup.open_status_ids
        )
        if lead.pipeline_id == setup.pipeline_id
        and lead.status_id in setup.open_status_ids
        and not lead.is_deleted
    }


def _support_leads(
    client: AmoClient, setup: AccountSetup, *, since: datetime, ids: Iterable[int] | None = None
) -> dict[int, Lead]:
    keep = [*setup.fields.ids.values(), setup.class_field_id]
    found: dict[int, Lead] = {}
    source = (
        client.iter_leads(ids=ids, with_=("contacts",))
        if ids is not None
        else client.iter_leads(
            pipeline_id=setup.pipeline_id, updated_from=since, with_=("contacts",), by_update=True
        )
    )
    for lead in source:
        if lead.pipeline_id != setup.pipeline_id or lead.is_deleted:
            continue  # amoCRM ignored a filter
        if ids is None and lead.updated_at < since:
            continue
        # Only what the engine and the fields' comparison read: a month of whole leads
        # with all their fields would take most of the report's memory.
        found[lead.id] = slim(lead, keep)
    return found


def _filed_elsewhere(client: AmoClient, leads: Sequence[Lead], types: list[str]) -> list[Event]:
    """The events of the leads' contacts and companies, ten of them a request."""
    contacts = sorted({c for lead in leads for c in lead.contact_ids})
    companies = sorted({c for lead in leads if (c := lead.company_id) is not None})
    events: list[Event] = []
    for entity, ids in (("contact", contacts), ("company", companies)):
        if ids:
            events += client.iter_events(entity=entity, entity_ids=ids, types=types)
    return events


def _add_contact_replies(
    sources: Sources,
    leads: Sequence[Lead],
    histories: dict[int, list[LeadEvent]],
    events: Iterable[Event],
) -> None:
    """Give each request the replies filed on its contacts (spec §4), as the cycle does."""
    tracked = {
        lead.id: replace(TrackedLead.of(lead), events=tuple(histories.get(lead.id, ())))
        for lead in leads
    }
    for reply in contact_replies(
        events,
        tracked,
        pipeline_id=sources.setup.pipeline_id,
        reaction_types=sources.policy.conversation_event_types,
        talk_lead=functools.cache(sources.client.talk_lead_id),
    ):
        known = {event.event_id for event in histories.get(reply.entity_id, ())}
        if reply.id not in known:
            histories.setdefault(reply.entity_id, []).extend(lead_events([reply]))


def event_types(policy: Policy, options: LedgerOptions) -> list[str]:
    """The event types the cycle reads (the cache holds no others)."""
    ledger = LEDGER_EVENTS if options.packages else frozenset()
    return sorted(policy.conversation_event_types | STRUCTURAL_EVENTS | ledger)


def lead_histories(
    sources: Sources, leads: Sequence[Lead], now: datetime, stats: ReadStats
) -> dict[int, list[LeadEvent]]:
    """Each lead's history: from the cache brought up to date by the feed, or by id."""
    client = sources.client
    types = event_types(sources.policy, sources.ledgers)
    histories: dict[int, list[LeadEvent]] = {}
    wanted = {lead.id for lead in leads}
    cached, cursor = _cached_histories(sources.cache, wanted)
    if cached and cursor is not None:
        since = datetime.fromtimestamp(cursor, UTC) - OVERLAP
        fresh: dict[int, list[Event]] = {}
        contact_events: list[Event] = []
        for event in client.iter_events(
            entity=("lead", "contact", "company"),
            types=[*types, *CONTACT_LINKS],
            created_from=since,
        ):
            if event.entity_type in FILED_ON:
                contact_events.append(event)
            elif event.entity_id in cached:
                fresh.setdefault(event.entity_id, []).append(event)
        for lead_id, events in cached.items():
            seen = {event.event_id for event in events}
            extra = [e for e in lead_events(fresh.get(lead_id, ())) if e.event_id not in seen]
            histories[lead_id] = [*events, *extra]
        _add_contact_replies(sources, leads, histories, contact_events)
        stats.from_cache = len(cached)
    missing = sorted(wanted - histories.keys())
    if missing:
        before = client.requests_sent
        asked = set(missing)
        for lead_id in missing:
            histories[lead_id] = []
        for done, event in enumerate(
            client.iter_events(entity="lead", entity_ids=missing, types=types), start=1
        ):
            if event.entity_id in asked:  # amoCRM may ignore a filter
                histories[event.entity_id].extend(lead_events([event]))
            if done % 5000 == 0:
                sources.progress(f"  {done} events read")
        read = [lead for lead in leads if lead.id in asked]
        _add_contact_replies(sources, read, histories, _filed_elsewhere(client, read, types))
        stats.read_by_id = len(missing)
        stats.history_requests = client.requests_sent - before
    sources.progress(
        f"histories: {stats.from_cache} from the cache, {stats.read_by_id} read from amoCRM"
    )
    return histories


def _cached_histories(
    path: Path | None, wanted: set[int]
) -> tuple[dict[int, list[LeadEvent]], int | None]:
    """The cached histories of the wanted leads, and the feed cursor they are current to.

    No file, or one SQLite cannot read, is no cache (every history is read from amoCRM);
    a newer worker's file is refused (:class:`worker.store.StateVersionError`)."""
    if path is None:
        return {}, None
    try:
        store = StateStore.read_only(path)
    except (OSError, sqlite3.Error):
        return {}, None
    try:
        cursor = store.get_int(EVENTS_CURSOR)
        if cursor is None:
            return {}, None
        tracked = load_tracked(store)
    finally:
        store.close()
    return {i: list(t.events) for i, t in tracked.items() if i in wanted}, cursor


def compute_state(
    lead: Lead, events: Sequence[LeadEvent], setup: AccountSetup, policy: Policy, now: datetime
) -> SlaState:
    facts = lead_facts(
        lead,
        agreed_due_field_id=setup.fields.id_of(SlaField.AGREED_DUE),
        class_field_id=setup.class_field_id,
    )
    return compute_sla(facts, events, policy, setup.roles, now)


def _entries(
    client: AmoClient,
    setup: AccountSetup,
    *,
    options: LedgerOptions,
    leads: dict[int, Lead],
    period: Period,
    now: datetime,
) -> list[TimeEntry]:
    """The time entries on support requests since a month before the period, with their
    company; the leads they are on are added to ``leads``."""
    since = period.start - PACKAGE_LOOKBACK
    found: list[TimeEntry] = []
    for note in client.iter_notes("leads", updated_from=since, note_types=options.note_types):
        entry = entry_of(note, options)
        if isinstance(entry, TimeEntry) and since <= entry.at < min(period.end, now):
            found.append(entry)
    missing = sorted({e.lead_id for e in found} - leads.keys())
    if missing:
        leads.update(_support_leads(client, setup, since=since, ids=missing))
    return [
        replace(entry, company_id=leads[entry.lead_id].company_id)
        for entry in found
        if entry.lead_id in leads
    ]


def _hours(
    companies: Mapping[int, Company],
    entries: Sequence[TimeEntry],
    leads: Mapping[int, Lead],
    *,
    setup: AccountSetup,
    options: LedgerOptions,
    policy: Policy,
    period: Period,
    now: datetime,
) -> tuple[CompanyHours, ...]:
    """Each company's hours as of the period's end (or now, when sooner), planned by the
    ledgers exactly as the cycle plans the company's fields (one source for the hours table
    and the statements)."""
    requests = {
        lead.id: RequestFacts(
            lead_id=lead.id,
            name=lead.name or f"#{lead.id}",
            company_id=lead.company_id,
            tariff=None,  # packages need the company alone
            tags=(),
            registered_at=int(lead.created_at.timestamp()),
            status_id=lead.status_id,
            responsible_user_id=lead.responsible_user_id,
        )
        for lead in leads.values()
    }
    plan, planned = plan_ledgers(
        requests=requests,
        entries=entries,
        companies=companies,
        tracked=(),
        fields=setup.company_fields,
        options=replace(options, quotas=()),
        now=min(now, period.end),
    )
    rows = []
    for company_id, company in sorted(companies.items(), key=lambda c: (c[1].name, c[0])):
        problems = plan.company_problems.get(company_id, ())
        rows.append(
            company_hours(
                company_id,
                company.name or f"#{company_id}",
                planned.balances.get(company_id),
                planned.entries.get(company_id, ()),
                period=period,
                rates=policy.extra_hour_rates,
                problem=problems[0] if problems else None,
            )
        )
    return tuple(row for row in rows if row.package is not None or row.entries or row.problem)


def _quotas(
    sources: Sources,
    *,
    leads: dict[int, Lead],
    states: Mapping[int, SlaState],
    requests: Sequence[Request],
    companies: Mapping[int, Company],
    period: Period,
    now: datetime,
) -> tuple[CompanyQuota, ...]:
    """Each quota's use by each company with a request in the period, at the period's end."""
    client, setup, options = sources.client, sources.setup, sources.ledgers
    months = max(quota.months for quota in options.quotas)
    window = months_before(period.start, months)
    older = _support_leads(client, setup, since=window)
    # Registration is the move into the pipeline (spec §1): the stage changes of the
    # requests the period did not compute, ten leads a request.
    unknown = sorted(i for i in older if i not in states)
    moves: dict[int, list[Event]] = {}
    if unknown:
        for event in client.iter_events(
            entity="lead", entity_ids=unknown, types=["lead_status_changed"]
        ):
            moves.setdefault(event.entity_id, []).append(event)
    facts: dict[int, RequestFacts] = {}
    for lead in [*older.values(), *leads.values()]:
        state = states.get(lead.id)
        if state is None:
            try:
                history = lead_events(moves.get(lead.id, ()))
                state = compute_state(lead, history, setup, sources.policy, now)
            except (ValueError, TypeError):
                continue
        facts[lead.id] = facts_of(lead, state, setup.roles.done)
    zone = options.zone
    until = min(now, period.end).astimezone(zone)
    known = [
        f.quota_request(zone)
        for f in facts.values()
        if datetime.fromtimestamp(f.registered_at, UTC) < until
    ]
    uses = quota_uses(options.quotas, known)
    in_period = {r.lead_id for r in requests}
    rows = []
    for company_id in sorted({r.company_id for r in requests if r.company_id is not None}):
        mine = [q for q in known if q.company_id == company_id]
        tariffed = [q for q in mine if q.tariff is not None]
        plan = (
            max(tariffed, key=lambda q: (q.registered_at, q.lead_id)).tariff if tariffed else None
        )
        summary = quota_summary(options.quotas, mine, company_id=company_id, plan=plan, now=until)
        name = companies[company_id].name if company_id in companies else f"#{company_id}"
        for item in summary:
            over = tuple(
                use
                for q in mine
                if q.lead_id in in_period
                for use in uses.get(q.lead_id, ())
                if use.quota == item.quota and use.over
            )
            rows.append(CompanyQuota(company_id, name, plan, item, over))
    return tuple(rows)
