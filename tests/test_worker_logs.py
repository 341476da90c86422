"""The worker's own output when piped: JSON lines only, stable event names, no secret anywhere.

Real ``python -m worker`` processes against the fake amoCRM on a loopback port, at DEBUG
(where httpx logs every request and APScheduler every wake-up), with the long-lived token
and with OAuth (code exchange, refresh, a revoked integration).
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live_account import (
    Finished,
    LoopbackAccount,
    WorkerProcess,
    loopback_account,
    run_worker,
)

# Every event name the worker and its client log; the README documents each one.
WORKER_EVENTS = frozenset(
    {
        "worker_started",
        "cycle_done",
        "cycle_failed",
        "cycle_overran",
        "cycle_skipped_locked",
        "wakeup_scheduled",
        "heartbeat_failed",
        "shutdown_requested",
        "shutdown_complete",
        "lead_written",
        "lead_breached",
        "lead_invalid",
        "lead_problem",
        "task_created",
        "task_skipped_existing",
        "config_invalid",
        "command_failed",
        "token_obtained",
        "token_refreshed",
        "api_retry",
        "api_rate_limited",
        "api_blocked",
        "past_breaches",
        "move_skipped",
        "lead_unconfirmed",
        "reaction_ambiguous",
        "first_start_recovered",
    }
)
OWN_LOGGERS = ("worker", "amo_client")
LIBRARY_LOGGERS = ("httpx", "apscheduler")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
DAY = 86400.0

CLIENT_ID = "c0ffee00-1111-4222-8333-444455556666"
CLIENT_SECRET = "oauth-client-secret-Zq8vK2mN5pR7tW1xY4bC6dF9gH3jL0sA"
REDIRECT_URI = "https://integrator.example/amocrm/oauth"


def check_output(finished: Finished, secrets: Iterable[str]) -> list[dict[str, Any]]:
    """Every stderr line one JSON object with stable names, and no secret in any output."""
    for secret in secrets:
        assert len(secret) >= 16, "a short value would prove little"
        assert secret not in finished.stdout, "a secret on stdout"
        assert secret not in finished.stderr, "a secret in the logs"
    entries = finished.entries()
    assert entries
    for entry in entries:
        assert {"timestamp", "level", "logger", "event"} <= entry.keys(), entry
        logger = entry["logger"]
        if logger.startswith(OWN_LOGGERS):
            assert entry["event"] in WORKER_EVENTS, entry
            assert SNAKE_CASE.match(entry["event"]), entry
        else:
            assert logger.startswith(LIBRARY_LOGGERS), entry
    return entries


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in entries]


@pytest.fixture
def account() -> Iterator[LoopbackAccount]:
    with loopback_account() as account:
        account.provision()
        # Open for a month: its reaction is long overdue, so the cycle writes and tasks it.
        account.add_leads(2, age_seconds=30 * DAY)
        account.add_leads(1, age_seconds=60)
        yield account


def echoing_gateway(account: LoopbackAccount, path: str, status: int, **fields: str) -> None:
    """The next request to ``path`` is answered by a gateway that echoes what it was sent.

    The worker then logs that answer (a retry, a failure) with the secret inside it.
    """
    account.fake.fail_next(
        status=status, body={"title": "Gateway", **fields}, path=path, method=None
    )


def test_once_at_debug_logs_json_lines_and_never_the_token(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    token = account.fake.long_lived_token
    echoing_gateway(
        account,
        "/api/v4/leads/pipelines",
        503,
        detail=f"upstream refused the request with Authorization: Bearer {token}",
    )
    finished = run_worker(
        ["once"], account.env(tmp_path / "state", SLA_LOG_LEVEL="DEBUG"), cwd=tmp_path
    )

    assert finished.code == 0, finished.stderr
    entries = check_output(finished, [token])
    events = names(entries)
    (retry,) = [entry for entry in entries if entry["event"] == "api_retry"]
    assert "upstream refused the request" in retry["error"]
    assert events.count("lead_written") == 3
    assert events.count("task_created") == 2
    assert events[-1] == "cycle_done"
    assert entries[-1]["leads_written"] == 3
    requests = [entry for entry in entries if entry["logger"] == "httpx"]
    assert requests, "DEBUG should show httpx's request lines"
    assert all(entry["event"].startswith("HTTP Request: ") for entry in requests)
    # The plan table is for people, on stdout; the logs stay on stderr.
    assert "SLA" in finished.stdout


def test_run_at_debug_logs_json_lines_from_start_to_shutdown(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        ["run"], account.env(tmp_path / "state", SLA_LOG_LEVEL="DEBUG"), cwd=tmp_path
    )
    worker.wait_for_event("cycle_done")
    worker.process.send_signal(signal.SIGINT)
    finished = worker.finish()

    assert finished.code == 0
    assert finished.stdout == ""
    entries = check_output(finished, [account.fake.long_lived_token])
    events = names(entries)
    own = [entry["event"] for entry in entries if entry["logger"].startswith(OWN_LOGGERS)]
    assert own[0] == "worker_started"
    assert events[-1] == "shutdown_complete"
    assert {"lead_written", "task_created", "cycle_done", "shutdown_requested"} <= set(events)
    assert any(entry["logger"].startswith("apscheduler") for entry in entries)
    assert any(entry["logger"] == "httpx" for entry in entries)


def tokens_in(state_dir: Path) -> list[str]:
    stored = json.loads((state_dir / "tokens.json").read_text())
    return [stored["access_token"], stored["refresh_token"]]


def test_oauth_code_tokens_and_client_secret_never_reach_the_output(tmp_path: Path) -> None:
    with loopback_account(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI
    ) as account:
        account.provision()
        account.add_leads(1, age_seconds=30 * DAY)
        state = tmp_path / "state"
        env = account.env(
            state,
            AMO_LONG_LIVED_TOKEN="",
            AMO_CLIENT_ID=CLIENT_ID,
            AMO_CLIENT_SECRET=CLIENT_SECRET,
            AMO_REDIRECT_URI=REDIRECT_URI,
            SLA_LOG_LEVEL="DEBUG",
        )
        code = account.fake.issue_authorization_code()
        secrets = [CLIENT_SECRET, account.fake.long_lived_token, code]

        echoing_gateway(
            account,
            "/oauth2/access_token",
            400,
            hint=f"code {code} rejected for client_secret {CLIENT_SECRET}",
        )
        refused = run_worker(["auth", "--code", code], env, cwd=tmp_path)
        assert refused.code == 2
        (failed,) = check_events(refused, secrets, "command_failed")
        assert "rejected for client_secret" in failed["error"]

        exchanged = run_worker(["auth", "--code", code], env, cwd=tmp_path)
        assert exchanged.code == 0, exchanged.stderr
        secrets += tokens_in(state)
        check_events(exchanged, secrets, "token_obtained")

        account.fake.expire_access_tokens()
        refreshed = run_worker(["once"], env, cwd=tmp_path)
        assert refreshed.code == 0, refreshed.stderr
        secrets += tokens_in(state)
        assert len(set(secrets)) == len(secrets) == 7
        check_events(refreshed, secrets, "token_refreshed")
        check_events(refreshed, secrets, "task_created")

        account.fake.expire_access_tokens()
        access, refresh = tokens_in(state)
        echoing_gateway(
            account,
            "/oauth2/access_token",
            401,
            hint=f"refresh_token {refresh} revoked; access token {access}; {CLIENT_SECRET}",
        )
        revoked = run_worker(["once"], env, cwd=tmp_path)
        assert revoked.code == 2
        (failed,) = check_events(revoked, secrets, "command_failed")
        assert "revoked; access token" in failed["error"]


def check_events(finished: Finished, secrets: list[str], name: str) -> list[dict[str, Any]]:
    found = [entry for entry in check_output(finished, secrets) if entry["event"] == name]
    assert found, finished.stderr
    return found


@pytest.mark.parametrize(
    ("args", "variables", "event"),
    [
        pytest.param(["once"], {"SLA_POLL_INTERVAL": "1"}, "config_invalid", id="bad-variable"),
        pytest.param(
            [], {"AMO_BASE_URL": "", "SLA_LOG_FORMAT": "json"}, "config_invalid", id="no-address"
        ),
        pytest.param(
            ["run"], {"SLA_STATE_DIR": "blocker/state"}, "command_failed", id="state-dir-blocked"
        ),
        pytest.param(["auth", "--code", "x" * 40], {}, "config_invalid", id="auth-without-oauth"),
    ],
)
def test_a_refusal_to_start_is_one_json_line_and_exit_2(
    tmp_path: Path, args: list[str], variables: dict[str, str], event: str
) -> None:
    (tmp_path / "blocker").write_text("a file where the state directory should be")
    with loopback_account() as account:
        env = account.env(tmp_path / "state", **variables)
        finished = run_worker(args, env, cwd=tmp_path)

    assert finished.code == 2
    assert finished.stdout == ""
    entries = check_output(finished, [account.fake.long_lived_token])
    assert [entry["event"] for entry in entries] == [event]
    assert entries[0]["level"] == "error"
