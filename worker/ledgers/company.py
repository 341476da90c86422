"""A company's ledger fields as amoCRM holds them: its package, the values compared with
what the worker writes, the part of a company the ledgers keep."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from amo_client.models import (
    Company,
    CustomFieldValues,
    OutgoingValue,
    SelectValue,
)
from sla.ledger import (
    UNIT_SECONDS,
    Package,
)
from worker.fields import CompanyField, CompanyFieldMap


@dataclass(frozen=True)
class CompanyWrite:
    company_id: int
    values: Mapping[int, OutgoingValue]


def package_of(
    company: Company, fields: CompanyFieldMap, zone: ZoneInfo, unit: int = UNIT_SECONDS
) -> Package | str | None:
    """The company's package, None when it has none, or what is wrong with its fields (a
    package must hold one unit of account, ``unit`` seconds)."""
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
        return Package(hours=hours, paid_on=paid_on, unit=unit)
    except ValueError as error:
        return f"package field «Пакет: часов» = {hours_raw!r}: {error}; the package is not tracked"


def holds_values(company: Company, field_ids: Collection[int]) -> bool:
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


def comparable(values: CustomFieldValues | None) -> object:
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


def comparable_value(value: OutgoingValue) -> object:
    if isinstance(value, SelectValue):
        return ("enum", value.enum_id)
    if isinstance(value, datetime):  # amoCRM holds a date as unix seconds
        return int(value.timestamp())
    return value if value != "" else None


def slim_company(company: Company, keep: Collection[int] | None) -> Company:
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


def news(before: Company | None, after: Company) -> bool:
    """Whether a company read holds something its ledger depends on that the cached copy
    does not (the worker's own writes read back hold nothing new)."""
    if before is None:
        return True

    def held(company: Company) -> tuple[object, ...]:
        values = {f.field_id: comparable(f) for f in company.custom_fields_values or ()}
        return (company.name, company.responsible_user_id, values)

    return held(before) != held(after)
