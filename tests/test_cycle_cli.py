"""The commands end to end: ``once``, ``check`` and ``provision`` against the fake amoCRM served
on loopback HTTP, configured through the environment exactly as an admin would."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amo_client.fake import FakeServer
from tests.cycle_kit import (
    ACCEPTANCE,
    HOLD,
    LOST,
    PIPELINE,
    WON,
    WORKER_SINCE,
    World,
    build_world,
    sla_values_of,
)
from worker import app
from worker.cli import EXIT_CONFIG, main
from worker.errors import EXIT_CODES, exit_code_table
from worker.fields import FIELD_SPECS as ALL_FIELD_SPECS

pytestmark = pytest.mark.usefixtures("cli_environment")

original_build_client = app.build_client

# The SLA fields; the ledger fields are needed only with packages or quotas on.
FIELD_SPECS = tuple(spec for spec in ALL_FIELD_SPECS if spec.needed(frozenset()))


@dataclass
class Served:
    world: World
    server: FakeServer
    state_dir: Path

    def gets_only(self) -> bool:
        return all(request.method == "GET" for request in self.world.fake.request_log)


def free_port() -> int:
    # The fake writes absolute _links, so it must know its address before it serves.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **world_options: Any
) -> Iterator[Served]:
    port = free_port()
    world = build_world(
        base_url=f"http://127.0.0.1:{port}", max_requests_per_second=None, **world_options
    )
    server = world.fake.serve(port=port)
    state_dir = tmp_path / "state"
    for name, value in {
        "AMO_BASE_URL": server.url,
        "AMO_LONG_LIVED_TOKEN": world.fake.long_lived_token,
        "SLA_PIPELINE": PIPELINE,
        "SLA_HOLD_STAGES": HOLD,
        "SLA_ACCEPTANCE_STAGES": ACCEPTANCE,
        "SLA_STATE_DIR": str(state_dir),
        "SLA_LOG_FORMAT": "json",
        "SLA_FIRST_START": WORKER_SINCE.isoformat(),
    }.items():
        monkeypatch.setenv(name, value)
    world.fake.reset_request_log()
    try:
        yield Served(world, server, state_dir)
    finally:
        server.close()


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    yield from serve(monkeypatch, tmp_path)


@pytest.fixture
def bare_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    yield from serve(monkeypatch, tmp_path, provisioned=False)


# --- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLA_POLL_INTERVAL", "abc"),
        ("AMO_DOMAIN", "foo"),
        ("SLA_TASK_TEXT", "срок {deadline}"),
        ("AMO_MAX_REQUESTS_PER_SECOND", "50"),
    ],
)
def test_a_bad_variable_stops_start_up_naming_it_before_any_request(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    code = main(["once"])

    assert code == 2
    assert variable in capsys.readouterr().err
    assert account.world.fake.requests_total == 0
    assert not account.state_dir.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["once"],
        ["once", "--dry-run"],
        ["provision"],
        ["webhook", "status"],
        ["explain", "1"],
        ["explain", "--company", "1"],
        ["report"],
        ["backfill", "--since", "2025-10-01"],
    ],
    ids=" ".join,
)
def test_every_command_stops_on_a_bad_policy_file_with_exit_2_naming_it(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
) -> None:
    """One exit policy: the same unusable SLA_POLICY_FILE is the same `config_invalid` line
    and exit 2 from every command that reads the policy, before any request."""
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text("[tariffs\n", encoding="utf-8")
    monkeypatch.setenv("SLA_POLICY_FILE", str(policy_file))
    monkeypatch.setenv("SLA_WEBHOOK_SECRET", "s" * 24)
    monkeypatch.setenv("SLA_WEBHOOK_URL", "https://sla.example.com")

    code = main(command)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert code == 2
    assert [line["event"] for line in lines if line["level"] == "error"] == ["config_invalid"]
    assert "SLA_POLICY_FILE" in lines[-1]["problems"][0]
    assert account.world.fake.requests_total == 0


def test_check_lists_a_bad_policy_file_as_a_problem_with_exit_1(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text("[tariffs\n", encoding="utf-8")
    monkeypatch.setenv("SLA_POLICY_FILE", str(policy_file))

    code = main(["check"])

    assert code == 1
    assert "problem: SLA_POLICY_FILE" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["once"], ["once", "--dry-run"], ["check"]], ids=" ".join)
@pytest.mark.parametrize("kind", ["file_for_directory", "directory_for_file", "not_sqlite"])
def test_a_state_file_the_worker_cannot_use_is_for_the_admin_exit_2(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    *,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
    kind: str,
) -> None:
    state = tmp_path / "state"
    if kind == "file_for_directory":
        state.write_text("not a directory", encoding="utf-8")
    else:
        state.mkdir()
        if kind == "directory_for_file":
            (state / "state.sqlite3").mkdir()
        else:
            (state / "state.sqlite3").write_bytes(b"not a SQLite database " * 100)
    monkeypatch.setenv("SLA_STATE_DIR", str(state))

    code = main(command)

    failed = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert code == 2
    assert failed[-1]["event"] == "command_failed"
    assert failed[-1]["error"].startswith("SLA_STATE_DIR: ")


# --- once -----------------------------------------------------------------------------------------


def test_once_dry_run_prints_the_plan_and_writes_nothing(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    world = account.world

    code = main(["once", "--dry-run"])

    out = capsys.readouterr().out
    assert code == 0
    assert account.gets_only()
    assert world.fake.tasks == []
    open_leads = [
        lead_id
        for lead_id in world.leads.values()
        if (world.fake.lead(lead_id) or {})["status_id"] not in (WON, LOST)
    ]
    assert open_leads
    for lead_id in world.leads.values():
        assert sla_values_of(world, lead_id) == []
    for lead_id in open_leads:
        assert str(lead_id) in out
    assert "SLA: статус" in out
    assert "Просрочена реакция" in out  # the planned task


def test_a_second_once_writes_nothing(account: Served) -> None:
    world = account.world
    assert main(["once"]) == 0
    assert any(r.method == "PATCH" for r in world.fake.request_log)
    assert world.fake.tasks
    tasks = len(world.fake.tasks)

    world.fake.reset_request_log()
    assert main(["once"]) == 0

    assert account.gets_only()
    assert len(world.fake.tasks) == tasks
    for lead_id in world.other_leads:
        assert sla_values_of(world, lead_id) == []


def test_once_on_an_account_without_the_fields_says_what_to_do(
    bare_account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["once"])

    err = capsys.readouterr().err
    assert code == 2
    assert "SLA: реакция до" in err
    assert "provision" in err
    assert bare_account.gets_only()


# --- provision ------------------------------------------------------------------------------------


def test_provision_dry_run_creates_nothing(
    bare_account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["provision", "--dry-run"])

    out = capsys.readouterr().out
    assert code == 0
    assert bare_account.gets_only()
    for spec in FIELD_SPECS:
        assert f"would create: «{spec.name}» ({spec.type.value})" in out
        assert bare_account.world.fake.field_id(spec.name) is None


def test_provision_creates_the_fields_once(
    bare_account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = bare_account.world.fake

    assert main(["provision"]) == 0
    ids = {spec.name: fake.field_id(spec.name) for spec in FIELD_SPECS}
    assert None not in ids.values()
    fake.reset_request_log()
    capsys.readouterr()

    assert main(["provision"]) == 0

    assert "nothing to create" in capsys.readouterr().out
    assert bare_account.gets_only()
    assert {spec.name: fake.field_id(spec.name) for spec in FIELD_SPECS} == ids
    assert main(["check"]) == 0


# --- check ----------------------------------------------------------------------------------------


def test_check_passes_on_a_good_account(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 0
    assert "problem" not in out
    assert "everything is in place" in out


def test_check_names_a_missing_stage(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_HOLD_STAGES", f"{HOLD},Ждём поставщика")

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 1
    assert "problem: SLA_HOLD_STAGES" in out
    assert "Ждём поставщика" in out


def test_check_names_missing_fields(
    bare_account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check"])

    problems = [line for line in capsys.readouterr().out.splitlines() if "problem" in line]
    assert code == 1
    for spec in FIELD_SPECS:
        assert any(f"«{spec.name}» is missing" in line for line in problems)


def test_check_names_a_field_of_the_wrong_type(
    bare_account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = bare_account.world.fake
    fake.add_custom_field("SLA: реакция до", "text")
    assert main(["provision"]) == 0
    capsys.readouterr()

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 1
    assert "problem: lead field «SLA: реакция до»" in out
    assert "is text, expected date_time" in out


def test_check_says_how_many_requests_breached_before_the_first_start_and_gets_no_task(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SLA_FIRST_START")  # a first start over an account with breaches

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 0
    assert "breached before the worker's first start" in out
    assert "they get no task" in out
    assert "0 task(s) to create" in out
    assert account.world.fake.tasks == []
    assert account.gets_only()  # check changes nothing in amoCRM


def test_check_shows_the_policy_and_the_open_requests_of_each_tariff(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 0
    assert "ok: policy: the built-in CRMBP policy: «Приоритет» (tags: «Приоритет»)" in out
    tariffs = next(line for line in out.splitlines() if "open request(s) by tariff tag" in line)
    open_leads = [
        lead
        for lead in account.world.fake.leads.values()
        if lead["status_id"] not in (WON, LOST) and lead["pipeline_id"] == account.world.support.id
    ]
    assert f"{len(open_leads)} open request(s)" in tariffs
    assert "«Приоритет» " in tariffs
    assert "with no tariff tag: " in tariffs
    assert "warning:" not in out


def test_check_warns_of_a_tag_that_looks_like_a_tariff_spelled_otherwise(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    world = account.world
    for _ in range(2):  # a Latin «e» among the Cyrillic letters
        world.fake.add_lead(pipeline_id=world.support.id, tags=["Приоритeт"])

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 0
    assert (
        "warning: tag «Приоритeт» on 2 open request(s) looks like tariff «Приоритет» "
        "spelled otherwise" in out
    )


def test_a_stage_typed_with_e_for_yo_is_found_with_a_warning(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_HOLD_STAGES", HOLD.replace("ё", "е"))

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 0
    assert "ok: hold stages: Ждём клиента" in out
    assert "warning: SLA_HOLD_STAGES: 'Ждем клиента' is taken as «Ждём клиента»" in out


def test_a_stage_not_found_is_named_with_the_pipelines_real_stages(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_HOLD_STAGES", "Ждём ответа")

    code = main(["check"])

    problem = next(line for line in capsys.readouterr().out.splitlines() if "problem:" in line)
    assert code == 1
    assert "no stage 'Ждём ответа'; its stages are «Новое обращение» (" in problem
    assert "«Ждём клиента» (" in problem


def test_a_pipeline_not_found_is_named_with_the_accounts_pipelines(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_PIPELINE", "Поддержка")

    code = main(["check"])

    out = capsys.readouterr().out
    assert code == 1
    assert f"no pipeline 'Поддержка'; the account has «{PIPELINE}» (" in out


def test_a_misspelled_variable_gets_a_warning_naming_the_nearest_one(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_PIPLINE", "Поддержка")

    code = main(["check"])

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert code == 0
    assert {
        "event": "config_unknown_variable",
        "problem": "SLA_PIPLINE is not a variable the worker reads; did you mean SLA_PIPELINE?",
    }.items() <= next(line for line in lines if line["event"] == "config_unknown_variable").items()


@pytest.mark.parametrize("answers", ["refused", "silent"])
def test_an_unreachable_account_is_named_in_one_line_within_ten_seconds(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answers: str,
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    if answers == "silent":
        silent.listen(8)  # connections are taken and never answered
    else:
        silent.close()  # nothing listens: refused
    for name, value in {
        "AMO_BASE_URL": f"http://127.0.0.1:{port}",
        "AMO_LONG_LIVED_TOKEN": "token",
        "SLA_PIPELINE": PIPELINE,
        "SLA_STATE_DIR": str(tmp_path / "state"),
        "SLA_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(app, "build_client", original_build_client)  # on real time
    started = time.monotonic()
    try:
        code = main(["check"])
    finally:
        silent.close()

    elapsed = time.monotonic() - started
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert code == 1
    assert elapsed < 10
    assert [line["event"] for line in lines] == ["command_failed"]
    assert lines[0]["error"].startswith(f"amoCRM at http://127.0.0.1:{port} does not answer (")


def test_explain_names_the_stages_and_users_of_a_live_lead(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    lead_id = account.world.leads["fact_hold_and_back"]

    code = main(["explain", str(lead_id), "--now", "2025-11-05T12:00:00+03:00"])

    trace, _, state = capsys.readouterr().out.partition("state:\n")
    assert code == 0
    assert json.loads(state)["tariff"] == "По факту"
    hold_id = account.world.support.status(HOLD)
    assert f"stage «{HOLD}» ({hold_id}) (hold) from 2025-11-05 10:00" in trace
    anna = account.world.agents[0]
    assert f"reaction: common_note_added at 2025-11-05 09:40 by «Анна Смирнова» ({anna})" in trace
    assert account.gets_only()


def test_the_readme_lists_the_exit_codes_every_command_uses() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert exit_code_table() in readme
    assert set(EXIT_CODES) == {0, 1, EXIT_CONFIG}


def test_after_a_cycle_made_its_tasks_a_dry_run_plans_none_of_them_again(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 0
    before = capsys.readouterr().out
    assert "0 task(s) to create" not in before  # the seeded breaches are owed their tasks
    assert main(["once"]) == 0
    assert account.world.fake.tasks
    capsys.readouterr()

    assert main(["check"]) == 0

    assert "0 task(s) to create" in capsys.readouterr().out
