"""Fixtures the test modules share: a virtual clock, the fake amoCRM on it and the ways to reach
it, captured logs, clean environments for the worker's commands, and a slow loopback account.

The fake keeps amoCRM's 7 requests a second unless a module's ``fake_options`` mark gives it
other options (``pytestmark = pytest.mark.fake_options(max_requests_per_second=None)`` for the
fake's own tests, whose clients never wait). A module's own fixture of the same name wins over
one here: it builds something these do not.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from config.settings import Settings
from tests.client_kit import (
    BASE_URL,
    START,
    FakeClock,
    client_options,
    long_lived_client,
    make_fake,
)
from tests.fake_kit import CHANNELS, open_channel
from tests.live_account import LoopbackAccount, loopback_account
from tests.webhook_kit import SECRET
from worker import app
from worker.logs import configure_logging, forget_secrets, register_secret


@pytest.fixture
def clock() -> FakeClock:
    """Wall and monotonic time that move only when a test or a sleeping client moves them."""
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock, request: pytest.FixtureRequest) -> FakeAmoCRM:
    """A fake amoCRM on ``clock``: 7 requests a second, or the module's ``fake_options`` mark."""
    mark = request.node.get_closest_marker("fake_options")
    return make_fake(clock, **(mark.kwargs if mark else {}))


@pytest.fixture(params=CHANNELS)
def api(request: pytest.FixtureRequest, fake: FakeAmoCRM) -> Iterator[httpx.Client]:
    """A raw HTTP client of ``fake`` with its long-lived token, once through each way in."""
    with (
        open_channel(fake, request.param) as open_client,
        open_client(fake.long_lived_token) as client,
    ):
        yield client


@pytest.fixture
def support(fake: FakeAmoCRM) -> PipelineRef:
    """A support pipeline in ``fake``: «Новое», «В работе», «Ждём клиента»."""
    return fake.add_pipeline("Поддержка", ["Новое", "В работе", "Ждём клиента"])


@pytest.fixture
def agent(fake: FakeAmoCRM) -> int:
    """A user of ``fake`` who answers requests."""
    return fake.add_user("Оператор")


@pytest.fixture
def lead_id(fake: FakeAmoCRM, support: PipelineRef) -> int:
    """A request in ``support``, created ten minutes before the clock's start."""
    return fake.add_lead("Не работает вход", pipeline_id=support.id, created_at=START - 600)


@pytest.fixture
def amo(fake: FakeAmoCRM, clock: FakeClock) -> Iterator[AmoClient]:
    """The client of ``fake`` with its long-lived token, pacing itself on ``clock``."""
    with long_lived_client(fake, clock) as client:
        yield client


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Made-up answers for ``BASE_URL``, as a test routes them; each route must be called."""
    with respx.mock(base_url=BASE_URL) as mocked:
        yield mocked


@pytest.fixture
def mocked_amo(router: respx.MockRouter, clock: FakeClock) -> Iterator[AmoClient]:
    """The client of ``BASE_URL``, answered by ``router``, pacing itself on ``clock``."""
    with AmoClient(BASE_URL, LongLivedToken("long-lived"), **client_options(clock)) as client:
        yield client


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The structlog entries the test logged."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The JSON log lines the test wrote, the webhook secret registered to be hidden."""
    stream = io.StringIO()
    forget_secrets()
    register_secret(SECRET)
    configure_logging("json", "INFO", stream)
    yield stream
    forget_secrets()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is seen: no setting's variable, no stray .env."""
    _unset_settings(monkeypatch, tmp_path)


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A clean environment for the worker's commands, whose client paces on a virtual clock."""
    _unset_settings(monkeypatch, tmp_path)
    clock = FakeClock()
    original = app.build_client

    def paced(settings: Settings, **options: Any) -> AmoClient:
        return original(settings, sleep=clock.sleep, monotonic=clock.monotonic, **options)

    monkeypatch.setattr(app, "build_client", paced)
    handlers = list(logging.getLogger().handlers)
    yield
    # The commands route logs to the captured stderr; leave later tests the usual setup.
    for handler in logging.getLogger().handlers:
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)
    structlog.reset_defaults()


@pytest.fixture
def slow_account() -> Iterator[LoopbackAccount]:
    """A provisioned account on the loopback fake whose every write takes a second."""
    with loopback_account(write_delay=1.0) as account:
        account.provision()
        yield account


def _unset_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no .env there
