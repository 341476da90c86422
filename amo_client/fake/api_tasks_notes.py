"""API handlers for tasks and notes: batch writes checked item by item before any is applied,
and their lists with the filters amoCRM honours."""

from __future__ import annotations

import copy
import re
from typing import Any

from amo_client.fake.notes import note_content_errors
from amo_client.fake.paging import NOTES_MAX_LIMIT, Call, Handlers, in_range, order_by, request_id
from amo_client.fake.query import QueryNode, as_ints, as_range, as_strings, lookup
from amo_client.fake.replies import ItemError, Reply, hal, no_content, problem, validation_failed

_TASK_ENTITY_TYPES = frozenset({"leads", "contacts", "companies", "customers"})


class TaskNoteHandlers(Handlers):
    """Answers for tasks and notes."""

    # tasks

    def _task_errors(self, item: Any, user_id: int) -> list[ItemError]:
        if not isinstance(item, dict):
            return [ItemError("InvalidType", "", "This value should be of type object.")]
        errors: list[ItemError] = []
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            errors.append(ItemError("NotBlank", "text", "This value should not be blank."))
        till = item.get("complete_till")
        if not isinstance(till, int) or isinstance(till, bool):
            errors.append(
                ItemError("InvalidType", "complete_till", "This value should be of type int.")
            )
        task_type = item.get("task_type_id", 1)
        if task_type is not None and task_type not in {t["id"] for t in self.state._task_types}:
            errors.append(ItemError("NotSupportedChoice", "task_type_id", "Task type not found."))
        responsible = item.get("responsible_user_id")
        if responsible is not None and responsible not in self.state._users:
            errors.append(ItemError("NotSupportedChoice", "responsible_user_id", "User not found."))
        entity_type, entity_id = item.get("entity_type"), item.get("entity_id")
        if (entity_type is None) != (entity_id is None):
            errors.append(
                ItemError("NotBlank", "entity_type", "entity_id and entity_type go together.")
            )
        elif entity_type is not None:
            if entity_type not in _TASK_ENTITY_TYPES:
                errors.append(
                    ItemError("NotSupportedChoice", "entity_type", "Unknown entity type.")
                )
            elif (
                entity_type in self.state._entities
                and entity_id not in self.state._entities[entity_type]
            ):
                errors.append(ItemError("NotSupportedChoice", "entity_id", "Entity not found."))
        return errors

    def _create_tasks(self, call: Call, match: re.Match[str]) -> Reply:
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected = [
            (request_id(item, index), errors)
            for index, item in enumerate(items)
            if (errors := self._task_errors(item, call.user_id))
        ]
        if rejected:
            return validation_failed(rejected)
        at = self.state.now()
        created = []
        for index, item in enumerate(items):
            task_id = self.state._store_task(
                {**item, "responsible_user_id": item.get("responsible_user_id") or call.user_id},
                call.user_id,
                at,
            )
            created.append(
                {
                    "id": task_id,
                    "request_id": request_id(item, index),
                    "_links": self.state._href(f"/api/v4/tasks/{task_id}"),
                }
            )
        return hal({"_links": self.state._href("/api/v4/tasks"), "_embedded": {"tasks": created}})

    def _patch_tasks(self, call: Call, match: re.Match[str]) -> Reply:
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected: list[tuple[str, list[ItemError]]] = []
        for index, item in enumerate(items):
            task_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(task_id, int) or task_id not in self.state._tasks:
                rejected.append(
                    (request_id(item, index), [ItemError("NotFound", "id", "Task not found.")])
                )
        if rejected:
            return validation_failed(rejected)
        at = self.state.now()
        updated = []
        for item in items:
            task = self.state._tasks[item["id"]]
            for key in (
                "text",
                "complete_till",
                "is_completed",
                "responsible_user_id",
                "task_type_id",
            ):
                if key in item:
                    task[key] = item[key]
            if isinstance(item.get("result"), dict):
                task["result"] = dict(item["result"])
            task["updated_at"] = at
            task["updated_by"] = call.user_id
            updated.append(
                {
                    "id": task["id"],
                    "updated_at": at,
                    "_links": self.state._href(f"/api/v4/tasks/{task['id']}"),
                }
            )
        self.state._touch()
        return hal({"_links": self.state._href("/api/v4/tasks"), "_embedded": {"tasks": updated}})

    def _list_tasks(self, call: Call, match: re.Match[str]) -> Reply:
        tasks = self._selection(call, lambda: self._select_tasks(call.query))
        return self._paged(
            call,
            "tasks",
            tasks,
            lambda task_id: self.state._render_task(self.state._tasks[task_id]),
            cap=250,
        )

    def _select_tasks(self, query: dict[str, QueryNode]) -> list[int]:
        def ints(name: str) -> set[int]:
            return set(as_ints(lookup(query, "filter", name), f"filter[{name}]"))

        ids, responsible, task_types, entity_ids = (
            ints("id"),
            ints("responsible_user_id"),
            ints("task_type"),
            ints("entity_id"),
        )
        entity_type_node = lookup(query, "filter", "entity_type")
        entity_types = set(as_strings(entity_type_node))
        completed_node = lookup(query, "filter", "is_completed")
        completed: bool | None = None
        if isinstance(completed_node, str):
            completed = completed_node.strip().lower() in ("1", "true")
        updated = as_range(lookup(query, "filter", "updated_at"), "filter[updated_at]")
        selected = [
            task
            for task in self.state._tasks.values()
            if (not ids or task["id"] in ids)
            and (not responsible or task["responsible_user_id"] in responsible)
            and (not task_types or task["task_type_id"] in task_types)
            and (not entity_ids or task["entity_id"] in entity_ids)
            and (not entity_types or task["entity_type"] in entity_types)
            and (completed is None or task["is_completed"] == completed)
            and in_range(task["updated_at"], updated)
        ]
        order_key, descending = order_by(query, ("id", "created_at", "complete_till"))
        selected.sort(key=lambda task: (task[order_key], task["id"]), reverse=descending)
        return [task["id"] for task in selected]

    def _get_task(self, call: Call, match: re.Match[str]) -> Reply:
        task = self.state._tasks.get(int(match.group(1)))
        return hal(self.state._render_task(task)) if task is not None else no_content()

    # notes

    def _note_errors(self, kind: str, item: Any, entity_id: int | None) -> list[ItemError]:
        if not isinstance(item, dict):
            return [ItemError("InvalidType", "", "This value should be of type object.")]
        errors: list[ItemError] = []
        target = entity_id if entity_id is not None else item.get("entity_id")
        if not isinstance(target, int) or target not in self.state._entities[kind]:
            errors.append(ItemError("NotSupportedChoice", "entity_id", "Entity not found."))
        errors.extend(note_content_errors(item.get("note_type"), item.get("params")))
        return errors

    def _create_notes(self, call: Call, match: re.Match[str]) -> Reply:
        kind = match.group(1)
        entity_id = int(match.group(2)) if match.lastindex and match.lastindex >= 2 else None
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected = [
            (request_id(item, index), errors)
            for index, item in enumerate(items)
            if (errors := self._note_errors(kind, item, entity_id))
        ]
        if rejected:
            return validation_failed(rejected)
        at = self.state.now()
        created = []
        for index, item in enumerate(items):
            target = entity_id if entity_id is not None else int(item["entity_id"])
            note_id = self.state._store_note(
                kind,
                target,
                item["note_type"],
                item.get("params") or {},
                author=call.user_id,
                at=at,
            )
            created.append(
                {
                    "id": note_id,
                    "entity_id": target,
                    "request_id": request_id(item, index),
                    "_links": self.state._href(f"/api/v4/{kind}/{target}/notes/{note_id}"),
                }
            )
        return hal(
            {"_links": self.state._href(f"/api/v4/{kind}/notes"), "_embedded": {"notes": created}}
        )

    def _note_edit_errors(self, kind: str, item: Any) -> list[ItemError]:
        if not isinstance(item, dict):
            return [ItemError("InvalidType", "", "This value should be of type object.")]
        note_id = item.get("id")
        note = self.state._notes.get(note_id) if isinstance(note_id, int) else None
        if note is None or note["entity_type"] != kind:
            return [ItemError("NotFound", "id", "Note not found.")]
        note_type = item.get("note_type", note["note_type"])
        if note_type != note["note_type"]:
            return [ItemError("NotSupportedChoice", "note_type", "The note type cannot change.")]
        params = item.get("params")
        if params is None:
            return []
        if not isinstance(params, dict):
            return [ItemError("InvalidType", "params", "This value should be of type object.")]
        return note_content_errors(note_type, {**note["params"], **params})

    def _patch_notes(self, call: Call, match: re.Match[str]) -> Reply:
        """Edit notes in a batch: ``[{"id": ..., "params": {"text": ...}}]``.

        A note whose ``params`` change gets ``updated_at`` now and ``updated_by`` the
        token's user; its entity is not touched and no event is recorded.
        """
        kind = match.group(1)
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected = [
            (request_id(item, index), errors)
            for index, item in enumerate(items)
            if (errors := self._note_edit_errors(kind, item))
        ]
        if rejected:
            return validation_failed(rejected)
        at = self.state.now()
        updated = []
        for index, item in enumerate(items):
            note = self.state._notes[item["id"]]
            params = {**note["params"], **copy.deepcopy(item.get("params") or {})}
            if params != note["params"]:
                note["params"] = params
                note["updated_at"] = max(note["updated_at"], at)
                note["updated_by"] = call.user_id
                self.state._touch()
            updated.append(
                {
                    "id": note["id"],
                    "entity_id": note["entity_id"],
                    "updated_at": note["updated_at"],
                    "request_id": request_id(item, index),
                    "_links": self.state._href(
                        f"/api/v4/{kind}/{note['entity_id']}/notes/{note['id']}"
                    ),
                }
            )
        return hal(
            {"_links": self.state._href(f"/api/v4/{kind}/notes"), "_embedded": {"notes": updated}}
        )

    def _get_note(self, call: Call, match: re.Match[str]) -> Reply:
        note = self.state._notes.get(int(match.group(2)))
        if note is None or note["entity_type"] != match.group(1):
            return no_content()
        return hal(self.state._render_note(note))

    def _list_notes(self, call: Call, match: re.Match[str]) -> Reply:
        """Notes of one entity type (or of one entity, by path), filtered and ordered.

        ``filter[id]``, ``filter[entity_id]``, ``filter[note_type]`` and
        ``filter[updated_at]`` (one timestamp = from then on, or ``[from]``/``[to]``) apply;
        ``filter[created_at]`` is silently ignored, as practitioners found amoCRM does; with
        the account's API filtering off every ``filter[...]`` is. ``order[updated_at]`` or
        ``order[id]``, id ascending by default.
        """
        kind = match.group(1)
        path_entity = int(match.group(2)) if match.lastindex and match.lastindex >= 2 else None
        notes = self._selection(call, lambda: self._select_notes(kind, path_entity, call.query))
        return self._paged(
            call,
            "notes",
            notes,
            lambda note_id: self.state._render_note(self.state._notes[note_id]),
            cap=NOTES_MAX_LIMIT,
        )

    def _select_notes(
        self, kind: str, path_entity: int | None, query: dict[str, QueryNode]
    ) -> list[int]:
        if not self.state.api_filter_enabled:
            query = {key: node for key, node in query.items() if key != "filter"}

        def ints(name: str) -> set[int]:
            return set(as_ints(lookup(query, "filter", name), f"filter[{name}]"))

        ids, entity_ids = ints("id"), ints("entity_id")
        note_types = set(as_strings(lookup(query, "filter", "note_type")))
        updated = as_range(lookup(query, "filter", "updated_at"), "filter[updated_at]")
        selected = [
            note
            for note in self.state._notes.values()
            if note["entity_type"] == kind
            and (path_entity is None or note["entity_id"] == path_entity)
            and (not ids or note["id"] in ids)
            and (not entity_ids or note["entity_id"] in entity_ids)
            and (not note_types or note["note_type"] in note_types)
            and in_range(note["updated_at"], updated)
        ]
        order_key, descending = order_by(query, ("updated_at", "id"))
        selected.sort(key=lambda note: (note[order_key], note["id"]), reverse=descending)
        return [note["id"] for note in selected]
