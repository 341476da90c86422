"""The logging pipeline: JSON lines when piped, console on a terminal, secrets never shown."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from worker.logs import (
    MASK,
    configure_logging,
    forget_secrets,
    redact_event,
    redact_text,
    register_secret,
)

ROOT = Path(__file__).resolve().parent.parent

# Registered by the script below, as the CLI registers the configured credentials.
LONG_LIVED_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhbW8tc2xhIn0.c2lnbmF0dXJl"
CLIENT_SECRET = "Zq8vK2mN5pR7tW1xY4bC6dF9gH3jL0sA"
# Never registered: the patterns alone must catch them.
REFRESH_TOKEN = "def50200a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
ACCESS_TOKEN_IN_URL = "unregistered-access-4242"
OPAQUE_BEARER = "opaque-bearer-7d1c9e"
AUTH_CODE = "def50200" + "9f" * 40
PASSWORD = "hunter2-pass"
SECRETS = (
    LONG_LIVED_TOKEN,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    ACCESS_TOKEN_IN_URL,
    OPAQUE_BEARER,
    AUTH_CODE,
    PASSWORD,
)

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time
    import httpx, structlog
    from apscheduler.schedulers.background import BackgroundScheduler
    from worker.logs import configure_logging, register_secret

    LEVEL, TOKEN, CLIENT_SECRET, REFRESH, ACCESS, BEARER, CODE, PASSWORD = sys.argv[1:]
    configure_logging(format="auto", level=LEVEL, stream=sys.stderr)
    register_secret(TOKEN)
    register_secret(CLIENT_SECRET)
    log = structlog.get_logger("tests.script")

    log.info("plain_event", lead_id=1, note="Просрочено")
    log.info("headers_logged", headers={"Authorization": f"Bearer {TOKEN}", "X-Other": "ok"})
    log.warning(
        "token_request_failed",
        url=f"https://x.amocrm.ru/oauth2/access_token?client_secret={CLIENT_SECRET}&code={CODE}",
        body=json.dumps({"refresh_token": REFRESH, "access_token": TOKEN, "code": CODE}),
    )
    log.info("header_text", detail=f"sent Authorization: Bearer {BEARER}")
    log.info("nested", auth={"password": PASSWORD, "items": [{"refresh_token": REFRESH}]})
    log.info(f"event name carrying {CLIENT_SECRET}", client_secret=CLIENT_SECRET)
    try:
        raise RuntimeError(f"401 for token {TOKEN} and secret {CLIENT_SECRET}")
    except RuntimeError as error:
        log.exception("cycle_failed", error=str(error), error_repr=error)

    def respond(request):
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(respond)) as client:
        client.get(
            f"https://x.amocrm.ru/api/v4/leads?access_token={ACCESS}&page=2",
            headers={"Authorization": f"Bearer {BEARER}"},
        )

    def failing_job():
        raise ValueError(f"job saw {CLIENT_SECRET} and Bearer {BEARER}")

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    scheduler.add_job(failing_job, id="failing")
    time.sleep(0.5)
    scheduler.shutdown()
    logging.getLogger("some.library").warning("form body password=%s sent", PASSWORD)
    print("stdout stays clean")
    """
)


