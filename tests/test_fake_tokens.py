"""Two holders of one OAuth token pair (two workers, or a worker and a script) against the fake
amoCRM: a refresh token is spent by its first use, and what happens to the other holder's
access token depends on ``revoke_access_on_refresh``. By both ways in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from amo_client.fake import FakeAmoCRM
from tests.client_kit import START, FakeClock, make_fake
from tests.fake_kit import CHANNELS, open_channel

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait

Open = Callable[[str | None], httpx.Client]


@pytest.fixture(params=CHANNELS)
def channel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def refresh(open_client: Open, fake: FakeAmoCRM, refresh_token: str) -> httpx.Response:
    body = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "redirect_uri": fake.redirect_uri,
    }
    with open_client(None) as anonymous:
        return anonymous.post("/oauth2/access_token", json=body)


def status_with(open_client: Open, access_token: str) -> int:
    with open_client(access_token) as http:
        return http.get("/api/v4/account").status_code


@pytest.fixture
def strict(fake: FakeAmoCRM, channel: str) -> Iterator[tuple[FakeAmoCRM, Open]]:
    with open_channel(fake, channel) as open_client:
        yield fake, open_client


def test_the_second_holder_finds_the_refresh_token_spent_and_its_access_token_revoked(
    strict: tuple[FakeAmoCRM, Open],
) -> None:
    fake, open_client = strict
    pair = fake.issue_token_pair()
    shared: dict[str, Any] = {"access": pair.access_token, "refresh": pair.refresh_token}
    holder_b = dict(shared)

    first = refresh(open_client, fake, shared["refresh"])
    assert first.status_code == 200
    shared.update(access=first.json()["access_token"], refresh=first.json()["refresh_token"])

    second = refresh(open_client, fake, holder_b["refresh"])
    assert second.status_code == 400
    assert second.json()["hint"] == "Token has been revoked"
    assert status_with(open_client, holder_b["access"]) == 401
    assert status_with(open_client, shared["access"]) == 200
    assert fake.refresh_reuse_attempts == 1


def test_kept_access_tokens_serve_the_other_holder_until_they_expire(
    clock: FakeClock, channel: str
) -> None:
    fake = make_fake(
        clock,
        max_requests_per_second=None,
        revoke_access_on_refresh=False,
        access_token_lifetime=3600,
    )
    with open_channel(fake, channel) as open_client:
        pair = fake.issue_token_pair()
        clock.wall = START + 600
        renewed = refresh(open_client, fake, pair.refresh_token)
        assert renewed.status_code == 200
        assert status_with(open_client, pair.access_token) == 200
        assert refresh(open_client, fake, pair.refresh_token).status_code == 400
        clock.wall = START + 3600
        assert status_with(open_client, pair.access_token) == 401
        assert status_with(open_client, renewed.json()["access_token"]) == 200


def test_two_holders_refreshing_at_once_get_one_pair_between_them(
    strict: tuple[FakeAmoCRM, Open],
) -> None:
    fake, open_client = strict
    pair = fake.issue_token_pair()
    codes: list[int] = []
    lock = threading.Lock()

    def holder() -> None:
        code = refresh(open_client, fake, pair.refresh_token).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=holder) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 400]
    assert [grant.issued for grant in fake.token_grants].count(True) == 1
