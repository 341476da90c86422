"""The fields the worker reads and writes, and which of them an entity needs changed.

Lead fields carry a request's SLA (always), its next response (when the policy has
next-response targets) and its share of the company ledgers (when packages or quotas are
on); company fields carry the company's hour package and quotas.

A value is compared in the form amoCRM sends it back: date_time as unix
seconds, checkbox as a bool, select as its enum id, numeric as a whole number.
A field that is not set on the lead counts as empty (and an unset checkbox as
unchecked), so a lead whose SLA is all clear needs no write at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from amo_client.models import CustomFieldValues, Lead
from sla.ledger import PackageStatus
from sla.state import SlaState, SlaStatus

Value = int | bool | None


class SlaField(StrEnum):
    REACTION_DUE = "reaction_due"
    RESOLUTION_DUE = "resolution_due"
    REACTED_AT = "reacted_at"
    REACTION_BREACHED = "reaction_breached"
    RESOLUTION_BREACHED = "resolution_breached"
    STATUS = "status"
    REMAINING_MINUTES = "remaining_minutes"
    AGREED_DUE = "agreed_due"
    SPENT_MINUTES = "spent_minutes"
    PACKAGE_EXHAUSTED = "package_exhausted"
    QUOTA_OVER = "quota_over"
    NEXT_RESPONSE_DUE = "next_response_due"
    NEXT_RESPONSE_BREACHED = "next_response_breached"


class Ledger(StrEnum):
    """A company ledger the admin switched on: hour packages (a setting), quotas (the policy)."""

    PACKAGES = "packages"
    QUOTAS = "quotas"


class CompanyField(StrEnum):
    PACKAGE_HOURS = "package_hours"
    PACKAGE_PAID = "package_paid"
    PACKAGE_VALID_TO = "package_valid_to"
    PACKAGE_USED = "package_used"
    PACKAGE_LEFT = "package_left"
    PACKAGE_STATUS = "package_status"
    QUOTAS = "quotas"


class FieldType(StrEnum):
    DATE_TIME = "date_time"
    CHECKBOX = "checkbox"
    SELECT = "select"
    NUMERIC = "numeric"
    DATE = "date"
    TEXT = "text"


K = TypeVar("K", SlaField, CompanyField)


@dataclass(frozen=True)
class FieldSpec(Generic[K]):
    key: K
    name: str
    type: FieldType
    written: bool = True  # False: typed by people, only read by the worker
    ledger: Ledger | None = None  # needed only while this ledger is on
    options: tuple[str, ...] = ()  # a select's options
    # Needed only while the policy has next-response targets; written (empty) whenever the
    # account has it, so switching next response off clears what it showed.
    next_response: bool = False

    def needed(self, ledgers: frozenset[Ledger], next_response: bool = False) -> bool:
        return (self.ledger is None or self.ledger in ledgers) and (
            next_response or not self.next_response
        )


STATUS_OPTIONS: tuple[str, ...] = tuple(status.value for status in SlaStatus)
FIELD_SPECS: tuple[FieldSpec[SlaField], ...] = (
    FieldSpec(SlaField.REACTION_DUE, "SLA: реакция до", FieldType.DATE_TIME),
    FieldSpec(SlaField.RESOLUTION_DUE, "SLA: решение до", FieldType.DATE_TIME),
    FieldSpec(SlaField.REACTED_AT, "SLA: реакция", FieldType.DATE_TIME),
    FieldSpec(SlaField.REACTION_BREACHED, "SLA: реакция просрочена", FieldType.CHECKBOX),
    FieldSpec(SlaField.RESOLUTION_BREACHED, "SLA: решение просрочено", FieldType.CHECKBOX),
    FieldSpec(SlaField.STATUS, "SLA: статус", FieldType.SELECT, options=STATUS_OPTIONS),
    FieldSpec(SlaField.REMAINING_MINUTES, "SLA: осталось, мин", FieldType.NUMERIC),
    FieldSpec(SlaField.AGREED_DUE, "SLA: срок по согласованию", FieldType.DATE_TIME, written=False),
    FieldSpec(
        SlaField.SPENT_MINUTES, "SLA: затрачено, мин", FieldType.NUMERIC, ledger=Ledger.PACKAGES
    ),
    FieldSpec(
        SlaField.PACKAGE_EXHAUSTED, "Пакет: исчерпан", FieldType.CHECKBOX, ledger=Ledger.PACKAGES
    ),
    FieldSpec(SlaField.QUOTA_OVER, "Квота: сверх лимита", FieldType.CHECKBOX, ledger=Ledger.QUOTAS),
    FieldSpec(SlaField.NEXT_RESPONSE_DUE, "SLA: ответ до", FieldType.DATE_TIME, next_response=True),
    FieldSpec(
        SlaField.NEXT_RESPONSE_BREACHED,
        "SLA: ответ просрочен",
        FieldType.CHECKBOX,
        next_response=True,
    ),
)
PACKAGE_STATUS_OPTIONS: tuple[str, ...] = tuple(status.value for status in PackageStatus)
SPEC_BY_KEY: Mapping[SlaField, FieldSpec[SlaField]] = {spec.key: spec for spec in FIELD_SPECS}
COMPANY_FIELD_SPECS: tuple[FieldSpec[CompanyField], ...] = (
    FieldSpec(
        CompanyField.PACKAGE_HOURS,
        "Пакет: часов",
        FieldType.NUMERIC,
        written=False,
        ledger=Ledger.PACKAGES,
    ),
    FieldSpec(
        CompanyField.PACKAGE_PAID,
        "Пакет: оплачен",
        FieldType.DATE,
        written=False,
        ledger=Ledger.PACKAGES,
    ),
    FieldSpec(
        CompanyField.PACKAGE_VALID_TO, "Пакет: действует до", FieldType.DATE, ledger=Ledger.PACKAGES
    ),
    FieldSpec(
        CompanyField.PACKAGE_USED,
        "Пакет: израсходовано, мин",
        FieldType.NUMERIC,
        ledger=Ledger.PACKAGES,
    ),
    FieldSpec(
        CompanyField.PACKAGE_LEFT, "Пакет: остаток, мин", FieldType.NUMERIC, ledger=Ledger.PACKAGES
    ),
    FieldSpec(
        CompanyField.PACKAGE_STATUS,
        "Пакет: статус",
        FieldType.SELECT,
        ledger=Ledger.PACKAGES,
        options=PACKAGE_STATUS_OPTIONS,
    ),
    FieldSpec(CompanyField.QUOTAS, "Квоты", FieldType.TEXT, ledger=Ledger.QUOTAS),
)
COMPANY_SPEC_BY_KEY: Mapping[CompanyField, FieldSpec[CompanyField]] = {
    spec.key: spec for spec in COMPANY_FIELD_SPECS
}


@dataclass(frozen=True)
class FieldMap:
    """The account's ids for the SLA fields; a field the account lacks is simply absent.

    ``status_enum_ids`` are the options of the select among them (the SLA status on leads,
    the package status on companies)."""

    ids: Mapping[SlaField, int]
    status_enum_ids: Mapping[str, int]

    def id_of(self, key: SlaField) -> int | None:
        return self.ids.get(key)


@dataclass(frozen=True)
class CompanyFieldMap:
    """The account's ids for the company ledger fields."""

    ids: Mapping[CompanyField, int]
    status_enum_ids: Mapping[str, int]

    def id_of(self, key: CompanyField) -> int | None:
        return self.ids.get(key)


