"""``python -m worker sandbox``: the built-in amoCRM emulator over HTTP, to try every command.

The emulator (:class:`amo_client.fake.FakeAmoCRM`) gets the demo's support pipeline, people
and companies, with requests of every kind on today's dates: unanswered and breached since
before the worker's first start, answered, on hold, waiting for acceptance, closed on time
and late, without a tariff, and a company whose 2-hour package its agents' time notes have
used up. The SLA fields are created as ``provision`` creates them. The emulator is served on
127.0.0.1 until SIGTERM or Ctrl-C; the variables that point the worker at it go to an env
file and, as ``export`` lines, to stdout. Its token is made up at start and opens nothing
but this sandbox.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TextIO

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import WON_STATUS_ID, FakeAmoCRM, PipelineRef
from worker.admin import provision
from worker.demo import MOSCOW, PIPELINE, STAGES
from worker.envfile import shell_line, write_private
from worker.fields import Ledger

HOST = "127.0.0.1"
ACCOUNT_NAME = "Песочница amo-sla"
# The emulator's own name for itself; clients reach it at the served address, and the links
# in its answers are rewritten to that address.
EMULATOR_URL = "http://amo-sla-sandbox.invalid"
TOKEN_PREFIX = "sandbox-fake-"  # noqa: S105 - marks the sandbox's made-up tokens
FILE_MARK = "# amo-sla sandbox"
READY = "# ready"
PACKAGE_HOURS = 2
EXIT_CONFIG = 2


@dataclass(frozen=True)
class Seeded:
    """What the sandbox holds, for the admin's commands: ``(id, what it is)`` pairs."""

    leads: tuple[tuple[int, str], ...]
    companies: tuple[tuple[int, str], ...]
    supervisor_id: int


@dataclass
class _Account:
    """The sandbox's account while it is seeded: the pipeline, its people and companies."""

    fake: FakeAmoCRM
    now: datetime
    support: PipelineRef
    anna: int
    oleg: int
    maria: int
    romashka: int
    vasilek: int
    leads: list[tuple[int, str]] = field(default_factory=list)

    def ago(self, **delta: float) -> float:
        return (self.now - timedelta(**delta)).timestamp()

    def stage(self, index: int) -> int:
        return self.support.status(STAGES[index])

    def lead(self, name: str, about: str, tags: list[str], created: float, *, user: int,
             company: int | None = None) -> int:  # fmt: skip
        lead_id = self.fake.add_lead(
            name, pipeline_id=self.support.id, tags=tags, created_at=created,
            responsible_user_id=user, company_id=company or self.vasilek,
        )  # fmt: skip
        self.leads.append((lead_id, about))
        return lead_id


def seed_today(fake: FakeAmoCRM, client: AmoClient, now: datetime) -> Seeded:
    """The demo's account with requests opened in the days up to ``now``; the SLA and
    package fields created through ``client`` (as ``provision`` does), then filled in.

    Every offset is chosen so that a request's state does not depend on the hour or the day
    it is seeded at: CRMBP's «Приоритет» clocks run every day (weekends and holidays
    12–18), so a day without an answer is always a breach."""
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    maria = fake.add_user("Мария Козлова")
    account = _Account(
        fake=fake,
        now=now,
        support=support,
        anna=fake.add_user("Анна Смирнова"),
        oleg=fake.add_user("Олег Петров"),
        maria=maria,
        romashka=fake.add_company("ООО Ромашка", responsible_user_id=maria),
        vasilek=fake.add_company("ООО Василёк", responsible_user_id=maria),
    )
    change = _open_requests(account)
    _package_requests(account)
    _closed_requests(account)
    fake.add_lead("Новый клиент", pipeline_id=sales.id, tags=["Приоритет"],
                  created_at=account.ago(hours=1))  # fmt: skip

    provision(client, dry_run=False, say=lambda _line: None, ledgers=frozenset({Ledger.PACKAGES}))
    today = now.astimezone(MOSCOW).date()
    agreed = fake.field_id("SLA: срок по согласованию")
    if agreed is not None:
        due = datetime.combine(today + timedelta(days=5), time(18), tzinfo=MOSCOW)
        fake.update_lead(change, by_user=account.anna, at=account.ago(hours=4),
                         custom_fields={agreed: int(due.timestamp())})  # fmt: skip
    paid = datetime.combine(today - timedelta(days=3), time(), tzinfo=MOSCOW)
    hours = fake.field_id("Пакет: часов", entity="companies")
    paid_field = fake.field_id("Пакет: оплачен", entity="companies")
    if hours is not None and paid_field is not None:
        fake.update_company(account.romashka, by_user=maria, at=paid.timestamp(),
                            custom_fields={hours: PACKAGE_HOURS,
                                           paid_field: int(paid.timestamp())})  # fmt: skip
    return Seeded(
        leads=tuple(account.leads),
        companies=(
            (
                account.romashka,
                f"ООО Ромашка: пакет {PACKAGE_HOURS} ч, оплачен {paid:%d.%m.%Y}; "
                "записано 2 ч 20 мин",
            ),
            (account.vasilek, "ООО Василёк: без пакета"),
        ),
        supervisor_id=maria,
    )


