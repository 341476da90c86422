"""``python -m worker webhook register|unregister|status`` and ``check`` with webhooks on,
against the fake amoCRM on loopback HTTP, configured through the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cycle_cli import Served, serve
from worker.cli import main
from worker.webhooks import WEBHOOK_EVENTS

pytestmark = pytest.mark.usefixtures("cli_environment")


SECRET = "cli-" + "0123456789abcdef" * 2
PUBLIC = "https://sla.example.com"
DESTINATION = f"{PUBLIC}/amocrm/webhook/{SECRET}"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    monkeypatch.setenv("SLA_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("SLA_WEBHOOK_URL", PUBLIC + "/")
    yield from serve(monkeypatch, tmp_path)


def test_register_subscribes_the_events_and_status_confirms(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "register"]) == 0
    registered = capsys.readouterr()
    assert main(["webhook", "status"]) == 0
    status = capsys.readouterr().out

    (hook,) = account.world.fake.webhooks
    assert hook["destination"] == DESTINATION
    assert hook["settings"] == list(WEBHOOK_EVENTS)
    assert "registered: https://sla.example.com/amocrm/webhook/***" in registered.out
    assert SECRET not in registered.out + registered.err
    assert "registered and enabled" in status
    assert SECRET not in status


def test_register_twice_keeps_one_subscription(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "register"]) == 0
    assert main(["webhook", "register"]) == 0
    assert len(account.world.fake.webhooks) == 1


def test_status_and_check_report_a_disabled_hook(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "register"]) == 0
    account.world.fake._subscriptions[DESTINATION].disabled = True
    capsys.readouterr()

    status_code = main(["webhook", "status"])
    status = capsys.readouterr().out
    check_code = main(["check"])
    check = capsys.readouterr().out

    assert status_code == 1
    assert "problem: amoCRM has disabled the webhook" in status
    assert check_code == 1
    assert "problem: amoCRM has disabled the webhook" in check
    assert SECRET not in status + check


def test_check_reports_a_missing_hook_and_one_with_an_old_secret(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    account.world.fake.subscribe_webhook(
        f"{PUBLIC}/amocrm/webhook/old-secret-0123456789abcdef", list(WEBHOOK_EVENTS)
    )

    code = main(["check"])
    out = capsys.readouterr().out

    assert code == 1
    assert "is not registered: run `python -m worker webhook register`" in out
    assert "has an old secret" in out


def test_check_passes_with_the_hook_registered(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "register"]) == 0
    capsys.readouterr()
    assert main(["check"]) == 0
    assert "everything is in place" in capsys.readouterr().out


def test_unregister_removes_it_and_is_idempotent(
    account: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "register"]) == 0
    assert main(["webhook", "unregister"]) == 0
    assert main(["webhook", "unregister"]) == 0
    out = capsys.readouterr().out
    assert account.world.fake.webhooks == []
    assert "unregistered: https://sla.example.com/amocrm/webhook/***" in out
    assert "not registered" in out
    assert main(["webhook", "status"]) == 1


def test_without_the_public_address_the_commands_stop_naming_it(
    account: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SLA_WEBHOOK_URL")
    assert main(["webhook", "register"]) == 2
    assert "SLA_WEBHOOK_URL" in capsys.readouterr().err
    assert account.world.fake.webhooks == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLA_WEBHOOK_SECRET", "short"),
        ("SLA_WEBHOOK_SECRET", "has spaces and / slashes 0123456789"),
        ("SLA_WEBHOOK_URL", "http://sla.example.com"),
        ("SLA_HTTP_LISTEN", "8080"),
    ],
)
def test_a_bad_webhook_setting_stops_the_command_naming_it(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["webhook", "status"]) == 2
    captured = capsys.readouterr()
    assert variable in captured.out + captured.err
    assert value not in captured.out + captured.err or variable == "SLA_HTTP_LISTEN"
