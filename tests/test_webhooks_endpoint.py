"""The webhook endpoint on bad input: each refusal gets its documented answer, a log line with
the reason (never the secret), a metric, and triggers nothing."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.asgi_kit import AsgiClient
from tests.webhook_kit import FORM, SECRET, SUBDOMAIN, Triggers, amo_hook, rejections
from worker.metrics import Metrics
from worker.webhooks import MAX_BODY_BYTES, HttpServer, build_app, parse_form


@pytest.fixture
def triggers() -> Triggers:
    return Triggers()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(triggers: Triggers, metrics: Metrics) -> Iterator[AsgiClient]:
    app = build_app(
        trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN, metrics=metrics, serve_metrics=True
    )
    with AsgiClient(app) as test_client:
        yield test_client


def test_a_good_hook_is_answered_200_and_triggers_a_cycle(
    client: AsgiClient, triggers: Triggers, metrics: Metrics
) -> None:
    response = client.post(f"/amocrm/webhook/{SECRET}", content=amo_hook(), headers=FORM)

    assert response.status_code == 200
    assert triggers.count == 1
    assert metrics.value("amo_sla_webhooks_received_total") == 1


def test_charset_in_the_content_type_is_fine(client: AsgiClient, triggers: Triggers) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    response = client.post(f"/amocrm/webhook/{SECRET}", content=amo_hook(), headers=headers)
    assert response.status_code == 200
    assert triggers.count == 1


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/amocrm/webhook/" + "s3cret-" + "y" * 30, amo_hook(), "wrong_secret"),
        ("/amocrm/webhook/" + SECRET[:-1], amo_hook(), "wrong_secret"),
        ("/amocrm/webhook/" + SECRET, amo_hook(subdomain="rival"), "other_account"),
    ],
    ids=["wrong_secret", "secret_prefix", "other_subdomain"],
)
def test_a_wrong_secret_or_another_account_gets_404_and_nothing_runs(
    *,
    client: AsgiClient,
    triggers: Triggers,
    metrics: Metrics,
    log_stream: io.StringIO,
    path: str,
    body: str,
    reason: str,
) -> None:
    response = client.post(path, content=body, headers=FORM)

    assert response.status_code == 404
    assert triggers.count == 0
    (line,) = rejections(log_stream)
    assert line["reason"] == reason
    assert line["status"] == 404
    assert SECRET not in log_stream.getvalue()
    assert metrics.value("amo_sla_webhooks_rejected_total", {"reason": reason}) == 1
    assert metrics.value("amo_sla_webhooks_received_total") == 0


def test_no_path_without_a_secret_and_no_get(client: AsgiClient, triggers: Triggers) -> None:
    assert client.post("/amocrm/webhook/", content=amo_hook(), headers=FORM).status_code == 404
    assert client.post("/amocrm/webhook", content=amo_hook(), headers=FORM).status_code == 404
    assert client.get(f"/amocrm/webhook/{SECRET}").status_code == 405
    assert triggers.count == 0


def test_a_5_mb_body_gets_413(
    client: AsgiClient, triggers: Triggers, log_stream: io.StringIO
) -> None:
    body = amo_hook() + "&leads[note][0][note][text]=" + "a" * (5 * 1024 * 1024)

    response = client.post(f"/amocrm/webhook/{SECRET}", content=body, headers=FORM)

    assert response.status_code == 413
    assert triggers.count == 0
    (line,) = rejections(log_stream)
    assert line["reason"] == "too_large"


def test_a_body_over_the_cap_without_a_declared_length_gets_413(
    client: AsgiClient, triggers: Triggers
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield amo_hook().encode()
        for _ in range(5):
            yield b"&x=" + b"a" * (MAX_BODY_BYTES // 4)

    response = client.post(f"/amocrm/webhook/{SECRET}", content=chunks(), headers=FORM)

    assert response.status_code == 413
    assert triggers.count == 0


def test_a_body_just_under_the_cap_is_fine(client: AsgiClient, triggers: Triggers) -> None:
    body = amo_hook() + "&leads[note][0][note][text]="
    body += "a" * (MAX_BODY_BYTES - len(body))
    assert len(body) == MAX_BODY_BYTES

    response = client.post(f"/amocrm/webhook/{SECRET}", content=body, headers=FORM)

    assert response.status_code == 200
    assert triggers.count == 1


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (amo_hook()[: len(amo_hook()) - 25].encode(), FORM, "malformed"),
        ("leads[status][0][id]=1&account[subdomain]=пример".encode("cp1251"), FORM, "not_utf8"),
        (amo_hook().encode() + b"&leads[note][0][note][text]=%C0%AF", FORM, "not_utf8"),
        (
            json.dumps({"account": {"subdomain": SUBDOMAIN}}).encode(),
            {"Content-Type": "application/json"},
            "not_form",
        ),
        (json.dumps({"account": {"subdomain": SUBDOMAIN}}).encode(), FORM, "malformed"),
        (b"", FORM, "empty"),
        (b"leads[status][0][id]=1", FORM, "no_account"),
        (b"leads[status=1&account[subdomain]=example", FORM, "malformed"),
    ],
    ids=[
        "truncated",
        "cp1251",
        "percent_encoded_non_utf8",
        "json",
        "json_labelled_as_form",
        "empty",
        "no_account",
        "broken_key",
    ],
)
def test_a_malformed_body_gets_400_and_a_log_line(
    *,
    client: AsgiClient,
    triggers: Triggers,
    metrics: Metrics,
    log_stream: io.StringIO,
    body: bytes,
    headers: dict[str, str],
    reason: str,
) -> None:
    response = client.post(f"/amocrm/webhook/{SECRET}", content=body, headers=headers)

    assert response.status_code == 400
    assert triggers.count == 0
    (line,) = rejections(log_stream)
    assert line["reason"] == reason
    assert line["level"] == "warning"
    assert SECRET not in log_stream.getvalue()
    assert metrics.value("amo_sla_webhooks_rejected_total", {"reason": reason}) == 1


def test_the_truncated_subdomain_is_another_account(client: AsgiClient, triggers: Triggers) -> None:
    body = amo_hook()[:-2]  # "account%5Bsubdomain%5D=examp"
    response = client.post(f"/amocrm/webhook/{SECRET}", content=body, headers=FORM)
    assert response.status_code == 404
    assert triggers.count == 0


def test_parse_form_keeps_amocrm_keys() -> None:
    pairs = parse_form(amo_hook().encode())
    assert ("leads[status][0][id]", "30000001") in pairs
    assert ("account[subdomain]", SUBDOMAIN) in pairs


def test_metrics_and_healthz_are_served(client: AsgiClient) -> None:
    client.post(f"/amocrm/webhook/{SECRET}", content=amo_hook(), headers=FORM)

    page = client.get("/metrics")
    health = client.get("/healthz")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert "amo_sla_webhooks_received_total 1.0" in page.text
    assert "amo_sla_cycles_total" in page.text
    assert health.status_code == 200


def test_without_a_secret_there_is_no_webhook_route(triggers: Triggers) -> None:
    app = build_app(trigger=triggers, metrics=Metrics(), serve_metrics=True)
    with AsgiClient(app) as client:
        response = client.post(f"/amocrm/webhook/{SECRET}", content=amo_hook(), headers=FORM)
        assert response.status_code == 404
        assert client.get("/metrics").status_code == 200
    assert triggers.count == 0


def test_without_metrics_there_is_no_metrics_page(triggers: Triggers) -> None:
    app = build_app(trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN)
    with AsgiClient(app) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200


def test_the_server_listens_on_loopback_and_stops(triggers: Triggers) -> None:
    app = build_app(trigger=triggers, secret=SECRET, subdomain=SUBDOMAIN)
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        answer = httpx.post(
            f"{server.url}/amocrm/webhook/{SECRET}", content=amo_hook(), headers=FORM
        )
    finally:
        server.stop()
    assert answer.status_code == 200
    assert triggers.count == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_a_taken_address_is_an_error_at_start(triggers: Triggers) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        server = HttpServer(build_app(trigger=triggers), "127.0.0.1", port)
        with pytest.raises(OSError, match="could not listen"):
            server.start()