class BadFieldValue(ValueError):
    """A lead holds a value that cannot be read as its field's type."""


def desired_values(state: SlaState, fields: FieldMap) -> dict[int, Value]:
    """What the lead's SLA fields should hold for ``state``, by field id."""
    wanted: dict[SlaField, Value] = {
        SlaField.REACTION_DUE: _unix(state.reaction.due),
        SlaField.RESOLUTION_DUE: _unix(state.resolution.due),
        SlaField.REACTED_AT: _unix(state.reaction.finished_at),
        SlaField.REACTION_BREACHED: state.reaction.breached,
        SlaField.RESOLUTION_BREACHED: state.resolution.breached,
        SlaField.STATUS: fields.status_enum_ids.get(state.status.value),
        SlaField.REMAINING_MINUTES: state.remaining_minutes,
        SlaField.NEXT_RESPONSE_DUE: _unix(state.next_response.due),
        SlaField.NEXT_RESPONSE_BREACHED: state.next_response.breached,
    }
    return {
        field_id: value
        for key, value in wanted.items()
        if (field_id := fields.id_of(key)) is not None
    }


def current_values(lead: Lead, fields: FieldMap) -> dict[int, Value]:
    """The lead's SLA field values as the worker compares them. Raises BadFieldValue."""
    current: dict[int, Value] = {}
    for spec in FIELD_SPECS:
        field_id = fields.id_of(spec.key)
        if field_id is None:
            continue
        current[field_id] = read_value(lead.field(field_id), spec)
    return current


def differing(current: Mapping[int, Value], wanted: Mapping[int, Value]) -> dict[int, Value]:
    """The ``wanted`` values that differ from ``current`` as amoCRM compares them."""
    return {
        field_id: value
        for field_id, value in wanted.items()
        if _comparable(current.get(field_id)) != _comparable(value)
    }


def read_value(field: CustomFieldValues | None, spec: FieldSpec[K]) -> Value:
    if field is None or not field.values:
        return False if spec.type is FieldType.CHECKBOX else None
    first = field.values[0]
    if spec.type is FieldType.SELECT:
        return first.enum_id
    return _coerce(first.value, spec)


def _coerce(raw: Any, spec: FieldSpec[K]) -> Value:
    if raw is None or raw == "":
        return False if spec.type is FieldType.CHECKBOX else None
    if spec.type is FieldType.CHECKBOX:
        if isinstance(raw, bool):
            return raw
        if raw in (0, 1, "0", "1"):
            return bool(int(raw))
        raise BadFieldValue(f"«{spec.name}» holds {raw!r}, not a checkbox value")
    if isinstance(raw, bool):
        raise BadFieldValue(f"«{spec.name}» holds {raw!r}, not a number")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        kind = "a date" if spec.type is FieldType.DATE_TIME else "a number"
        raise BadFieldValue(f"«{spec.name}» holds {raw!r}, not {kind}") from None
    return round(number)


def _comparable(value: Value) -> Value:
    # An unchecked checkbox and a checkbox never set read the same in amoCRM.
    return None if value is False else value


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())
