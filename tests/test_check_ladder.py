"""``check`` and ``provision`` with next response and the escalation ladder (spec §4.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sla.policy import default_policy, load_policy
from tests.test_cycle_cli import Served, serve
from worker.admin import ladder_lines
from worker.cli import main

PRESET = Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    yield from serve(monkeypatch, tmp_path)


def test_the_default_ladder_is_printed_as_todays_two_tasks() -> None:
    notes, warnings = ladder_lines(default_policy(), None)
    assert notes == [
        "next response: off (the policy has no [next_response] table)",
        "escalation, reaction: at the breach → the responsible user: the default text",
        "escalation, resolution: at the breach → the supervisor (SLA_SUPERVISOR_USER_ID not "
        "set: no task): the default text",
    ]
    assert warnings == []
    notes, _ = ladder_lines(default_policy(), 9100002)
    assert "escalation, resolution: at the breach → the supervisor (9100002): the default text" in (
        notes
    )


def test_the_example_ladder_is_printed_step_by_step_with_what_it_lacks() -> None:
    policy = load_policy(PRESET.read_text(encoding="utf-8"))
    notes, warnings = ladder_lines(policy, None)
    assert notes[0] == (
        "next response: «Приоритет» typical 2h, non_standard 4h; «По факту» typical 8h, "
        "non_standard 8h (customer messages: incoming_call, incoming_chat_message, "
        "incoming_mail)"
    )
    reaction = [line for line in notes if line.startswith("escalation, reaction:")]
    assert [line.split(":", 2)[1].strip() for line in reaction] == [
        "at 80% of the target → the responsible user",
        "at the breach → the responsible user",
        "2h after the breach → the head of the responsible user's group",
    ]
    assert sum(line.startswith("escalation, next response:") for line in notes) == 2
    assert len(warnings) == 2
    assert "SLA_SUPERVISOR_USER_ID is not set" in warnings[1]
    assert "[escalation.group_heads] names none" in warnings[0]


def test_check_wants_the_next_response_fields_and_provision_makes_them(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_POLICY_FILE", str(PRESET))
    monkeypatch.setenv("SLA_SUPERVISOR_USER_ID", str(account.world.agents[1]))

    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert (
        "problem: lead field «SLA: ответ до» is missing: run `python -m worker provision`\n" in out
    )
    assert "problem: lead field «SLA: ответ просрочен» is missing" in out

    assert main(["provision"]) == 0
    out = capsys.readouterr().out
    assert "creating: «SLA: ответ до» (date_time)" in out
    assert "creating: «SLA: ответ просрочен» (checkbox)" in out

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "ok: next response: «Приоритет» typical 2h" in out
    assert "ok: escalation, next response: 1h after the breach → the supervisor" in out
    assert "warning: escalation, reaction: step «breach+2h» goes to the head" in out
