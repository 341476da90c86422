"""OAuth through AmoClient: single-flight refresh, single-use tokens, store first, revocation.

amoCRM's refresh tokens work once: the refresh that spends one also kills the access
token paired with it. The fake does the same, so a second use of a refresh token shows up
in ``fake.refresh_reuse_attempts`` and a pair lost before it was stored shows up as a
lock-out.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from amo_client.auth import (
    REFRESH_AHEAD_SECONDS,
    FileTokenStore,
    MemoryTokenStore,
    OAuthApp,
    OAuthTokens,
    TokenPair,
)
from amo_client.client import AmoClient
from amo_client.errors import AuthorizationRequired, Unauthorized
from amo_client.fake import FakeAmoCRM
from tests.client_kit import (
    BASE_URL,
    FakeClock,
    Tap,
    bearer,
    make_fake,
    oauth_app,
    oauth_client,
    seeded_pair,
)

BARRIER_TIMEOUT = 10.0


def refresh_grants(fake: FakeAmoCRM) -> int:
    return sum(1 for grant in fake.token_grants if grant.grant_type == "refresh_token")


def run_in_threads(count: int, work: Callable[[], object]) -> list[BaseException | None]:
    """Run ``work`` in ``count`` threads at once; the error each raised, or None."""
    outcomes: list[BaseException | None] = [None] * count

    def runner(slot: int) -> None:
        try:
            work()
        except BaseException as error:
            outcomes[slot] = error

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    return outcomes


def hold_401s(barrier: threading.Barrier) -> Callable[[httpx.Request, httpx.Response], None]:
    """Hold the first 401s until every thread has one: all then need a refresh at once."""
    held = 0
    lock = threading.Lock()

    def after(request: httpx.Request, response: httpx.Response) -> None:
        nonlocal held
        if response.status_code != 401:
            return
        with lock:
            held += 1
            hold = held <= barrier.parties
        if hold:
            barrier.wait()

    return after


# ---------------------------------------------------------------- single flight


def test_two_threads_that_both_get_a_401_share_one_refresh(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    amo, store = oauth_client(fake, clock, transport=Tap(fake.transport, after=hold_401s(barrier)))
    fake.expire_access_tokens()

    outcomes = run_in_threads(2, amo.account)

    assert outcomes == [None, None]
    assert refresh_grants(fake) == 1
    assert fake.refresh_reuse_attempts == 0
    assert len(store.saved) == 1
    assert [entry.status for entry in fake.request_log].count(401) == 2


def test_two_threads_share_one_refresh_against_respx(clock: FakeClock) -> None:
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    store = MemoryTokenStore(TokenPair("old-access", "old-refresh", clock.time() + 86400))
    tokens = OAuthTokens(OAuthApp("id", "secret-value", "https://x/cb"), store, clock=clock.time)

    def account(request: httpx.Request) -> httpx.Response:
        if bearer(request) == "old-access":
            barrier.wait()
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401})
        return httpx.Response(200, json={"id": 1, "name": "Поддержка"})

    with respx.mock(base_url=BASE_URL) as router:
        router.get("/api/v4/account").mock(side_effect=account)
        grant = router.post("/oauth2/access_token").respond(
            200,
            json={
                "access_token": "new-access",
                "refresh_token": "new-refresh",
                "expires_in": 86400,
            },
        )
        with AmoClient(
            BASE_URL, tokens, sleep=clock.sleep, monotonic=clock.monotonic, clock=clock.time
        ) as amo:
            outcomes = run_in_threads(2, amo.account)

    assert outcomes == [None, None]
    assert grant.call_count == 1
    assert json.loads(grant.calls.last.request.content)["refresh_token"] == "old-refresh"
    assert store.pair is not None
    assert store.pair.refresh_token == "new-refresh"


# ---------------------------------------------------------------- single use


def test_a_refresh_token_is_never_sent_twice_over_many_refreshes(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    amo, store = oauth_client(fake, clock)
    rounds = 25
    for round_number in range(rounds):
        if round_number % 2:
            fake.expire_access_tokens()  # the server drops the token: refresh after a 401
        else:
            clock.advance(86400 - 60)  # about to expire: refresh ahead of time
        outcomes = run_in_threads(3, amo.account)
        assert outcomes == [None, None, None]
    assert fake.refresh_reuse_attempts == 0
    assert refresh_grants(fake) == rounds
    assert len(store.saved) == rounds
    sent = [pair.refresh_token for pair in store.saved]
    assert len(set(sent)) == rounds


def test_a_token_about_to_expire_is_refreshed_before_the_call_without_a_401(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    amo, store = oauth_client(fake, clock)
    clock.advance(86400 - 100)
    amo.account()
    assert [entry.path for entry in fake.request_log] == ["/oauth2/access_token", "/api/v4/account"]
    assert 401 not in [entry.status for entry in fake.request_log]
    assert len(store.saved) == 1


# ---------------------------------------------------------------- store first


class CheckedStore(MemoryTokenStore):
    """A store that remembers every access token it has durably held."""

    def __init__(self, pair: TokenPair) -> None:
        super().__init__(pair)
        self.held = {pair.access_token}
        self.lock = threading.Lock()

    def save(self, pair: TokenPair) -> None:
        with self.lock:
            super().save(pair)
            self.held.add(pair.access_token)


def test_every_access_token_is_in_the_store_before_any_request_carries_it(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    store = CheckedStore(seeded_pair(fake, clock))
    carried: list[str] = []
    unsaved: list[str] = []

    def before(request: httpx.Request) -> None:
        token = bearer(request)
        if token is None:
            return
        with store.lock:
            carried.append(token)
            if token not in store.held:
                unsaved.append(token)

    amo, _ = oauth_client(fake, clock, store=store, transport=Tap(fake.transport, before=before))
    for round_number in range(10):
        if round_number % 2:
            fake.expire_access_tokens()
        else:
            clock.advance(86400 - 10)
        assert run_in_threads(3, amo.account) == [None, None, None]

    assert unsaved == []
    assert set(carried) == {pair.access_token for pair in store.saved}
    assert len(store.saved) == 10
    assert fake.refresh_reuse_attempts == 0


def test_a_pair_that_cannot_be_stored_is_never_used(fake: FakeAmoCRM, clock: FakeClock) -> None:
    class FullDisk(MemoryTokenStore):
        def save(self, pair: TokenPair) -> None:
            raise OSError(28, "No space left on device")

    store = FullDisk(seeded_pair(fake, clock))
    assert store.pair is not None
    first_access = store.pair.access_token
    carried: list[str | None] = []
    amo, _ = oauth_client(
        fake,
        clock,
        store=store,
        transport=Tap(fake.transport, before=lambda r: carried.append(bearer(r))),
    )
    fake.expire_access_tokens()
    with pytest.raises(OSError, match="No space left"):
        amo.account()
    assert set(carried) == {first_access, None}  # None: the refresh request itself


# ---------------------------------------------------------------- revoked, expired


@pytest.mark.parametrize("revoked_status", [400, 401])
def test_a_revoked_refresh_token_asks_for_a_new_authorisation_and_stops(
    clock: FakeClock, revoked_status: int
) -> None:
    fake = make_fake(clock, revoked_refresh_status=revoked_status)
    amo, _ = oauth_client(fake, clock)
    fake.revoke_tokens()

    with pytest.raises(AuthorizationRequired) as caught:
        amo.account()

    assert caught.value.fatal is True
    message = str(caught.value)
    assert "Token has been revoked" in message
    assert "authorise the integration again" in message
    assert "python -m worker auth --code" in message
    assert [(e.path, e.status) for e in fake.request_log] == [
        ("/api/v4/account", 401),
        ("/oauth2/access_token", revoked_status),
    ]
    assert len(fake.token_grants) == 1


def test_threads_that_meet_a_revoked_refresh_token_send_it_once(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    barrier = threading.Barrier(3, timeout=BARRIER_TIMEOUT)
    amo, _ = oauth_client(fake, clock, transport=Tap(fake.transport, after=hold_401s(barrier)))
    fake.revoke_tokens()

    outcomes = run_in_threads(3, amo.account)

    assert all(isinstance(outcome, AuthorizationRequired) for outcome in outcomes)
    assert len(fake.token_grants) == 1
    # A later call does not try the refused token again either.
    with pytest.raises(AuthorizationRequired, match="authorise the integration again"):
        amo.account()
    assert len(fake.token_grants) == 1


def test_an_expired_refresh_token_asks_for_a_new_authorisation(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    amo, _ = oauth_client(fake, clock)
    clock.advance(91 * 86400)
    with pytest.raises(AuthorizationRequired, match="Token has expired") as caught:
        amo.account()
    assert "authorise the integration again" in str(caught.value)
    assert len(fake.token_grants) == 1


def test_a_401_that_a_refresh_does_not_cure_is_unauthorized_not_a_loop(clock: FakeClock) -> None:
    store = MemoryTokenStore(TokenPair("access-1", "refresh-1", clock.time() + 86400))
    tokens = OAuthTokens(OAuthApp("id", "secret-value", "https://x/cb"), store, clock=clock.time)
    with respx.mock(base_url=BASE_URL) as router:
        account = router.get("/api/v4/account").respond(401, json={"status": 401})
        grant = router.post("/oauth2/access_token").respond(
            200, json={"access_token": "access-2", "refresh_token": "refresh-2", "expires_in": 60}
        )
        with (
            AmoClient(BASE_URL, tokens, sleep=clock.sleep, monotonic=clock.monotonic) as amo,
            pytest.raises(Unauthorized, match="HTTP 401") as caught,
        ):
            amo.account()
    assert caught.value.fatal is True
    assert account.call_count == 2
    assert grant.call_count == 1


# ---------------------------------------------------------------- authorization code


def test_an_authorization_code_is_exchanged_once_and_the_pair_stored(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    store = MemoryTokenStore()
    amo, _ = oauth_client(fake, clock, store=store)
    code = fake.issue_authorization_code()

    pair = amo.exchange_code(code)

    assert store.saved == [pair]
    assert amo.account().id == fake.account_id
    with pytest.raises(AuthorizationRequired, match="Authorization code has been revoked"):
        amo.exchange_code(code)


def test_without_stored_tokens_a_call_asks_for_an_authorisation(
    fake: FakeAmoCRM, clock: FakeClock
) -> None:
    amo, _ = oauth_client(fake, clock, store=MemoryTokenStore())
    with pytest.raises(AuthorizationRequired, match="authorise the integration again"):
        amo.account()
    assert fake.request_log == []


# ---------------------------------------------------------------- the file store


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tokens.json"


def test_the_file_store_round_trips_with_mode_0600(token_file: Path) -> None:
    store = FileTokenStore(token_file)
    assert store.load() is None
    pair = TokenPair("access-value", "refresh-value", 1_700_086_400.5)
    store.save(pair)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert FileTokenStore(token_file).load() == pair
    assert sorted(p.name for p in token_file.parent.iterdir()) == ["tokens.json"]


def test_the_file_store_replaces_a_looser_file_with_a_0600_one(token_file: Path) -> None:
    token_file.parent.mkdir(parents=True)
    token_file.write_text("{}", encoding="utf-8")
    token_file.chmod(0o644)
    FileTokenStore(token_file).save(TokenPair("a-2", "r-2", 2.0))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text(encoding="utf-8"))["refresh_token"] == "r-2"


def test_a_failed_write_leaves_the_old_pair_whole(
    token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileTokenStore(token_file)
    old = TokenPair("access-1", "refresh-1", 1.0)
    store.save(old)

    def crash(_src: object, _dst: object) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="I/O error"):
        store.save(TokenPair("access-2", "refresh-2", 2.0))
    monkeypatch.undo()

    assert store.load() == old
    assert sorted(p.name for p in token_file.parent.iterdir()) == ["tokens.json"]


def test_the_client_refreshes_into_a_file_store(
    fake: FakeAmoCRM, clock: FakeClock, token_file: Path
) -> None:
    store = FileTokenStore(token_file)
    store.save(seeded_pair(fake, clock))
    tokens = OAuthTokens(oauth_app(fake), store, clock=clock.time)
    with AmoClient(
        fake.base_url,
        tokens,
        transport=fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    ) as amo:
        fake.expire_access_tokens()
        amo.account()
    saved = FileTokenStore(token_file).load()
    assert saved is not None
    assert saved == tokens.current()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    # A new process starting from the file carries on without authorising again.
    again, _ = oauth_client(fake, clock, store=MemoryTokenStore(saved))
    assert again.account().id == fake.account_id


# ---------------------------------------------------------------- several holders of one file

WORKER_SCRIPT = """
import sys
from pathlib import Path

