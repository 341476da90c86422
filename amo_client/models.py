"""Typed views of the amoCRM API v4 objects the worker reads.

Models keep unknown keys (``extra="allow"``) so that a field amoCRM adds later
never breaks parsing. Timestamps arrive as unix seconds and are parsed into
aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Tag(_Model):
    id: int | None = None
    name: str


class EntityRef(_Model):
    id: int


class FieldValue(_Model):
    """One value of a custom field. ``enum_code`` is read but never sent back."""

    value: Any = None
    enum_id: int | None = None
    enum_code: str | None = None


class CustomFieldValues(_Model):
    field_id: int
    field_name: str | None = None
    field_code: str | None = None
    field_type: str | None = None
    values: list[FieldValue] = Field(default_factory=list)


class LeadEmbedded(_Model):
    tags: list[Tag] = Field(default_factory=list)
    companies: list[EntityRef] = Field(default_factory=list)
    contacts: list[EntityRef] = Field(default_factory=list)  # only with ``with=contacts``


class Lead(_Model):
    id: int
    name: str = ""
    status_id: int
    pipeline_id: int
    responsible_user_id: int = 0
    created_by: int = 0
    updated_by: int = 0
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    is_deleted: bool = False
    custom_fields_values: list[CustomFieldValues] | None = None
    embedded: LeadEmbedded = Field(default_factory=LeadEmbedded, alias="_embedded")

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.embedded.tags)

    @property
    def contact_ids(self) -> tuple[int, ...]:
        """The lead's contacts (read ``with=contacts``), the main one first."""
        return tuple(contact.id for contact in self.embedded.contacts)

    @property
    def company_id(self) -> int | None:
        """The lead's company (``_embedded.companies[0]``); a lead has at most one."""
        companies = self.embedded.companies
        return companies[0].id if companies else None

    def field(self, field_id: int) -> CustomFieldValues | None:
        for field in self.custom_fields_values or ():
            if field.field_id == field_id:
                return field
        return None


class StatusRef(_Model):
    id: int
    pipeline_id: int


class Event(_Model):
    """One entry of ``GET /api/v4/events``.

    For ``lead_status_changed`` the status sits in
    ``value_after[0]["lead_status"] == {"id": ..., "pipeline_id": ...}``. The rest of an
    event (its links, the embedded entity, the account id) is dropped: the feed holds
    thousands of events, and nothing reads those parts.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    id: str
    type: str
    entity_id: int
    entity_type: str
    created_by: int = 0
    created_at: datetime
    value_after: list[dict[str, Any]] | None = None
    value_before: list[dict[str, Any]] | None = None

    @property
    def talk_id(self) -> int | None:
        """A chat message's talk (``value_after[0].message.talk_id``), if it names one."""
        for item in self.value_after or ():
            message = item.get("message") if isinstance(item, dict) else None
            talk = message.get("talk_id") if isinstance(message, dict) else None
            if isinstance(talk, int):
                return talk
        return None

    @property
    def status_after(self) -> StatusRef | None:
        return _lead_status(self.value_after)

    @property
    def status_before(self) -> StatusRef | None:
        return _lead_status(self.value_before)


def _lead_status(values: list[dict[str, Any]] | None) -> StatusRef | None:
    for item in values or ():
        status = item.get("lead_status")
        if isinstance(status, dict):
            return StatusRef.model_validate(status)
    return None


class Status(_Model):
    id: int
    name: str
    sort: int = 0
    pipeline_id: int = 0
    type: int = 0


class PipelineEmbedded(_Model):
    statuses: list[Status] = Field(default_factory=list)


class Pipeline(_Model):
    id: int
    name: str
    sort: int = 0
    is_main: bool = False
    is_archive: bool = False
    embedded: PipelineEmbedded = Field(default_factory=PipelineEmbedded, alias="_embedded")

    @property
    def statuses(self) -> list[Status]:
        return self.embedded.statuses


class FieldEnum(_Model):
    id: int
    value: str
    sort: int = 0


class CustomField(_Model):
    id: int
    name: str
    type: str
    code: str | None = None
    sort: int = 0
    is_api_only: bool = False
    enums: list[FieldEnum] | None = None


class NewCustomField(_Model):
    """A custom field to create; ``enums`` are the option texts of a select."""

    name: str
    type: str
    enums: tuple[str, ...] = ()
    sort: int | None = None
    code: str | None = None


class UserRights(_Model):
    is_active: bool = True
    is_admin: bool = False
    group_id: int | None = None  # the user's group («отдел»); None or 0: the default one


class UserGroup(_Model):
    """A group of users («отдел»): ``GET /api/v4/account?with=users_groups``."""

    id: int
    name: str = ""


class User(_Model):
    id: int
    name: str = ""
    email: str | None = None
    rights: UserRights = Field(default_factory=UserRights)


class TaskType(_Model):
    id: int
    name: str = ""


class AccountEmbedded(_Model):
    datetime_settings: dict[str, Any] | None = None
    task_types: list[TaskType] = Field(default_factory=list)
    users_groups: list[UserGroup] = Field(default_factory=list)


