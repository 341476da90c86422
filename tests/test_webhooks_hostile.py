"""The webhook endpoint under hostile or unlucky requests: anything under its prefix
without the secret is a logged 404, whatever the method or tail; a body cut off or stalled
is a logged refusal, never an error, and never holds up a shutdown."""

from __future__ import annotations

import io
import re
import socket
import time
from pathlib import Path

import pytest

from tests.asgi_kit import AsgiClient
from tests.webhook_kit import (
    FORM,
    SECRET,
    SUBDOMAIN,
    Triggers,
    amo_hook,
    lines,
    rejections,
)
from worker.metrics import Metrics
from worker.webhooks import HttpServer, build_app

HOOK = amo_hook()


def errors(stream: io.StringIO) -> list[dict[str, object]]:
    return [line for line in lines(stream) if line.get("level") == "error"]


def test_a_wrong_secret_with_a_trailing_slash_gets_404_and_a_rejection_line(
    log_stream: io.StringIO,
) -> None:
    triggers, metrics = Triggers(), Metrics()
    app = build_app(trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN, metrics=metrics)
    with AsgiClient(app) as client:
        response = client.post("/amocrm/webhook/not-the-secret/", content=HOOK, headers=FORM)
    assert triggers.count == 0
    assert response.status_code == 404, (response.status_code, response.headers)
    assert [r["reason"] for r in rejections(log_stream)] == ["wrong_secret"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_other_methods_with_a_wrong_secret_get_404_and_a_rejection_line(
    log_stream: io.StringIO, method: str
) -> None:
    triggers = Triggers()
    app = build_app(trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN, metrics=Metrics())
    with AsgiClient(app) as client:
        response = client.request(method, "/amocrm/webhook/not-the-secret")
    assert triggers.count == 0
    assert response.status_code == 404, (response.status_code, response.headers)
    assert [r["reason"] for r in rejections(log_stream)] == ["wrong_secret"]


def _serve(triggers: Triggers) -> HttpServer:
    app = build_app(trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN, metrics=Metrics())
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    return server


def _stalled_post(port: int, declared: int = 10_000) -> socket.socket:
    """A hook with the right secret whose body never arrives whole."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /amocrm/webhook/{SECRET} HTTP/1.1\r\nHost: worker\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"leads[status][0][id]=1")
    return sock


def test_a_hook_cut_off_mid_body_is_a_rejection_not_an_error_traceback(
    log_stream: io.StringIO,
) -> None:
    triggers = Triggers()
    server = _serve(triggers)
    try:
        sock = _stalled_post(server.port)
        time.sleep(0.3)
        sock.close()
        time.sleep(0.5)
    finally:
        server.stop()
    assert triggers.count == 0
    assert errors(log_stream) == [], [e["event"] for e in errors(log_stream)]
    assert len(rejections(log_stream)) == 1


def test_a_stalled_hook_does_not_make_the_shutdown_log_errors(log_stream: io.StringIO) -> None:
    triggers = Triggers()
    server = _serve(triggers)
    sock = _stalled_post(server.port)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    finally:
        sock.close()
    assert errors(log_stream) == [], [e["event"] for e in errors(log_stream)]
    assert took < 2.0, took


def test_the_readme_names_every_reason_a_webhook_is_refused_for() -> None:
    """The reasons in the code (each `_Refused` and `BadForm`) are the README's metric
    labels, no more and no fewer."""
    root = Path(__file__).resolve().parent.parent
    source = (root / "worker" / "webhooks.py").read_text(encoding="utf-8")
    in_code = set(re.findall(r'_Refused\(\d+, "(\w+)"', source)) | set(
        re.findall(r'BadForm\("(\w+)"\)', source)
    )
    row = next(
        line
        for line in (root / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `webhooks_rejected_total{reason}`")
    )
    in_readme = set(re.findall(r"`(\w+)`", row.split("refused:", 1)[1]))
    assert len(in_code) >= 10
    assert in_readme == in_code
