"""The company ledgers' oracle: spec §7 computed from the fake amoCRM's whole state.

Nothing here reads the worker's cache or store. The rules are :mod:`sla.ledger`'s (the spec's,
tested on their own); this module feeds them from the fake's leads, notes, companies and tasks
and turns their answers into the values the fields must hold, by field *name*, in the form
:func:`tests.oracle.read_fields` reads them back (the SLA fields' oracle is :mod:`tests.oracle`).

The worker reads back only as far as :attr:`worker.ledgers.options.LedgerOptions.horizon`: it may or
may not know a closed request registered before it, or a time entry made before it. Every
expected value is therefore computed twice, from what the worker must know (``certain``) and
from everything amoCRM holds (``every``); a value the two disagree on is *undecided* and left
out. The rules are monotone in what is known (minutes only add up, ordinals only grow), so a
value both agree on is what the worker computes from any view in between.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amo_client.errors import ItemError, ValidationFailed
from amo_client.models import BatchResult, CreatedEntity, EntityUpdate, NewTask
from sla.ledger import (
    Duration,
    Package,
    PackageBalance,
    QuotaRequest,
    TimeEntry,
    package_balance,
    parse_time_note,
    quota_summary,
    quota_text,
    quota_uses,
)
from sla.policy import Policy, load_policy, normalize_tag
from tests.cycle_kit import (
    LOST,
    MOSCOW,
    PIPELINE,
    STAGES,
    WON,
    World,
    build_world,
    task_options,
)
from worker.admin import provision
from worker.cycle import CycleOptions
from worker.fields import Ledger
from worker.ledgers.options import LedgerOptions
from worker.setup import StageOptions

PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"
TARIFF_TAGS = ("Микробизнес", "БигДата", "Дата Дривен")
QUOTA_TAGS = ("Настройка", "Настройка модуля", "Удалённое подключение")
MARKER = "Время:"

COMPANY_PACKAGE_FIELDS = (
    "Пакет: действует до",
    "Пакет: израсходовано, мин",
    "Пакет: остаток, мин",
    "Пакет: статус",
)
QUOTAS_FIELD = "Квоты"
SPENT, EXHAUSTED, OVER = "SLA: затрачено, мин", "Пакет: исчерпан", "Квота: сверх лимита"

_PACKAGE_MARKER = re.compile(r"\[Пакет: (\d\d)\.(\d\d)\.(\d{4}), ([^\]]+)\]\s*$")
_QUOTA_MARKER = re.compile(r"\[Квота: ([^\]]+)\]\s*$")


# --- the world -------------------------------------------------------------------------------


def ledger_world() -> World:
    """An empty support pipeline under the Prime Gate policy, every ledger field provisioned."""
    world = build_world(seed=False)
    world.policy = load_policy((PRESETS / "prime_gate.toml").read_text(encoding="utf-8"))
    provision(
        world.client,
        dry_run=False,
        say=lambda line: None,
        ledgers=frozenset({Ledger.PACKAGES, Ledger.QUOTAS}),
    )
    return world


def ledger_options(
    policy: Policy,
    ledgers: frozenset[Ledger],
    *,
    full_every: timedelta = timedelta(hours=6),
) -> CycleOptions:
    stages = StageOptions(
        pipeline=PIPELINE,
        hold_stages=(STAGES[2],),
        acceptance_stages=(STAGES[3],),
        ledgers=ledgers,
    )
    return CycleOptions(
        stages=stages,
        tasks=task_options(),
        full_reconcile_interval=full_every,
        ledgers=LedgerOptions(
            packages=Ledger.PACKAGES in ledgers,
            quotas=policy.quotas if Ledger.QUOTAS in ledgers else (),
            zone=MOSCOW,
            at_risk=policy.at_risk_fraction,
        ),
    )


# --- reading the fake ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A lead of the support pipeline as amoCRM holds it."""

    lead_id: int
    company_id: int | None
    tariff: str | None
    tags: frozenset[str]  # normalized
    registered_at: datetime  # its creation: the machine never moves leads between pipelines
    status_id: int

    @property
    def open(self) -> bool:
        return self.status_id not in (WON, LOST)

    def quota_request(self) -> QuotaRequest:
        return QuotaRequest(
            lead_id=self.lead_id,
            company_id=self.company_id,
            tariff=self.tariff,
            tags=self.tags,
            registered_at=self.registered_at,
            lost=self.status_id == LOST,
        )


