"""One item that does not fit its model is skipped and reported; the rest of its page arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import respx
from structlog.testing import capture_logs

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem

STAMP = 1_700_000_000


def lead(lead_id: int, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": lead_id,
        "name": f"Обращение {lead_id}",
        "status_id": 1,
        "pipeline_id": 1,
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    item.update(changes)
    return item


def page(key: str, items: list[Any]) -> dict[str, Any]:
    return {"_embedded": {key: items}}


def test_a_lead_that_does_not_fit_is_reported_by_id_and_the_others_arrive(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").respond(
        200,
        json=page(
            "leads",
            [
                lead(1),
                lead(2, updated_at="вчера"),
                "not a lead",
                lead(3, custom_fields_values=[{"field_id": "x"}]),
                lead(4),
            ],
        ),
    )
    invalid: list[InvalidItem] = []

    found = [item.id for item in mocked_amo.iter_leads(on_invalid=invalid.append)]

    assert found == [1, 4]
    assert [(item.kind, item.item_id) for item in invalid] == [
        ("lead", 2),
        ("lead", None),
        ("lead", 3),
    ]
    assert invalid[0].problem.startswith("updated_at: ")
    assert "вчера" not in invalid[0].problem  # where and why, not the value
    assert invalid[2].problem.startswith("custom_fields_values.0.field_id: ")


def test_without_a_callback_an_invalid_item_is_a_logged_warning(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").respond(200, json=page("leads", [lead(1), {"id": 9}]))
    with capture_logs() as logs:
        found = [item.id for item in mocked_amo.iter_leads()]
    assert found == [1]
    warnings = [entry for entry in logs if entry["event"] == "item_invalid"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert (warnings[0]["kind"], warnings[0]["id"]) == ("lead", 9)
    assert "created_at" in warnings[0]["problem"]


def test_a_problem_lists_at_most_three_places(
    router: respx.MockRouter, mocked_amo: AmoClient
) -> None:
    router.get("/api/v4/leads").respond(200, json=page("leads", [{"id": "x"}]))
    invalid: list[InvalidItem] = []
    assert list(mocked_amo.iter_leads(on_invalid=invalid.append)) == []
    assert invalid[0].item_id == "x"
    assert invalid[0].problem.count(": ") == 3
    assert invalid[0].problem.endswith("more")


def listing(
    mocked_amo: AmoClient, kind: str
) -> tuple[str, str, dict[str, Any], Callable[[Callable[[InvalidItem], None]], list[Any]]]:
    """The path, key and one valid item of a list, and a call that reads it."""
    if kind == "event":
        valid = {
            "id": "01e",
            "type": "lead_added",
            "entity_id": 1,
            "entity_type": "lead",
            "created_at": STAMP,
        }
        return (
            "/api/v4/events",
            "events",
            valid,
            lambda report: list(mocked_amo.iter_events(on_invalid=report)),
        )
    if kind == "task":
        return (
            "/api/v4/tasks",
            "tasks",
            {"id": 5},
            lambda report: list(mocked_amo.iter_tasks(on_invalid=report)),
        )
    if kind == "company":
        return (
            "/api/v4/companies",
            "companies",
            {"id": 6},
            lambda report: list(mocked_amo.iter_companies(on_invalid=report)),
        )
    if kind == "user":
        return (
            "/api/v4/users",
            "users",
            {"id": 7, "name": "Агент"},
            lambda report: list(mocked_amo.iter_users(on_invalid=report)),
        )
    if kind == "pipeline":
        return (
            "/api/v4/leads/pipelines",
            "pipelines",
            {"id": 8, "name": "Поддержка"},
            (lambda report: mocked_amo.pipelines(on_invalid=report)),
        )
    valid = {"id": 9, "name": "SLA", "type": "date_time"}
    return (
        "/api/v4/leads/custom_fields",
        "custom_fields",
        valid,
        lambda report: list(mocked_amo.iter_lead_custom_fields(on_invalid=report)),
    )


@pytest.mark.parametrize("kind", ["event", "task", "company", "user", "pipeline", "custom_field"])
def test_every_list_skips_and_reports_an_item_that_does_not_fit(
    router: respx.MockRouter, mocked_amo: AmoClient, kind: str
) -> None:
    path, key, valid, read = listing(mocked_amo, kind)
    router.get(path).respond(
        200, json=page(key, [{"id": 404, "name": ["?"], "created_at": "never"}, valid])
    )
    invalid: list[InvalidItem] = []

    found = read(invalid.append)

    assert [item.id for item in found] == [valid["id"]]
    assert [(item.kind, item.item_id) for item in invalid] == [(kind, 404)]
