"""The JSON amoCRM returns for what the account holds: leads, companies, events, tasks, notes,
pipelines, stages and users, each with its ``_links``."""

from __future__ import annotations

import copy
from typing import Any

from amo_client.fake.fields import stored_entry
from amo_client.fake.records import Entity, Pipeline, Status, StoredEvent
from amo_client.fake.store import PLURAL, AccountStore


class AccountRendering(AccountStore):
    """Renders the account's entities as amoCRM's API returns them."""

    def _render_entity(self, entity: Entity, with_: set[str]) -> dict[str, Any]:
        definitions = self._fields[entity.kind]
        values = [
            stored_entry(definitions[field_id], copy.deepcopy(field_values))
            for field_id, field_values in entity.fields.items()
            if field_id in definitions
        ]
        registry = self._tags[entity.kind]
        tags = [{"id": registry[name], "name": name, "color": None} for name in entity.tags]
        path = f"/api/v4/{entity.kind}/{entity.id}"
        out: dict[str, Any] = {"id": entity.id, "name": entity.name}
        if entity.kind == "leads":
            out.update(
                {
                    "price": entity.price,
                    "responsible_user_id": entity.responsible_user_id,
                    "group_id": 0,
                    "status_id": entity.status_id,
                    "pipeline_id": entity.pipeline_id,
                    "loss_reason_id": None,
                }
            )
        else:
            out.update({"responsible_user_id": entity.responsible_user_id, "group_id": 0})
        out.update(
            {
                "created_by": entity.created_by,
                "updated_by": entity.updated_by,
                "created_at": entity.created_at,
                "updated_at": entity.updated_at,
            }
        )
        if entity.kind == "leads":
            out["closed_at"] = entity.closed_at
        out["closest_task_at"] = self._closest_task_at(entity.kind, entity.id)
        out["is_deleted"] = False
        if entity.kind == "leads" and "is_price_modified_by_robot" in with_:
            out["is_price_modified_by_robot"] = False
        if entity.kind == "leads" and "source_id" in with_:
            out["source_id"] = None
        out["custom_fields_values"] = values or None
        if entity.kind == "leads":
            out["score"] = None
            out["labor_cost"] = None
        out["account_id"] = self.account_id
        out["_links"] = self._href(path)
        embedded: dict[str, Any] = {"tags": tags}
        if entity.kind == "companies" and "leads" in with_:
            embedded["leads"] = [
                {"id": lead_id, "_links": self._href(f"/api/v4/leads/{lead_id}")}
                for lead_id in self.company_leads(entity.id)
            ]
        if entity.kind == "leads":
            embedded["companies"] = [
                {"id": company_id, "_links": self._href(f"/api/v4/companies/{company_id}")}
                for company_id in entity.company_ids
            ]
            if "contacts" in with_:
                embedded["contacts"] = [
                    {
                        "id": contact_id,
                        "is_main": index == 0,
                        "_links": self._href(f"/api/v4/contacts/{contact_id}"),
                    }
                    for index, contact_id in enumerate(entity.contact_ids)
                ]
        out["_embedded"] = embedded
        return out

    def _render_deleted_lead(self, entity: Entity) -> dict[str, Any]:
        """A lead in the trash as ``with=only_deleted`` returns it: little more than its id.

        amoCRM was seen answering with the name, stage, dates and fields all null,
        ``is_deleted`` true, and ``updated_at``/``updated_by`` the deletion's
        (amocrm/amocrm-api-php#254).
        """
        out: dict[str, Any] = {
            "id": entity.id,
            "name": None,
            "price": None,
            "responsible_user_id": None,
            "group_id": None,
            "status_id": None,
            "pipeline_id": None,
            "loss_reason_id": None,
            "created_by": None,
            "updated_by": entity.deleted_by,
            "created_at": None,
            "updated_at": entity.deleted_at,
            "closed_at": None,
            "closest_task_at": None,
            "is_deleted": True,
            "custom_fields_values": None,
            "score": None,
            "account_id": self.account_id,
            "_links": self._href(f"/api/v4/leads/{entity.id}"),
            "_embedded": {"tags": [], "companies": []},
        }
        return out

    def _closest_task_at(self, kind: str, entity_id: int) -> int | None:
        pending = [
            self._tasks[task_id]["complete_till"]
            for task_id in self._tasks_by_entity.get((kind, entity_id), [])
            if not self._tasks[task_id]["is_completed"]
        ]
        return min(pending) if pending else None

    def _render_event(self, event: StoredEvent) -> dict[str, Any]:
        plural = PLURAL.get(event.entity_type, event.entity_type)
        return {
            "id": event.id,
            "type": event.type,
            "entity_id": event.entity_id,
            "entity_type": event.entity_type,
            "created_by": event.created_by,
            "created_at": event.created_at,
            "value_after": copy.deepcopy(event.value_after)
            if event.value_after is not None
            else [],
            "value_before": copy.deepcopy(event.value_before)
            if event.value_before is not None
            else [],
            "account_id": self.account_id,
            "_links": self._href(f"/api/v4/events/{event.id}"),
            "_embedded": {
                "entity": {
                    "id": event.entity_id,
                    "_links": self._href(f"/api/v4/{plural}/{event.entity_id}"),
                }
            },
        }

    def _render_task(self, task: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(task)
        out["account_id"] = self.account_id
        out["_links"] = self._href(f"/api/v4/tasks/{task['id']}")
        return out

    def _render_note(self, note: dict[str, Any]) -> dict[str, Any]:
        out = {key: copy.deepcopy(value) for key, value in note.items() if key != "entity_type"}
        out["account_id"] = self.account_id
        out["_links"] = self._href(
            f"/api/v4/{note['entity_type']}/{note['entity_id']}/notes/{note['id']}"
        )
        return out

    def _render_pipeline(self, pipeline: Pipeline) -> dict[str, Any]:
        return {
            "id": pipeline.id,
            "name": pipeline.name,
            "sort": pipeline.sort,
            "is_main": pipeline.is_main,
            "is_unsorted_on": pipeline.is_unsorted_on,
            "is_archive": False,
            "account_id": self.account_id,
            "_links": self._href(f"/api/v4/leads/pipelines/{pipeline.id}"),
            "_embedded": {
                "statuses": [self._render_status(status) for status in pipeline.statuses]
            },
        }

    def _render_status(self, status: Status) -> dict[str, Any]:
        return {
            "id": status.id,
            "name": status.name,
            "sort": status.sort,
            "is_editable": status.is_editable,
            "pipeline_id": status.pipeline_id,
            "color": status.color,
            "type": status.type,
            "account_id": self.account_id,
            "_links": self._href(
                f"/api/v4/leads/pipelines/{status.pipeline_id}/statuses/{status.id}"
            ),
        }

    def _render_user(self, user: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(user)
        out["_links"] = self._href(f"/api/v4/users/{user['id']}")
        return out
