"""Fixtures the test modules share: a virtual clock, the fake amoCRM on it and the ways to reach it.

The fake keeps amoCRM's 7 requests a second unless a module's ``fake_options`` mark gives it
other options (``pytestmark = pytest.mark.fake_options(max_requests_per_second=None)`` for the
fake's own tests, whose clients never wait). A module's own fixture of the same name wins over
one here: it builds something these do not.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, PipelineRef
from tests.client_kit import (
    BASE_URL,
    START,
    FakeClock,
    client_options,
    long_lived_client,
    make_fake,
)
from tests.fake_kit import CHANNELS, open_channel


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
