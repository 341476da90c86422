"""The company ledgers in amoCRM: time notes, hour packages and quotas (spec §7).

amoCRM stays the source of truth. The worker reads the time notes account-wide by
``updated_at`` (one request when nothing changed), the companies linked to support
requests by ``updated_at`` and, the first time it sees one, by id, and keeps for every
support request the few facts the quotas count (company, tariff, tags, registration).
The rules themselves are :mod:`sla.ledger`'s; this module feeds them and turns their
answer into field values and tasks.

Choices where the spec is silent:

* A company's package is the one its «Пакет: часов» and «Пакет: оплачен» fields name
  now; entries outside its validity are work outside a package.
* A company's plan, for its «Квоты» summary, is the tariff of its latest request.
* Quota tasks and the «Пакет: исчерпан» flag go to open requests only; a request closed
  before the worker saw it over a limit gets neither.
* The package task comes when a package is used up while still valid.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import structlog

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem
from amo_client.models import (
    Company,
    CustomFieldValues,
    FieldValue,
    Lead,
    Note,
    OutgoingValue,
    SelectValue,
)
from sla.ledger import (
    DEFAULT_MARKER,
    Package,
    PackageBalance,
    Quota,
    QuotaRequest,
    QuotaUse,
    TimeEntry,
    Unreadable,
    ledger_change_at,
    package_balance,
    parse_time_note,
    quota_summary,
    quota_text,
    quota_uses,
)
from sla.policy import normalize_tag
from sla.state import LOST, WON, SlaState
from worker.events import NOTE_DELETED
from worker.fields import CompanyField, CompanyFieldMap, SlaField, Value
from worker.packed import PackedModels
from worker.store import StateStore
from worker.tasks import TaskPlan
from worker.wakeups import Wakeups

log = structlog.get_logger("worker.ledgers")

CALL_NOTES = ("call_in", "call_out")
LEDGER_EVENTS = frozenset({NOTE_DELETED})


@dataclass(frozen=True)
class LedgerOptions:
    packages: bool = False
    quotas: tuple[Quota, ...] = ()
    marker: str = DEFAULT_MARKER
    call_time: bool = False
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Moscow"))
    at_risk: float = 0.8
    package_text: str = (
        "Пакет часов компании «{company_name}» исчерпан: израсходовано {used} из {limit}. "
        "Работы приостановлены до согласования с клиентом."
    )
    quota_text: str = (
        "Обращение «{lead_name}» — {ordinal}-е по квоте «{quota}» за {months} мес. по тарифу "
        "«{tariff}» (бесплатно {limit}): согласуйте оплату с клиентом."
    )
    # The cursors step back this far at every read; what is read twice is read the same.
    overlap: timedelta = timedelta(minutes=1)

    @property
    def on(self) -> bool:
        return self.packages or bool(self.quotas)

    @property
    def horizon(self) -> timedelta:
        """How far back a first start reads requests and notes: the longest quota window, or
        two months (a package's validity and the one before it)."""
        months = max((quota.months for quota in self.quotas), default=0)
        return timedelta(days=max(62, 31 * months + 1))

    @property
    def note_types(self) -> tuple[str, ...]:
        return ("common", *CALL_NOTES) if self.call_time else ("common",)


# --- what the ledgers keep of a request --------------------------------------------------------


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


# --- time entries ----------------------------------------------------------------------------


def entry_of(note: Note, options: LedgerOptions) -> TimeEntry | Unreadable | None:
    """The time entry a note holds (its company is filled in later), or why it holds none."""
    at = note.created_at if note.created_at.tzinfo else note.created_at.replace(tzinfo=UTC)
    if note.note_type in CALL_NOTES:
        seconds = note.duration or 0
        if not options.call_time or seconds <= 0:
            return None
        return TimeEntry(note.id, note.entity_id, None, at, note.created_by, seconds, "звонок")
    parsed = parse_time_note(note.text or "", marker=options.marker)
    if parsed is None or isinstance(parsed, Unreadable):
        return parsed
    return TimeEntry(
        note.id, note.entity_id, None, at, note.created_by, parsed.seconds, parsed.what
    )


# --- reading ---------------------------------------------------------------------------------


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
                companies[company.id] = _slim_company(company, keep)
    asked = sorted(set(by_id) - set(companies))
    unreadable: set[int] = set()

    def skipped(item: InvalidItem) -> None:
        if isinstance(item.item_id, int):
            unreadable.add(item.item_id)
        _skipped_company(item)

    for company in client.iter_companies(ids=asked, on_invalid=skipped):
        check_stop()
        clock = clock or client.server_time
        companies[company.id] = _slim_company(company, keep)
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
            companies[company_id] = _slim_company(found, keep)
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


# --- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompanyWrite:
    company_id: int
    values: Mapping[int, OutgoingValue]


@dataclass(frozen=True)
class LedgerPlan:
    """What the ledgers want done: lead fields, company writes and tasks."""

    lead_values: Mapping[int, Mapping[SlaField, Value]]
    company_writes: tuple[CompanyWrite, ...]
    tasks: tuple[TaskPlan, ...]
    lead_problems: Mapping[int, tuple[str, ...]]
    company_problems: Mapping[int, tuple[str, ...]]


@dataclass(frozen=True)
class LedgerFigures:
    """The figures behind a plan, for a statement (the cycle does not keep them)."""

    balances: Mapping[int, PackageBalance]  # by company
    uses: Mapping[int, tuple[QuotaUse, ...]]  # by lead
    entries: Mapping[int, tuple[TimeEntry, ...]]  # by company


def plan_ledgers(
    *,
    requests: Mapping[int, RequestFacts],
    entries: Iterable[TimeEntry],
    companies: Mapping[int, Company],
    tracked: Collection[int],
    fields: CompanyFieldMap,
    options: LedgerOptions,
    now: datetime,
) -> tuple[LedgerPlan, LedgerFigures]:
    """The ledgers' field values, company writes and tasks at ``now``, and their figures.

    ``tracked``: the leads whose cards the worker keeps (their lead fields are planned)."""
    by_company, spent = _entries_by_company(entries, requests)
    quota_requests = [facts.quota_request(options.zone) for facts in requests.values()]
    uses = quota_uses(options.quotas, quota_requests)
    company_requests: dict[int | None, list[QuotaRequest]] = defaultdict(list)
    for quota_request in quota_requests:
        company_requests[quota_request.company_id].append(quota_request)
    plans = _plans(requests)
    balances: dict[int, PackageBalance] = {}
    writes: list[CompanyWrite] = []
    tasks: list[TaskPlan] = []
    company_problems: dict[int, tuple[str, ...]] = {}
    for company_id, company in sorted(companies.items()):
        wanted: dict[CompanyField, OutgoingValue] = {}
        if options.packages:
            package = package_of(company, fields, options.zone)
            if isinstance(package, str):
                company_problems[company_id] = (package,)
            else:
                balance, package_values, task = _package_plan(
                    company,
                    package,
                    by_company.get(company_id, ()),
                    fields=fields,
                    options=options,
                    now=now,
                )
                wanted |= package_values
                if balance is not None:
                    balances[company_id] = balance
                if task is not None:
                    tasks.append(task)
        if options.quotas:
            summary = quota_summary(
                options.quotas,
                company_requests.get(company_id, []),
                company_id=company_id,
                plan=plans.get(company_id),
                now=now.astimezone(options.zone),
            )
            wanted[CompanyField.QUOTAS] = quota_text(summary)
        changed = _company_changes(company, wanted, fields)
        if changed:
            writes.append(CompanyWrite(company_id, changed))
    lead_values, lead_tasks, lead_problems = _plan_leads(
        requests, tracked, spent=spent, balances=balances, uses=uses, options=options
    )
    plan = LedgerPlan(
        lead_values=lead_values,
        company_writes=tuple(writes),
        tasks=(*tasks, *lead_tasks),
        lead_problems=lead_problems,
        company_problems=company_problems,
    )
    figures = LedgerFigures(
        balances=balances,
        uses=uses,
        entries={company_id: tuple(found) for company_id, found in by_company.items()},
    )
    return plan, figures


def _plan_leads(
    requests: Mapping[int, RequestFacts],
    tracked: Collection[int],
    *,
    spent: Mapping[int, int],
    balances: Mapping[int, PackageBalance],
    uses: Mapping[int, tuple[QuotaUse, ...]],
    options: LedgerOptions,
) -> tuple[dict[int, dict[SlaField, Value]], list[TaskPlan], dict[int, tuple[str, ...]]]:
    """The tracked requests' ledger fields, their quota tasks, and their problems."""
    lead_values: dict[int, dict[SlaField, Value]] = {}
    tasks: list[TaskPlan] = []
    problems: dict[int, tuple[str, ...]] = {}
    for lead_id in sorted(tracked):
        facts = requests.get(lead_id)
        if facts is None:
            continue
        over = tuple(use for use in uses.get(lead_id, ()) if use.over)
        lead_values[lead_id] = _lead_values(facts, spent.get(lead_id, 0), balances, over, options)
        if facts.open:
            tasks.extend(_quota_task(facts, use, options) for use in over)
            if facts.company_id is None or facts.tariff is None:
                missing = "company" if facts.company_id is None else "tariff"
                problems[lead_id] = (
                    f"no {missing}: the request counts toward no package or quota",
                )
    return lead_values, tasks, problems


def _package_plan(
    company: Company,
    package: Package | None,
    entries: Sequence[TimeEntry],
    *,
    fields: CompanyFieldMap,
    options: LedgerOptions,
    now: datetime,
) -> tuple[PackageBalance | None, dict[CompanyField, OutgoingValue], TaskPlan | None]:
    """The company's balance, its package fields, and the task when it is used up."""
    if package is None:
        return None, dict.fromkeys(_PACKAGE_WRITTEN, None), None
    balance = package_balance(package, entries, zone=options.zone, now=now, at_risk=options.at_risk)
    task = None
    if balance.used_up and now < package.window(options.zone)[1]:
        task = _package_task(company, balance, options)
    return balance, _package_values(balance, fields, options.zone), task


def _entries_by_company(
    entries: Iterable[TimeEntry], requests: Mapping[int, RequestFacts]
) -> tuple[dict[int, list[TimeEntry]], dict[int, int]]:
    """The support requests' entries by company (with their company), and minutes by lead."""
    by_company: dict[int, list[TimeEntry]] = defaultdict(list)
    spent: dict[int, int] = defaultdict(int)
    for entry in entries:
        facts = requests.get(entry.lead_id)
        if facts is None:
            continue  # not a support request
        spent[entry.lead_id] += entry.minutes
        if facts.company_id is not None:
            by_company[facts.company_id].append(replace(entry, company_id=facts.company_id))
    return by_company, spent


def _lead_values(
    facts: RequestFacts,
    spent: int,
    balances: Mapping[int, PackageBalance],
    over: Sequence[QuotaUse],
    options: LedgerOptions,
) -> dict[SlaField, Value]:
    values: dict[SlaField, Value] = {}
    if options.packages:
        values[SlaField.SPENT_MINUTES] = spent or None
        balance = balances.get(facts.company_id) if facts.company_id is not None else None
        values[SlaField.PACKAGE_EXHAUSTED] = bool(
            facts.open and balance is not None and balance.exhausted
        )
    if options.quotas:
        values[SlaField.QUOTA_OVER] = bool(over)
    return values


_PACKAGE_WRITTEN = (
    CompanyField.PACKAGE_VALID_TO,
    CompanyField.PACKAGE_USED,
    CompanyField.PACKAGE_LEFT,
    CompanyField.PACKAGE_STATUS,
)


def package_of(company: Company, fields: CompanyFieldMap, zone: ZoneInfo) -> Package | str | None:
    """The company's package, None when it has none, or what is wrong with its fields."""
    hours_raw = _first(company.field(fields.id_of(CompanyField.PACKAGE_HOURS) or 0))
    paid_raw = _first(company.field(fields.id_of(CompanyField.PACKAGE_PAID) or 0))
    if hours_raw in (None, "") and paid_raw in (None, ""):
        return None
    try:
        hours = Decimal(str(hours_raw).replace(",", ".").strip())
        paid_on = _date(paid_raw, zone)
    except (InvalidOperation, ValueError, TypeError, OverflowError, OSError):
        return (
            f"package fields «Пакет: часов» = {hours_raw!r}, «Пакет: оплачен» = {paid_raw!r} "
            "are not a number of hours and a date; the package is not tracked"
        )
    try:
        return Package(hours=hours, paid_on=paid_on)
    except ValueError as error:
        return f"package field «Пакет: часов» = {hours_raw!r}: {error}; the package is not tracked"


def _holds_values(company: Company, field_ids: Collection[int]) -> bool:
    return any(_first(company.field(field_id)) not in (None, "") for field_id in field_ids)


def _first(values: CustomFieldValues | None) -> object:
    if values is None or not values.values:
        return None
    return values.values[0].value


def _date(raw: object, zone: ZoneInfo) -> date:
    if isinstance(raw, bool) or raw is None:
        raise ValueError("no date")
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.strip().isdigit()):
        return datetime.fromtimestamp(int(raw), UTC).astimezone(zone).date()
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.strip()).astimezone(zone).date()
    raise ValueError("no date")