from amo_client.auth import FileTokenStore, OAuthApp, OAuthTokens
from amo_client.client import AmoClient

url, path, client_id, secret, redirect, rounds = sys.argv[1:]
app = OAuthApp(client_id, secret, redirect)
tokens = OAuthTokens(app, FileTokenStore(Path(path)), refresh_ahead=1e12)
with AmoClient(url, tokens) as amo:
    for _ in range(int(rounds)):
        amo.account()
"""


def file_holder(
    fake: FakeAmoCRM, clock: FakeClock, path: Path, refresh_ahead: float = REFRESH_AHEAD_SECONDS
) -> AmoClient:
    """A client with a token store of its own on ``path``, as another process would have."""
    tokens = OAuthTokens(
        oauth_app(fake), FileTokenStore(path), clock=clock.time, refresh_ahead=refresh_ahead
    )
    return AmoClient(
        fake.base_url,
        tokens,
        transport=fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )


@pytest.mark.parametrize("how", ["ahead of expiry", "after a 401"])
def test_a_holder_takes_the_pair_another_holder_refreshed_from_the_file(
    fake: FakeAmoCRM, clock: FakeClock, token_file: Path, how: str
) -> None:
    FileTokenStore(token_file).save(seeded_pair(fake, clock))
    service = file_holder(fake, clock, token_file)
    admin = file_holder(fake, clock, token_file)
    service.account()  # the service holds the first pair in memory

    if how == "ahead of expiry":
        clock.advance(86400 - 60)
    else:
        fake.expire_access_tokens()
    admin.account()  # the admin's process refreshes first: the first pair is spent
    assert refresh_grants(fake) == 1

    assert service.account().id == fake.account_id
    assert refresh_grants(fake) == 1
    assert fake.refresh_reuse_attempts == 0
    assert isinstance(service.credentials, OAuthTokens)
    assert service.credentials.current() == FileTokenStore(token_file).load()


def test_a_holder_whose_refresh_token_was_spent_without_the_lock_takes_the_newer_pair(
    fake: FakeAmoCRM, clock: FakeClock, token_file: Path
) -> None:
    FileTokenStore(token_file).save(seeded_pair(fake, clock))
    service = file_holder(fake, clock, token_file)
    service.account()
    spent = FileTokenStore(token_file).load()
    assert spent is not None
    # Another holder refreshes and writes the file while this one is already refreshing.
    issued = fake.issue_token_pair()
    newer = TokenPair(issued.access_token, issued.refresh_token, clock.time() + 86400)
    fake.revoke_tokens()

    def refuse_after_writing(refresh_token: str) -> TokenPair:
        FileTokenStore(token_file).save(newer)
        raise AuthorizationRequired("refused")

    assert isinstance(service.credentials, OAuthTokens)
    assert service.credentials.after_unauthorized(spent.access_token, refuse_after_writing)
    assert service.credentials.current() == newer


def test_threads_with_stores_of_their_own_never_present_a_spent_refresh_token(
    clock: FakeClock, token_file: Path
) -> None:
    # Access tokens live on after a refresh, so refresh tokens are the only thing contended.
    fake = make_fake(clock, revoke_access_on_refresh=False)
    FileTokenStore(token_file).save(seeded_pair(fake, clock))
    rounds = 10
    # Every call refreshes first: the holders race on the file all the time.
    holders = [file_holder(fake, clock, token_file, refresh_ahead=1e12) for _ in range(2)]
    lock = threading.Lock()
    turn = iter(range(2))

    def work() -> None:
        with lock:
            holder = holders[next(turn)]
        for _ in range(rounds):
            holder.account()

    assert run_in_threads(2, work) == [None, None]
    assert fake.refresh_reuse_attempts == 0
    assert refresh_grants(fake) == 2 * rounds


def test_processes_sharing_the_token_file_never_present_a_spent_refresh_token(
    clock: FakeClock, token_file: Path
) -> None:
    fake = make_fake(clock, max_requests_per_second=None, revoke_access_on_refresh=False)
    FileTokenStore(token_file).save(seeded_pair(fake, clock))
    rounds = 8
    with fake.serve() as server:
        arguments = [
            server.url,
            str(token_file),
            fake.client_id,
            fake.client_secret,
            fake.redirect_uri,
            str(rounds),
        ]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, *arguments],
                cwd=Path(__file__).resolve().parent.parent,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert fake.refresh_reuse_attempts == 0
    assert refresh_grants(fake) == 2 * rounds
