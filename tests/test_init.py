"""``python -m worker init`` against the fake amoCRM on loopback HTTP: the .env it writes from
flags (and from answers), what it refuses, and that the token is never shown."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from worker.admin import provision
from worker.cli import main
from worker.fields import Ledger
from worker.init import Answers, InitError, choose, presets

pytestmark = pytest.mark.usefixtures("cli_environment")

PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента", "Проверка клиентом")


@dataclass
class Account:
    fake: FakeAmoCRM
    support: PipelineRef
    sales: PipelineRef
    odd: PipelineRef  # names a .env cannot hold as they are
    token: str
    url: str


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    fake = FakeAmoCRM(max_requests_per_second=None)
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    odd = fake.add_pipeline("Поддержка #2", ["Новое", "Ждём, клиента", "В $работе"])
    with AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    ) as client:
        provision(
            client, dry_run=False, say=lambda _line: None, ledgers=frozenset({Ledger.PACKAGES})
        )
    fake.reset_request_log()
    with fake.serve() as server:
        monkeypatch.setenv("AMO_BASE_URL", server.url)
        monkeypatch.setenv("AMO_LONG_LIVED_TOKEN", fake.long_lived_token)
        yield Account(fake, support, sales, odd, fake.long_lived_token, server.url)


def values(path: Path) -> dict[str, str]:
    """The variables the file sets, as the worker's loader (python-dotenv) reads them."""
    return {key: value or "" for key, value in dotenv_values(path).items()}


def init(*args: str) -> int:
    return main(["init", "--non-interactive", *args])


