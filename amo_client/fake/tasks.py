"""Tasks on leads and companies, and the account's task types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amo_client.fake.render import AccountRendering


class AccountTasks(AccountRendering):
    """Keeps tasks, their completion and the task types they may have."""

    @property
    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_task(task) for task in self._tasks.values()]

    def add_task_type(self, name: str, *, code: str | None = None) -> int:
        with self._lock:
            new_id = max(task_type["id"] for task_type in self._task_types) + 1
            self._task_types.append(
                {"id": new_id, "name": name, "color": None, "icon_id": None, "code": code}
            )
            return int(new_id)

    def add_task(
        self,
        lead_id: int,
        text: str,
        *,
        complete_till: float,
        responsible_user_id: int | None = None,
        task_type_id: int = 1,
        is_completed: bool = False,
        created_by: int | None = None,
        created_at: float | None = None,
        entity_type: str = "leads",
    ) -> int:
        with self._lock:
            at = int(created_at) if created_at is not None else self.now()
            author = created_by if created_by is not None else self.owner_id
            return self._store_task(
                {
                    "text": text,
                    "complete_till": int(complete_till),
                    "responsible_user_id": responsible_user_id or self.owner_id,
                    "task_type_id": task_type_id,
                    "is_completed": is_completed,
                    "entity_id": lead_id,
                    "entity_type": entity_type,
                },
                author,
                at,
            )

    def complete_task(self, task_id: int, *, result: str = "") -> None:
        with self._lock:
            task = self._tasks[task_id]
            task["is_completed"] = True
            task["result"] = {"text": result} if result else []
            task["updated_at"] = self.now()
            self._touch()

    def _store_task(self, item: Mapping[str, Any], author: int, at: int) -> int:
        task_id = self._new_id("task")
        entity_type = item.get("entity_type")
        entity_id = item.get("entity_id")
        self._tasks[task_id] = {
            "id": task_id,
            "created_by": author,
            "updated_by": author,
            "created_at": at,
            "updated_at": at,
            "responsible_user_id": item.get("responsible_user_id") or author,
            "group_id": 0,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "duration": int(item.get("duration") or 0),
            "is_completed": bool(item.get("is_completed", False)),
            "task_type_id": int(item.get("task_type_id") or 1),
            "text": item["text"],
            "result": [],
            "complete_till": int(item["complete_till"]),
        }
        if isinstance(entity_type, str) and isinstance(entity_id, int):
            self._tasks_by_entity.setdefault((entity_type, entity_id), []).append(task_id)
        self._touch()
        return task_id