def run_script(level: str) -> tuple[list[dict[str, Any]], str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, level, *SECRETS[:2], *SECRETS[2:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    everything = result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in everything, f"{secret} leaked"
    assert result.stdout == "stdout stays clean\n"
    lines = result.stderr.splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert isinstance(entry, dict)
        assert {"event", "level", "timestamp", "logger"} <= entry.keys()
        stamp = datetime.fromisoformat(entry["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
    return entries, result.stderr


def by_logger(entries: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["logger"].startswith(prefix)]


def test_piped_debug_output_is_json_lines_without_secrets() -> None:
    entries, _ = run_script("DEBUG")

    plain = next(entry for entry in entries if entry["event"] == "plain_event")
    assert plain["level"] == "info"
    assert plain["logger"] == "tests.script"
    assert plain["note"] == "Просрочено"
    headers = next(entry for entry in entries if entry["event"] == "headers_logged")
    assert headers["headers"] == {"Authorization": MASK, "X-Other": "ok"}
    failed = next(entry for entry in entries if entry["event"] == "cycle_failed")
    assert failed["level"] == "error"
    assert f"RuntimeError: 401 for token {MASK} and secret {MASK}" in failed["exception"]
    # httpx's own request line comes through the pipeline at DEBUG, its query masked.
    (request_line,) = [e for e in by_logger(entries, "httpx") if "HTTP Request" in e["event"]]
    assert f"access_token={MASK}&page=2" in request_line["event"]
    assert request_line["level"] == "info"
    scheduler_lines = by_logger(entries, "apscheduler")
    assert any(entry["level"] == "info" for entry in scheduler_lines)
    job_error = next(entry for entry in scheduler_lines if "raised an exception" in entry["event"])
    assert f"ValueError: job saw {MASK} and Bearer {MASK}" in job_error["exception"]
    foreign = by_logger(entries, "some.library")[0]
    assert foreign["event"] == f"form body password={MASK} sent"


def test_piped_info_output_keeps_library_chatter_out() -> None:
    entries, _ = run_script("INFO")

    assert {"plain_event", "headers_logged", "cycle_failed"} <= {e["event"] for e in entries}
    assert not by_logger(entries, "httpx")
    assert not by_logger(entries, "httpcore")
    scheduler_lines = by_logger(entries, "apscheduler")
    assert [entry["level"] for entry in scheduler_lines] == ["error"]  # the failing job only


# --- in-process: console rendering and the redaction rules ------------------------------------
@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "apscheduler")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in libraries.items():
        logging.getLogger(name).setLevel(library_level)
    structlog.configure(**config)
    forget_secrets()


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_readable_console_lines() -> None:
    stream = TerminalStream()
    configure_logging(stream=stream)
    register_secret(CLIENT_SECRET)
    structlog.get_logger("worker.demo").info(
        "console_event", lead_id=7, client_secret=CLIENT_SECRET, note=f"has {CLIENT_SECRET}"
    )

    output = stream.getvalue()
    assert "console_event" in output
    assert "lead_id" in output
    assert CLIENT_SECRET not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


@pytest.mark.parametrize(
    ("log_format", "stream_type", "is_json"),
    [
        ("json", TerminalStream, True),
        ("console", io.StringIO, False),
        ("auto", io.StringIO, True),
    ],
)
def test_the_format_can_be_forced(
    log_format: str, stream_type: type[io.StringIO], is_json: bool
) -> None:
    stream = stream_type()
    configure_logging(format=log_format, stream=stream)
    structlog.get_logger("worker.demo").warning("forced", n=1)

    line = stream.getvalue().splitlines()[0]
    if is_json:
        assert json.loads(line)["event"] == "forced"
    else:
        assert "forced" in line
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_configuring_again_replaces_the_handler_and_honours_the_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(format="json", level="DEBUG", stream=first)
    configure_logging(format="json", level="WARNING", stream=second)
    log = structlog.get_logger("worker.demo")
    log.info("dropped")
    log.warning("kept")

    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["kept"]


@pytest.mark.parametrize(
    ("log_format", "level"), [("xml", "INFO"), ("json", "LOUD")], ids=["format", "level"]
)
def test_bad_settings_are_refused(log_format: str, level: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(format=log_format, level=level, stream=io.StringIO())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {MASK}"),
        ("{'authorization': 'Bearer xyz123'}", f"{{'authorization': '{MASK}'}}"),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNz'", f"curl -H 'Authorization: {MASK}'"),
        ("token expired, got Bearer abc123 back", f"token expired, got Bearer {MASK} back"),
        (
            "GET https://a.amocrm.ru/api/v4/leads?access_token=tok&page=2",
            f"GET https://a.amocrm.ru/api/v4/leads?access_token={MASK}&page=2",
        ),
        (
            "grant_type=refresh_token&refresh_token=def5&client_secret=s3",
            f"grant_type=refresh_token&refresh_token={MASK}&client_secret={MASK}",
        ),
        (
            '{"access_token": "a1", "expires_in": 86400, "token_type": "Bearer"}',
            f'{{"access_token": "{MASK}", "expires_in": 86400, "token_type": "Bearer"}}',
        ),
        ('{\\"password\\": \\"p\\"}', f'{{\\"password\\": \\"{MASK}\\"}}'),
        (f"code={'c' * 50}", f"code={MASK}"),
        (f'{{"code": "{"c" * 50}"}}', f'{{"code": "{MASK}"}}'),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl ok", f"{MASK} ok"),
    ],
)
def test_secret_fragments_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "token_refreshed",
        "status_code=400",
        "code=200",
        '{"code": "NotSupportedChoice", "path": "custom_fields_values.0"}',
        "leads_written=3 next_change_at=2025-03-03T12:00:00+03:00",
        "{'token_type': 'Bearer', 'expires_in': 86400}",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_registered_secrets_are_masked_in_every_encoding() -> None:
    secret = 'p@ss/w0rd+"x"'
    register_secret(secret)
    register_secret("abc")  # too short to register: masking it would wreck the logs
    assert redact_text(f"raw {secret} json {json.dumps(secret)} abc") == (
        f'raw {MASK} json "{MASK}" abc'
    )
    assert redact_text("form p%40ss%2Fw0rd%2B%22x%22 and p%40ss%2Fw0rd%2B%22x%22") == (
        f"form {MASK} and {MASK}"
    )
    forget_secrets()
    assert redact_text(secret) == secret


def test_redact_event_masks_keys_and_values() -> None:
    class Credentials:
        def __repr__(self) -> str:
            return f"Credentials(client_secret={CLIENT_SECRET})"

    event = redact_event(
        None,
        "info",
        {
            "event": "x",
            "Authorization": "Bearer abc",
            "amo_long_lived_token": "anything",
            "code": "NotSupportedChoice",
            "errors": [{"code": "FieldMissing", "access_token": "zzz"}],
            "credentials": Credentials(),
            "count": 3,
            "_record": "untouched",
        },
    )
    assert event == {
        "event": "x",
        "Authorization": MASK,
        "amo_long_lived_token": MASK,
        "code": "NotSupportedChoice",
        "errors": [{"code": "FieldMissing", "access_token": MASK}],
        "credentials": f"Credentials(client_secret={MASK})",
        "count": 3,
        "_record": "untouched",
    }


def test_the_services_oauth_tokens_share_the_file_lock_and_the_bounded_log_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from amo_client.auth import FileTokenStore, OAuthTokens, TokenPair
    from config.settings import Settings
    from worker.app import credentials
    from worker.logs import secrets

    monkeypatch.chdir(tmp_path)
    for name, value in {
        "AMO_SUBDOMAIN": "example",
        "AMO_CLIENT_ID": "client-id",
        "AMO_CLIENT_SECRET": "client-secret-value",
        "AMO_REDIRECT_URI": "https://example.com/oauth",
        "SLA_PIPELINE": "Техподдержка",
        "SLA_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(name, value)
    forget_secrets()
    tokens = credentials(Settings())
    assert isinstance(tokens, OAuthTokens)
    # The store itself, not a wrapper: a refresh takes its file lock and re-reads it.
    assert isinstance(tokens.store, FileTokenStore)
    assert tokens.secrets is secrets()
    for number in range(100):
        tokens.secrets.add_pair(TokenPair(f"access-{number:04}", f"refresh-{number:04}", 1e10))
    assert redact_text("access-0099 refresh-0099 client-secret-value") == "*** *** ***"
    assert redact_text("access-0000") == "access-0000"
    assert len(secrets().values()) == 1 + 2 * 4