def _open_requests(a: _Account) -> int:
    """Open requests of «ООО Василёк»: breached, answered, by agreement, without a tariff,
    new. Returns the one whose agreed date is typed in once its field exists."""
    fake = a.fake
    opened = a.ago(days=3)
    silent = a.lead("Не открывается карточка сделки", "Приоритет, без ответа 3 дня: просрочено",
                    ["Приоритет"], opened, user=a.anna)  # fmt: skip
    fake.add_event(silent, "outgoing_chat_message", created_by=0, at=opened + 60)  # a bot
    a.lead("Ошибка импорта контактов", "Приоритет, без ответа сутки: просрочено",
           ["Приоритет"], a.ago(hours=26), user=a.oleg)  # fmt: skip
    opened = a.ago(hours=20)
    answered = a.lead("Не приходят уведомления", "Приоритет, ответ через 10 минут",
                      ["Приоритет"], opened, user=a.oleg)  # fmt: skip
    fake.add_event(answered, "outgoing_chat_message", created_by=a.oleg, at=opened + 600)
    fake.move_lead(answered, a.stage(1), by_user=a.oleg, at=opened + 900)
    opened = a.ago(hours=5)
    change = a.lead("Доработать виджет счёта", "Приоритет, нестандартное: срок по согласованию",
                    ["Приоритет", "Доработка"], opened, user=a.anna)  # fmt: skip
    fake.add_event(change, "outgoing_chat_message", created_by=a.anna, at=opened + 1200)
    # On acceptance for two weeks, so more than a business day in any season: the worker
    # moves it on at its first cycle.
    opened = a.ago(days=15)
    rights = a.lead("Настроить права доступа", "Приоритет, на приёмке 2 недели: будет принято",
                    ["Приоритет"], opened, user=a.anna)  # fmt: skip
    fake.add_event(rights, "outgoing_chat_message", created_by=a.anna, at=opened + 1200)
    fake.move_lead(rights, a.stage(3), by_user=a.anna, at=a.ago(days=14))
    a.lead("Вопрос по счёту", "без тарифа", ["счёт"], a.ago(minutes=30), user=a.anna)
    a.lead("Не работает телефония", "По факту, только что", ["По факту"], a.ago(minutes=20),
           user=a.oleg)  # fmt: skip
    return change