def tariff_of(policy: Policy, tags: Iterable[str]) -> str | None:
    """Spec §4: the first tariff in the policy's order whose tag the lead carries."""
    carried = {normalize_tag(tag) for tag in tags}
    for tariff in policy.tariffs:
        if any(normalize_tag(tag) in carried for tag in tariff.tags):
            return tariff.name
    return policy.default_tariff


def support_requests(world: World) -> dict[int, Request]:
    found: dict[int, Request] = {}
    for lead_id, raw in world.fake.leads.items():
        if raw["pipeline_id"] != world.support.id:
            continue
        tags = [str(tag["name"]) for tag in raw["_embedded"]["tags"]]
        companies = raw["_embedded"].get("companies") or []
        found[lead_id] = Request(
            lead_id=lead_id,
            company_id=int(companies[0]["id"]) if companies else None,
            tariff=tariff_of(world.policy, tags),
            tags=frozenset(normalize_tag(tag) for tag in tags),
            registered_at=datetime.fromtimestamp(raw["created_at"], MOSCOW),
            status_id=raw["status_id"],
        )
    return found


def is_lead_note(note: Mapping[str, Any]) -> bool:
    """Whether a note as the API lists it sits on a lead (its link says; it has no entity type)."""
    return "/api/v4/leads/" in str(note["_links"]["self"]["href"])


def time_entries(world: World, requests: Mapping[int, Request]) -> list[TimeEntry]:
    """Spec §7.1: the readable time notes on support requests, as the fake holds them now."""
    entries: list[TimeEntry] = []
    for note in world.fake.notes:
        if not is_lead_note(note) or note["note_type"] != "common":
            continue
        request = requests.get(int(note["entity_id"]))
        parsed = parse_time_note(str(note["params"].get("text") or ""), marker=MARKER)
        if request is None or not isinstance(parsed, Duration):
            continue
        entries.append(
            TimeEntry(
                note_id=int(note["id"]),
                lead_id=request.lead_id,
                company_id=request.company_id,
                at=datetime.fromtimestamp(note["created_at"], UTC),
                author_id=int(note["created_by"]),
                seconds=parsed.seconds,
            )
        )
    return entries


def package_of(world: World, company_id: int) -> Package | None:
    """Spec §7.2: the package the company's «Пакет: часов» and «Пакет: оплачен» name now."""
    raw = world.fake.company(company_id) or {}
    by_name = {
        str(entry["field_name"]): entry["values"][0]["value"]
        for entry in raw.get("custom_fields_values") or ()
        if entry["values"]
    }
    hours, paid = by_name.get("Пакет: часов"), by_name.get("Пакет: оплачен")
    if hours is None or paid is None:
        return None
    try:
        return Package(
            Decimal(str(hours).replace(",", ".")),
            datetime.fromtimestamp(int(paid), MOSCOW).date(),
        )
    except (InvalidOperation, ValueError):
        return None


# --- the oracle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The ledgers' inputs as one reader sees them."""

    requests: Mapping[int, Request]
    entries: Sequence[TimeEntry]


