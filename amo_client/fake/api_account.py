"""API handlers for the account's setup: the account, users, pipelines and their stages, custom
fields, and webhook subscriptions."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from amo_client.fake.fields import ENUM_TYPES, SUPPORTED_TYPES, field_patch_errors, replace_enums
from amo_client.fake.paging import CUSTOM_FIELDS_MAX_LIMIT, Call, Handlers, request_id
from amo_client.fake.query import as_strings, lookup
from amo_client.fake.records import LOST_STATUS_ID, WON_STATUS_ID
from amo_client.fake.replies import ItemError, Reply, hal, no_content, problem, validation_failed
from amo_client.fake.webhooks import SETTINGS as WEBHOOK_SETTINGS


class AccountHandlers(Handlers):
    """Answers for the account, its users, pipelines, stages, custom fields and webhooks."""

    # account, users, pipelines

    def _get_account(self, call: Call, match: re.Match[str]) -> Reply:
        with_ = self._with(call)
        body: dict[str, Any] = {
            "id": self.state.account_id,
            "name": self.state.account_name,
            "subdomain": self.state.subdomain,
            "created_at": self.state.created_at,
            "created_by": 0,
            "updated_at": self.state.now(),
            "updated_by": 0,
            "current_user_id": call.user_id,
            "country": "RU",
            "currency": "RUB",
            "currency_symbol": "₽",
            "customers_mode": "disabled",
            "is_unsorted_on": any(p.is_unsorted_on for p in self.state._pipelines.values()),
            "is_loss_reason_enabled": False,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
            "_links": self.state._href("/api/v4/account"),
        }
        if "amojo_id" in with_:
            body["amojo_id"] = f"{self.state.account_id:08x}-0000-4000-8000-000000000000"
        if "uuid" in with_:
            body["uuid"] = f"{self.state.account_id:08x}-0000-4000-8000-000000000001"
        if "version" in with_:
            body["version"] = 11
        if "is_api_filter_enabled" in with_:
            body["is_api_filter_enabled"] = self.state.api_filter_enabled
        embedded: dict[str, Any] = {}
        if "users_groups" in with_:
            embedded["users_groups"] = [
                {"id": group_id, "name": name, "uuid": None}
                for group_id, name in sorted(self.state._user_groups.items())
            ]
        if "task_types" in with_:
            embedded["task_types"] = copy.deepcopy(self.state._task_types)
        if "datetime_settings" in with_:
            embedded["datetime_settings"] = {
                "date_pattern": "d.m.Y H:i",
                "short_date_pattern": "d.m.Y",
                "short_time_pattern": "H:i",
                "date_formant": "d.m.Y",
                "time_format": "H:i:s",
                "timezone": self.state.timezone,
                "timezone_offset": _offset_text(self.state.timezone, self.state._clock()),
            }
        if embedded:
            body["_embedded"] = embedded
        return hal(body)

    def _list_users(self, call: Call, match: re.Match[str]) -> Reply:
        users = list(self.state._users.values())
        return self._paged(call, "users", users, self.state._render_user, cap=250, with_totals=True)

    def _get_user(self, call: Call, match: re.Match[str]) -> Reply:
        user = self.state._users.get(int(match.group(1)))
        return hal(self.state._render_user(user)) if user is not None else no_content()

    def _list_pipelines(self, call: Call, match: re.Match[str]) -> Reply:
        pipelines = sorted(self.state._pipelines.values(), key=lambda p: (p.sort, p.id))
        if not pipelines:
            return no_content()
        return hal(
            {
                "_total_items": len(pipelines),
                "_links": self.state._href("/api/v4/leads/pipelines"),
                "_embedded": {"pipelines": [self.state._render_pipeline(p) for p in pipelines]},
            }
        )

    def _get_pipeline(self, call: Call, match: re.Match[str]) -> Reply:
        pipeline = self.state._pipelines.get(int(match.group(1)))
        if pipeline is None:
            return problem(404, "Pipeline not found")
        return hal(self.state._render_pipeline(pipeline))

    def _list_statuses(self, call: Call, match: re.Match[str]) -> Reply:
        pipeline = self.state._pipelines.get(int(match.group(1)))
        if pipeline is None:
            return problem(404, "Pipeline not found")
        return hal(
            {
                "_total_items": len(pipeline.statuses),
                "_links": self.state._href(f"/api/v4/leads/pipelines/{pipeline.id}/statuses"),
                "_embedded": {
                    "statuses": [self.state._render_status(s) for s in pipeline.statuses]
                },
            }
        )

    def _get_status(self, call: Call, match: re.Match[str]) -> Reply:
        pipeline = self.state._pipelines.get(int(match.group(1)))
        status = pipeline.status(int(match.group(2))) if pipeline is not None else None
        if status is None:
            return problem(404, "Status not found")
        return hal(self.state._render_status(status))

    def _create_statuses(self, call: Call, match: re.Match[str]) -> Reply:
        """Add working stages; each lands after the last working stage with a lower ``sort``."""
        pipeline = self.state._pipelines.get(int(match.group(1)))
        if pipeline is None:
            return problem(404, "Pipeline not found")
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected = [
            (
                request_id(item, index),
                [ItemError("NotBlank", "name", "This value should not be blank.")],
            )
            for index, item in enumerate(items)
            if not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not item["name"].strip()
        ]
        if rejected:
            return validation_failed(rejected)
        created = []
        for index, item in enumerate(items):
            sort = item.get("sort")
            after = None
            if isinstance(sort, int):
                lower = [
                    status
                    for status in pipeline.statuses
                    if status.sort < sort and status.id not in (WON_STATUS_ID, LOST_STATUS_ID)
                ]
                after = lower[-1].id if lower else None
            color = item.get("color")
            status_id = self.state.add_status(
                pipeline.id,
                item["name"].strip(),
                after=after,
                color=color if isinstance(color, str) else None,
            )
            status = next(s for s in pipeline.statuses if s.id == status_id)
            created.append(
                {**self.state._render_status(status), "request_id": request_id(item, index)}
            )
        return hal({"_total_items": len(created), "_embedded": {"statuses": created}})

    def _patch_status(self, call: Call, match: re.Match[str]) -> Reply:
        pipeline = self.state._pipelines.get(int(match.group(1)))
        status = pipeline.status(int(match.group(2))) if pipeline is not None else None
        if pipeline is None or status is None:
            return problem(404, "Status not found")
        item = call.body
        if not isinstance(item, dict):
            return problem(400, "Request validation failed", **{"validation-errors": []})
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            return validation_failed(
                [("0", [ItemError("NotBlank", "name", "This value should not be blank.")])]
            )
        if not status.is_editable and name is not None:
            return problem(400, "This status cannot be edited")
        if isinstance(name, str):
            self.state.rename_status(pipeline.id, status.id, name.strip())
        if isinstance(item.get("color"), str):
            status.color = item["color"]
            self.state._touch()
        return hal(self.state._render_status(status))

    def _delete_status(self, call: Call, match: re.Match[str]) -> Reply:
        """204 when deleted; 400 for a stage that holds leads or cannot be deleted."""
        pipeline_id, status_id = int(match.group(1)), int(match.group(2))
        pipeline = self.state._pipelines.get(pipeline_id)
        if pipeline is None or pipeline.status(status_id) is None:
            return problem(404, "Status not found")
        try:
            self.state.delete_status(pipeline_id, status_id)
        except ValueError as refusal:
            return problem(400, str(refusal))
        return no_content()

    # custom fields

    def _list_fields(self, call: Call, match: re.Match[str]) -> Reply:
        kind = match.group(1)
        types = set(as_strings(lookup(call.query, "filter", "type")))
        order = call.query.get("order")
        definitions = [d for d in self.state._fields[kind].values() if not types or d.type in types]
        if isinstance(order, dict) and order:
            order_key, direction = next(iter(order.items()))
            if order_key in ("sort", "id") and isinstance(direction, str):
                definitions.sort(
                    key=lambda d: (d.sort, d.id) if order_key == "sort" else (d.id, 0),
                    reverse=direction.lower() == "desc",
                )
        return self._paged(
            call,
            "custom_fields",
            definitions,
            lambda d: d.as_json(self.state.base_url),
            cap=CUSTOM_FIELDS_MAX_LIMIT,
            with_totals=True,
        )

    def _get_field(self, call: Call, match: re.Match[str]) -> Reply:
        definition = self.state._fields[match.group(1)].get(int(match.group(2)))
        if definition is None:
            return problem(404, "Custom field not found")
        return hal(definition.as_json(self.state.base_url))

    def _create_fields(self, call: Call, match: re.Match[str]) -> Reply:
        kind = match.group(1)
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected: list[tuple[str, list[ItemError]]] = []
        for index, item in enumerate(items):
            errors = _field_item_errors(item)
            if errors:
                rejected.append((request_id(item, index), errors))
        if rejected:
            return validation_failed(rejected)
        created = []
        for item in items:
            enums = [
                str(enum["value"])
                for enum in sorted(item.get("enums") or [], key=lambda e: e.get("sort", 0))
            ]
            definition = self.state._create_field(
                kind,
                item["name"],
                item["type"],
                enums=enums,
                code=item.get("code"),
                field_id=None,
                sort=item.get("sort"),
                is_api_only=bool(item.get("is_api_only", False)),
            )
            created.append(definition.as_json(self.state.base_url))
        return hal(
            {
                "_total_items": len(created),
                "_embedded": {"custom_fields": created},
            }
        )

    def _patch_fields(self, call: Call, match: re.Match[str]) -> Reply:
        definitions = self.state._fields[match.group(1)]
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        rejected: list[tuple[str, list[ItemError]]] = []
        for index, item in enumerate(items):
            errors = field_patch_errors(item, definitions)
            if errors:
                rejected.append((request_id(item, index), errors))
        if rejected:
            return validation_failed(rejected)
        updated = []
        for item in items:
            definition = definitions[item["id"]]
            replace_enums(definition, item["enums"], lambda: self.state._new_id("enum"))
            updated.append(definition.as_json(self.state.base_url))
        self.state._touch()
        return hal({"_total_items": len(updated), "_embedded": {"custom_fields": updated}})

    # webhooks

    def _list_webhooks(self, call: Call, match: re.Match[str]) -> Reply:
        wanted = lookup(call.query, "filter", "destination")
        destination = wanted if isinstance(wanted, str) else None
        found = self.state.subscriptions(destination)
        if not found:
            return no_content()
        return hal(
            {
                "_total_items": len(found),
                "_links": self.state._href("/api/v4/webhooks"),
                "_embedded": {"webhooks": [s.render(self.state.account_id) for s in found]},
            }
        )

    def _subscribe_webhook(self, call: Call, match: re.Match[str]) -> Reply:
        body = call.body
        if not isinstance(body, dict):
            return problem(400, "Request validation failed", **{"validation-errors": []})
        errors = _destination_errors(body.get("destination"))
        settings = body.get("settings")
        if (
            not isinstance(settings, list)
            or not settings
            or not all(isinstance(item, str) and item in WEBHOOK_SETTINGS for item in settings)
        ):
            errors.append(ItemError("NotSupportedChoice", "settings", "Invalid settings."))
        sort = body.get("sort")
        if sort is not None and not isinstance(sort, int):
            errors.append(ItemError("InvalidType", "sort", "This value should be of type int."))
        if errors:
            return validation_failed([("0", errors)])
        subscription = self.state.subscribe_webhook(
            body["destination"], [str(item) for item in settings or ()], sort=sort, by=call.user_id
        )
        return hal(subscription.render(self.state.account_id))

    def _unsubscribe_webhook(self, call: Call, match: re.Match[str]) -> Reply:
        body = call.body
        destination = body.get("destination") if isinstance(body, dict) else None
        if not isinstance(destination, str):
            return problem(400, "Request validation failed", **{"validation-errors": []})
        if not self.state.unsubscribe_webhook(destination):
            return problem(404, "Webhook not found")
        return no_content()


def _field_item_errors(item: Any) -> list[ItemError]:
    if not isinstance(item, dict):
        return [ItemError("InvalidType", "", "This value should be of type object.")]
    errors: list[ItemError] = []
    if not isinstance(item.get("name"), str) or not item["name"].strip():
        errors.append(ItemError("NotBlank", "name", "This value should not be blank."))
    field_type = item.get("type")
    if field_type not in SUPPORTED_TYPES:
        errors.append(
            ItemError("NotSupportedChoice", "type", "The value you selected is not a valid choice.")
        )
    elif field_type in ENUM_TYPES:
        enums = item.get("enums")
        if not isinstance(enums, list) or not enums:
            errors.append(ItemError("NotBlank", "enums", "This value should not be blank."))
        else:
            for position, enum in enumerate(enums):
                if not isinstance(enum, dict) or not isinstance(enum.get("value"), str):
                    errors.append(
                        ItemError(
                            "NotBlank", f"enums.{position}.value", "This value should not be blank."
                        )
                    )
    return errors


def _destination_errors(value: Any) -> list[ItemError]:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        return [ItemError("InvalidType", "destination", "This value should be a valid URL.")]
    if not urlsplit(value).hostname:
        return [ItemError("InvalidType", "destination", "This value should be a valid URL.")]
    return []


def _offset_text(zone_name: str, at: float) -> str:

    offset = datetime.fromtimestamp(at, UTC).astimezone(ZoneInfo(zone_name)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
