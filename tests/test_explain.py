"""``python -m worker explain`` on the bundled sample API responses, and the no-command default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.cli import main
from worker.explain import SAMPLES, Names, sample_cases

PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"
STAGES = [
    "--pipeline-id", "7000001", "--first-status", "70000011",
    "--hold-status", "70000013", "--acceptance-status", "70000014",
]  # fmt: skip


def explain(
    capsys: pytest.CaptureFixture[str], name: str, now: str, *extra: str
) -> tuple[dict[str, Any], str]:
    code = main(
        [
            "explain",
            "--lead", str(SAMPLES / f"{name}.lead.json"),
            "--events", str(SAMPLES / f"{name}.events.json"),
            "--now", now,
            *STAGES,
            *extra,
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    trace, _, state = captured.out.partition("state:\n")
    return json.loads(state), trace


def test_priority_typical_sample(capsys: pytest.CaptureFixture[str]) -> None:
    result, trace = explain(capsys, "priority_typical", "2025-10-12T16:00:00+03:00")
    # The built-in policy: no next response, and a task at each clock's breach.
    assert result.pop("waiting_periods") == []
    assert (result.pop("next_response_due"), result.pop("next_response_breached")) == (None, False)
    ladder = result.pop("ladder")
    assert [(s["clock"], s["step"], s["to"], s["at"], s["fired"]) for s in ladder] == [
        ("reaction", "breach", "responsible", "2025-10-11T12:30:00+03:00", False),
        ("resolution", "breach", "supervisor", "2025-10-12T17:30:00+03:00", False),
    ]
    assert result == {
        "registered_at": "2025-10-10T17:30:00+03:00",
        "tariff": "Приоритет",
        "request_class": "typical",
        "reaction_due": "2025-10-11T12:30:00+03:00",
        "reacted_at": "2025-10-11T12:20:00+03:00",
        "reaction_breached": False,
        "resolution_due": "2025-10-12T17:30:00+03:00",
        "resolved_at": None,
        "resolution_breached": False,
        "status": "Под угрозой",
        "remaining_minutes": None,
        "next_change_at": "2025-10-12T17:30:01+03:00",
    }
    assert "tariff «Приоритет» (tag «Приоритет»)" in trace
    assert "not a reaction: outgoing_chat_message at 2025-10-10 17:30:04 by a robot" in trace
    assert "reaction: outgoing_chat_message at 2025-10-11 12:20 by user 9100001" in trace


def test_change_request_sample_uses_the_agreed_date_and_waits_for_acceptance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result, trace = explain(capsys, "priority_change_request", "2025-10-17T12:00:00+03:00")
    assert result["request_class"] == "non_standard"
    assert result["reaction_due"] == "2025-10-13T13:00:00+03:00"
    assert result["resolution_due"] == "2025-10-17T18:00:00+03:00"
    assert result["resolved_at"] == "2025-10-16T16:00:00+03:00"
    assert result["status"] == "Выполнено в срок"
    assert result["next_change_at"] == "2025-10-17T16:00:00+03:00"
    assert "agreed date read from field 880001" in trace
    assert "(hold) from 2025-10-14 11:00 to 2025-10-15 15:00" in trace


def test_on_hold_sample_shows_remaining_minutes(capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = explain(capsys, "po_faktu_on_hold", "2025-10-16T10:00:00+03:00")
    assert result["status"] == "На паузе"
    assert result["resolution_due"] is None
    assert result["remaining_minutes"] == 59 * 60
    assert result["next_change_at"] is None


def test_robots_only_sample_is_overdue(capsys: pytest.CaptureFixture[str]) -> None:
    result, trace = explain(capsys, "po_faktu_robots_only", "2025-10-16T11:00:00+03:00")
    assert result["reacted_at"] is None
    assert result["reaction_due"] == "2025-10-15T18:00:00+03:00"
    assert result["reaction_breached"] is True
    assert result["status"] == "Просрочено"
    assert "not a reaction: moved out of the first stage" in trace
    assert "no reaction yet" in trace


@pytest.mark.parametrize("flag", ["--json", "--no-trace"])
def test_json_prints_only_the_state_to_pipe_it(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    code = main(
        [
            "explain",
            "--lead", str(SAMPLES / "priority_typical.lead.json"),
            "--events", str(SAMPLES / "priority_typical.events.json"),
            "--now", "2025-10-12T16:00:00+03:00",
            *STAGES,
            flag,
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["status"] == "Под угрозой"
    assert captured.err == ""


def test_names_follow_the_stage_and_user_ids_of_the_trace() -> None:
    names = Names(stages={70000013: "Ждём клиента"}, users={9100001: "Анна"})

    assert names.named("stage status 70000013 of pipeline 7000001 (hold) from 10:00") == (
        "stage «Ждём клиента» (70000013) (hold) from 10:00"
    )
    assert names.named("reaction: outgoing_call at 12:20 by user 9100001 (event 1)") == (
        "reaction: outgoing_call at 12:20 by «Анна» (9100001) (event 1)"
    )
    assert names.named("by user 5 and status 6 of pipeline 7") == (
        "by user 5 and status 6 of pipeline 7"
    )


def test_now_without_an_offset_is_read_in_the_policy_zone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_offset, _ = explain(capsys, "priority_typical", "2025-10-12T16:00:00+03:00")
    naive, _ = explain(capsys, "priority_typical", "2025-10-12T16:00:00")
    utc, _ = explain(capsys, "priority_typical", "2025-10-12T13:00:00Z")
    assert naive == with_offset == utc


def test_another_policy_file(capsys: pytest.CaptureFixture[str]) -> None:
    result, trace = explain(
        capsys,
        "priority_typical",
        "2025-10-12T16:00:00+03:00",
        "--policy",
        str(PRESETS / "prime_gate.toml"),
    )
    assert result["tariff"] is None
    assert result["status"] == "Нет тарифа"
    assert "policy Prime Gate" in trace


def test_an_empty_events_file_is_amocrm_s_empty_reply(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "events.json"
    empty.write_text("")
    code = main(
        ["explain", "--lead", str(SAMPLES / "priority_typical.lead.json"), "--events", str(empty),
         "--now", "2025-10-11T13:00:00+03:00", *STAGES, "--json"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["reacted_at"] is None
    assert result["reaction_breached"] is True


def test_events_of_other_leads_are_ignored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = json.loads((SAMPLES / "priority_typical.events.json").read_text(encoding="utf-8"))
    for event in events["_embedded"]["events"]:
        event["entity_id"] = 1
    other = tmp_path / "events.json"
    other.write_text(json.dumps(events))
    code = main(
        ["explain", "--lead", str(SAMPLES / "priority_typical.lead.json"), "--events", str(other),
         "--now", "2025-10-11T13:00:00+03:00", *STAGES]
    )  # fmt: skip
    trace, _, state = capsys.readouterr().out.partition("state:\n")
    assert code == 0
    assert json.loads(state)["reacted_at"] is None
    assert "4 events of other entities ignored" in trace


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-lead", "No such file"),
        ("bad-json", "not JSON"),
        ("not-a-lead", "not an amoCRM lead"),
        ("bad-events", '"_embedded"'),
        ("bad-policy", "tariffs.priority.typical.reaction: expected a duration"),
        ("bad-now", "--now: expected an ISO date"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, setup: str, message: str
) -> None:
    lead = SAMPLES / "priority_typical.lead.json"
    events = SAMPLES / "priority_typical.events.json"
    now = "2025-10-11T13:00:00+03:00"
    extra: list[str] = []
    broken = tmp_path / "broken.json"
    if setup == "missing-lead":
        lead = tmp_path / "nowhere.json"
    elif setup == "bad-json":
        broken.write_text("{")
        lead = broken
    elif setup == "not-a-lead":
        broken.write_text('{"id": "x"}')
        lead = broken
    elif setup == "bad-events":
        broken.write_text('{"events": []}')
        events = broken
    elif setup == "bad-policy":
        policy = tmp_path / "policy.toml"
        text = (PRESETS / "crmbp.toml").read_text(encoding="utf-8")
        policy.write_text(text.replace('reaction = "1h"', 'reaction = "1 hour"'), encoding="utf-8")
        extra = ["--policy", str(policy)]
    elif setup == "bad-now":
        now = "tomorrow"
    code = main(
        ["explain", "--lead", str(lead), "--events", str(events), "--now", now, *STAGES, *extra]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in captured.err


def test_the_samples_command_explains_the_bundled_leads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["samples"]) == 0
    out = capsys.readouterr().out
    cases = sample_cases()
    assert len(cases) == 4
    for case in cases:
        assert f"=== {case.name}: " in out
    for status in ("Под угрозой", "Выполнено в срок", "На паузе", "Просрочено"):
        assert f'"status": "{status}"' in out
    assert "python -m worker explain --lead priority_typical.lead.json" in out


def test_samples_are_amocrm_api_shapes() -> None:
    for case in sample_cases():
        lead = json.loads(case.lead_path.read_text(encoding="utf-8"))
        assert {"id", "status_id", "pipeline_id", "created_at", "_embedded", "_links"} <= set(lead)
        assert isinstance(lead["created_at"], int)
        events = json.loads(case.events_path.read_text(encoding="utf-8"))
        for event in events["_embedded"]["events"]:
            assert event["entity_type"] == "lead"
            assert event["entity_id"] == lead["id"]
            assert isinstance(event["created_at"], int)
            if event["type"] == "lead_status_changed":
                assert set(event["value_after"][0]["lead_status"]) == {"id", "pipeline_id"}
