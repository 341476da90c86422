"""Fixtures shared by the client tests; a test module's own fixture of the same name wins."""

from __future__ import annotations

import pytest

from amo_client.fake import FakeAmoCRM
from tests.client_kit import FakeClock, make_fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeAmoCRM:
    return make_fake(clock)
