"""The report mail and its schedule at their edges: a server that errs after it took the
message, an address smtplib cannot write, cron's day-of-month with a weekday, and a daily time
inside the repeated hour of an autumn clock change."""

from __future__ import annotations

import signal
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.cycle_kit import MOSCOW, START
from tests.mail_kit import Mailbox, mail_server
from worker.delivery import Outgoing, Postman, Schedule
from worker.mail import SmtpServer
from worker.store import MailMark, StateStore

SENDER = "sla@support.example"
BERLIN = ZoneInfo("Europe/Berlin")  # 26.10.2025: 03:00 CEST goes back to 02:00 CET

Logs = list[MutableMapping[str, Any]]


class QuitRefused(Mailbox):
    """Takes every message, then answers QUIT with an error instead of «221 Bye»."""

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return "421 4.3.2 Service shutting down"


def outgoing(recipient: str) -> Outgoing:
    return Outgoing("report:2025-10-01:2025-10-31", recipient, "Отчёт", "Текст\n", ())


def postman(store: StateStore, port: int, clock: datetime = START) -> Postman:
    server = SmtpServer.from_url(f"smtp+plain://localhost:{port}")
    return Postman(store, server, SENDER, clock=lambda: clock)


@contextmanager
def at_most(seconds: int) -> Iterator[None]:
    """TimeoutError when the block runs longer than ``seconds`` (the main thread only)."""

    def stop(_signal: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_mail_the_server_took_is_not_sent_again_when_the_server_errs_on_quit(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    with mail_server(QuitRefused()) as box:
        sender = postman(store, box.port)
        sender.deliver(outgoing("boss@example.com"))
        sender.deliver(outgoing("boss@example.com"))  # the next retry

    assert len(box.messages) == 1  # the server took it the first time
    entry = store.mail_entry("report:2025-10-01:2025-10-31", "boss@example.com")
    assert entry is not None
    assert entry.mark is MailMark.SENT


@pytest.mark.parametrize(
    "recipient",
    [
        "бухгалтерия@ромашка.рф",  # IDN: SLA_REPORT_TO and a company field take it
        "buh@romashka.example\r\nBcc: spy@evil.example",  # a company field's value with CR/LF
    ],
    ids=["non-ascii", "crlf"],
)
def test_an_address_the_mail_cannot_carry_is_a_failed_send_not_an_unknown_one(
    tmp_path: Path, logs: Logs, recipient: str
) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    with mail_server() as box:
        sender = postman(store, box.port)
        assert sender.deliver(outgoing(recipient)) is False

    assert box.messages == []
    entry = store.mail_entry("report:2025-10-01:2025-10-31", recipient)
    assert entry is not None
    assert entry.mark is MailMark.FAILED
    assert [e["recipient"] for e in logs if e["event"] == "report_mail_failed"] == [recipient]


def test_a_day_of_month_with_a_weekday_comes_on_either_as_in_cron() -> None:
    schedule = Schedule("0 9 1 * 1", MOSCOW)  # cron: on the 1st and on every Monday
    after = datetime(2025, 11, 5, 12, 0, tzinfo=MOSCOW)  # a Wednesday
    assert schedule.next_after(after) == datetime(2025, 11, 10, 9, 0, tzinfo=MOSCOW)


def test_a_daily_time_in_the_repeated_autumn_hour_is_allowed_before_the_change() -> None:
    schedule = Schedule("30 2 * * *", BERLIN)
    schedule.check(datetime(2025, 10, 20, 12, 0, tzinfo=UTC))


def test_the_latest_time_after_the_autumn_change_is_found() -> None:
    schedule = Schedule("30 2 * * *", BERLIN)
    with at_most(3):
        latest = schedule.latest(datetime(2025, 10, 27, 12, 0, tzinfo=UTC))
    assert latest == datetime(2025, 10, 27, 2, 30, tzinfo=BERLIN)
    assert schedule.period(latest).first == latest.date() - timedelta(days=1)