def _midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(), tzinfo=zone).timestamp())


def _package_values(
    balance: PackageBalance, fields: CompanyFieldMap, zone: ZoneInfo
) -> dict[CompanyField, OutgoingValue]:
    status = fields.status_enum_ids.get(balance.status.value)
    return {
        CompanyField.PACKAGE_VALID_TO: _midnight(balance.valid_to, zone),
        CompanyField.PACKAGE_USED: balance.used_minutes,
        CompanyField.PACKAGE_LEFT: balance.remaining_minutes,
        CompanyField.PACKAGE_STATUS: SelectValue(status) if status is not None else None,
    }


def _company_changes(
    company: Company, wanted: Mapping[CompanyField, OutgoingValue], fields: CompanyFieldMap
) -> dict[int, OutgoingValue]:
    changed: dict[int, OutgoingValue] = {}
    for key, value in wanted.items():
        field_id = fields.id_of(key)
        if field_id is None:
            continue
        current = company.field(field_id)
        if _comparable(current) != _comparable_value(value):
            changed[field_id] = value
    return changed


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


def _comparable(values: CustomFieldValues | None) -> object:
    if values is None or not values.values:
        return None
    first = values.values[0]
    if first.enum_id is not None:
        return ("enum", first.enum_id)
    raw = first.value
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw)
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return raw if raw != "" else None


