"""Custom field definitions and the validation amoCRM applies to the values written into them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amo_client.fake.replies import ItemError

ENUM_TYPES = frozenset({"select", "multiselect", "radiobutton"})
MULTI_VALUE_TYPES = frozenset({"multiselect"})
TEXT_TYPES = frozenset({"text", "textarea", "url", "streetaddress"})
NUMBER_TYPES = frozenset({"numeric", "price", "monetary"})
DATE_TYPES = frozenset({"date", "date_time", "birthday"})
FLAG_TYPES = frozenset({"checkbox"})
SUPPORTED_TYPES = ENUM_TYPES | TEXT_TYPES | NUMBER_TYPES | DATE_TYPES | FLAG_TYPES

# Numeric type codes that amoCRM puts into custom_field_value_changed events.
TYPE_CODES = {
    "text": 1,
    "numeric": 2,
    "checkbox": 3,
    "select": 4,
    "multiselect": 5,
    "date": 6,
    "url": 7,
    "textarea": 9,
    "radiobutton": 10,
    "streetaddress": 11,
    "birthday": 14,
    "date_time": 19,
    "price": 20,
    "monetary": 21,
}

NOT_A_CHOICE = "The value you selected is not a valid choice."


@dataclass
class CustomField:
    """One custom field of leads or companies, with the enums of a list field."""

    id: int
    name: str
    type: str
    entity_type: str
    account_id: int
    code: str | None = None
    sort: int = 500
    is_api_only: bool = False
    group_id: str | None = None
    enums: list[dict[str, Any]] = field(default_factory=list)

    def enum_by_id(self, enum_id: int) -> dict[str, Any] | None:
        for enum in self.enums:
            if enum["id"] == enum_id:
                return enum
        return None

    def enum_by_value(self, value: str) -> dict[str, Any] | None:
        for enum in self.enums:
            if enum["value"] == value:
                return enum
        return None

    def as_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "account_id": self.account_id,
            "code": self.code,
            "sort": self.sort,
            "is_api_only": self.is_api_only,
            "enums": [dict(enum) for enum in self.enums] if self.type in ENUM_TYPES else None,
            "group_id": self.group_id,
            "required_statuses": [],
            "is_deletable": True,
            "is_predefined": False,
            "entity_type": self.entity_type,
            "remind": None,
            "_links": {
                "self": {"href": f"{base_url}/api/v4/{self.entity_type}/custom_fields/{self.id}"}
            },
        }


def field_patch_errors(item: Any, definitions: Mapping[int, CustomField]) -> list[ItemError]:
    """What is refused in one item of ``PATCH /api/v4/{entity}/custom_fields``.

    The fake edits the options of a list field only: an item names the field by ``id``
    and brings its whole ``enums`` list."""
    if not isinstance(item, dict):
        return [ItemError("InvalidType", "", "This value should be of type object.")]
    field_id = item.get("id")
    definition = definitions.get(field_id) if isinstance(field_id, int) else None
    if definition is None:
        return [ItemError("NotFound", "id", "Custom field not found.")]
    unsupported = sorted(set(item) - {"id", "enums", "request_id"})
    if unsupported:
        message = "The emulator edits a field's enums only."
        return [ItemError("NotSupported", key, message) for key in unsupported]
    enums = item.get("enums")
    if definition.type not in ENUM_TYPES or not isinstance(enums, list) or not enums:
        return [ItemError("NotBlank", "enums", "This value should not be blank.")]
    errors: list[ItemError] = []
    for position, enum in enumerate(enums):
        if not isinstance(enum, dict) or not isinstance(enum.get("value"), str):
            message = "This value should not be blank."
            errors.append(ItemError("NotBlank", f"enums.{position}.value", message))
        elif "id" in enum and definition.enum_by_id(enum["id"]) is None:
            errors.append(ItemError("NotFound", f"enums.{position}.id", "Enum not found."))
    return errors


def replace_enums(
    definition: CustomField, enums: Sequence[Mapping[str, Any]], new_id: Callable[[], int]
) -> None:
    """The list field's options become ``enums``, as amoCRM does on a PATCH: an item with an
    ``id`` keeps that option (value and sort as sent), one without is a new option, and an
    option left out is dropped."""
    replaced: list[dict[str, Any]] = []
    for position, enum in enumerate(enums):
        sort = enum.get("sort", 500 + 10 * position)
        enum_id = enum["id"] if "id" in enum else new_id()
        replaced.append({"id": enum_id, "value": enum["value"], "sort": sort})
    definition.enums = sorted(replaced, key=lambda enum: (enum["sort"], enum["id"]))


def stored_entry(definition: CustomField, values: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``custom_fields_values`` item as amoCRM returns it."""
    return {
        "field_id": definition.id,
        "field_name": definition.name,
        "field_code": definition.code,
        "field_type": definition.type,
        "values": values,
    }


