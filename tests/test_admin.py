"""The admin's commands on the fake amoCRM: ``provision`` completes an existing «SLA: статус»
select, ``check`` confirms the breach tasks' type and supervisor, and the emulator edits a
select's options the way amoCRM does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM
from amo_client.models import CustomField
from tests.client_kit import FakeClock, long_lived_client, make_fake
from worker.admin import check_account, plan_provision, provision, status_enums_update
from worker.cli import main
from worker.fields import FIELD_SPECS, STATUS_OPTIONS, SlaField
from worker.setup import StageOptions

PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента")
STATUS = "SLA: статус"
OWN_OPTIONS = ("В срок", "Просрочено", "Эскалация")  # two of the worker's and one of the admin's


@dataclass
class Account:
    fake: FakeAmoCRM
    client: AmoClient
    said: list[str]

    def say(self, line: str) -> None:
        self.said.append(line)

    def field(self, field_id: int) -> CustomField:
        return next(f for f in self.client.iter_lead_custom_fields() if f.id == field_id)

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.fake.request_log if r.method != "GET"]


@pytest.fixture
def account() -> Iterator[Account]:
    clock = FakeClock()
    fake = make_fake(clock)
    fake.add_pipeline(PIPELINE, STAGES)
    with long_lived_client(fake, clock) as client:
        yield Account(fake, client, [])


def stages() -> StageOptions:
    return StageOptions(pipeline=PIPELINE, hold_stages=(STAGES[2],))


def options_of(field: CustomField) -> list[tuple[int, str]]:
    return [(enum.id, enum.value) for enum in field.enums or ()]


# --- provision: the status select ----------------------------------------------------------------


def test_provision_adds_the_missing_options_to_an_existing_status_select(account: Account) -> None:
    status_id = account.fake.add_custom_field(STATUS, "select", enums=OWN_OPTIONS)
    before = options_of(account.field(status_id))

    provision(account.client, dry_run=False, say=account.say)

    after = options_of(account.field(status_id))
    assert after[: len(before)] == before  # the existing options keep their ids
    missing = [option for option in STATUS_OPTIONS if option not in OWN_OPTIONS]
    assert [value for _, value in after[len(before) :]] == missing
    assert len({enum_id for enum_id, _ in after}) == len(after)
    assert f"added options to «{STATUS}»: {', '.join(missing)}" in account.said
    names = [f.name for f in account.client.iter_lead_custom_fields()]
    assert names.count(STATUS) == 1
    assert check_account(account.client, stages()).ok


def test_provision_dry_run_lists_the_options_it_would_add_and_writes_nothing(
    account: Account,
) -> None:
    status_id = account.fake.add_custom_field(STATUS, "select", enums=OWN_OPTIONS)
    account.fake.reset_request_log()

    plan = provision(account.client, dry_run=True, say=account.say)

    missing = ", ".join(option for option in STATUS_OPTIONS if option not in OWN_OPTIONS)
    assert f"would add options to «{STATUS}» ({status_id}): {missing}" in account.said
    assert plan.new_options == tuple(o for o in STATUS_OPTIONS if o not in OWN_OPTIONS)
    assert account.writes() == []
    assert [value for _, value in options_of(account.field(status_id))] == list(OWN_OPTIONS)


def test_provision_twice_changes_nothing_the_second_time(account: Account) -> None:
    account.fake.add_custom_field(STATUS, "select", enums=OWN_OPTIONS)
    provision(account.client, dry_run=False, say=account.say)
    account.fake.reset_request_log()
    account.said.clear()

    plan = provision(account.client, dry_run=False, say=account.say)

    assert plan.empty
    assert account.writes() == []
    assert any(line.startswith("nothing to create") for line in account.said)


def test_provision_completes_the_status_field_mapped_by_id(account: Account) -> None:
    mapped = account.fake.add_custom_field("Статус обращения", "select", enums=["В срок"])

    provision(account.client, dry_run=False, say=account.say, field_ids={SlaField.STATUS: mapped})

    assert [value for _, value in options_of(account.field(mapped))] == list(STATUS_OPTIONS)
    assert account.fake.field_id(STATUS) is None  # mapped by id: not created by name
    created = {f.name for f in account.client.iter_lead_custom_fields()}
    assert {
        spec.name
        for spec in FIELD_SPECS
        if spec.key is not SlaField.STATUS and spec.needed(frozenset())
    } <= created


def test_a_status_field_of_another_type_is_left_to_check(account: Account) -> None:
    account.fake.add_custom_field(STATUS, "text")
    plan = plan_provision(list(account.client.iter_lead_custom_fields()))
    assert plan.status_field is None
    assert plan.new_options == ()
    assert STATUS not in {new.name for new in plan.new_fields}


def test_the_status_update_resends_every_existing_option_with_its_id(account: Account) -> None:
    status_id = account.fake.add_custom_field(STATUS, "select", enums=OWN_OPTIONS)
    field = account.field(status_id)
    item = status_enums_update(field, ("Нет тарифа",))
    assert item["id"] == status_id
    sent = item["enums"]
    assert [(e.get("id"), e["value"]) for e in sent] == [
        *options_of(field),
        (None, "Нет тарифа"),
    ]
    assert sent[-1]["sort"] > max(e["sort"] for e in sent[:-1])


# --- check: the task settings ---------------------------------------------------------------------


@pytest.fixture
def provisioned(account: Account) -> Account:
    provision(account.client, dry_run=False, say=account.say)
    return account


def test_check_confirms_the_task_type_and_the_supervisor(provisioned: Account) -> None:
    supervisor = provisioned.fake.add_user("Ирина Руководитель")
    meeting = provisioned.fake.add_task_type("Проверить SLA")

    result = check_account(
        provisioned.client, stages(), task_type_id=meeting, supervisor_user_id=supervisor
    )

    assert result.ok, result.problems
    assert f"breach tasks: task type «Проверить SLA» ({meeting})" in result.notes
    assert f"resolution-breach tasks go to «Ирина Руководитель» ({supervisor})" in result.notes


def test_check_names_a_task_type_the_account_lacks(provisioned: Account) -> None:
    result = check_account(provisioned.client, stages(), task_type_id=99)

    assert result.problems == (
        "SLA_TASK_TYPE_ID: the account has no task type 99; it has 1 «Связаться», 2 «Встреча»",
    )


def test_check_names_a_supervisor_the_account_lacks(provisioned: Account) -> None:
    result = check_account(provisioned.client, stages(), supervisor_user_id=4242)

    assert result.problems == ("SLA_SUPERVISOR_USER_ID: the account has no user 4242",)


def test_check_names_a_deactivated_supervisor(provisioned: Account) -> None:
    former = provisioned.fake.add_user("Пётр Уволился", is_active=False)

    result = check_account(provisioned.client, stages(), supervisor_user_id=former)

    assert len(result.problems) == 1
    assert result.problems[0].startswith(
        f"SLA_SUPERVISOR_USER_ID: user «Пётр Уволился» ({former}) is deactivated"
    )


def test_check_without_a_supervisor_reads_no_users(provisioned: Account) -> None:
    provisioned.fake.reset_request_log()
    assert check_account(provisioned.client, stages()).ok
    assert not any(r.path == "/api/v4/users" for r in provisioned.fake.request_log)


def test_the_check_command_passes_the_task_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    fake = make_fake(clock, max_requests_per_second=None)
    fake.add_pipeline(PIPELINE, STAGES)
    with long_lived_client(fake, clock) as client:
        provision(client, dry_run=False, say=lambda _line: None)
    with fake.serve() as server:
        for name, value in {
            "AMO_BASE_URL": server.url,
            "AMO_LONG_LIVED_TOKEN": fake.long_lived_token,
            "SLA_PIPELINE": PIPELINE,
            "SLA_STATE_DIR": str(tmp_path / "state"),
            "SLA_LOG_FORMAT": "json",
            "SLA_TASK_TYPE_ID": "77",
            "SLA_SUPERVISOR_USER_ID": "4242",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)

        code = main(["check"])

    out = capsys.readouterr().out
    assert code == 1
    assert "problem: SLA_TASK_TYPE_ID: the account has no task type 77" in out
    assert "problem: SLA_SUPERVISOR_USER_ID: the account has no user 4242" in out


# --- the emulator's PATCH of a select's options -------------------------------------------------


@pytest.fixture
def raw(account: Account) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=account.fake.base_url,
        transport=account.fake.transport,
        headers={"Authorization": f"Bearer {account.fake.long_lived_token}"},
    ) as client:
        yield client


def test_the_emulator_drops_the_options_a_patch_leaves_out(
    account: Account, raw: httpx.Client
) -> None:
    field_id = account.fake.add_custom_field("Канал", "select", enums=["Чат", "Почта", "Звонок"])
    (chat, _), (_, _), (call, _) = options_of(account.field(field_id))

    answer = raw.patch(
        "/api/v4/leads/custom_fields",
        json=[{"id": field_id, "enums": [{"id": chat, "value": "Чат"}, {"value": "Телеграм"}]}],
    )

    assert answer.status_code == 200, answer.text
    options = options_of(account.field(field_id))
    assert [value for _, value in options] == ["Чат", "Телеграм"]
    assert options[0][0] == chat
    assert call not in {enum_id for enum_id, _ in options}


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"id": 1, "enums": [{"value": "x"}]}, "id"),
        ({"enums": [{"value": "x"}]}, "id"),
        ("FIELD", "name"),
        ("FIELD_UNKNOWN_ENUM", "enums.0.id"),
        ("FIELD_NO_ENUMS", "enums"),
    ],
)
def test_the_emulator_refuses_a_bad_field_patch(
    account: Account, raw: httpx.Client, item: object, where: str
) -> None:
    field_id = account.fake.add_custom_field("Канал", "select", enums=["Чат"])
    body = {
        "FIELD": {"id": field_id, "name": "Другое", "enums": [{"value": "Чат"}]},
        "FIELD_UNKNOWN_ENUM": {"id": field_id, "enums": [{"id": 1, "value": "Чат"}]},
        "FIELD_NO_ENUMS": {"id": field_id, "enums": []},
    }.get(item if isinstance(item, str) else "", item)

    answer = raw.patch("/api/v4/leads/custom_fields", json=[body])

    assert answer.status_code == 400
    (rejected,) = answer.json()["validation-errors"]
    assert [error["path"] for error in rejected["errors"]] == [where]
    assert [value for _, value in options_of(account.field(field_id))] == ["Чат"]


def test_a_stage_id_names_that_stage_even_when_another_stage_is_named_by_that_number(
    account: Account,
) -> None:
    account.fake.add_pipeline(
        "Линия 2", ["60000102", "Ждём клиента"], status_ids=[60000101, 60000102], unsorted=False
    )
    provision(account.client, dry_run=False, say=account.say)

    result = check_account(
        account.client, StageOptions(pipeline="Линия 2", hold_stages=("60000102",))
    )

    refused = any("60000102" in problem for problem in result.problems)
    assert refused or "hold stages: Ждём клиента" in result.notes, result
