"""``python -m worker sandbox`` as an admin meets it: a process of its own, its env file loaded
with ``set -a; . ./sandbox.env; set +a``, and each admin command a process run against it."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO

import pytest

from worker.sandbox import READY

ROOT = Path(__file__).resolve().parents[1]
# Loads the env file into the environment of the command after it, as the README says.
SH = shutil.which("sh") or "/bin/sh"
SOURCED = 'set -a; . "$1"; set +a; shift; exec "$@"'


@dataclass(frozen=True)
class Ran:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float


@dataclass
class Sandbox:
    process: subprocess.Popen[str]
    env_file: Path
    lines: list[str] = field(default_factory=list)
    ran: list[Ran] = field(default_factory=list)

    def exports(self) -> dict[str, str]:
        found = (re.fullmatch(r'export (\w+)="(.*)"', line) for line in self.lines)
        return {match[1]: match[2] for match in found if match}

    def listed(self) -> dict[str, int]:
        """The requests and companies the sandbox listed, by what they are."""
        found = (re.fullmatch(r"#   (\d+)  (.+)", line) for line in self.lines)
        return {match[2]: int(match[1]) for match in found if match}


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without anything that could configure the worker."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AMO_", "SLA_", "PYTHON"))
    }
    return {**env, "PYTHONPATH": str(ROOT), **variables}


def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    env_file = tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "sandbox", "--env-file", str(env_file)],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    running = Sandbox(process, env_file)
    started = time.monotonic()
    try:
        while not running.lines or not running.lines[-1].startswith(READY):
            line = lines.get(timeout=max(started + 30 - time.monotonic(), 0.01))
            assert line is not None, f"the sandbox ended before it was ready: {running.lines}"
            running.lines.append(line)
        running.ran.append(Ran(("sandbox", "(until ready)"), 0, "", "", time.monotonic() - started))
        yield running
    finally:
        if process.poll() is None:  # a failed test: let the sandbox clean up after itself
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ran in running.ran:
            print(f"{ran.seconds:5.1f} s  exit {ran.code}  {' '.join(ran.args)}")


def run(sandbox: Sandbox, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Ran:
    """``python -m worker ARGS`` in ``cwd``: with the sandbox's file loaded into a clean
    environment, or with ``env`` instead."""
    command = [sys.executable, "-m", "worker", *args]
    if env is None:
        command = [SH, "-c", SOURCED, "sh", str(sandbox.env_file), *command]
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ran = Ran(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    sandbox.ran.append(ran)
    return ran


def test_every_admin_command_runs_against_the_sandbox_and_sigterm_ends_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    exports = sandbox.exports()
    token = exports["AMO_LONG_LIVED_TOKEN"]
    assert token.startswith("sandbox-fake-")
    assert exports["AMO_BASE_URL"].startswith("http://127.0.0.1:")
    assert stat.S_IMODE(sandbox.env_file.stat().st_mode) == 0o600
    state_dir = Path(exports["SLA_STATE_DIR"])
    admin = tmp_path / "admin"  # no .env here: the loaded file alone configures the worker
    admin.mkdir()
    listed = sandbox.listed()
    romashka = next(i for about, i in listed.items() if about.startswith("ООО Ромашка"))
    today = date.today()

    check = run(sandbox, "check", cwd=admin)
    assert check.code == 0, check.err
    assert check.out.endswith("everything is in place\n")
    assert "ok: ledgers on: packages" in check.out
    assert "2 request(s) breached before the worker's first start" in check.out

    # init writes a .env that, with only the token in the environment, check accepts.
    configured = tmp_path / "configured"
    configured.mkdir()
    init = run(
        sandbox,
        "init",
        "--non-interactive",
        "--pipeline",
        "Техподдержка",
        "--hold",
        "Ждём клиента",
        "--acceptance",
        "Проверка клиентом",
        "--packages",
        "--out",
        str(configured / ".env"),
        cwd=admin,
    )
    assert init.code == 0, init.err
    assert token not in init.out + init.err
    assert token not in (configured / ".env").read_text(encoding="utf-8")
    with_file = run(sandbox, "check", cwd=configured, env=clean_env(AMO_LONG_LIVED_TOKEN=token))
    assert with_file.code == 0, with_file.err
    assert "everything is in place" in with_file.out

    once = run(sandbox, "once", "--dry-run", cwd=admin)
    assert once.code == 0, once.err
    assert "12 lead(s) would write:" in once.out
    assert "→ стадия Успешно реализовано" in once.out  # two weeks on acceptance: accepted
    assert "Пакет часов компании «ООО Ромашка» исчерпан" in once.out

    breached = listed["Приоритет, без ответа 3 дня: просрочено"]
    explain = run(sandbox, "explain", str(breached), "--no-trace", cwd=admin)
    assert explain.code == 0, explain.err
    state = json.loads(explain.out)
    assert (state["status"], state["reaction_breached"], state["reacted_at"]) == (
        "Просрочено",
        True,
        None,  # the bot's greeting is no reaction
    )

    # The file works as a .env too: the worker reads it from its working directory.
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / ".env").write_text(sandbox.env_file.read_text(encoding="utf-8"), encoding="utf-8")
    company = run(sandbox, "explain", "--company", str(romashka), cwd=copied, env=clean_env())
    assert company.code == 0, company.err
    assert "used 2 ч 20 мин of 2 ч in 3 entries, left -20 мин; status Исчерпан" in company.out

    reports = admin / "report"
    report = run(
        sandbox,
        "report",
        "--from",
        str(today - timedelta(days=7)),
        "--out",
        str(reports),
        cwd=admin,
    )
    assert report.code == 0, report.err
    assert report.out.strip() == str(reports / "report.html")
    assert {"report.html", "summary.csv", "breaches.csv", "hours.csv"} <= {
        path.name for path in reports.iterdir()
    }

    backfill = run(
        sandbox, "backfill", "--since", str(today - timedelta(days=30)), "--dry-run", cwd=admin
    )
    assert backfill.code == 0, backfill.err
    assert "request(s) closed since" in backfill.out
    assert f"lead {listed['Приоритет, решено в срок']} «Сброс пароля»" in backfill.out

    # Webhooks are off in the file: `webhook status` needs its two variables (exit 2). With
    # the file's commented-out ones, it finds none registered (exit 1) until `register`.
    assert run(sandbox, "webhook", "status", cwd=admin).code == 2
    hooks = dict(
        re.findall(
            r'^# (SLA_WEBHOOK_\w+)="(.*)"$', sandbox.env_file.read_text(encoding="utf-8"), re.M
        )
    )
    with_hooks = clean_env(**exports, **hooks)
    missing = run(sandbox, "webhook", "status", cwd=admin, env=with_hooks)
    assert missing.code == 1
    assert "is not registered" in missing.out
    assert run(sandbox, "webhook", "register", cwd=admin, env=with_hooks).code == 0
    registered = run(sandbox, "webhook", "status", cwd=admin, env=with_hooks)
    assert registered.code == 0
    assert hooks["SLA_WEBHOOK_SECRET"] not in registered.out + registered.err

    stopping = time.monotonic()
    sandbox.process.send_signal(signal.SIGTERM)
    code = sandbox.process.wait(timeout=10)
    sandbox.ran.append(Ran(("sandbox", "(SIGTERM)"), code, "", "", time.monotonic() - stopping))
    assert code == 0
    assert not sandbox.env_file.exists()
    assert not state_dir.exists()
