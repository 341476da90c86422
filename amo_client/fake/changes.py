"""Changes to a lead or company, from a PATCH item or a person's edit: checked whole with the
errors amoCRM answers 400 with, then applied with the events and the hook amoCRM records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amo_client.fake.events import AccountEvents
from amo_client.fake.fields import TYPE_CODES, CustomField, normalize_values
from amo_client.fake.records import LOST_STATUS_ID, WON_STATUS_ID, Entity
from amo_client.fake.replies import ItemError
from amo_client.fake.schema import AccountSchema
from amo_client.fake.webhooks import lead_fields


@dataclass
class Change:
    """A validated PATCH item (or a seeding update), applied only when the whole batch is valid."""

    entity: Entity
    name: str | None = None
    price: int | None = None
    responsible_user_id: int | None = None
    status: tuple[int, int] | None = None
    fields: list[tuple[CustomField, list[dict[str, Any]] | None]] = field(default_factory=list)
    tags_replace: list[str] | None = None
    tags_add: list[str] = field(default_factory=list)
    tags_delete: list[str] = field(default_factory=list)


class AccountChanges(AccountEvents, AccountSchema):
    """Validates changes to leads and companies, and applies the valid ones."""

    def _validate_change(self, kind: str, item: Any) -> tuple[Change | None, list[ItemError]]:
        if not isinstance(item, dict):
            return None, [ItemError("InvalidType", "", "This value should be of type object.")]
        entity_id = item.get("id")
        if not isinstance(entity_id, int) or isinstance(entity_id, bool):
            return None, [ItemError("NotBlank", "id", "This value should not be blank.")]
        entity = self._entities[kind].get(entity_id)
        if entity is None:
            return None, [ItemError("NotFound", "id", "Entity not found.")]
        change = Change(entity)
        errors = self._validate_scalars(kind, item, change)
        if kind == "leads":
            errors.extend(self._validate_status(item, entity, change))
        if "custom_fields_values" in item:
            errors.extend(self._validate_fields(kind, item["custom_fields_values"], change))
        errors.extend(self._validate_tags(kind, item, change))
        return (change if not errors else None), errors

    def _validate_scalars(self, kind: str, item: dict[str, Any], change: Change) -> list[ItemError]:
        errors: list[ItemError] = []
        if "name" in item:
            if isinstance(item["name"], str):
                change.name = item["name"]
            else:
                errors.append(
                    ItemError("InvalidType", "name", "This value should be of type string.")
                )
        if "price" in item and kind == "leads":
            price = item["price"]
            if isinstance(price, int) and not isinstance(price, bool):
                change.price = price
            else:
                errors.append(
                    ItemError("InvalidType", "price", "This value should be of type int.")
                )
        if "responsible_user_id" in item:
            user = item["responsible_user_id"]
            if isinstance(user, int) and user in self._users:
                change.responsible_user_id = user
            else:
                errors.append(
                    ItemError("NotSupportedChoice", "responsible_user_id", "User not found.")
                )
        return errors

    def _validate_status(
        self, item: dict[str, Any], entity: Entity, change: Change
    ) -> list[ItemError]:
        if "status_id" not in item and "pipeline_id" not in item:
            return []
        pipeline_id = item.get("pipeline_id", entity.pipeline_id)
        if not isinstance(pipeline_id, int) or pipeline_id not in self._pipelines:
            return [ItemError("NotSupportedChoice", "pipeline_id", "Pipeline not found.")]
        pipeline = self._pipelines[pipeline_id]
        if "status_id" in item:
            status_id = item["status_id"]
            if not isinstance(status_id, int) or pipeline.status(status_id) is None:
                return [ItemError("NotSupportedChoice", "status_id", "Status not found.")]
        elif pipeline_id == entity.pipeline_id:
            status_id = entity.status_id
        else:
            status_id = self._pipeline_ref(pipeline).first_status_id
        change.status = (pipeline_id, status_id)
        return []

    def _validate_fields(self, kind: str, entries: Any, change: Change) -> list[ItemError]:
        if entries is None:
            return []
        if not isinstance(entries, list):
            return [
                ItemError(
                    "InvalidType", "custom_fields_values", "This value should be of type array."
                )
            ]
        errors: list[ItemError] = []
        definitions = self._fields[kind]
        for index, entry in enumerate(entries):
            path = f"custom_fields_values.{index}"
            if not isinstance(entry, dict):
                errors.append(
                    ItemError("InvalidType", path, "This value should be of type object.")
                )
                continue
            definition: CustomField | None = None
            field_id = entry.get("field_id")
            if isinstance(field_id, int) and not isinstance(field_id, bool):
                definition = definitions.get(field_id)
            elif isinstance(entry.get("field_code"), str):
                definition = next(
                    (d for d in definitions.values() if d.code == entry["field_code"]), None
                )
            if definition is None:
                errors.append(
                    ItemError("NotSupportedChoice", f"{path}.field_id", "Custom field not found.")
                )
                continue
            values, value_errors = normalize_values(definition, entry.get("values"), path)
            if value_errors:
                errors.extend(value_errors)
            else:
                change.fields.append((definition, values))
        return errors

    def _validate_tags(self, kind: str, item: dict[str, Any], change: Change) -> list[ItemError]:
        errors: list[ItemError] = []
        embedded = item.get("_embedded")
        if isinstance(embedded, dict) and "tags" in embedded:
            names, tag_errors = self._tag_names(kind, embedded["tags"], "_embedded.tags")
            errors.extend(tag_errors)
            change.tags_replace = names
        for key in ("tags_to_add", "tags_to_delete"):
            if key in item:
                names, tag_errors = self._tag_names(kind, item[key], key)
                errors.extend(tag_errors)
                if key == "tags_to_add":
                    change.tags_add = names
                else:
                    change.tags_delete = names
        return errors

    def _tag_names(self, kind: str, refs: Any, path: str) -> tuple[list[str], list[ItemError]]:
        if refs is None:
            return [], []
        if not isinstance(refs, list):
            return [], [ItemError("InvalidType", path, "This value should be of type array.")]
        by_id = {tag_id: name for name, tag_id in self._tags[kind].items()}
        names: list[str] = []
        errors: list[ItemError] = []
        for index, ref in enumerate(refs):
            if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"].strip():
                names.append(ref["name"].strip())
            elif isinstance(ref, dict) and isinstance(ref.get("id"), int) and ref["id"] in by_id:
                names.append(by_id[ref["id"]])
            else:
                errors.append(ItemError("NotSupportedChoice", f"{path}.{index}", "Tag not found."))
        return names, errors

    def _apply_change(self, change: Change, user_id: int, at: int) -> bool:
        """Apply a validated change; record what amoCRM records; False when nothing changed."""
        entity = change.entity

        def emit(
            event_type: str,
            before: list[dict[str, Any]] | None,
            after: list[dict[str, Any]] | None,
            *,
            always: bool = False,
        ) -> None:
            if always or self.record_change_events:
                self._record_event(
                    event_type, entity.kind, entity.id, user_id, at, before=before, after=after
                )

        changed = False
        if change.name is not None and change.name != entity.name:
            emit(
                "name_field_changed",
                [{"name_field_value": {"name": entity.name}}],
                [{"name_field_value": {"name": change.name}}],
            )
            entity.name, changed = change.name, True
        if change.price is not None and change.price != entity.price:
            emit(
                "sale_field_changed",
                [{"sale_field_value": {"sale": entity.price}}],
                [{"sale_field_value": {"sale": change.price}}],
            )
            entity.price, changed = change.price, True
        responsible = change.responsible_user_id
        if responsible is not None and responsible != entity.responsible_user_id:
            emit(
                "entity_responsible_changed",
                [{"responsible_user": {"id": entity.responsible_user_id}}],
                [{"responsible_user": {"id": responsible}}],
            )
            entity.responsible_user_id, changed = responsible, True
        if change.status is not None and change.status != (entity.pipeline_id, entity.status_id):
            pipeline_id, status_id = change.status
            emit(
                "lead_status_changed",
                [{"lead_status": {"id": entity.status_id, "pipeline_id": entity.pipeline_id}}],
                [{"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}],
                always=True,
            )
            entity.pipeline_id, entity.status_id = pipeline_id, status_id
            closed = status_id in (WON_STATUS_ID, LOST_STATUS_ID)
            entity.closed_at = (entity.closed_at or at) if closed else None
            changed = True
        changed = self._apply_contents(change, emit) or changed
        if changed:
            entity.updated_at = max(entity.updated_at, at)
            entity.updated_by = user_id
            self._touch()
            if entity.kind == "leads" and self._subscriptions:
                self._hook("update_lead", lead_fields("leads[update][0]", entity))
        return changed

    def _apply_contents(self, change: Change, emit: Callable[..., None]) -> bool:
        entity = change.entity
        changed = False
        for definition, values in change.fields:
            current = entity.fields.get(definition.id)
            if values == current:
                continue
            emit(
                f"custom_field_{definition.id}_value_changed",
                _field_event_values(definition, current),
                _field_event_values(definition, values),
            )
            if values is None:
                del entity.fields[definition.id]
            else:
                entity.fields[definition.id] = values
            changed = True
        wanted = self._tags_after(change)
        if wanted != entity.tags:
            for name in wanted:
                self._tag_id(entity.kind, name)
            for name in (name for name in wanted if name not in entity.tags):
                emit("entity_tag_added", None, [{"tag": {"name": name}}])
            for name in (name for name in entity.tags if name not in wanted):
                emit("entity_tag_deleted", [{"tag": {"name": name}}], None)
            entity.tags, changed = wanted, True
        return changed

    @staticmethod
    def _tags_after(change: Change) -> list[str]:
        wanted = list(change.entity.tags)
        if change.tags_replace is not None:
            wanted = list(dict.fromkeys(change.tags_replace))
        for name in change.tags_add:
            if name not in wanted:
                wanted.append(name)
        return [name for name in wanted if name not in change.tags_delete]


def _field_event_values(
    definition: CustomField, values: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    return [
        {
            "custom_field_value": {
                "field_id": definition.id,
                "field_type": TYPE_CODES.get(definition.type, 0),
                "enum_id": value.get("enum_id"),
                "text": str(value.get("value", "")),
            }
        }
        for value in values or []
    ]