def _comparable_value(value: OutgoingValue) -> object:
    if isinstance(value, SelectValue):
        return ("enum", value.enum_id)
    if isinstance(value, datetime):  # amoCRM holds a date as unix seconds
        return int(value.timestamp())
    return value if value != "" else None


def _plans(requests: Mapping[int, RequestFacts]) -> dict[int, str]:
    """Each company's plan: the tariff of its latest request that has one."""
    latest: dict[int, RequestFacts] = {}
    for facts in requests.values():
        if facts.company_id is None or facts.tariff is None:
            continue
        known = latest.get(facts.company_id)
        if known is None or (facts.registered_at, facts.lead_id) > (
            known.registered_at,
            known.lead_id,
        ):
            latest[facts.company_id] = facts
    return {company_id: facts.tariff for company_id, facts in latest.items() if facts.tariff}


def duration_text(minutes: int) -> str:
    """``5 ч 10 мин``, ``45 мин``, ``2 ч``."""
    sign = "-" if minutes < 0 else ""
    hours, rest = divmod(abs(minutes), 60)
    parts = [f"{hours} ч"] if hours else []
    if rest or not hours:
        parts.append(f"{rest} мин")
    return sign + " ".join(parts)


def package_marker(package: Package) -> str:
    return f"[Пакет: {package.paid_on:%d.%m.%Y}, {duration_text(package.minutes)}]"


