"""``python -m worker report`` with its statements and its mail, configured through the
environment as an admin would, against the fake amoCRM on loopback HTTP and a real SMTP
server on localhost (aiosmtpd)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.cycle_kit import MOSCOW, at
from tests.mail_kit import Mailbox, free_port, mail_server
from tests.test_cycle_cli import Served, serve
from worker.admin import provision
from worker.cli import main
from worker.fields import Ledger

PERIOD = ["--from", "2025-11-01", "--to", "2025-11-05"]
SENDER = "sla@support.example"
BOSS = "boss@example.com"

pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    monkeypatch.setenv("SLA_PACKAGES", "true")
    monkeypatch.setenv("SLA_PROVIDER_NAME", "ИП Дудкин Антон Александрович")
    for served in serve(monkeypatch, tmp_path):
        world = served.world
        provision(world.client, dry_run=False, say=lambda line: None,
                  ledgers=frozenset({Ledger.PACKAGES}))  # fmt: skip
        fake = world.fake
        hours_id = fake.field_id("Пакет: часов", entity="companies") or 0
        paid_id = fake.field_id("Пакет: оплачен", entity="companies") or 0
        mail_id = fake.add_custom_field("Email", "text", entity="companies", code="EMAIL")
        paid = datetime(2025, 11, 3, tzinfo=MOSCOW)
        company = fake.add_company(
            "ООО Ромашка",
            responsible_user_id=world.agents[1],
            custom_fields={
                hours_id: 2,
                paid_id: int(paid.timestamp()),
                mail_id: "buh@romashka.example",
            },
        )
        lead = fake.add_lead("Настроить воронку", pipeline_id=world.support.id,
                             tags=["Приоритет"], created_at=at(3, 10),
                             responsible_user_id=world.agents[0], company_id=company)  # fmt: skip
        fake.add_note(lead, "Время: 2 ч 20 мин — настройка воронки", created_by=world.agents[0],
                      at=at(3, 11))  # fmt: skip
        world.leads["romashka"] = company
        fake.reset_request_log()
        yield served


def mailing(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("SLA_SMTP_URL", f"smtp+plain://localhost:{port}")
    monkeypatch.setenv("SLA_SMTP_FROM", SENDER)


def logged(capsys: pytest.CaptureFixture[str]) -> tuple[str, list[dict[str, object]]]:
    captured = capsys.readouterr()
    return captured.out, [json.loads(line) for line in captured.err.splitlines() if line]


def test_the_report_is_mailed_with_its_page_and_tables(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mail_server() as box:
        mailing(monkeypatch, box.port)
        code = main(["report", *PERIOD, "--out", str(tmp_path / "r"), "--mail-to", BOSS])

    out, _ = logged(capsys)
    assert code == 0
    assert f"mailed to {BOSS}" in out
    (mail,) = box.messages
    files = {part.get_filename(): part for part in mail.iter_attachments()}
    assert files["report.html"].get_content() == (tmp_path / "r" / "report.html").read_text(
        encoding="utf-8"
    )
    assert "tables.zip" in files


def test_the_statements_are_written_and_mailed_to_each_companys_address(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLA_STATEMENT_EMAIL_FIELD", "EMAIL")
    with mail_server() as box:
        mailing(monkeypatch, box.port)
        code = main(["report", *PERIOD, "--out", str(tmp_path / "r"), "--mail-statements"])

    assert code == 0
    company = account.world.leads["romashka"]
    written = sorted(p.name for p in (tmp_path / "r" / "statements").iterdir())
    assert f"statement-{company}.html" in written
    assert f"statement-{company}.csv" in written
    (mail,) = box.messages
    assert mail["To"] == "buh@romashka.example"
    assert mail["Subject"].endswith("— ИП Дудкин Антон Александрович")
    (attached,) = mail.iter_attachments()
    document = tmp_path / "r" / "statements" / f"statement-{company}"
    if attached.get_content_type() == "application/pdf":  # Chromium printed it
        assert attached.get_content() == document.with_suffix(".pdf").read_bytes()
        assert attached.get_filename() == "Отчёт 2025-11 ООО Ромашка.pdf"
    else:
        assert attached.get_content() == document.with_suffix(".html").read_text(encoding="utf-8")


def test_one_companys_statement_goes_to_the_given_address(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    company = account.world.leads["romashka"]
    with mail_server() as box:
        mailing(monkeypatch, box.port)
        code = main(["report", *PERIOD, "--out", str(tmp_path / "r"), "--company",
                     str(company), "--mail-to", BOSS])  # fmt: skip

    assert code == 0
    (mail,) = box.messages
    assert mail["Subject"].startswith("Отчёт об оказанных услугах за 01.11.2025 — 05.11.2025")
    assert not (tmp_path / "r" / "report.html").exists()


def test_mail_without_a_server_stops_before_any_request(
    account: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", *PERIOD, "--out", str(tmp_path / "r"), "--mail-to", BOSS])

    _, lines = logged(capsys)
    assert code == 2
    (error,) = [line for line in lines if line["level"] == "error"]
    assert error["event"] == "config_invalid"
    assert "SLA_SMTP_URL" in str(error["problems"])
    assert account.world.fake.requests_total == 0


def test_an_unreachable_server_is_exit_1_with_the_report_written(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    mailing(monkeypatch, port)
    code = main(["report", *PERIOD, "--out", str(tmp_path / "r"), "--mail-to", BOSS])

    _, lines = logged(capsys)
    assert code == 1
    (failed,) = [line for line in lines if line["event"] == "report_mail_failed"]
    assert str(failed["problem"]).startswith(f"cannot reach the mail server localhost:{port}")
    assert (tmp_path / "r" / "report.html").exists()


def test_a_refused_recipient_does_not_stop_the_others(
    account: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    box = Mailbox(refusals={"nobody@example.com": 1})
    with mail_server(box):
        mailing(monkeypatch, box.port)
        code = main(["report", *PERIOD, "--out", str(tmp_path / "r"),
                     "--mail-to", "nobody@example.com", BOSS])  # fmt: skip

    assert code == 1
    assert [m["To"] for m in box.messages] == [BOSS]