@dataclass(frozen=True)
class Truth:
    """Spec §7 at ``now`` over the fake's state, from the ``certain`` and ``every`` views."""

    now: datetime
    options: LedgerOptions
    certain: View
    every: View
    packages: Mapping[int, Package | None]

    @property
    def companies(self) -> list[int]:
        """The companies linked to a support request the worker must know."""
        return sorted(
            {r.company_id for r in self.certain.requests.values() if r.company_id is not None}
        )

    def balance(self, view: View, company_id: int) -> PackageBalance | None:
        package = self.packages.get(company_id)
        if package is None:
            return None
        entries = [e for e in view.entries if e.company_id == company_id]
        return package_balance(
            package, entries, zone=self.options.zone, now=self.now, at_risk=self.options.at_risk
        )

    def company_values(self, view: View, company_id: int) -> dict[str, object]:
        values: dict[str, object] = {}
        if self.options.packages:
            balance = self.balance(view, company_id)
            if balance is None:
                values |= dict.fromkeys(COMPANY_PACKAGE_FIELDS)
            else:
                values |= {
                    "Пакет: действует до": midnight(balance.valid_to),
                    "Пакет: израсходовано, мин": balance.used_minutes,
                    "Пакет: остаток, мин": balance.remaining_minutes,
                    "Пакет: статус": balance.status.value,
                }
        if self.options.quotas:
            requests = [r.quota_request() for r in view.requests.values()]
            summary = quota_summary(
                self.options.quotas,
                requests,
                company_id=company_id,
                plan=self.plan(view, company_id),
                now=self.now.astimezone(MOSCOW),
            )
            values[QUOTAS_FIELD] = quota_text(summary)
        return values

    def plan(self, view: View, company_id: int) -> str | None:
        """The tariff of the company's latest request that has one (worker.ledgers' choice)."""
        latest = max(
            (
                (r.registered_at, r.lead_id, r.tariff)
                for r in view.requests.values()
                if r.company_id == company_id and r.tariff is not None
            ),
            default=None,
        )
        return None if latest is None else latest[2]

    def lead_values(self, view: View, lead_id: int) -> dict[str, object]:
        request = view.requests[lead_id]
        values: dict[str, object] = {}
        if self.options.packages:
            spent = sum(e.minutes for e in view.entries if e.lead_id == lead_id)
            values[SPENT] = spent or None
            balance = (
                self.balance(view, request.company_id) if request.company_id is not None else None
            )
            values[EXHAUSTED] = bool(request.open and balance is not None and balance.exhausted)
        if self.options.quotas:
            values[OVER] = bool(self.over_quotas(view, lead_id))
        return values

    def over_quotas(self, view: View, lead_id: int) -> set[str]:
        uses = quota_uses(self.options.quotas, [r.quota_request() for r in view.requests.values()])
        return {use.quota.name for use in uses.get(lead_id, ()) if use.over}

    # --- what both views agree on ---------------------------------------------------------

    def company_expected(self, company_id: int) -> dict[str, object]:
        agreed = _agreed(
            self.company_values(self.certain, company_id),
            self.company_values(self.every, company_id),
        )
        if not self.plan_decided(company_id):
            agreed.pop(QUOTAS_FIELD, None)
        return agreed

    def lead_expected(self, lead_id: int) -> dict[str, object]:
        return _agreed(
            self.lead_values(self.certain, lead_id), self.lead_values(self.every, lead_id)
        )

    def plan_decided(self, company_id: int) -> bool:
        """Whether every view between the two names the same plan: no request the worker may
        not know is later than the latest one it must know."""
        known = [
            (r.registered_at, r.lead_id)
            for r in self.certain.requests.values()
            if r.company_id == company_id and r.tariff is not None
        ]
        latest = max(known, default=None)
        return not any(
            latest is None or (r.registered_at, r.lead_id) > latest
            for r in self.every.requests.values()
            if r.lead_id not in self.certain.requests
            and r.company_id == company_id
            and r.tariff is not None
        )

    def used_up_packages(self, view: View) -> set[tuple[int, date, int]]:
        """(company, payment day, package minutes) of the packages used up while still valid."""
        found = set()
        for company_id in {r.company_id for r in view.requests.values() if r.company_id}:
            balance = self.balance(view, company_id)
            if balance is None:
                continue
            end = balance.package.window(self.options.zone)[1]
            if balance.used_up and self.now < end:
                found.add((company_id, balance.package.paid_on, balance.package.minutes))
        return found

    def over_leads(self, view: View) -> set[tuple[int, str]]:
        """(lead, quota) of the open requests over a quota."""
        uses = quota_uses(self.options.quotas, [r.quota_request() for r in view.requests.values()])
        return {
            (lead_id, use.quota.name)
            for lead_id, found in uses.items()
            for use in found
            if use.over and view.requests[lead_id].open
        }