def _package_requests(a: _Account) -> None:
    """«ООО Ромашка»'s requests: 2 h 20 min of time notes (its package holds 2 h) and one
    note that reads as no time at all."""
    fake = a.fake
    opened = a.ago(days=2)
    funnel = a.lead("Настроить воронку продаж", "По факту, в работе, 1 ч 40 мин по пакету",
                    ["По факту"], opened, user=a.oleg, company=a.romashka)  # fmt: skip
    fake.move_lead(funnel, a.stage(1), by_user=a.oleg, at=opened + 3600)
    fake.add_note(funnel, "Время: 35 мин — разбор воронки", created_by=a.oleg, at=opened + 7200)
    fake.add_note(funnel, "Время: 1:05 — тестирование воронки", created_by=a.oleg,
                  at=opened + 86400)  # fmt: skip
    opened = a.ago(days=1)
    export = a.lead("Выгрузка отчёта", "По факту, ждём клиента: на паузе", ["По факту"],
                    opened, user=a.anna, company=a.romashka)  # fmt: skip
    fake.add_event(export, "outgoing_call", created_by=a.anna, at=opened + 300)
    fake.add_note(export, "Время: 40 мин — диагностика выгрузки", created_by=a.anna,
                  at=opened + 3600)  # fmt: skip
    fake.move_lead(export, a.stage(2), by_user=a.anna, at=opened + 3900)
    opened = a.ago(hours=4)
    one_c = a.lead("Интеграция с 1С", "По факту, нестандартное; «Время: полчаса» не читается",
                   ["По факту", "Нестандартное"], opened, user=a.anna,
                   company=a.romashka)  # fmt: skip
    fake.add_note(one_c, "Время: полчаса", created_by=a.anna, at=opened + 1800)


def _closed_requests(a: _Account) -> None:
    """Two requests closed in the last days: one on time, one late."""
    fake = a.fake
    opened = a.ago(days=2)
    password = a.lead("Сброс пароля", "Приоритет, решено в срок", ["Приоритет"], opened,
                      user=a.oleg)  # fmt: skip
    fake.add_event(password, "outgoing_chat_message", created_by=a.oleg, at=opened + 240)
    fake.move_lead(password, WON_STATUS_ID, by_user=a.oleg, at=opened + 1200)
    opened = a.ago(days=5)
    outage = a.lead("Сервер недоступен", "Приоритет, ответ через 2 дня, решено с нарушением",
                    ["Приоритет", "авария"], opened, user=a.oleg)  # fmt: skip
    fake.add_event(outage, "outgoing_chat_message", created_by=a.oleg, at=opened + 2 * 86400)
    fake.move_lead(outage, WON_STATUS_ID, by_user=a.oleg, at=opened + 3 * 86400)


def variables(url: str, token: str, state_dir: Path, seeded: Seeded) -> dict[str, str]:
    """The environment that points the worker at the sandbox: everything ``check`` needs."""
    return {
        "AMO_BASE_URL": url,
        "AMO_LONG_LIVED_TOKEN": token,
        "SLA_PIPELINE": PIPELINE,
        "SLA_HOLD_STAGES": STAGES[2],
        "SLA_ACCEPTANCE_STAGES": STAGES[3],
        "SLA_PACKAGES": "true",
        "SLA_SUPERVISOR_USER_ID": str(seeded.supervisor_id),
        "SLA_STATE_DIR": str(state_dir),
        "SLA_POLL_INTERVAL": "60",
    }


def env_file_text(url: str, values: Mapping[str, str], *, path: Path, hook_port: int) -> str:
    hook_secret = TOKEN_PREFIX + "hook-" + secrets.token_hex(12)
    lines = [
        f"{FILE_MARK}: the built-in amoCRM emulator at {url}.",
        "# Written by `python -m worker sandbox` and removed when it stops. The token is the",
        "# emulator's own, made up at start: it opens nothing but this sandbox. Load it with",
        f"#   set -a; . {path}; set +a",
        "# or copy it to .env in the directory the worker runs in.",
        *(shell_line(key, value) for key, value in values.items()),
        "# Webhooks too: uncomment these three, run `python -m worker webhook register`, then",
        "# `python -m worker run`: the emulator posts each change of a request to the worker.",
        f"# {shell_line('SLA_WEBHOOK_URL', f'http://{HOST}:{hook_port}')}",
        f"# {shell_line('SLA_HTTP_LISTEN', f'{HOST}:{hook_port}')}",
        f"# {shell_line('SLA_WEBHOOK_SECRET', hook_secret)}",
    ]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.readline().startswith(FILE_MARK)
    except (OSError, UnicodeError):
        return False