def _package_task(company: Company, balance: PackageBalance, options: LedgerOptions) -> TaskPlan:
    package = balance.package
    text = options.package_text.format(
        company_id=company.id,
        company_name=company.name or f"#{company.id}",
        used=duration_text(balance.used_minutes),
        limit=duration_text(package.minutes),
        valid_to=f"{balance.valid_to:%d.%m.%Y}",
    )
    return TaskPlan(
        entity_id=company.id,
        clock=f"package:{package.paid_on.isoformat()}:{package.minutes}",
        responsible_user_id=company.responsible_user_id,
        text=f"{text}\n{package_marker(package)}",
        entity_type="companies",
    )


def _quota_task(facts: RequestFacts, use: QuotaUse, options: LedgerOptions) -> TaskPlan:
    text = options.quota_text.format(
        lead_id=facts.lead_id,
        lead_name=facts.name,
        ordinal=use.ordinal,
        limit=use.limit,
        months=use.quota.months,
        quota=use.quota.name,
        tariff=facts.tariff or "—",
    )
    return TaskPlan(
        entity_id=facts.lead_id,
        clock=f"quota:{use.quota.name}",
        responsible_user_id=facts.responsible_user_id,
        text=f"{text}\n[Квота: {use.quota.name}]",
    )


# --- the ledgers' cache ------------------------------------------------------------------------


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


