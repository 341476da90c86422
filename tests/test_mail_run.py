"""The scheduled report from a real ``python -m worker run`` against the fake amoCRM on
loopback HTTP and a real SMTP server on localhost (aiosmtpd): sent once per period and
recipient across restarts, and across a kill -9 between the send and its record.

``SLA_REPORT_SCHEDULE`` is monthly (``0 9 1 * *``); the worker has run on the account since
2020 (``SLA_FIRST_START``), so the month before this one is due when it starts, and it sends
it at once."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live_account import LoopbackAccount, WorkerProcess, loopback_account
from tests.mail_kit import Mailbox, mail_server, self_signed
from worker.store import MailMark, StateStore

SENDER = "sla@support.example"
BOSS = "boss@example.com"


@pytest.fixture
def account() -> Iterator[LoopbackAccount]:
    with loopback_account() as account:
        account.provision()
        account.add_leads(3)
        yield account


def worker_env(account: LoopbackAccount, state: Path, box: Mailbox) -> dict[str, str]:
    return account.env(
        state,
        SLA_LOG_FORMAT="json",
        SLA_SMTP_URL=f"smtp+plain://localhost:{box.port}",
        SLA_SMTP_FROM=SENDER,
        SLA_REPORT_SCHEDULE="0 9 1 * *",
        SLA_REPORT_TO=BOSS,
        SLA_LOG_LEVEL="DEBUG",  # report_mail_done: a tick found everything sent
    )


def wait_for(worker: WorkerProcess, name: str, timeout: float = 60) -> dict[str, Any]:
    """The worker's first ``name`` line, whether it came already or is still to come."""
    for line in worker.lines:
        entry: dict[str, Any] = json.loads(line)
        if entry["event"] == name:
            return entry
    return worker.wait_for_event(name, timeout)


def stop(worker: WorkerProcess) -> list[str]:
    worker.process.send_signal(signal.SIGTERM)
    finished = worker.finish(timeout=60)
    assert finished.code == 0, finished.stderr
    return [entry["event"] for entry in finished.entries()]


def test_the_scheduled_report_goes_once_and_a_restart_sends_nothing(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    box = Mailbox()
    with mail_server(box):
        env = worker_env(account, tmp_path / "state", box)
        first = WorkerProcess(["run"], env, cwd=tmp_path)
        sent = wait_for(first, "report_mail_sent", timeout=90)
        wait_for(first, "cycle_done", timeout=60)
        stop(first)
        again = WorkerProcess(["run"], env, cwd=tmp_path)
        wait_for(again, "report_mail_done", timeout=60)
        wait_for(again, "cycle_done", timeout=60)
        events = stop(again)

    (mail,) = box.messages
    assert mail["To"] == BOSS
    assert mail["Message-ID"] == sent["message_id"]
    assert mail["Subject"].startswith("Отчёт по SLA за 01.")
    assert {part.get_filename() for part in mail.iter_attachments()} == {
        "report.html",
        "tables.zip",
    }
    assert "report_mail_sent" not in events


def test_a_kill_between_the_send_and_its_record_never_sends_it_twice(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    box = Mailbox()
    with mail_server(box):
        env = worker_env(account, tmp_path / "state", box)
        first = WorkerProcess(["run"], env, cwd=tmp_path)
        # The server has the whole message; before it answers, the worker is killed: the
        # mail went, and the worker never learnt it.
        box.on_data = lambda _mail: os.kill(first.process.pid, signal.SIGKILL)
        killed = first.finish(timeout=90)
        assert killed.code == -signal.SIGKILL
        box.on_data = None
        (mail,) = box.messages

        again = WorkerProcess(["run"], env, cwd=tmp_path)
        unknown = wait_for(again, "report_mail_outcome_unknown", timeout=60)
        wait_for(again, "cycle_done", timeout=60)
        stop(again)
        third = WorkerProcess(["run"], env, cwd=tmp_path)
        wait_for(third, "report_mail_done", timeout=60)
        wait_for(third, "cycle_done", timeout=60)
        events = stop(third)

    assert box.messages == [mail]  # once, across the kill and two restarts
    assert unknown["message_id"] == mail["Message-ID"]  # what to look for in the server's log
    assert unknown["recipient"] == BOSS
    assert "report_mail_outcome_unknown" not in events  # said once
    store = StateStore.read_only(tmp_path / "state" / "state.sqlite3")
    try:
        (entry,) = store.mail_records("report:")
    finally:
        store.close()
    assert (entry.recipient, entry.mark) == (BOSS, MailMark.UNKNOWN)


def test_the_smtp_password_is_in_no_line_the_worker_writes(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    password = "Zq8vK2mN5pR7tW1x-smtp"
    box = Mailbox()
    with mail_server(box, tls=(cert, key), login=("sla", password)):
        env = worker_env(account, tmp_path / "state", box)
        env["SLA_SMTP_URL"] = f"smtp://sla:{password}@localhost:{box.port}"
        env["SSL_CERT_FILE"] = str(cert)  # the test's certificate is trusted
        worker = WorkerProcess(["run"], env, cwd=tmp_path)
        wait_for(worker, "report_mail_sent", timeout=90)
        worker.process.send_signal(signal.SIGTERM)
        finished = worker.finish(timeout=60)

    assert finished.code == 0
    assert box.logins == ["sla"]
    assert password not in finished.stderr
    assert password not in finished.stdout
    assert f"localhost:{box.port} (starttls)" in finished.stderr  # the log names the host
