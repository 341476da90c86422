"""No token, client secret or authorization code in any log line or exception text.

The logs are captured raw, before any redacting processor could hide a leak: what the
client and httpx emit must be clean by itself. The secrets checked are the real values
of the run (every pair the fake issued, the app's secret, the codes).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from structlog.testing import capture_logs

from amo_client.auth import LongLivedToken, MemoryTokenStore, OAuthApp, OAuthTokens, TokenPair
from amo_client.client import AmoClient
from amo_client.errors import AmoError
from amo_client.fake import FakeAmoCRM
from amo_client.redaction import KEEP_PAIRS, SecretRegistry
from tests.client_kit import FakeClock, client_options, make_fake, seeded_pair

CLIENT_SECRET = "cs-Zq8WlV3nT0pXr5kYb2Hj9sMd4Fg7Ce1Ua6Io0Py"

pytestmark = pytest.mark.fake_options(client_secret=CLIENT_SECRET)


class Run:
    """Every log line and exception of a sequence of calls, and every secret they involved."""

    def __init__(self, fake: FakeAmoCRM, store: MemoryTokenStore) -> None:
        self.fake = fake
        self.store = store
        self.secrets: set[str] = {CLIENT_SECRET, fake.long_lived_token}
        self.errors: list[BaseException] = []

    def expect_error(self, call: Callable[[], object]) -> None:
        try:
            call()
        except AmoError as error:
            self.errors.append(error)
        else:
            raise AssertionError("the call was expected to fail")

    def all_secrets(self) -> set[str]:
        found = set(self.secrets)
        for pair in self.store.saved:
            found |= {pair.access_token, pair.refresh_token}
        if self.store.pair is not None:
            found |= {self.store.pair.access_token, self.store.pair.refresh_token}
        return found

    def error_texts(self) -> list[str]:
        texts = []
        for error in self.errors:
            texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        return texts


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[list[Any]]:
    caplog.set_level(logging.DEBUG)
    # A logging set-up left by another test may hold these back at WARNING.
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    with capture_logs() as logs:
        yield logs


def texts_of(structured: list[Any], caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [repr(entry) for entry in structured]
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append("".join(traceback.format_exception(*record.exc_info)))
    return lines


def assert_clean(texts: list[str], secrets: set[str]) -> None:
    assert secrets
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:200]}"


def test_oauth_exchange_refresh_and_failures_leak_nothing(
    fake: FakeAmoCRM,
    clock: FakeClock,
    captured: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryTokenStore()
    app = OAuthApp(fake.client_id, CLIENT_SECRET, fake.redirect_uri)
    tokens = OAuthTokens(app, store, clock=clock.time)
    amo = AmoClient(fake.base_url, tokens, transport=fake.transport, **client_options(clock))
    run = Run(fake, store)

    code = fake.issue_authorization_code()
    run.secrets.add(code)
    amo.exchange_code(code)
    run.expect_error(lambda: amo.exchange_code(code))  # a code works once
    amo.account()

    fake.expire_access_tokens()  # refresh after a 401
    amo.account()
    clock.advance(86400 - 10)  # refresh ahead of expiry, through a 429 on the token endpoint
    fake.fail_next(1, status=429, path="/oauth2/access_token")
    amo.account()

    fake.expire_access_tokens()
    fake.fail_next(1, status=503, path="/oauth2/access_token")
    run.expect_error(amo.account)  # the refresh POST is not retried on a 5xx
    fake.timeout_next(1, path="/oauth2/access_token")
    run.expect_error(amo.account)  # nor on a timeout

    fake.revoke_tokens()
    run.expect_error(amo.account)  # revoked: authorise again
    run.expect_error(amo.account)  # refused before it is sent

    wrong_app = OAuthApp(fake.client_id, CLIENT_SECRET + "-old", fake.redirect_uri)
    wrong_store = MemoryTokenStore(seeded_pair(fake, clock))
    assert wrong_store.pair is not None
    run.secrets |= {
        CLIENT_SECRET + "-old",
        wrong_store.pair.access_token,
        wrong_store.pair.refresh_token,
    }
    wrong = AmoClient(
        fake.base_url,
        OAuthTokens(wrong_app, wrong_store, clock=clock.time),
        transport=fake.transport,
        **client_options(clock),
    )
    fake.expire_access_tokens()
    run.expect_error(wrong.account)  # the secret itself is refused

    events = [entry["event"] for entry in captured]
    assert {"token_obtained", "token_refreshed", "api_rate_limited"} <= set(events)
    assert len(run.errors) == 6
    assert_clean(texts_of(captured, caplog) + run.error_texts(), run.all_secrets())


def test_long_lived_token_failures_leak_nothing(
    fake: FakeAmoCRM,
    clock: FakeClock,
    captured: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    amo = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        **client_options(clock, max_attempts=2),
    )
    run = Run(fake, MemoryTokenStore())
    fake.fail_next(2, status=502)
    run.expect_error(amo.account)
    fake.block_account()
    run.expect_error(amo.account)
    run.expect_error(amo.account)
    fake.block_account(False)
    fake.revoke_tokens()
    clock.advance(10_000)
    run.expect_error(amo.account)
    assert {"api_retry", "api_blocked"} <= {entry["event"] for entry in captured}
    assert "issue a new long-lived token" in str(run.errors[-1])
    assert_clean(texts_of(captured, caplog) + run.error_texts(), run.all_secrets())


def test_a_refresh_over_real_http_leaks_nothing_into_httpx_debug_logs(
    clock: FakeClock, captured: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake(clock, client_secret=CLIENT_SECRET, max_requests_per_second=None)
    store = MemoryTokenStore(seeded_pair(fake, clock))
    app = OAuthApp(fake.client_id, CLIENT_SECRET, fake.redirect_uri)
    with fake.serve() as server:
        amo = AmoClient(
            server.url, OAuthTokens(app, store, clock=clock.time), **client_options(clock)
        )
        with amo:
            amo.account()
            fake.expire_access_tokens()
            amo.account()
    run = Run(fake, store)
    assert any(record.name.startswith(("httpx", "httpcore")) for record in caplog.records)
    assert len(store.saved) == 1
    assert_clean(texts_of(captured, caplog), run.all_secrets())


# ---------------------------------------------------------------- the registry of secrets


def test_a_hundred_refreshes_leave_the_registry_bounded_and_the_current_pair_masked(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    registry = SecretRegistry()
    store = MemoryTokenStore(seeded_pair(fake, clock))
    app = OAuthApp(fake.client_id, CLIENT_SECRET, fake.redirect_uri)
    tokens = OAuthTokens(app, store, clock=clock.time, secrets=registry)
    amo = AmoClient(fake.base_url, tokens, transport=fake.transport, **client_options(clock))
    for round_number in range(100):
        if round_number % 2:
            fake.expire_access_tokens()
        else:
            clock.advance(86400 - 60)
        amo.account()

    assert len(store.saved) == 100
    recent = store.saved[-KEEP_PAIRS:]
    assert registry.values() == {CLIENT_SECRET} | {
        token for pair in recent for token in (pair.access_token, pair.refresh_token)
    }
    assert store.saved[0].refresh_token not in registry.values()
    current = store.saved[-1]
    line = (
        f"sent {current.access_token} and "
        f"refresh_token%3D{quote(current.refresh_token, safe='')} with {CLIENT_SECRET}"
    )
    redacted = registry.redact(line)
    assert redacted == "sent *** and refresh_token%3D*** with ***"


def test_the_registry_masks_encoded_forms_and_keeps_only_the_latest_pairs() -> None:
    registry = SecretRegistry(keep_pairs=2)
    registry.add("short")  # too short to mask
    registry.add('fixed"secret/value')
    pairs = [TokenPair(f"access-{n}", f"refresh-{n}", 0.0) for n in range(3)]
    for pair in pairs:
        registry.add_pair(pair)
    registry.add_pair(pairs[1])  # seen again: the newest, not a second entry

    assert registry.values() == {
        'fixed"secret/value',
        "access-1",
        "refresh-1",
        "access-2",
        "refresh-2",
    }
    text = json.dumps({"note": 'fixed"secret/value'}) + " " + quote_plus('fixed"secret/value')
    assert registry.redact(text) == '{"note": "***"} ***'
    assert registry.redact("access-0 access-1 short") == "access-0 *** short"