NOTES_CURSOR = "notes_cursor"
COMPANIES_CURSOR = "companies_cursor"
LEFT_COMPANIES = "left_companies"


def load_ledger_cache(store: StateStore) -> LedgerCache:
    return LedgerCache(
        requests={
            lead_id: RequestFacts.from_json(data)
            for lead_id, data in store.load_rows("requests").items()
        },
        entries={
            note_id: _entry_from_json(data)
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


@dataclass(frozen=True)
class Touched:
    """What a read changed of the ledgers' inputs: companies (and None, for requests of
    none) whose ledger may differ, and the requests among them."""

    companies: frozenset[int | None]
    leads: frozenset[int]


def touched_by(cache: LedgerCache, read: LedgerRead, also: Iterable[int] = ()) -> Touched:
    """What ``read`` changes of ``cache`` (and the requests ``also``); ask before it is
    applied (a dropped entry's request, a request's company before it moved, are read from
    the cache)."""
    leads = (
        set(also)
        | read.requests.keys()
        | read.dropped_requests
        | {entry.lead_id for entry in read.entries.values()}
        | {cache.entries[n].lead_id for n in read.dropped_entries if n in cache.entries}
    )
    companies = (
        {cache.requests[i].company_id for i in leads if i in cache.requests}
        | {facts.company_id for facts in read.requests.values()}
        | {i for i, company in read.companies.items() if _news(cache.companies.get(i), company)}
        | read.left_companies
        | read.dropped_companies
    )
    return Touched(frozenset(companies), frozenset(leads))


def _news(before: Company | None, after: Company) -> bool:
    """Whether a company read holds something its ledger depends on that the cached copy
    does not (the worker's own writes read back hold nothing new)."""
    if before is None:
        return True

    def held(company: Company) -> tuple[object, ...]:
        values = {f.field_id: _comparable(f) for f in company.custom_fields_values or ()}
        return (company.name, company.responsible_user_id, values)

    return held(before) != held(after)


PLAN_BATCH = 200  # companies planned at once


class LedgerPlanner:
    """The ledgers planned company by company: a cycle plans again the companies whose
    inputs it changed and those whose change instant has come (a package expires, a
    request enters or leaves a quota's window), with all of their requests; everything at
    a full reconcile. Each company's ledger depends on its own requests, entries and
    fields alone, so planning a few gives the same values as planning all."""

    def __init__(self) -> None:
        self.values: dict[int, Mapping[SlaField, Value]] = {}  # each request's ledger fields
        self._known_values: dict[tuple[object, ...], Mapping[SlaField, Value]] = {}
        self._wakeups = Wakeups()
        self._planned = False
        self._again: set[int] = set()  # companies planned again at the next cycle
        # What the latest plan covered: the ledger tasks of others stay as they were owed.
        self.companies: frozenset[int] = frozenset()
        self.leads: frozenset[int] = frozenset()

    def again(self, company_ids: Iterable[int]) -> None:
        """Plan these companies again at the next cycle (a write refused, or not sent)."""
        self._again.update(company_ids)

    def plan(
        self,
        cache: LedgerCache,
        touched: Touched,
        *,
        tracked: Collection[int],
        fields: CompanyFieldMap,
        options: LedgerOptions,
        now: datetime,
        everything: bool,
    ) -> LedgerPlan:
        if everything or not self._planned:
            self.values.clear()
            self._known_values.clear()
            self._wakeups = Wakeups()
            companies = set(cache.company_leads) | cache.left
        else:
            companies = set(touched.companies) | self._wakeups.due(now) | cache.left | self._again
        self._planned = True
        self._again.clear()
        leads = cache.leads_of(companies) | {i for i in touched.leads if i in cache.requests}
        groups: dict[int | None, list[int]] = {company_id: [] for company_id in companies}
        for lead_id in sorted(leads):
            groups.setdefault(cache.requests[lead_id].company_id, []).append(lead_id)
        ordered = sorted(groups, key=lambda company_id: -1 if company_id is None else company_id)
        lead_values: dict[int, Mapping[SlaField, Value]] = {}
        writes: list[CompanyWrite] = []
        tasks: list[TaskPlan] = []
        lead_problems: dict[int, tuple[str, ...]] = {}
        company_problems: dict[int, tuple[str, ...]] = {}
        held_ids: set[int] = set()
        # A batch of companies at a time: a full plan holds one batch's figures, not all.
        for start in range(0, len(ordered), PLAN_BATCH):
            batch = ordered[start : start + PLAN_BATCH]
            batch_leads = [lead_id for company_id in batch for lead_id in groups[company_id]]
            # A company amoCRM no longer has is skipped.
            held = {
                company_id: cache.companies[company_id]
                for company_id in batch
                if company_id is not None and company_id in cache.companies
            }
            plan, _ = plan_ledgers(
                requests={i: cache.requests[i] for i in batch_leads},
                entries=cache.entries_of(batch_leads),
                companies=held,
                tracked=[i for i in batch_leads if i in tracked],
                fields=fields,
                options=options,
                now=now,
            )
            for lead_id, values in plan.lead_values.items():
                lead_values[lead_id] = self._shared(values)
            writes.extend(plan.company_writes)
            tasks.extend(plan.tasks)
            lead_problems |= plan.lead_problems
            company_problems |= plan.company_problems
            held_ids |= held.keys()
            for company_id, company in held.items():
                self._wakeups.schedule(
                    company_id, self._change_at(cache, company, fields, options, now)
                )
        for lead_id in leads | touched.leads:
            found = lead_values.get(lead_id)
            if found is None:
                self.values.pop(lead_id, None)
            else:
                self.values[lead_id] = found
        self.companies = frozenset(held_ids)
        self.leads = frozenset(leads)
        return LedgerPlan(
            lead_values=lead_values,
            company_writes=tuple(writes),
            tasks=tuple(tasks),
            lead_problems=lead_problems,
            company_problems=company_problems,
        )

    def _shared(self, values: Mapping[SlaField, Value]) -> Mapping[SlaField, Value]:
        """One mapping for every request with the same ledger values (most have few
        distinct ones), so each request's costs a reference."""
        key = tuple((field, type(value), value) for field, value in values.items())
        return self._known_values.setdefault(key, values)

    def forget(self, lead_ids: Iterable[int]) -> None:
        for lead_id in lead_ids:
            self.values.pop(lead_id, None)

    @staticmethod
    def _change_at(
        cache: LedgerCache,
        company: Company,
        fields: CompanyFieldMap,
        options: LedgerOptions,
        now: datetime,
    ) -> datetime | None:
        package = package_of(company, fields, options.zone) if options.packages else None
        return ledger_change_at(
            package if isinstance(package, Package) else None,
            options.quotas,
            [cache.requests[i].quota_request(options.zone) for i in cache.leads_of([company.id])],
            zone=options.zone,
            now=now,
        )


def settle_left(cache: LedgerCache, plan: LedgerPlan) -> None:
    """Forget the companies a request left whose fields need no write any more."""
    cache.left &= {write.company_id for write in plan.company_writes}


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
    return json.dumps(raw, ensure_ascii=False)


def _entry_from_json(text: str) -> TimeEntry:
    raw = json.loads(text)
    return TimeEntry(**{**raw, "at": datetime.fromtimestamp(raw["at"], UTC)})


def _slim_company(company: Company, keep: Collection[int] | None) -> Company:
    """The part of a company the ledgers read: a company as amoCRM sends it carries all of
    its fields and its links (every lead of it) besides."""
    if keep is None:
        return company
    fields = [f for f in company.custom_fields_values or () if f.field_id in keep]
    return Company(
        id=company.id,
        name=company.name,
        responsible_user_id=company.responsible_user_id,
        updated_at=company.updated_at,
        custom_fields_values=fields or None,
    )


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
    for note in notes:
        found = note.found
        if isinstance(found, TimeEntry):
            entries[note.note_id] = found
            dropped_entries.discard(note.note_id)
            continue
        if note.note_id in cache.entries:
            dropped_entries.add(note.note_id)  # edited into something that is no entry
        if isinstance(found, Unreadable) and held(note.lead_id):
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
            if company.id in wanted or not _holds_values(company, written_fields):
                continue
            companies[company.id] = _slim_company(company, company_fields)
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
    )
