"""The report's figures: pure functions of the requests' SLA states and the time entries.

Nothing here reads amoCRM, a file or the clock; :mod:`worker.sla_report.collect` gathers
the inputs and :mod:`worker.sla_report.render` lays the tables out as CSV and HTML.

How each number is counted:

* **Requests** are the support requests *registered* in the period (the engine's
  registration: the lead's creation, or its latest move into the support pipeline), on
  the policy's calendar days.
* A clock is **met** when it finished (the reaction happened, the request reached a done
  stage) without a breach, **breached** when the engine says it is breached, whether the
  request is still open or not (a missed deadline stays missed), and **pending** otherwise:
  still running within its deadline. **Met %** is met / (met + breached); pending clocks
  and clocks without a deadline (no tariff, resolution by agreement with no agreed date)
  count in neither.
* **Times** are the business minutes each clock used, on its own calendar, up to the
  reaction or the resolution; only finished clocks count. The median of an even count is
  the mean of the middle two; **p90** is the nearest rank: the smallest time that at
  least 90 % of the times do not exceed (the ⌈0.9·n⌉-th smallest).
* A **breach** is one breached clock: a request late on both reaction and resolution
  gives two rows. How far past: the business time used beyond the target, or for an
  agreed date the wall time from the date to the resolution (or to now).
* **Goals** are the policy's (``[goals]``): a tariff's own, else every tariff's; a group
  of several tariffs (an agent, a company, the whole period) is held to every tariff's.
* **Trend**: the same figures for the previous period of the same length (the same
  number of calendar months when the period is whole months, else of days), computed at
  the same instant from the same reads; the change is in percentage points.
* **Now**: the open requests whose status is «Под угрозой» or «Просрочено» at the
  instant the report is computed, whenever they were registered, by responsible user.
* **Hours** come from :func:`worker.ledgers.plan.plan_ledgers`, the planning the cycle
  writes the company fields from: the hours table and the customer statement read the
  same :class:`CompanyHours`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sla.ledger import (
    Package,
    PackageBalance,
    QuotaSummary,
    QuotaUse,
    TimeEntry,
    minutes_over,
)
from sla.policy import Goals, RequestClass, TimeTerms
from sla.state import ClockState, SlaState, SlaStatus

NO_TARIFF = "Нет тарифа"
NO_COMPANY = "Без компании"
CLASS_NAMES = {RequestClass.TYPICAL: "типовое", RequestClass.NON_STANDARD: "нестандартное"}


@dataclass(frozen=True)
class Request:
    """A support request registered in the period, with its state recomputed at ``now``."""

    lead_id: int
    name: str
    company_id: int | None
    responsible_user_id: int
    state: SlaState
    done: bool  # in a done stage now (won, lost, or a done or acceptance stage)


@dataclass(frozen=True)
class Period:
    """Calendar days ``first``..``last`` (both inside) in ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"the period ends ({self.last}) before it starts ({self.first})")

    @property
    def start(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=self.zone)

    @property
    def end(self) -> datetime:
        """The instant after the period: the start of the day after ``last``."""
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=self.zone)

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def previous(self) -> Period:
        """The period of the same length just before: as many calendar months when the
        period is whole months (October's is September), else as many days."""
        months = _whole_months(self.first, self.last)
        if months:
            first = _month_start(self.first, -months)
            return Period(first, self.first - timedelta(days=1), self.zone)
        length = (self.last - self.first).days + 1
        return Period(
            self.first - timedelta(days=length), self.first - timedelta(days=1), self.zone
        )

    def text(self) -> str:
        return f"{self.first:%d.%m.%Y} — {self.last:%d.%m.%Y}"


