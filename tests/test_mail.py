"""The report by mail, through a real SMTP server on localhost (aiosmtpd, tests/mail_kit.py):
what the mails carry, and each mail once per period and recipient under the state's record,
whatever the server does (unreachable, a recipient refused, the message too large)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import MutableMapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cycle_kit import MOSCOW, START
from tests.mail_kit import Mailbox, free_port, mail_server, self_signed
from tests.report_kit import build_report_world, make_report
from worker.delivery import (
    Postman,
    Schedule,
    ScheduledReport,
    company_addresses,
    report_key,
    statement_key,
)
from worker.logs import forget_secrets
from worker.mail import MailError, SmtpServer, message, new_message_id, send
from worker.sla_report import Figures, Period, Written, write_report
from worker.store import MailMark, StateStore

SENDER = "sla@support.example"
BOSS, HEAD = "boss@example.com", "head@example.com"
MONTHLY = "0 9 1 * *"  # the 1st at 09:00 Moscow: on 01.11 it reports October
EVER = datetime(2025, 1, 1, tzinfo=MOSCOW)  # the worker's first start on the account
OCTOBER = Period(date(2025, 10, 1), date(2025, 10, 31), MOSCOW)

Logs = list[MutableMapping[str, Any]]


@pytest.fixture(scope="module")
def october() -> tuple[Figures, dict[str, int]]:
    scenario = build_report_world()
    figures, _ = make_report(scenario.world, None, now=START)
    return figures, scenario.companies


def plain(port: int) -> SmtpServer:
    return SmtpServer.from_url(f"smtp+plain://localhost:{port}")


def job(
    store: StateStore,
    server: SmtpServer,
    figures: Figures,
    folder: Path,
    *,
    report_to: tuple[str, ...] = (BOSS,),
    addresses: dict[int, tuple[str, ...]] | None = None,
) -> ScheduledReport:
    made: list[Period] = []

    def make(period: Period, out: Path) -> tuple[Figures, Written]:
        made.append(period)
        assert period == figures.period
        return figures, write_report(figures, out, with_statements=True, provider="ИП Дудкин")

    scheduled = ScheduledReport(
        schedule=Schedule(MONTHLY, MOSCOW),
        postman=Postman(store, server, SENDER, clock=lambda: START),
        make=make,
        folder=folder,
        report_to=report_to,
        first_start=lambda: EVER,
        addresses=(lambda ids: {i: addresses.get(i, ()) for i in ids}) if addresses else None,
        provider="ИП Дудкин",
    )
    scheduled.made = made  # type: ignore[attr-defined]
    return scheduled


def test_the_report_mail_carries_the_summary_the_page_and_the_tables(
    october: tuple[Figures, dict[str, int]], tmp_path: Path
) -> None:
    figures, _ = october
    store = StateStore(tmp_path / "state.sqlite3")
    with mail_server() as box:
        job(store, plain(box.port), figures, tmp_path / "reports").tick(START)

    (mail,) = box.to(BOSS)
    assert mail["From"] == SENDER
    assert mail["Subject"] == (
        "Отчёт по SLA за 01.10.2025 — 31.10.2025: реакция в срок 85,7 %, решение 60 %"
    )
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Обращений: 8 (в прошлом периоде 3)" in text
    assert "Реакция в срок: 85,7 % (6 из 7), цель 90 % — ниже цели, ▲ +19 п.п." in text
    assert "Сейчас просрочено: 2, под угрозой: 1" in text
    files = {part.get_filename(): part.get_content() for part in mail.iter_attachments()}
    page = tmp_path / "reports" / "2025-10-01_2025-10-31" / "report.html"
    assert files["report.html"] == page.read_text(encoding="utf-8")
    with zipfile.ZipFile(io.BytesIO(files["tables.zip"])) as tables:
        assert "summary.csv" in tables.namelist()
        assert "hours.csv" in tables.namelist()
    entry = store.mail_entry(report_key(OCTOBER), BOSS)
    assert entry is not None
    assert entry.mark is MailMark.SENT
    assert entry.message_id == mail["Message-ID"]


def test_starttls_and_a_login_and_no_password_in_any_log_line(
    october: tuple[Figures, dict[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logs: Logs,
) -> None:
    figures, _ = october
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the test's certificate is trusted
    password = "s3cret-p@ss word"
    forget_secrets()
    with mail_server(tls=(cert, key), login=("sla@support.example", password)) as box:
        url = f"smtp://sla%40support.example:s3cret-p%40ss%20word@localhost:{box.port}"
        server = SmtpServer.from_url(url)
        assert (server.security, server.user, server.password) == (
            "starttls",
            "sla@support.example",
            password,
        )
        job(StateStore(tmp_path / "state.sqlite3"), server, figures, tmp_path / "r").tick(START)

    assert len(box.to(BOSS)) == 1
    assert box.logins == ["sla@support.example"]
    assert all(password not in repr(entry) for entry in logs)
    assert all("s3cret" not in repr(entry) for entry in logs)


# aiosmtpd counts only STARTTLS as TLS for its warning; this connection is TLS throughout.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_speaks_tls_from_the_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with mail_server(tls=(cert, key), implicit_tls=True, login=("bob", "pw")) as box:
        server = SmtpServer.from_url(f"smtps://bob:pw@localhost:{box.port}")
        assert server.security == "tls"
        mail = message(sender=SENDER, recipient=BOSS, subject="Отчёт", text="x",
                       message_id=new_message_id(SENDER), date=START)  # fmt: skip
        send(server, mail)
    assert [m["Subject"] for m in box.messages] == ["Отчёт"]
    assert box.logins == ["bob"]


def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)  # not trusted here: no SSL_CERT_FILE
    with mail_server(tls=(cert, key)) as box:
        server = SmtpServer.from_url(f"smtp://bob:pw@localhost:{box.port}")
        mail = message(sender=SENDER, recipient=BOSS, subject="x", text="x",
                       message_id=new_message_id(SENDER), date=START)  # fmt: skip
        with pytest.raises(MailError, match="TLS with localhost"):
            send(server, mail)
    assert box.messages == []


def test_a_server_without_starttls_is_refused_before_any_password_goes() -> None:
    with mail_server() as box:
        server = SmtpServer.from_url(f"smtp://bob:pw@localhost:{box.port}")
        mail = message(sender=SENDER, recipient=BOSS, subject="x", text="x",
                       message_id=new_message_id(SENDER), date=START)  # fmt: skip
        with pytest.raises(MailError, match="offers no STARTTLS"):
            send(server, mail)
    assert box.messages == []
    assert box.logins == []


def test_an_unreachable_server_is_a_log_line_and_the_next_tick_sends_it_once(
    october: tuple[Figures, dict[str, int]], tmp_path: Path, logs: Logs
) -> None:
    figures, _ = october
    store = StateStore(tmp_path / "state.sqlite3")
    port = free_port()  # nothing listens there yet
    scheduled = job(store, plain(port), figures, tmp_path / "r")

    scheduled.tick(START)  # no exception: the worker goes on

    (failed,) = [e for e in logs if e["event"] == "report_mail_failed"]
    assert failed["recipient"] == BOSS
    assert failed["problem"].startswith(f"cannot reach the mail server localhost:{port} (none)")
    entry = store.mail_entry(report_key(OCTOBER), BOSS)
    assert entry is not None
    assert entry.mark is MailMark.FAILED
    with mail_server(Mailbox()) as box:
        assert box.port != port
    box = Mailbox()
    with mail_server(box):
        scheduled.postman.server = plain(box.port)
        scheduled.tick(START + timedelta(hours=1))
        scheduled.tick(START + timedelta(hours=2))
    assert len(box.to(BOSS)) == 1


def test_a_refused_recipient_is_retried_once_later_and_the_others_not_again(
    october: tuple[Figures, dict[str, int]], tmp_path: Path, logs: Logs
) -> None:
    figures, _ = october
    store = StateStore(tmp_path / "state.sqlite3")
    box = Mailbox(refusals={HEAD: 1})
    with mail_server(box):
        scheduled = job(store, plain(box.port), figures, tmp_path / "r", report_to=(BOSS, HEAD))
        scheduled.tick(START)
        assert [len(box.to(BOSS)), len(box.to(HEAD))] == [1, 0]
        (failed,) = [e for e in logs if e["event"] == "report_mail_failed"]
        assert failed["problem"] == (
            f"the server refused the recipient {HEAD}: 550 5.1.1 No such mailbox"
        )
        scheduled.tick(START + timedelta(hours=1))
        scheduled.tick(START + timedelta(hours=2))

    assert [len(box.to(BOSS)), len(box.to(HEAD))] == [1, 1]
    assert box.refused == [HEAD]
    assert [e.mark for e in store.mail_records("report:")] == [MailMark.SENT, MailMark.SENT]
    # once everything went, a tick does not even make the report again
    assert len(scheduled.made) == 2  # type: ignore[attr-defined]


def test_a_report_too_large_for_the_server_is_never_sent_and_says_so(
    october: tuple[Figures, dict[str, int]], tmp_path: Path, logs: Logs
) -> None:
    figures, _ = october
    store = StateStore(tmp_path / "state.sqlite3")
    with mail_server(size_limit=20_000) as box:
        job(store, plain(box.port), figures, tmp_path / "r").tick(START)

    assert box.messages == []
    (failed,) = [e for e in logs if e["event"] == "report_mail_failed"]
    assert "more than the 20,000 the server localhost" in failed["problem"]
    entry = store.mail_entry(report_key(OCTOBER), BOSS)
    assert entry is not None
    assert entry.mark is MailMark.FAILED


def test_a_claim_without_an_answer_is_unknown_and_never_sent_again(
    october: tuple[Figures, dict[str, int]], tmp_path: Path, logs: Logs
) -> None:
    figures, _ = october
    store = StateStore(tmp_path / "state.sqlite3")
    # A worker claimed the mail and stopped before the server's answer was recorded.
    assert store.claim_mail(report_key(OCTOBER), BOSS, "<1@support.example>", 0)
    with mail_server() as box:
        scheduled = job(store, plain(box.port), figures, tmp_path / "r")
        scheduled.tick(START)
        scheduled.tick(START + timedelta(hours=1))

    assert box.messages == []
    (unknown,) = [e for e in logs if e["event"] == "report_mail_outcome_unknown"]
    assert unknown["message_id"] == "<1@support.example>"
    assert "report --mail-to" in unknown["action"]
    entry = store.mail_entry(report_key(OCTOBER), BOSS)
    assert entry is not None
    assert entry.mark is MailMark.UNKNOWN
    assert not store.claim_mail(report_key(OCTOBER), BOSS, "<2@support.example>", 1)


def test_statements_go_to_each_companys_address_once(
    october: tuple[Figures, dict[str, int]], tmp_path: Path, logs: Logs
) -> None:
    figures, companies = october
    romashka, vector = companies["romashka"], companies["vector"]
    store = StateStore(tmp_path / "state.sqlite3")
    with mail_server() as box:
        scheduled = job(
            store,
            plain(box.port),
            figures,
            tmp_path / "r",
            report_to=(),
            addresses={romashka: ("buh@romashka.example",)},
        )
        scheduled.tick(START)
        scheduled.tick(START + timedelta(hours=1))

    (mail,) = box.messages
    assert mail["To"] == "buh@romashka.example"
    assert mail["Subject"] == "Отчёт об оказанных услугах за 01.10.2025 — 31.10.2025 — ИП Дудкин"
    (attached,) = mail.iter_attachments()
    assert attached.get_content_type() == "text/html"  # no PDF was asked for here
    assert "ООО Ромашка" in attached.get_content()
    (nowhere,) = [e for e in logs if e["event"] == "statement_without_address"]
    assert nowhere["company_id"] == vector
    key = statement_key(OCTOBER, romashka)
    entry = store.mail_entry(key, "buh@romashka.example")
    assert entry is not None
    assert entry.mark is MailMark.SENT
    # every statement of the period done: the second tick made no report
    assert len(scheduled.made) == 1  # type: ignore[attr-defined]


def test_a_period_whose_time_came_before_the_first_start_is_not_sent(
    october: tuple[Figures, dict[str, int]], tmp_path: Path
) -> None:
    figures, _ = october
    with mail_server() as box:
        scheduled = job(StateStore(tmp_path / "s.sqlite3"), plain(box.port), figures, tmp_path)
        scheduled.first_start = lambda: datetime(2025, 11, 3, tzinfo=MOSCOW)
        scheduled.tick(START)
    assert box.messages == []


@pytest.mark.parametrize(
    ("cron", "at", "first", "last"),
    [
        (MONTHLY, datetime(2025, 11, 5, 12, 0), date(2025, 10, 1), date(2025, 10, 31)),
        (MONTHLY, datetime(2025, 11, 1, 9, 0), date(2025, 10, 1), date(2025, 10, 31)),
        (MONTHLY, datetime(2025, 11, 1, 8, 59), date(2025, 9, 1), date(2025, 9, 30)),
        ("0 9 * * 1", datetime(2025, 11, 5, 12, 0), date(2025, 10, 27), date(2025, 11, 2)),
        ("30 8 * * *", datetime(2025, 11, 5, 12, 0), date(2025, 11, 4), date(2025, 11, 4)),
        ("0 9 1,16 * *", datetime(2025, 11, 20, 12, 0), date(2025, 11, 1), date(2025, 11, 15)),
        ("0 9 1 1 *", datetime(2025, 11, 5, 12, 0), date(2024, 1, 1), date(2024, 12, 31)),
    ],
)
def test_each_time_reports_the_whole_days_since_the_one_before(
    cron: str, at: datetime, first: date, last: date
) -> None:
    schedule = Schedule(cron, MOSCOW)
    schedule.check(at.replace(tzinfo=MOSCOW))
    time = schedule.latest(at.replace(tzinfo=MOSCOW))
    assert time is not None
    assert schedule.period(time) == Period(first, last, MOSCOW)


@pytest.mark.parametrize("cron", ["*/30 * * * *", "0 9,18 * * *", "0 * 1 * *"])
def test_a_schedule_more_often_than_daily_is_refused(cron: str) -> None:
    with pytest.raises(ValueError, match="more than once a day"):
        Schedule(cron, MOSCOW).check(START)


def test_company_addresses_come_from_a_field_by_name_id_or_code(tmp_path: Path) -> None:
    scenario = build_report_world()
    world = scenario.world
    fake = world.fake
    romashka = scenario.companies["romashka"]
    field_id = fake.add_custom_field(
        "Email для отчётов", "text", entity="companies", code="REPORT_EMAIL"
    )
    fake.update_company(romashka, by_user=world.agents[0],
                        custom_fields={field_id: "buh@romashka.example"})  # fmt: skip
    for name in ("Email для отчётов", "email для отчётов", str(field_id), "report_email"):
        found = company_addresses(world.client, name, [romashka, scenario.companies["vector"]])
        assert found == {romashka: ("buh@romashka.example",), scenario.companies["vector"]: ()}
    with pytest.raises(LookupError, match="no company field 'Почта'"):
        company_addresses(world.client, "Почта", [romashka])
