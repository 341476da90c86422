"""The report's next-response figures (spec §4.1): how long customers waited for the next
answer, by tariff, responsible user and company.

A **waiting period** counts for the request it belongs to (one registered in the report's
period), as :mod:`worker.sla_report.figures` counts requests. A period is **met** when it
ended (a person's answer, a done stage) within its target, **breached** when the engine
says so (an open one included), and pending otherwise; **met %** is met / (met +
breached). **p90** is over the business minutes of the periods that ended, the nearest
rank as for the other times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sla.state import WaitingPeriod
from worker.sla_report.figures import NO_TARIFF, Figures, Request, minutes, p90, percent


@dataclass(frozen=True)
class WaitCounts:
    """One group's waiting periods."""

    kind: str  # «Тариф», «Ответственный», «Компания», «Всего»
    label: str
    periods: int
    met: int
    breached: int
    p90: Decimal | None  # business minutes, over the periods that ended

    @property
    def met_percent(self) -> Decimal | None:
        return percent(self.met, self.met + self.breached)


def counts(kind: str, label: str, periods: Iterable[WaitingPeriod]) -> WaitCounts:
    found = list(periods)
    ended = [minutes(p.clock.used) for p in found if p.clock.finished_at is not None]
    return WaitCounts(
        kind=kind,
        label=label,
        periods=len(found),
        met=sum(p.clock.finished_at is not None and not p.clock.breached for p in found),
        breached=sum(p.clock.breached for p in found),
        p90=p90(ended),
    )


def has_next_response(figures: Figures) -> bool:
    """Whether the policy gave any of the period's requests a next-response target."""
    return any(r.state.next_response.target is not None for r in figures.requests)


def wait_counts(figures: Figures) -> list[WaitCounts]:
    """By tariff (the policy's order), responsible user and company, then in all."""
    tariff_order = {name: index for index, name in enumerate((*figures.tariffs, NO_TARIFF))}
    rows = _grouped(
        "Тариф",
        figures.requests,
        lambda r: r.state.tariff or NO_TARIFF,
        order=lambda label: (tariff_order.get(label, len(tariff_order)), label),
    )
    rows += _grouped(
        "Ответственный", figures.requests, lambda r: figures.user(r.responsible_user_id)
    )
    rows += _grouped("Компания", figures.requests, lambda r: figures.company(r.company_id))
    every = [p for r in figures.requests for p in r.state.next_response.periods]
    rows.append(counts("Всего", "", every))
    return rows


def _grouped(
    kind: str,
    requests: Sequence[Request],
    key: Callable[[Request], str],
    order: Callable[[str], tuple[int, str]] = lambda label: (0, label),
) -> list[WaitCounts]:
    groups: dict[str, list[WaitingPeriod]] = defaultdict(list)
    for request in requests:
        if request.state.next_response.target is not None:
            groups[key(request)].extend(request.state.next_response.periods)
    return [
        counts(kind, label, periods)
        for label, periods in sorted(groups.items(), key=lambda item: order(item[0]))
    ]