class Webhook(_Model):
    """An account webhook: ``GET /api/v4/webhooks`` items and the ``POST`` answer."""

    id: int | None = None
    destination: str
    settings: list[str] = Field(default_factory=list)
    disabled: bool = False
    sort: int | None = None
    account_id: int | None = None
    created_by: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Account(_Model):
    """``GET /api/v4/account?with=datetime_settings,task_types``."""

    id: int
    name: str = ""
    subdomain: str = ""
    current_user_id: int = 0
    country: str | None = None
    is_api_filter_enabled: bool | None = None  # None: not asked for, or not reported
    embedded: AccountEmbedded = Field(default_factory=AccountEmbedded, alias="_embedded")

    @property
    def timezone(self) -> str | None:
        zone = (self.embedded.datetime_settings or {}).get("timezone")
        return zone if isinstance(zone, str) else None


class Task(_Model):
    id: int
    text: str | None = ""
    entity_id: int | None = None
    entity_type: str | None = None
    responsible_user_id: int = 0
    task_type_id: int = 1
    is_completed: bool = False
    complete_till: datetime | None = None
    created_by: int = 0
    created_at: datetime | None = None


class NewTask(_Model):
    text: str
    complete_till: int
    entity_id: int | None = None
    entity_type: str | None = None
    responsible_user_id: int | None = None
    task_type_id: int = 1


class NewNote(_Model):
    """A text note on an entity: ``common``, or a ``service_message`` when ``service`` names
    the integration writing it (amoCRM shows that name; it is no person's note)."""

    entity_id: int
    text: str
    service: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.service is None:
            return {
                "entity_id": self.entity_id,
                "note_type": "common",
                "params": {"text": self.text},
            }
        return {
            "entity_id": self.entity_id,
            "note_type": "service_message",
            "params": {"service": self.service, "text": self.text},
        }


class Note(_Model):
    """One note of ``GET /api/v4/{entity}/notes``; what it holds depends on ``note_type``.

    A ``common`` note keeps its text in ``params.text``; a ``call_in``/``call_out`` note
    keeps ``duration`` (seconds), ``phone``, ``uniq``, ``source`` and ``link`` there.
    """

    id: int
    entity_id: int
    created_by: int = 0
    updated_by: int = 0
    created_at: datetime
    updated_at: datetime
    responsible_user_id: int = 0
    note_type: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _empty_params(cls, value: Any) -> Any:
        # PHP encodes an empty array as [], and some note types carry null.
        return {} if value is None or value == [] else value

    @property
    def text(self) -> str | None:
        """The note's text (``params.text``): common and service notes have one."""
        text = self.params.get("text")
        return text if isinstance(text, str) else None

    @property
    def duration(self) -> int | None:
        """A call's length in seconds (``call_in``/``call_out``); None for other notes."""
        if self.note_type not in ("call_in", "call_out"):
            return None
        value = self.params.get("duration")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return None


class CreatedEntity(_Model):
    id: int


class Company(_Model):
    """One company of ``GET /api/v4/companies``, its custom field values included."""

    id: int
    name: str = ""
    responsible_user_id: int = 0
    updated_at: datetime | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    embedded: LeadEmbedded = Field(default_factory=LeadEmbedded, alias="_embedded")

    def field(self, field_id: int) -> CustomFieldValues | None:
        for field in self.custom_fields_values or ():
            if field.field_id == field_id:
                return field
        return None


@dataclass(frozen=True)
class SelectValue:
    """A select option chosen by its ``enum_id``, the only form a PATCH accepts back."""

    enum_id: int


# What a field can be set to: unix seconds or a datetime (date_time), bool (checkbox),
# SelectValue (select), int/float (numeric), str (text), None (clear the field).
OutgoingValue = datetime | bool | int | float | str | SelectValue | None


@dataclass(frozen=True)
class EntityUpdate:
    """One item of a batch PATCH: field values by field id, optionally a status move."""

    id: int
    values: Mapping[int, OutgoingValue] = dataclass_field(default_factory=dict)
    status_id: int | None = None
    pipeline_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id}
        if self.status_id is not None:
            item["status_id"] = self.status_id
        if self.pipeline_id is not None:
            item["pipeline_id"] = self.pipeline_id
        if self.values:
            item["custom_fields_values"] = [
                {"field_id": field_id, "values": encode_value(value)}
                for field_id, value in self.values.items()
            ]
        return item


def encode_value(value: OutgoingValue) -> list[dict[str, Any]] | None:
    """A field value in the form amoCRM accepts in a PATCH; ``None`` clears the field."""
    if value is None:
        return None
    if isinstance(value, SelectValue):
        return [{"enum_id": value.enum_id}]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a date_time value must be timezone-aware")
        return [{"value": int(value.timestamp())}]
    return [{"value": value}]


@dataclass(frozen=True)
class BatchResult:
    """The outcome of a batch write whose bad items were dropped and the rest re-sent.

    ``written`` holds the ids amoCRM accepted; ``failed`` maps each rejected item's id
    to a readable reason built from its validation errors.
    """

    written: tuple[int, ...] = ()
    failed: Mapping[int, str] = dataclass_field(default_factory=dict)
