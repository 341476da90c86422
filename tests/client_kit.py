"""Shared pieces of the AmoClient tests: a fake clock, a seeded fake amoCRM, client builders.

The clock is virtual: ``sleep`` advances it instead of waiting, so the client's rate limiter
and retry backoff run at full speed while the fake amoCRM, reading the same clock, still sees
requests spread over time exactly as the client spaced them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from amo_client.auth import LongLivedToken, MemoryTokenStore, OAuthApp, OAuthTokens, TokenPair
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM

START = 1_700_000_000.0
BASE_URL = "https://example.amocrm.ru"


@dataclass
class FakeClock:
    """Wall and monotonic time that move only when someone sleeps (or calls :meth:`advance`)."""

    wall: float = START
    mono: float = 100.0
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def time(self) -> float:
        with self._lock:
            return self.wall

    def monotonic(self) -> float:
        with self._lock:
            return self.mono

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.advance_locked(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.advance_locked(seconds)

    def advance_locked(self, seconds: float) -> None:
        self.wall += max(seconds, 0.0)
        self.mono += max(seconds, 0.0)


def make_fake(clock: FakeClock, **options: Any) -> FakeAmoCRM:
    options.setdefault("max_requests_per_second", 7.0)
    return FakeAmoCRM(clock=clock.time, monotonic=clock.monotonic, **options)


def client_options(clock: FakeClock, **options: Any) -> dict[str, Any]:
    options.setdefault("sleep", clock.sleep)
    options.setdefault("monotonic", clock.monotonic)
    options.setdefault("clock", clock.time)
    return options


def long_lived_client(fake: FakeAmoCRM, clock: FakeClock, **options: Any) -> AmoClient:
    return AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=options.pop("transport", fake.transport),
        **client_options(clock, **options),
    )


def oauth_app(fake: FakeAmoCRM) -> OAuthApp:
    return OAuthApp(fake.client_id, fake.client_secret, fake.redirect_uri)


def seeded_pair(fake: FakeAmoCRM, clock: FakeClock) -> TokenPair:
    """A pair as if the integration had just been authorised."""
    issued = fake.issue_token_pair()
    return TokenPair(issued.access_token, issued.refresh_token, clock.time() + issued.expires_in)


def oauth_client(
    fake: FakeAmoCRM,
    clock: FakeClock,
    store: MemoryTokenStore | None = None,
    **options: Any,
) -> tuple[AmoClient, MemoryTokenStore]:
    store = store if store is not None else MemoryTokenStore(seeded_pair(fake, clock))
    tokens = OAuthTokens(oauth_app(fake), store, clock=clock.time)
    client = AmoClient(
        fake.base_url,
        tokens,
        transport=options.pop("transport", fake.transport),
        **client_options(clock, **options),
    )
    return client, store


class Tap(httpx.BaseTransport):
    """A transport in front of another that lets a test look at (or hold) each request."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        before: Callable[[httpx.Request], None] | None = None,
        after: Callable[[httpx.Request, httpx.Response], None] | None = None,
    ) -> None:
        self.inner = inner
        self.before = before
        self.after = after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.before is not None:
            self.before(request)
        response = self.inner.handle_request(request)
        if self.after is not None:
            self.after(request, response)
        return response


def bearer(request: httpx.Request) -> str | None:
    header: str | None = request.headers.get("authorization")
    if header is None:
        return None
    return header.removeprefix("Bearer ")
