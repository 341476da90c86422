"""A company's statement: its ledger at ``now`` laid out entry by entry, as the worker
counts it (:mod:`sla.ledger`, :mod:`worker.ledgers.plan`): every time entry and the package
it counted against, the balance, each quota's counted requests, and the values the worker
writes next to those amoCRM holds. ``explain --company`` and the demo print it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from amo_client.client import AmoClient
from amo_client.models import Company, Note, OutgoingValue, SelectValue
from sla.ledger import Package, PackageBalance, Quota, QuotaUse, TimeEntry, Unreadable
from sla.policy import Policy, normalize_tag
from sla.state import compute_sla
from sla.words import duration_text
from worker.fields import (
    COMPANY_FIELD_SPECS,
    COMPANY_SPEC_BY_KEY,
    SPEC_BY_KEY,
    CompanyField,
    CompanyFieldMap,
    FieldType,
    SlaField,
)
from worker.ledgers.company import package_of
from worker.ledgers.facts import RequestFacts, entry_of, facts_of
from worker.ledgers.options import CALL_NOTES, LedgerOptions
from worker.ledgers.plan import LedgerFigures, LedgerPlan, plan_ledgers
from worker.mapping import lead_events, lead_facts
from worker.setup import AccountSetup
from worker.text import table, tables_within

SAMPLES = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class TimeNote:
    """A note on one of the company's requests that logs time: its entry, or its problem."""

    note: Note
    entry: TimeEntry | None
    problem: str | None = None

    @property
    def first_line(self) -> str:
        if self.note.note_type in CALL_NOTES:
            return f"звонок, {_seconds_text(self.note.duration or 0)}"
        lines = (self.note.text or "").strip().splitlines()
        return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class CompanyLedger:
    """A company's ledger as the worker computes it at ``now``.

    ``requests``: the company's support requests of the ledger's horizon (since ``since``);
    ``plan`` and ``figures``: :func:`worker.ledgers.plan_ledgers` over them, with every
    company value the worker writes in ``plan.company_writes`` (not only those that differ
    from amoCRM's)."""

    company: Company
    requests: Mapping[int, RequestFacts]
    notes: tuple[TimeNote, ...]
    package: Package | str | None
    plan: LedgerPlan
    figures: LedgerFigures
    fields: CompanyFieldMap
    options: LedgerOptions
    now: datetime
    since: datetime
    users: Mapping[int, str] = field(default_factory=dict)
    stage_names: Mapping[int, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # requests that could not be read

    @property
    def balance(self) -> PackageBalance | None:
        return self.figures.balances.get(self.company.id)

    @property
    def written(self) -> Mapping[int, OutgoingValue]:
        """The company's ledger field values the worker writes, by field id."""
        return next(
            (w.values for w in self.plan.company_writes if w.company_id == self.company.id), {}
        )

    @property
    def quota_plan(self) -> RequestFacts | None:
        """The request whose tariff is the company's plan: its latest one with a tariff."""
        tariffed = [facts for facts in self.requests.values() if facts.tariff is not None]
        return max(tariffed, key=lambda f: (f.registered_at, f.lead_id), default=None)


def company_ledger(
    company: Company,
    requests: Mapping[int, RequestFacts],
    notes: Iterable[Note],
    *,
    fields: CompanyFieldMap,
    options: LedgerOptions,
    now: datetime,
    since: datetime,
) -> CompanyLedger:
    """The ledger of ``company`` from its support ``requests`` and their ``notes``."""
    time_notes: list[TimeNote] = []
    for note in sorted(notes, key=lambda n: (n.created_at, n.id)):
        if note.entity_id not in requests:
            continue
        found = entry_of(note, options)
        if isinstance(found, TimeEntry):
            time_notes.append(TimeNote(note, replace(found, company_id=company.id)))
        elif isinstance(found, Unreadable):
            time_notes.append(TimeNote(note, None, found.problem))
    plan, figures = plan_ledgers(
        requests=requests,
        entries=[item.entry for item in time_notes if item.entry is not None],
        companies={company.id: _without_written_fields(company, fields)},
        tracked=frozenset(requests),
        fields=fields,
        options=options,
        now=now,
    )
    return CompanyLedger(
        company=company,
        requests=requests,
        notes=tuple(time_notes),
        package=(
            package_of(company, fields, options.zone, options.unit) if options.packages else None
        ),
        plan=plan,
        figures=figures,
        fields=fields,
        options=options,
        now=now,
        since=since,
    )


def _without_written_fields(company: Company, fields: CompanyFieldMap) -> Company:
    """The company with the fields the worker writes left empty, so that planning it yields
    every value the worker writes."""
    written = {
        field_id
        for spec in COMPANY_FIELD_SPECS
        if spec.written and (field_id := fields.id_of(spec.key)) is not None
    }
    kept = [f for f in company.custom_fields_values or () if f.field_id not in written]
    return company.model_copy(update={"custom_fields_values": kept})


def read_company_ledger(
    client: AmoClient,
    company_id: int,
    *,
    setup: AccountSetup,
    policy: Policy,
    options: LedgerOptions,
    now: datetime,
) -> CompanyLedger | None:
    """Read a company's ledger from the live account; None when the company does not exist.

    amoCRM cannot list leads by company, so the support pipeline's leads changed within the
    ledger's horizon are read and the company's kept; then their events (for each request's
    registration and tariff, as the cycle computes them), their notes and the users."""
    company = client.company(company_id)
    if company is None:
        return None
    since = now - options.horizon
    leads = [
        lead
        for lead in client.iter_leads(pipeline_id=setup.pipeline_id, updated_from=since)
        if lead.pipeline_id == setup.pipeline_id
        and lead.company_id == company_id
        and lead.updated_at >= since
    ]
    ids = [lead.id for lead in leads]
    events = list(client.iter_events(entity="lead", entity_ids=ids)) if ids else []
    requests: dict[int, RequestFacts] = {}
    problems: list[str] = []
    for lead in leads:
        own = [event for event in events if event.entity_id == lead.id]
        try:
            facts = lead_facts(
                lead,
                agreed_due_field_id=setup.fields.id_of(SlaField.AGREED_DUE),
                class_field_id=setup.class_field_id,
            )
            state = compute_sla(facts, lead_events(own), policy, setup.roles, now)
        except ValueError as error:
            problems.append(f"lead {lead.id}: {error}; it counts toward nothing here")
            continue
        requests[lead.id] = facts_of(lead, state, setup.roles.done)
    notes = (
        list(client.iter_notes("leads", entity_ids=ids, note_types=options.note_types))
        if ids
        else []
    )
    ledger = company_ledger(
        company,
        requests,
        notes,
        fields=setup.company_fields,
        options=options,
        now=now,
        since=since,
    )
    return replace(
        ledger,
        users={user.id: user.name for user in client.iter_users()},
        stage_names={**setup.status_names, 142: "Успешно", 143: "Закрыто"},
        problems=tuple(problems),
    )


def company_ledger_lines(ledger: CompanyLedger, *, width: int | None = None) -> list[str]:
    """The ledger as an admin audits it: requests, time entries, package, quotas, fields;
    a table wider than ``width`` is split by columns (None: never)."""
    zone = ledger.options.zone
    company = ledger.company
    lines = [
        f"company {company.id} «{company.name}», responsible "
        f"{_user(ledger.users, company.responsible_user_id)}",
        f"as of {_when(ledger.now, zone)} ({zone.key}); support requests changed since "
        f"{_when(ledger.since, zone)} (the ledger's horizon): {len(ledger.requests)}",
        "",
    ]
    lines += _request_lines(ledger, width)
    if ledger.options.packages:
        lines += ["", *_entry_lines(ledger, width), "", *_package_lines(ledger)]
    if ledger.options.quotas:
        lines += ["", *_quota_lines(ledger, width)]
    lines += ["", "company fields:", *_company_field_lines(ledger, width)]
    tasks = ledger.plan.tasks
    lines += ["", f"tasks the ledger owes (each created once): {len(tasks) or 'none'}"]
    lines += [
        f"  {'company' if t.entity_type == 'companies' else 'lead'} {t.entity_id}, "
        f"for {_user(ledger.users, t.responsible_user_id)}: {t.text.splitlines()[0]}"
        for t in tasks
    ]
    problems = [
        *ledger.problems,
        *(f"lead {i}: {p}" for i, found in ledger.plan.lead_problems.items() for p in found),
        *(p for found in ledger.plan.company_problems.values() for p in found),
    ]
    if problems:
        lines += ["", "problems:", *(f"  {problem}" for problem in problems)]
    return lines


def _request_lines(ledger: CompanyLedger, width: int | None) -> list[str]:
    if not ledger.requests:
        return ["requests: none in the support pipeline"]
    headers = ["lead", "request", "stage", "tariff", "registered"]
    keys: list[SlaField] = []
    if ledger.options.packages:
        keys += [SlaField.SPENT_MINUTES, SlaField.PACKAGE_EXHAUSTED]
    if ledger.options.quotas:
        keys.append(SlaField.QUOTA_OVER)
    headers += [SPEC_BY_KEY[key].name for key in keys]
    rows = []
    for lead_id, facts in sorted(ledger.requests.items()):
        values = ledger.plan.lead_values.get(lead_id, {})
        rows.append(
            [
                str(lead_id),
                facts.name,
                ledger.stage_names.get(facts.status_id, str(facts.status_id)),
                facts.tariff or "—",
                _when(datetime.fromtimestamp(facts.registered_at, UTC), ledger.options.zone),
                *(_flag(values.get(key)) for key in keys),
            ]
        )
    return ["requests (lead fields as the worker writes them):", *_indented(headers, rows, width)]


def _entry_lines(ledger: CompanyLedger, width: int | None) -> list[str]:
    marker = ledger.options.marker
    if not ledger.notes:
        return [f"time entries: none (no note starts with «{marker}»)"]
    balance = ledger.balance
    counted = {entry.note_id for entry in balance.counted} if balance else set()
    rows = []
    for item in ledger.notes:
        note, entry = item.note, item.entry
        facts = ledger.requests[note.entity_id]
        if entry is None:
            counts, rounded, against = "—", "—", f"unreadable: {item.problem}"
        else:
            counts = _seconds_text(entry.seconds)
            rounded = str(entry.minutes)
            if balance is None:
                against = "no package"
            elif entry.note_id in counted:
                against = f"package of {balance.package.paid_on:%d.%m.%Y}"
            else:
                against = "outside the package"
        rows.append(
            [
                _when(note.created_at, ledger.options.zone),
                f"{note.entity_id} «{facts.name}»",
                _user(ledger.users, note.created_by),
                item.first_line,
                counts,
                rounded,
                against,
            ]
        )
    headers = ["when", "request", "author", "note", "logged", "counted, мин", "against"]
    unit = ledger.options.unit // 60
    title = (
        f"time entries (notes starting «{marker}», each rounded up to whole {unit}-minute units):"
    )
    return [title, *_indented(headers, rows, width)]


def _package_lines(ledger: CompanyLedger) -> list[str]:
    package, balance = ledger.package, ledger.balance
    if package is None:
        return [
            "package: none («Пакет: часов» and «Пакет: оплачен» are empty); every entry is "
            "work outside a package"
        ]
    if isinstance(package, str):
        return [f"package: not tracked: {package}"]
    start, end = package.window(ledger.options.zone)
    lines = [
        f"package: {duration_text(package.minutes)}, paid on {package.paid_on:%d.%m.%Y}, "
        f"valid to {package.valid_to():%d.%m.%Y} (from {_when(start, ledger.options.zone)} "
        f"to {_when(end, ledger.options.zone)})"
    ]
    if balance is not None:
        outside = sum(entry.minutes for entry in balance.outside)
        lines += [
            f"balance: used {duration_text(balance.used_minutes)} of "
            f"{duration_text(package.minutes)} in {_entries(len(balance.counted))}, left "
            f"{duration_text(balance.remaining_minutes)}; status {balance.status.value}",
            f"outside the package: {_entries(len(balance.outside))}, {duration_text(outside)}",
        ]
    return lines


def _quota_lines(ledger: CompanyLedger, width: int | None) -> list[str]:
    source = ledger.quota_plan
    plan = (
        f"{source.tariff}, the tariff of its latest request {source.lead_id}"
        if source is not None
        else "none (no request with a tariff), so no limits"
    )
    lines = [f"quotas (plan: {plan}):"]
    uses = [use for found in ledger.figures.uses.values() for use in found]
    for quota in ledger.options.quotas:
        limits = ", ".join(f"{tariff} {limit}" for tariff, limit in quota.limits.items())
        lines.append(
            f"  {quota.name}: tag «{quota.tag}», {quota.months} months; free: {limits or '—'}"
        )
        counted = sorted(
            (use for use in uses if use.quota == quota),
            key=lambda u: (ledger.requests[u.lead_id].registered_at, u.lead_id),
        )
        if counted:
            rows = [_use_row(ledger, use) for use in counted]
            headers = ["ordinal", "lead", "request", "registered", "tariff", "free", "over"]
            lines += [f"  {line}" for line in _indented(headers, rows, width)]
        else:
            lines.append("    no request counted")
        lines += [
            f"    not counted: {facts.lead_id} «{facts.name}» ({why})"
            for facts in sorted(ledger.requests.values(), key=lambda f: f.lead_id)
            if (why := _why_not_counted(facts, quota, ledger.options)) is not None
        ]
    quotas_id = ledger.fields.id_of(CompanyField.QUOTAS)
    if quotas_id is not None:
        lines.append(f"«Квоты»: {ledger.written.get(quotas_id) or '—'}")
    return lines


def _why_not_counted(facts: RequestFacts, quota: Quota, options: LedgerOptions) -> str | None:
    """Why a request with the quota's tag does not count toward it; None when it does or
    has no such tag."""
    request = facts.quota_request(options.zone)
    if normalize_tag(quota.tag) not in request.tags or request.counts_toward(quota):
        return None
    if request.lost:
        return "closed as lost"
    return "no tariff"


def _use_row(ledger: CompanyLedger, use: QuotaUse) -> list[str]:
    facts = ledger.requests[use.lead_id]
    return [
        str(use.ordinal),
        str(use.lead_id),
        facts.name,
        _when(datetime.fromtimestamp(facts.registered_at, UTC), ledger.options.zone),
        facts.tariff or "—",
        "—" if use.limit is None else str(use.limit),
        "over the quota" if use.over else "",
    ]


def _company_field_lines(ledger: CompanyLedger, width: int | None) -> list[str]:
    rows = []
    zone = ledger.options.zone
    for spec in COMPANY_FIELD_SPECS:
        field_id = ledger.fields.id_of(spec.key)
        if field_id is None:
            continue
        now = company_field_text(ledger.company, spec.key, ledger.fields, zone)
        if not spec.written:
            wanted = "(typed by a manager)"
        else:
            wanted = _outgoing_text(ledger.written.get(field_id), spec.type, ledger.fields, zone)
        rows.append([spec.name, now, wanted])
    return _indented(["field", "in amoCRM", "the worker writes"], rows, width)


def company_field_text(
    company: Company, key: CompanyField, fields: CompanyFieldMap, zone: ZoneInfo
) -> str:
    """A company ledger field's value as amoCRM holds it, for a person ("—" when empty)."""
    field_id = fields.id_of(key)
    values = company.field(field_id) if field_id is not None else None
    if values is None or not values.values:
        return "—"
    first = values.values[0]
    spec = COMPANY_SPEC_BY_KEY[key]
    if spec.type is FieldType.SELECT:
        return str(first.value) if first.value not in (None, "") else str(first.enum_id)
    return _outgoing_text(first.value, spec.type, fields, zone)


def _outgoing_text(value: object, kind: FieldType, fields: CompanyFieldMap, zone: ZoneInfo) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, SelectValue):
        names = {enum_id: name for name, enum_id in fields.status_enum_ids.items()}
        return names.get(value.enum_id, str(value.enum_id))
    try:
        if kind is FieldType.DATE:
            return f"{_day(value, zone):%d.%m.%Y}"
        if kind is FieldType.NUMERIC:
            number = Decimal(str(value).replace(",", "."))
            return str(int(number)) if number == number.to_integral_value() else str(number)
    except (ArithmeticError, ValueError, TypeError, OSError):
        pass  # shown as amoCRM holds it
    return str(value)


def _day(raw: object, zone: ZoneInfo) -> date:
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.strip().isdigit()):
        return datetime.fromtimestamp(int(raw), UTC).astimezone(zone).date()
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.strip()).astimezone(zone).date()
    raise TypeError(raw)


def _indented(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None
) -> list[str]:
    parts = [table(headers, rows)] if width is None else tables_within(headers, rows, width - 2)
    lines: list[str] = []
    for index, part in enumerate(parts):
        lines += [""] if index else []
        lines += [f"  {line}" for line in part]
    return lines


def _when(moment: datetime, zone: ZoneInfo) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime("%d.%m.%Y %H:%M")


def _user(users: Mapping[int, str], user_id: int) -> str:
    if user_id == 0:
        return "robot"
    return users.get(user_id) or f"user {user_id}"


def _flag(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "да" if value else "нет"
    return str(value)


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _seconds_text(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    text = duration_text(minutes) if minutes or not rest else ""
    return f"{text} {rest} с".strip() if rest else text