def _month_start(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _whole_months(first: date, last: date) -> int:
    """How many calendar months ``first``..``last`` spans exactly; 0 when it is not whole
    months (it starts on another day than the 1st, or ends before a month's last day)."""
    after = last + timedelta(days=1)
    if first.day != 1 or after.day != 1:
        return 0
    return (after.year - first.year) * 12 + after.month - first.month


# --- one clock ---------------------------------------------------------------------------------


def has_deadline(clock: ClockState) -> bool:
    return clock.target is not None or clock.due is not None


def clock_met(clock: ClockState) -> bool:
    return clock.finished_at is not None and not clock.breached and has_deadline(clock)


def reaction_met(state: SlaState) -> bool:
    return state.tariff is not None and clock_met(state.reaction)


def reaction_breached(state: SlaState) -> bool:
    return state.tariff is not None and state.reaction.breached


def resolution_met(state: SlaState) -> bool:
    return state.tariff is not None and clock_met(state.resolution)


def resolution_breached(state: SlaState) -> bool:
    return state.tariff is not None and state.resolution.breached


def minutes(delta: timedelta) -> Decimal:
    """Whole business minutes and a tenth: 90 s -> 1.5."""
    return (Decimal(int(delta.total_seconds())) / 60).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP
    )


def percent(part: int, whole: int) -> Decimal | None:
    if whole == 0:
        return None
    return (Decimal(100 * part) / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def median(values: Sequence[Decimal]) -> Decimal | None:
    if not values:
        return None
    return Decimal(statistics.median(sorted(values))).quantize(Decimal("0.1"))


def p90(values: Sequence[Decimal]) -> Decimal | None:
    """Nearest rank: the ⌈0.9·n⌉-th smallest value."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


# --- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetCounts:
    """A group's requests and its clocks met and breached."""

    label: tuple[str, ...]
    requests: int = 0
    reaction_met: int = 0
    reaction_breached: int = 0
    resolution_met: int = 0
    resolution_breached: int = 0

    @property
    def reaction_percent(self) -> Decimal | None:
        return percent(self.reaction_met, self.reaction_met + self.reaction_breached)

    @property
    def resolution_percent(self) -> Decimal | None:
        return percent(self.resolution_met, self.resolution_met + self.resolution_breached)


def met_counts(label: tuple[str, ...], requests: Iterable[Request]) -> MetCounts:
    found = list(requests)
    return MetCounts(
        label=label,
        requests=len(found),
        reaction_met=sum(reaction_met(r.state) for r in found),
        reaction_breached=sum(reaction_breached(r.state) for r in found),
        resolution_met=sum(resolution_met(r.state) for r in found),
        resolution_breached=sum(resolution_breached(r.state) for r in found),
    )


def grouped(
    requests: Iterable[Request], key: Callable[[Request], tuple[str, ...]]
) -> list[MetCounts]:
    groups: dict[tuple[str, ...], list[Request]] = defaultdict(list)
    for request in requests:
        groups[key(request)].append(request)
    return [met_counts(label, found) for label, found in sorted(groups.items())]


@dataclass(frozen=True)
class Rate:
    """A clock's met share in a group: ``met`` of ``settled`` (met + breached) clocks, the
    goal it is held to, and the previous period's share."""

    met: int
    settled: int
    goal: Decimal | None = None
    before: Decimal | None = None  # the previous period's %; None: none settled then
    compared: bool = False  # a previous period was read

    @property
    def percent(self) -> Decimal | None:
        return percent(self.met, self.settled)

    @property
    def change(self) -> Decimal | None:
        """Percentage points since the previous period; None when either has no share."""
        if self.percent is None or self.before is None:
            return None
        return self.percent - self.before

    @property
    def below_goal(self) -> bool:
        return self.percent is not None and self.goal is not None and self.percent < self.goal


@dataclass(frozen=True)
class MetRow:
    """A group's requests and its two clocks' rates, against goals and the previous period."""

    label: tuple[str, ...]
    requests: int
    before_requests: int | None  # None: no previous period was read
    reaction: Rate
    resolution: Rate


def met_row(
    counts: MetCounts,
    before: MetCounts | None,
    goals: Goals,
    *,
    tariff: str | None = None,
    compared: bool = False,
) -> MetRow:
    """``counts`` against ``tariff``'s goals (every tariff's when None) and ``before``."""
    return MetRow(
        label=counts.label,
        requests=counts.requests,
        before_requests=(before.requests if before is not None else 0) if compared else None,
        reaction=Rate(
            counts.reaction_met,
            counts.reaction_met + counts.reaction_breached,
            goals.target("reaction", tariff),
            before.reaction_percent if before is not None else None,
            compared,
        ),
        resolution=Rate(
            counts.resolution_met,
            counts.resolution_met + counts.resolution_breached,
            goals.target("resolution", tariff),
            before.resolution_percent if before is not None else None,
            compared,
        ),
    )


@dataclass(frozen=True)
class Day:
    day: date
    requests: int
    met: int  # closed with no clock breached
    breached: int  # a clock breached, open or closed
    open: int  # the rest: in work within the deadlines, or without a tariff


def daily(requests: Sequence[Request], period: Period) -> list[Day]:
    by_day: dict[date, list[Request]] = defaultdict(list)
    for request in requests:
        by_day[request.state.registered_at.astimezone(period.zone).date()].append(request)
    days = []
    for day in period.days():
        found = by_day.get(day, [])
        breached = sum(r.state.reaction.breached or r.state.resolution.breached for r in found)
        met = sum(r.state.status is SlaStatus.MET for r in found)
        days.append(Day(day, len(found), met, breached, len(found) - met - breached))
    return days


@dataclass(frozen=True)
class Times:
    tariff: str
    reactions: int
    reaction_median: Decimal | None
    reaction_p90: Decimal | None
    resolutions: int
    resolution_median: Decimal | None
    resolution_p90: Decimal | None


def times_by_tariff(requests: Sequence[Request]) -> list[Times]:
    by_tariff: dict[str, list[Request]] = defaultdict(list)
    for request in requests:
        if request.state.tariff is not None:
            by_tariff[request.state.tariff].append(request)
    rows = []
    for tariff, found in sorted(by_tariff.items()):
        reactions = [minutes(r.state.reaction.used) for r in found if r.state.reaction.finished_at]
        resolutions = [
            minutes(r.state.resolution.used) for r in found if r.state.resolution.finished_at
        ]
        rows.append(
            Times(
                tariff,
                len(reactions),
                median(reactions),
                p90(reactions),
                len(resolutions),
                median(resolutions),
                p90(resolutions),
            )
        )
    return rows


@dataclass(frozen=True)
class Breach:
    request: Request
    clock: str  # «реакция» or «решение»
    due: datetime | None
    finished_at: datetime | None
    overdue: timedelta
    business: bool  # overdue in business time (a target), else wall time (an agreed date)


def breaches(requests: Sequence[Request], now: datetime) -> list[Breach]:
    found = []
    for request in requests:
        state = request.state
        if state.tariff is None:
            continue
        for name, clock in (("реакция", state.reaction), ("решение", state.resolution)):
            if not clock.breached:
                continue
            if clock.target is not None:
                overdue, business = max(clock.used - clock.target, timedelta(0)), True
            else:
                end = clock.finished_at or now
                overdue = max(end - clock.due, timedelta(0)) if clock.due else timedelta(0)
                business = False
            found.append(Breach(request, name, clock.due, clock.finished_at, overdue, business))
    return sorted(
        found,
        key=lambda b: (b.due or datetime.min.replace(tzinfo=UTC), b.request.lead_id, b.clock),
    )


@dataclass(frozen=True)
class Waiting:
    """An open request at risk or breached now, and the clock that puts it there."""

    request: Request
    clock: str  # «реакция» or «решение»
    due: datetime | None
    breached: bool
    left: timedelta | None  # at risk: business time left of the clock
    over: timedelta  # breached: how far past (business time, or wall time to an agreed date)
    business: bool


def waiting(request: Request, now: datetime) -> Waiting | None:
    """Why ``request`` is at risk or breached now; None when it is neither, or closed."""
    state = request.state
    if request.done or state.tariff is None:
        return None
    clocks = (("реакция", state.reaction), ("решение", state.resolution))
    if state.status is SlaStatus.BREACHED:
        name, clock = next(((n, c) for n, c in clocks if c.breached), clocks[-1])
        if clock.target is not None:
            over, business = max(clock.used - clock.target, timedelta(0)), True
        else:
            end = clock.finished_at or now
            over = max(end - clock.due, timedelta(0)) if clock.due else timedelta(0)
            business = False
        return Waiting(request, name, clock.due, True, None, over, business)
    if state.status is SlaStatus.AT_RISK:
        name, clock = clocks[0] if state.reaction.finished_at is None else clocks[1]
        return Waiting(request, name, clock.due, False, clock.remaining, timedelta(0), True)
    return None


@dataclass(frozen=True)
class AgentNow:
    agent: str
    at_risk: int
    breached: int


# --- hours ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompanyHours:
    """A company's hours: its package (the one its fields name now) and the entries."""

    company_id: int
    name: str
    package: Package | None
    problem: str | None  # the package fields cannot be read
    balance: PackageBalance | None
    entries: tuple[TimeEntry, ...]  # the company's entries made in the period
    outside_minutes: int  # of the period's entries, those counted against no package
    over_minutes: int  # minutes used over the package
    rate: Decimal | None  # ₽ per extra hour for this package, None: no rate set
    over_cost: Decimal | None  # over_minutes at the rate, whole roubles

    @property
    def minutes(self) -> int:
        return sum(entry.minutes for entry in self.entries)


def company_hours(
    company_id: int,
    name: str,
    balance: PackageBalance | None,
    entries: Sequence[TimeEntry],
    *,
    period: Period,
    rates: Mapping[Decimal, Decimal],
    problem: str | None = None,
) -> CompanyHours:
    """The company's hours of ``period`` from its package's ``balance`` as the ledgers
    planned it (None: no package, or ``problem`` with its fields) and its ``entries`` since
    before the package began; the statement and the work outside a package are the
    period's."""
    in_period = tuple(sorted((e for e in entries if period.holds(e.at)), key=_entry_order))
    real = balance.package if balance is not None else None
    counted = {entry.note_id for entry in balance.counted} if balance else set()
    outside = sum(e.minutes for e in in_period if e.note_id not in counted)
    # The overage of the period: what its own entries took beyond the package, so that a
    # package spanning two periods bills each its part and an expired one bills nothing later.
    excess = minutes_over(balance) if balance is not None else {}
    over = sum(excess.get(e.note_id, 0) for e in in_period)
    rate = rates.get(real.hours) if real is not None else None
    cost = None
    if rate is not None:
        cost = (Decimal(over) * rate / 60).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return CompanyHours(
        company_id, name, real, problem, balance, in_period, outside, over, rate, cost
    )


def _entry_order(entry: TimeEntry) -> tuple[datetime, int]:
    return entry.at.astimezone(UTC), entry.note_id


@dataclass(frozen=True)
class CompanyQuota:
    company_id: int
    name: str
    plan: str | None
    summary: QuotaSummary
    over_in_period: tuple[QuotaUse, ...]


# --- the whole report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    period: Period
    now: datetime
    requests: tuple[Request, ...]
    users: Mapping[int, str]
    companies: Mapping[int, str]
    hours: tuple[CompanyHours, ...] | None = None  # None: packages are off
    quotas: tuple[CompanyQuota, ...] | None = None  # None: no quotas defined
    lead_url: str = ""  # the lead card's address, with {id}
    tariffs: tuple[str, ...] = ()  # the policy's order
    problems: tuple[str, ...] = ()
    lead_names: Mapping[int, str] = field(default_factory=dict)  # every lead read, by id
    goals: Goals = field(default_factory=Goals)
    time_terms: TimeTerms = field(default_factory=TimeTerms)
    previous: Period | None = None  # the period compared with; None: none was read
    previous_requests: tuple[Request, ...] = ()
    open_now: tuple[Request, ...] = ()  # every open request computed at ``now``

    @property
    def total(self) -> MetCounts:
        return met_counts(("Всего",), self.requests)

    @property
    def compared(self) -> bool:
        return self.previous is not None

    def total_row(self) -> MetRow:
        before = met_counts(("Всего",), self.previous_requests) if self.compared else None
        return met_row(self.total, before, self.goals, compared=self.compared)

    def tariff_class_rows(self) -> list[MetRow]:
        return self._rows(self.by_tariff_class(), self._tariff_class_key, tariff_goals=True)

    def agent_rows(self) -> list[MetRow]:
        return self._rows(self.by_agent(), self._agent_key)

    def company_rows(self) -> list[MetRow]:
        return self._rows(self.by_company(), self._company_key)

    def _rows(
        self,
        rows: Sequence[MetCounts],
        key: Callable[[Request], tuple[str, ...]],
        *,
        tariff_goals: bool = False,
    ) -> list[MetRow]:
        before = {c.label: c for c in grouped(self.previous_requests, key)}
        return [
            met_row(
                row,
                before.get(row.label),
                # A request without a tariff has no deadline, so no goal either.
                Goals() if tariff_goals and row.label[0] == NO_TARIFF else self.goals,
                tariff=row.label[0] if tariff_goals else None,
                compared=self.compared,
            )
            for row in rows
        ]

    @staticmethod
    def _tariff_class_key(request: Request) -> tuple[str, ...]:
        return request.state.tariff or NO_TARIFF, CLASS_NAMES[request.state.request_class]

    def _agent_key(self, request: Request) -> tuple[str, ...]:
        return (self.user(request.responsible_user_id),)

    def _company_key(self, request: Request) -> tuple[str, ...]:
        return (self.company(request.company_id),)

    def waiting_now(self) -> list[Waiting]:
        """The open requests at risk or breached now: by agent, breached first, by due."""
        found = [w for r in self.open_now if (w := waiting(r, self.now)) is not None]
        latest = datetime.max.replace(tzinfo=UTC)
        return sorted(
            found,
            key=lambda w: (
                self.user(w.request.responsible_user_id),
                not w.breached,
                w.due.astimezone(UTC) if w.due else latest,
                w.request.lead_id,
            ),
        )

    def now_by_agent(self) -> list[AgentNow]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for item in self.waiting_now():
            counts[self.user(item.request.responsible_user_id)][item.breached] += 1
        return [AgentNow(agent, risk, late) for agent, (risk, late) in sorted(counts.items())]

    def by_tariff_class(self) -> list[MetCounts]:
        rows = grouped(self.requests, self._tariff_class_key)
        order = {name: index for index, name in enumerate((*self.tariffs, NO_TARIFF))}
        return sorted(rows, key=lambda row: (order.get(row.label[0], len(order)), row.label))

    def by_agent(self) -> list[MetCounts]:
        return grouped(self.requests, self._agent_key)

    def by_company(self) -> list[MetCounts]:
        return grouped(self.requests, self._company_key)

    def daily(self) -> list[Day]:
        return daily(self.requests, self.period)

    def times(self) -> list[Times]:
        order = {name: index for index, name in enumerate(self.tariffs)}
        return sorted(
            times_by_tariff(self.requests), key=lambda t: (order.get(t.tariff, 99), t.tariff)
        )

    def breaches(self) -> list[Breach]:
        return breaches(self.requests, self.now)

    def user(self, user_id: int) -> str:
        if user_id == 0:
            return "—"
        return self.users.get(user_id) or f"#{user_id}"

    def company(self, company_id: int | None) -> str:
        if company_id is None:
            return NO_COMPANY
        return self.companies.get(company_id) or f"#{company_id}"

    def link(self, lead_id: int) -> str:
        return self.lead_url.format(id=lead_id) if self.lead_url else ""
