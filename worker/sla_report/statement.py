"""The customer statement: what a provider sends a customer for a period's hours.

It is laid out from the company's :class:`~worker.sla_report.figures.CompanyHours`, the
very figures of the report's hours table (planned by the ledgers as the cycle plans the
company's fields), so the two agree on every figure at the same instant. It names the
provider (``SLA_PROVIDER_NAME``) and the customer (the company), the period, each time
entry (date, request, what was done, time as logged and as counted), the totals, the
package with its balance and what is billed over it at the policy's rate, the rounding
rule with the contract's clause (the policy's ``[time_entries]``), and lines to sign.
No lead id, agent or internal wording: those are the report's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sla.ledger import TimeEntry
from sla.policy import TimeTerms
from sla.words import duration_text
from worker.sla_report.figures import CompanyHours, Figures
from worker.sla_report.render import Table, environment, money, when


@dataclass(frozen=True)
class Line:
    """One time entry as the customer reads it."""

    day: str
    request: str
    what: str
    logged_seconds: int
    counted_minutes: int
    in_package: bool | None  # None: the company has no package

    @property
    def logged(self) -> str:
        minutes, seconds = divmod(self.logged_seconds, 60)
        text = duration_text(minutes) if minutes or not seconds else ""
        return f"{text} {seconds} с".strip() if seconds else text

    @property
    def counted(self) -> str:
        return duration_text(self.counted_minutes)


@dataclass(frozen=True)
class Statement:
    hours: CompanyHours
    provider: str
    customer: str
    period: str
    made: str  # the day the statement was made
    terms: TimeTerms
    lines: tuple[Line, ...]
    totals: tuple[tuple[str, str], ...]
    package: tuple[tuple[str, str], ...]  # the package, its balance and what is billed over

    @property
    def slug(self) -> str:
        return f"statement-{self.hours.company_id}"

    @property
    def title(self) -> str:
        return "Отчёт об оказанных услугах технической поддержки"

    @property
    def rule(self) -> str:
        """The rounding rule, with the contract's clause when the policy cites one."""
        unit = duration_text(self.terms.unit_minutes)
        clause = f" ({self.terms.unit_clause})" if self.terms.unit_clause else ""
        return (
            f"Время учитывается по каждой записи отдельно с округлением вверх до целых "
            f"{unit}{clause}: «записано» — как указал исполнитель, «учтено» — после округления."
        )

    def table(self) -> Table:
        """The entries as CSV: minutes in columns of their own."""
        return Table(
            self.slug,
            f"{self.title}: {self.customer}",
            ("Дата", "Обращение", "Что сделано", "Записано, мин", "Учтено, мин", "Списание"),
            tuple(
                (
                    line.day,
                    line.request,
                    line.what,
                    (Decimal(line.logged_seconds) / 60).quantize(Decimal("0.1")),
                    line.counted_minutes,
                    _charged(line.in_package),
                )
                for line in self.lines
            ),
            numeric_from=3,
        )


def _charged(in_package: bool | None) -> str:
    if in_package is None:
        return "без пакета"
    return "из пакета" if in_package else "вне срока пакета"


def statements(
    figures: Figures, *, provider: str, company_id: int | None = None
) -> list[Statement]:
    """The statements of the companies with time in the period (or of ``company_id``,
    whether it has time or only a package)."""
    found = []
    for hours in figures.hours or ():
        if company_id is not None and hours.company_id != company_id:
            continue
        if company_id is None and not hours.entries:
            continue
        found.append(statement(figures, hours, provider=provider))
    return found


def statement(figures: Figures, hours: CompanyHours, *, provider: str) -> Statement:
    balance = hours.balance
    counted = {entry.note_id for entry in balance.counted} if balance else set()
    names = {r.lead_id: r.name for r in figures.requests}
    zone = figures.period.zone
    lines = tuple(
        Line(
            day=f"{entry.at.astimezone(zone):%d.%m.%Y}",
            request=names.get(entry.lead_id, figures.lead_names.get(entry.lead_id, "")),
            what=entry.what,
            logged_seconds=entry.seconds,
            counted_minutes=entry.minutes,
            in_package=(entry.note_id in counted) if hours.package is not None else None,
        )
        for entry in hours.entries
    )
    as_of = min(figures.now, figures.period.end)
    return Statement(
        hours=hours,
        provider=provider,
        customer=hours.name,
        period=figures.period.text(),
        made=f"{figures.now.astimezone(zone):%d.%m.%Y}",
        terms=figures.time_terms,
        lines=lines,
        totals=_totals(hours.entries),
        package=_package(hours, as_of, figures),
    )


def _totals(entries: tuple[TimeEntry, ...]) -> tuple[tuple[str, str], ...]:
    logged = sum(entry.seconds for entry in entries)
    counted = sum(entry.minutes for entry in entries)
    logged_text = Line("", "", "", logged, 0, None).logged
    return (
        ("Записей за период", str(len(entries))),
        ("Записано", logged_text),
        ("Учтено", f"{duration_text(counted)} ({counted} мин)"),
    )


def _package(hours: CompanyHours, as_of: datetime, figures: Figures) -> tuple[tuple[str, str], ...]:
    balance = hours.balance
    rows: list[tuple[str, str]] = []
    if hours.package is None or balance is None:
        rows.append(("Пакет часов", "нет: вся работа периода — вне пакета"))
    else:
        left = balance.remaining_minutes
        rows += [
            (
                "Пакет часов",
                f"{duration_text(hours.package.minutes)}, оплачен "
                f"{hours.package.paid_on:%d.%m.%Y}, действует по {balance.valid_to:%d.%m.%Y}",
            ),
            (
                f"Израсходовано на {_as_of(as_of, figures)}",
                f"{duration_text(balance.used_minutes)} ({balance.used_minutes} мин)",
            ),
            (
                "Остаток пакета",
                f"{duration_text(left)} ({left} мин)"
                + (" — работы сверх пакета" if left < 0 else ""),
            ),
        ]
    if hours.outside_minutes:
        rows.append(
            (
                "Вне срока пакета за период" if hours.package else "Работа вне пакета за период",
                f"{duration_text(hours.outside_minutes)} ({hours.outside_minutes} мин)",
            )
        )
    if hours.over_minutes:
        rows.append(
            (
                "Сверх пакета за период",
                f"{duration_text(hours.over_minutes)} ({hours.over_minutes} мин)",
            )
        )
    if hours.rate is not None and hours.package is not None:
        rows.append(("Ставка часа сверх пакета", f"{money(hours.rate)} ₽"))
        rows.append(("К оплате сверх пакета", f"{money(hours.over_cost)} ₽"))
    return tuple(rows)


def _as_of(moment: datetime, figures: Figures) -> str:
    if moment >= figures.period.end:
        return f"конец {figures.period.last:%d.%m.%Y}"
    return when(moment, figures)


def render_statement(item: Statement) -> str:
    return environment().get_template("statement.html.j2").render(s=item)
