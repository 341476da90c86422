"""Planning the ledgers: field values, company writes and tasks from the rules of
:mod:`sla.ledger`, a batch of companies at a time, again only for what changed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from amo_client.models import (
    Company,
    OutgoingValue,
    SelectValue,
)
from sla.ledger import (
    Package,
    PackageBalance,
    QuotaRequest,
    QuotaUse,
    TimeEntry,
    ledger_change_at,
    package_balance,
    quota_summary,
    quota_text,
    quota_uses,
)
from sla.words import duration_text
from worker.fields import CompanyField, CompanyFieldMap, SlaField, Value
from worker.ledgers.cache import LedgerCache, LedgerRead
from worker.ledgers.company import CompanyWrite, comparable, comparable_value, news, package_of
from worker.ledgers.facts import RequestFacts
from worker.ledgers.options import LedgerOptions
from worker.tasks import TaskPlan
from worker.wakeups import Wakeups


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
            package = package_of(company, fields, options.zone, options.unit)
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
        if comparable(current) != comparable_value(value):
            changed[field_id] = value
    return changed


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
        | {i for i, company in read.companies.items() if news(cache.companies.get(i), company)}
        | read.left_companies
        | read.dropped_companies
    )
    return Touched(frozenset(companies), frozenset(leads))


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
        package = (
            package_of(company, fields, options.zone, options.unit) if options.packages else None
        )
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