def test_flags_write_a_dotenv_that_check_accepts_with_the_token_kept_out(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = init(
        "--pipeline",
        PIPELINE,
        "--hold",
        "ждём клиента",  # a name matches whatever its case, as the worker matches it
        "--acceptance",
        str(account.support.status(STAGES[3])),  # or an id
        "--packages",
    )

    out = capsys.readouterr()
    assert code == 0, out.err
    written = Path(".env")
    text = written.read_text(encoding="utf-8")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert values(written) == {
        "AMO_BASE_URL": account.url,
        "SLA_PIPELINE": PIPELINE,
        "SLA_HOLD_STAGES": "Ждём клиента",
        "SLA_ACCEPTANCE_STAGES": "Проверка клиентом",
        "SLA_ACCEPTED_STAGE": "142",
        "SLA_PACKAGES": "true",
    }
    # The listing shows every pipeline and stage with its id; the token shows nowhere.
    assert f"1. {PIPELINE} ({account.support.id})" in out.out
    assert f"3. Ждём клиента ({account.support.status(STAGES[2])})" in out.out
    assert "the token is not in it" in out.out
    assert account.token not in out.out + out.err + text
    # The worker reads the file from its working directory: with the token alone in the
    # environment, `check` finds everything in place.
    monkeypatch.delenv("AMO_BASE_URL")
    assert main(["check"]) == 0, capsys.readouterr()
    checked = capsys.readouterr().out
    assert "ok: hold stages: Ждём клиента" in checked
    assert "ok: acceptance stages: Проверка клиентом" in checked
    assert "ok: ledgers on: packages" in checked


def test_write_token_puts_it_in_the_file_alone_and_the_file_is_enough(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path("sla-state").absolute()

    code = init("--pipeline", PIPELINE, "--write-token", "--state-dir", str(state))

    out = capsys.readouterr()
    assert code == 0, out.err
    assert values(Path(".env"))["AMO_LONG_LIVED_TOKEN"] == account.token
    assert values(Path(".env"))["SLA_STATE_DIR"] == str(state)
    assert account.token not in out.out + out.err
    monkeypatch.delenv("AMO_BASE_URL")
    monkeypatch.delenv("AMO_LONG_LIVED_TOKEN")
    assert main(["check"]) == 0, capsys.readouterr()
    assert not state.exists()  # check writes nothing
    assert main(["once"]) == 0, capsys.readouterr()
    assert (state / "state.sqlite3").exists()  # the state directory the file names


def test_an_existing_file_is_kept_without_force(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("mine.env").write_text("SLA_PIPELINE=Старая\n", encoding="utf-8")

    code = init("--pipeline", PIPELINE, "--out", "mine.env")

    assert code == 2
    assert "mine.env exists; pass --force to replace it" in capsys.readouterr().err
    assert Path("mine.env").read_text(encoding="utf-8") == "SLA_PIPELINE=Старая\n"
    assert account.fake.request_log == []  # refused before it asked amoCRM anything
    assert init("--pipeline", PIPELINE, "--out", "mine.env", "--force") == 0
    assert values(Path("mine.env"))["SLA_PIPELINE"] == PIPELINE


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--pipeline", "Поддержка"],
            "--pipeline: no pipeline 'Поддержка'; the account has Техподдержка ({support}), "
            "Продажи ({sales}), Поддержка #2 ({odd})",
        ),
        ([], "--pipeline: required with --non-interactive; the account has Техподдержка"),
        (
            ["--pipeline", PIPELINE, "--hold", "Ждём"],
            "--hold: pipeline «Техподдержка» has no stage 'Ждём'; its stages: Новое обращение "
            "({new}), В работе ({work}), Ждём клиента ({wait}), Проверка клиентом ({check}), "
            "Успешно реализовано (142), Закрыто и не реализовано (143)",
        ),
        (
            ["--pipeline", PIPELINE, "--hold", "Ждём клиента", "--acceptance", "Ждём клиента"],
            "--acceptance: Ждём клиента ({wait}) is a hold stage already; a stage has one role",
        ),
        (
            ["--pipeline", PIPELINE, "--hold", "142"],
            "--hold: Успешно реализовано (142) is always a done stage; leave it out",
        ),
        (
            ["--pipeline", PIPELINE, "--acceptance", "Проверка клиентом", "--accepted", "4"],
            "--accepted: pipeline «Техподдержка» has no stage '4'",
        ),
        (
            ["--pipeline", PIPELINE, "--policy", "crmbp2"],
            "--policy: no preset or file 'crmbp2'; the presets are crmbp, crmbp_next_response, "
            "hour_packages, prime_gate (crmbp is the built-in policy), or give a policy file",
        ),
    ],
)
def test_what_the_account_lacks_is_refused_naming_what_it_has(
    account: Account, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    ids = {
        "support": account.support.id,
        "sales": account.sales.id,
        "odd": account.odd.id,
        "new": account.support.status(STAGES[0]),
        "work": account.support.status(STAGES[1]),
        "wait": account.support.status(STAGES[2]),
        "check": account.support.status(STAGES[3]),
    }

    code = init(*flags)

    assert code == 2
    assert f"error: {message.format(**ids)}" in capsys.readouterr().err
    assert not Path(".env").exists()


def test_names_a_dotenv_cannot_hold_are_written_as_ids(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    code = init(
        "--pipeline", "Поддержка #2", "--hold", "Ждём, клиента", "--acceptance", "В $работе"
    )

    assert code == 0, capsys.readouterr().err
    written = values(Path(".env"))
    assert written["SLA_PIPELINE"] == str(account.odd.id)
    assert written["SLA_HOLD_STAGES"] == str(account.odd.status("Ждём, клиента"))
    assert written["SLA_ACCEPTANCE_STAGES"] == str(account.odd.status("В $работе"))
    # The names stay readable in the comments.
    assert f"#   Ждём, клиента ({account.odd.status('Ждём, клиента')}): hold" in Path(
        ".env"
    ).read_text(encoding="utf-8")


def test_a_preset_policy_is_written_as_its_file(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    code = init("--pipeline", PIPELINE, "--policy", "prime_gate")

    assert code == 0, capsys.readouterr().err
    path = Path(values(Path(".env"))["SLA_POLICY_FILE"])
    assert path == presets()["prime_gate"]
    assert path.is_absolute()
    assert path.is_file()
    assert "quotas by the policy (Настройки" in Path(".env").read_text(encoding="utf-8")
    assert init("--pipeline", PIPELINE, "--policy", "crmbp", "--out", "builtin.env") == 0
    # The built-in policy needs no file.
    assert "SLA_POLICY_FILE" not in values(Path("builtin.env"))


def test_answers_on_stdin_are_asked_again_until_usable(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [
        "9",  # no such pipeline: asked again
        "1",
        "3",  # hold: Ждём клиента
        "3,4",  # acceptance: 3 is a hold stage already: asked again
        "4",
        "",  # accepted: 142
        "",  # no extra done stage
        "4",  # policy: the fourth in the list
        "maybe",  # packages: asked again
        "y",
        "n",  # call time
        "n",  # token
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(answers) + "\n"))

    code = main(["init"])

    out = capsys.readouterr()
    assert code == 0, out.err
    assert "--pipeline: no pipeline '9'" in out.out
    assert "--acceptance: Ждём клиента" in out.out
    assert "answer y or n" in out.out
    written = values(Path(".env"))
    assert written["SLA_HOLD_STAGES"] == "Ждём клиента"
    assert written["SLA_ACCEPTANCE_STAGES"] == "Проверка клиентом"
    assert written["SLA_PACKAGES"] == "true"
    assert Path(written["SLA_POLICY_FILE"]) == presets()["prime_gate"]
    assert "AMO_LONG_LIVED_TOKEN" not in written


def test_input_that_ends_before_the_answers_writes_nothing(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("1\n"))

    code = main(["init"])

    assert code == 2
    assert "no answer for hold stages (the input ended)" in capsys.readouterr().err
    assert not Path(".env").exists()


def test_flags_answer_their_questions_and_the_rest_is_asked() -> None:
    fake = FakeAmoCRM(max_requests_per_second=None)
    fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    with AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    ) as client:
        pipelines = client.pipelines()
    asked: list[str] = []
    replies = iter(["", "", "", "n"])

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(replies)

    choice = choose(
        pipelines,
        Answers(pipeline=PIPELINE, hold=("Ждём клиента",), write_token=False),
        ask=ask,
        say=lambda _line: None,
    )

    # Neither the pipeline, the hold stages nor the token is asked; nor, with no acceptance
    # stage and no packages, the accepted stage and the calls.
    assert [prompt.split(" (")[0] for prompt in asked] == [
        "Acceptance stages, done stages waiting for the customer's acceptance",
        "Extra done stages",
        "Policy",
        "Track prepaid hour packages per company",
    ]
    assert [s.name for s in choice.hold] == ["Ждём клиента"]
    assert choice.acceptance == ()
    assert choice.accepted.id == 142
    assert choice.policy.path is None
    assert (choice.packages, choice.call_time, choice.write_token) == (False, False, False)
    with pytest.raises(InitError, match="required with --non-interactive"):
        choose(pipelines, Answers(), ask=None, say=lambda _line: None)


def test_a_line_break_in_a_stage_name_sets_no_variable_in_the_file(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.fake.add_pipeline(
        "Линия 2", ["Новое", "Ждём\nAMO_BASE_URL=https://elsewhere.example #"], unsorted=False
    )

    code = init("--pipeline", "Линия 2")

    assert code == 0, capsys.readouterr().err
    written = values(Path(".env"))
    assert written["AMO_BASE_URL"] == account.url


def test_a_stage_init_writes_by_name_is_the_stage_the_worker_finds(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    line = account.fake.add_pipeline(
        "Линия 3", ["Новое", "Ждём клиента", "Ждём  клиента"], unsorted=False
    )

    code = init("--pipeline", "Линия 3", "--hold", "Ждём  клиента")

    assert code == 0, capsys.readouterr().err
    # The worker takes the two names for one: the file names the stage by its id.
    assert values(Path(".env"))["SLA_HOLD_STAGES"] == str(line.status("Ждём  клиента"))
    main(["check"])
    assert "ok: hold stages: Ждём  клиента" in capsys.readouterr().out


def test_init_force_over_the_dotenv_that_holds_the_token_keeps_the_token(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(".env").write_text(
        f"AMO_BASE_URL={account.url}\nAMO_LONG_LIVED_TOKEN={account.token}\nSLA_PIPELINE=Продажи\n",
        encoding="utf-8",
    )
    monkeypatch.delenv("AMO_BASE_URL")
    monkeypatch.delenv("AMO_LONG_LIVED_TOKEN")

    code = init("--pipeline", PIPELINE, "--force")

    capsys.readouterr()
    if code == 0:
        assert values(Path(".env")).get("AMO_LONG_LIVED_TOKEN") == account.token
    else:  # refused: the file is as it was
        assert values(Path(".env"))["AMO_LONG_LIVED_TOKEN"] == account.token
