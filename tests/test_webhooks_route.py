"""The webhook route for every method, its body deadline, its neighbours, and the secret's
form."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from tests.asgi_kit import AsgiClient
from tests.webhook_kit import (
    FORM,
    SECRET,
    SUBDOMAIN,
    Triggers,
    amo_hook,
    rejections,
)
from worker.metrics import Metrics
from worker.webhooks import build_app

HOOK = amo_hook()


def app() -> AsgiClient:
    return AsgiClient(
        build_app(
            trigger=Triggers(),
            secret=SECRET,
            subdomain=SUBDOMAIN,
            metrics=Metrics(),
            serve_metrics=True,
        )
    )


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT"])
def test_an_unlisted_method_with_a_wrong_secret_is_a_logged_404(
    method: str, log_stream: io.StringIO
) -> None:
    with app() as client:
        response = client.request(method, "/amocrm/webhook/wrong")
    assert response.status_code == 404
    assert len(rejections(log_stream)) == 1


def test_the_metrics_page_with_a_trailing_slash_is_a_plain_404() -> None:
    with app() as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics/").status_code == 404
        assert client.get("/healthz/").status_code == 404


def test_a_hook_whose_body_takes_1_5_s_is_taken_since_amocrm_waits_2_s() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        data = HOOK.encode()
        half = len(data) // 2
        yield data[:half]
        await asyncio.sleep(1.5)
        yield data[half:]

    with app() as client:
        response = client.post(f"/amocrm/webhook/{SECRET}", content=trickle(), headers=FORM)
    assert response.status_code == 200


def test_a_405_for_the_right_secret_names_the_allowed_method() -> None:
    with app() as client:
        response = client.get(f"/amocrm/webhook/{SECRET}")
    assert response.status_code == 405
    assert response.headers.get("allow") == "POST"


def test_a_webhook_secret_with_a_trailing_newline_is_refused() -> None:
    from config.settings import Settings

    with pytest.raises(ValueError, match="24 characters"):
        Settings(sla_webhook_secret="a" * 24 + "\n", _env_file=None)
