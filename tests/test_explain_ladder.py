"""``explain`` with next response and the ladder: each waiting period and each step, fired,
due or skipped as before the worker's first start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_explain import STAGES
from worker.cli import main
from worker.explain import SAMPLES

PRESET = Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
SATURDAY_13 = 1760176800  # 2025-10-11 13:00 Moscow: «Приоритет» typical is open 12–18 then


def sample_with_a_customer_message(tmp_path: Path) -> tuple[Path, Path]:
    """The «Приоритет» sample (answered Saturday 12:20), and the customer writing again at
    13:00 with no answer since."""
    events: dict[str, Any] = json.loads(
        (SAMPLES / "priority_typical.events.json").read_text(encoding="utf-8")
    )
    message = {
        "id": "01fbvtnwj3ayc7vnsn4ejkdm9z",
        "type": "incoming_mail",
        "entity_id": 31000101,
        "entity_type": "lead",
        "created_by": 0,
        "created_at": SATURDAY_13,
        "value_after": [],
        "value_before": [],
    }
    events["_embedded"]["events"].append(message)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events), encoding="utf-8")
    return SAMPLES / "priority_typical.lead.json", path


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> tuple[Any, str]:
    lead, events = sample_with_a_customer_message(tmp_path)
    code = main(
        [
            "explain", "--lead", str(lead), "--events", str(events),
            "--now", "2025-10-11T17:00:00+03:00", "--policy", str(PRESET), *STAGES, *extra,
        ]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    trace, _, state = out.out.partition("state:\n")
    return json.loads(state), trace


def test_explain_shows_the_waiting_period_and_its_steps(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state, trace = run(capsys, tmp_path)
    assert "customer message incoming_mail at 2025-10-11 13:00" in trace
    assert "a waiting period starts" in trace
    assert "next response #1 clock: target 2 ч" in trace
    assert (
        "ladder next response of the period from 2025-10-11 13:00: step «срок → ответственный» "
        "fired at 2025-10-11 15:00"
    ) in trace
    assert "step «срок + 1 ч → руководитель» fired at 2025-10-11 16:00" in trace
    assert state["waiting_periods"] == [
        {
            "started_at": "2025-10-11T13:00:00+03:00",
            "due": "2025-10-11T15:00:00+03:00",
            "ended_at": None,
            "ended_by": None,
            "breached": True,
        }
    ]
    assert state["next_response_breached"] is True
    assert "first start" not in trace


def test_explain_names_the_steps_before_the_first_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, trace = run(capsys, tmp_path, "--first-start", "2025-10-11T15:30:00+03:00")
    skipped = [line for line in trace.splitlines() if "skipped, no task" in line]
    # The reaction's 80 % step (Friday 17:30 + 48 min of open time: Saturday 12:18) and the
    # next response's breach (15:00) came before 15:30; its escalation (16:00) after.
    assert len(skipped) == 2
    assert "step «80 % срока → ответственный» at 2025-10-11 12:18" in skipped[0]
    assert "step «срок → ответственный» at 2025-10-11 15:00" in skipped[1]
    assert "before the worker's first start (2025-10-11 15:30)" in skipped[1]