def normalize_values(
    definition: CustomField, values: Any, path: str
) -> tuple[list[dict[str, Any]] | None, list[ItemError]]:
    """Check ``values`` written to ``definition``; ``None`` (or ``[]``) clears the field.

    Returns the values as amoCRM stores and returns them: text and numbers as
    strings, dates as unix seconds, checkboxes as bools, list fields as
    ``value`` + ``enum_id`` + ``enum_code`` (``null`` for lists without codes).
    """
    if values is None:
        return None, []
    if not isinstance(values, list):
        return None, [
            ItemError("InvalidType", f"{path}.values", "This value should be of type array.")
        ]
    if not values:
        return None, []
    if len(values) > 1 and definition.type not in MULTI_VALUE_TYPES:
        return None, [
            ItemError(
                "TooManyElements",
                f"{path}.values",
                "This collection should contain 1 element or less.",
            )
        ]
    stored: list[dict[str, Any]] = []
    errors: list[ItemError] = []
    for index, item in enumerate(values):
        item_path = f"{path}.values.{index}"
        if not isinstance(item, dict):
            errors.append(
                ItemError("InvalidType", item_path, "This value should be of type object.")
            )
            continue
        if "enum_code" in item:
            # List fields made in the interface or by POST carry no enum codes, so echoing the
            # `enum_code: null` read from a lead back in a PATCH is rejected.
            errors.append(ItemError("NotSupportedChoice", f"{item_path}.enum_code", NOT_A_CHOICE))
            continue
        value, error = _normalize_one(definition, item, item_path)
        if error is not None:
            errors.append(error)
        elif value is not None:
            stored.append(value)
    return (stored if not errors else None), errors


def _normalize_one(
    definition: CustomField, item: dict[str, Any], path: str
) -> tuple[dict[str, Any] | None, ItemError | None]:
    kind = definition.type
    if kind in ENUM_TYPES:
        return _normalize_enum(definition, item, path)
    if "value" not in item:
        return None, ItemError("FieldMissing", f"{path}.value", "This field is missing.")
    stored: str | int | bool | None
    if kind in TEXT_TYPES:
        expected, stored = "string", _text(item["value"])
    elif kind in NUMBER_TYPES:
        expected, stored = "numeric", _number_text(item["value"])
    elif kind in FLAG_TYPES:
        expected, stored = "bool", item["value"] if isinstance(item["value"], bool) else None
    else:
        expected, stored = "int", _timestamp(item["value"])
    if stored is None:
        return None, ItemError(
            "InvalidType", f"{path}.value", f"This value should be of type {expected}."
        )
    return {"value": stored}, None


def _normalize_enum(
    definition: CustomField, item: dict[str, Any], path: str
) -> tuple[dict[str, Any] | None, ItemError | None]:
    if "enum_id" in item and item["enum_id"] is not None:
        enum_id = item["enum_id"]
        enum = (
            definition.enum_by_id(enum_id)
            if isinstance(enum_id, int) and not isinstance(enum_id, bool)
            else None
        )
        if enum is None:
            return None, ItemError("NotSupportedChoice", f"{path}.enum_id", NOT_A_CHOICE)
    elif "value" in item:
        enum = definition.enum_by_value(item["value"]) if isinstance(item["value"], str) else None
        if enum is None:
            return None, ItemError("NotSupportedChoice", f"{path}.value", NOT_A_CHOICE)
    else:
        return None, ItemError("FieldMissing", f"{path}.enum_id", "This field is missing.")
    return {"value": enum["value"], "enum_id": enum["id"], "enum_code": None}, None


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _number_text(value: Any) -> str | None:
    """amoCRM keeps numbers as text: ``5`` and ``"5"`` both come back as ``"5"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    try:
        number = float(value.strip().replace(",", "."))
    except ValueError:
        return None
    return value.strip() if math.isfinite(number) else None


def _timestamp(value: Any) -> int | None:
    """Unix seconds, as an int or digits; an ISO 8601 string with an offset is accepted too."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return int(parsed.timestamp()) if parsed.tzinfo is not None else None


def python_to_values(definition: CustomField, value: Any) -> Any:
    """API ``values`` from a seeding shorthand: a value, an enum value or id, or a list."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items: Sequence[Any] = value
    else:
        items = [value]
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
        elif definition.type in ENUM_TYPES and isinstance(item, int) and not isinstance(item, bool):
            out.append({"enum_id": item})
        elif isinstance(item, datetime):
            out.append({"value": int(item.timestamp())})
        else:
            out.append({"value": item})
    return out