def _agreed(low: Mapping[str, object], high: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in low.items() if high.get(key) == value}


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=MOSCOW).timestamp())


def truth(world: World, now: datetime, options: LedgerOptions) -> Truth:
    """Spec §7 at ``now``: what the worker must know, and everything it may know.

    It must know every open request and every request registered within the horizon (a
    first start reads those; later cycles drop only closed ones registered before it), every
    time entry on an open one, and every time entry on the others made within the
    horizon."""
    cutoff = now - options.horizon
    requests = support_requests(world)
    entries = time_entries(world, requests)
    known = {i: r for i, r in requests.items() if r.open or r.registered_at >= cutoff}
    certain_entries = [
        e for e in entries if e.lead_id in known and (e.at >= cutoff or known[e.lead_id].open)
    ]
    companies = set(world.fake.companies)
    return Truth(
        now=now,
        options=options,
        certain=View(known, certain_entries),
        every=View(requests, entries),
        packages={company_id: package_of(world, company_id) for company_id in companies},
    )


# --- the worker's ledger tasks ---------------------------------------------------------------


def duration_text(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return " ".join([*([f"{hours} ч"] if hours else []), *([f"{rest} мин"] if rest else [])])


def package_task_counts(world: World) -> Counter[tuple[int, date, int]]:
    """The package tasks in the fake by (company, payment day, package minutes), found by
    their marker lines: ``[Пакет: 03.11.2025, 2 ч]``."""
    counts: Counter[tuple[int, date, int]] = Counter()
    for task in world.fake.tasks:
        found = _PACKAGE_MARKER.search(str(task["text"]))
        if task.get("entity_type") != "companies" or found is None:
            continue
        day = date(int(found[3]), int(found[2]), int(found[1]))
        counts[(int(task["entity_id"]), day, _minutes(found[4]))] += 1
    return counts


def _minutes(text: str) -> int:
    hours = re.search(r"(\d+) ч", text)
    minutes = re.search(r"(\d+) мин", text)
    return (int(hours[1]) * 60 if hours else 0) + (int(minutes[1]) if minutes else 0)


def quota_task_counts(world: World) -> Counter[tuple[int, str]]:
    """The quota tasks in the fake by (lead, quota), found by their marker lines."""
    counts: Counter[tuple[int, str]] = Counter()
    for task in world.fake.tasks:
        found = _QUOTA_MARKER.search(str(task["text"]))
        if task.get("entity_type", "leads") == "leads" and found is not None:
            counts[(int(task["entity_id"]), found[1])] += 1
    return counts


def refuse_companies(updates: Sequence[EntityUpdate]) -> BatchResult:
    """amoCRM refusing every company of a write (a field value it will not take)."""
    return BatchResult(written=(), failed={u.id: "refused in this test" for u in updates})


def refuse_tasks(tasks: Sequence[NewTask]) -> list[CreatedEntity]:
    """amoCRM refusing every task of a creation (a responsible user it does not know)."""
    raise ValidationFailed(
        "POST",
        "/api/v4/tasks",
        [
            ItemError(i, "responsible_user_id", "NotSupportedChoice", "No user.")
            for i in range(len(tasks))
        ],
    )
