"""Typed views of the amoCRM API v4 objects the worker reads.

Models keep unknown keys (``extra="allow"``) so that a field amoCRM adds later
never breaks parsing. Timestamps arrive as unix seconds and are parsed into
aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    ``value_after[0]["lead_status"] == {"id": ..., "pipeline_id": ...}``.
    """

    id: str
    type: str
    entity_id: int
    entity_type: str
    created_by: int = 0
    created_at: datetime
    value_after: list[dict[str, Any]] | None = None
    value_before: list[dict[str, Any]] | None = None

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
