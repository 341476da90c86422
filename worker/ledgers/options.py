"""The ledgers' settings: which ledgers are on, their quotas, markers and task texts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from sla.ledger import (
    DEFAULT_MARKER,
    UNIT_SECONDS,
    Quota,
)
from worker.events import NOTE_DELETED

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
    unit: int = UNIT_SECONDS  # seconds each time entry rounds up to (the policy's time_entries)
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