def serve(
    out: TextIO,
    *,
    port: int,
    env_file: Path,
    state_dir: Path | None,
    force: bool,
    stop: threading.Event,
) -> int:
    """Seed and serve the sandbox, write ``env_file``, print the ``export`` lines and the
    sandbox's requests, and keep serving until ``stop`` is set. ``state_dir`` None: a new
    temporary directory, removed at the end, as the env file is."""
    env_file = env_file.absolute()
    if env_file.exists() and not force and not _ours(env_file):
        print(
            f"error: {env_file} exists and was not written by the sandbox; pass --force to "
            "replace it, or --env-file another path",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    token = TOKEN_PREFIX + secrets.token_hex(16)
    fake = FakeAmoCRM(base_url=EMULATOR_URL, account_name=ACCOUNT_NAME, long_lived_token=token)
    with AmoClient(fake.base_url, LongLivedToken(token), transport=fake.transport) as client:
        seeded = seed_today(fake, client, datetime.now(UTC))
    try:
        server = fake.serve(HOST, port)
    except OSError as error:
        print(f"error: cannot listen on {HOST}:{port}: {error.strerror or error}", file=sys.stderr)
        return EXIT_CONFIG
    own_state = state_dir is None
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="amo-sla-sandbox-"))
    directory = state_dir.absolute()
    wrote = False
    try:
        values = variables(server.url, token, directory, seeded)
        text = env_file_text(server.url, values, path=env_file, hook_port=_free_port())
        directory.mkdir(parents=True, exist_ok=True)
        write_private(env_file, text, replace=True)
        wrote = True
        _announce(out, server.url, env_file, values, seeded)
        while not stop.wait(1.0):
            pass
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        server.close()
        if wrote and _ours(env_file):
            env_file.unlink(missing_ok=True)
        if own_state:
            shutil.rmtree(directory, ignore_errors=True)
    print("# sandbox stopped", file=out, flush=True)
    return 0


def _announce(
    out: TextIO, url: str, env_file: Path, values: Mapping[str, str], seeded: Seeded
) -> None:
    lines = [
        f"{FILE_MARK}: the built-in amoCRM emulator at {url}, account «{ACCOUNT_NAME}»,",
        f"# pipeline «{PIPELINE}», with requests of the last days; the SLA fields are in place.",
        "# Nothing here reaches a real amoCRM; the token is the emulator's own.",
        f"# Wrote {env_file}; in another terminal:",
        f"#   set -a; . {env_file}; set +a",
        "#   python -m worker check",
        *(shell_line(key, value, export=True) for key, value in values.items()),
        "# requests (python -m worker explain LEAD_ID):",
        *(f"#   {lead_id}  {about}" for lead_id, about in seeded.leads),
        "# companies (python -m worker explain --company ID):",
        *(f"#   {company_id}  {about}" for company_id, about in seeded.companies),
        f"{READY}: Ctrl-C or SIGTERM stops the sandbox",
    ]
    if Path(".env").exists():
        print(
            "note: ./.env exists here and the worker reads it too; the variables above win, "
            "but any other it sets (AMO_SUBDOMAIN, SLA_WEBHOOK_*, ...) applies as well: run "
            "the sandbox's commands in another directory",
            file=sys.stderr,
        )
    for line in lines:
        print(line, file=out)
    out.flush()


def run_until_signalled(
    out: TextIO, *, port: int, env_file: Path, state_dir: Path | None, force: bool
) -> int:
    """:func:`serve` until SIGTERM or SIGINT (Ctrl-C); then exit 0."""
    stop = threading.Event()

    def finish(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, finish) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return serve(out, port=port, env_file=env_file, state_dir=state_dir, force=force, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
