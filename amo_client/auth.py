"""Credentials: a long-lived token, or OAuth 2.0 with single-use refresh tokens.

amoCRM's refresh tokens are single-use: the moment a refresh succeeds, the old
refresh token (and the access token paired with it) stop working. So the new pair
is written to the token store, durably, before anything uses it; a crash after the
refresh but before the write would otherwise lock the worker out for good. Two
threads that need a refresh at once share one: the second waits for the first and
takes its result (single-flight), so a refresh token is never sent twice.

Other processes (an admin's ``check`` or ``once`` next to the running service) share
the token file. A refresh happens under an exclusive lock on the file (when the store
offers one, as :class:`FileTokenStore` does) and starts by reading the file again: a
pair newer than the one in memory is taken as it is, not refreshed. A 401 and a
refused refresh also read the file again before anything is decided.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from amo_client.errors import AuthorizationRequired
from amo_client.redaction import SecretRegistry

REFRESH_AHEAD_SECONDS = 300.0
REAUTHORISE_HINT = (
    "authorise the integration again: open it in amoCRM (Settings → Integrations), "
    "copy a fresh authorization code and run `python -m worker auth --code CODE`"
)


@dataclass(frozen=True)
class TokenPair:
    """An OAuth access/refresh pair; ``expires_at`` is unix seconds. Never printed."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - now <= seconds

    def as_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_grant(cls, body: object, now: float) -> TokenPair:
        """The pair in an ``/oauth2/access_token`` answer. Raises ValueError if malformed."""
        if not isinstance(body, dict):
            raise ValueError("token answer is not a JSON object")
        access, refresh, lifetime = (
            body.get("access_token"),
            body.get("refresh_token"),
            body.get("expires_in"),
        )
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise ValueError("token answer lacks access_token or refresh_token")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            raise ValueError("token answer lacks expires_in")
        return cls(access, refresh, now + float(lifetime))


class TokenStore(Protocol):
    """Where the current OAuth pair lives between runs."""

    def load(self) -> TokenPair | None: ...
    def save(self, pair: TokenPair) -> None: ...


@runtime_checkable
class SharedTokenStore(TokenStore, Protocol):
    """A store other processes use too: a refresh holds its lock from re-read to save."""

    def exclusive(self) -> AbstractContextManager[None]: ...


class FileTokenStore:
    """A JSON file, mode 0600, replaced atomically (temp file, fsync, rename, fsync dir).

    :meth:`exclusive` locks ``<name>.lock`` next to it with ``flock``, across processes
    and across stores of the same path within one process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing the only descriptor releases the lock

    def load(self) -> TokenPair | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ValueError(f"token file {self.path} is unreadable: {error}") from None
        try:
            return TokenPair(
                str(raw["access_token"]), str(raw["refresh_token"]), float(raw["expires_at"])
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"token file {self.path} is not a token pair") from None

    def save(self, pair: TokenPair) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".tokens-", dir=directory)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(pair.as_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)


class MemoryTokenStore:
    """A store that keeps the pair in memory (tests, one-off scripts)."""

    def __init__(self, pair: TokenPair | None = None) -> None:
        self.pair = pair
        self.saved: list[TokenPair] = []

    def load(self) -> TokenPair | None:
        return self.pair

    def save(self, pair: TokenPair) -> None:
        self.pair = pair
        self.saved.append(pair)


class Credentials(Protocol):
    """What the client asks of its credentials."""

    def access_token(self, refresh: Callable[[str], TokenPair]) -> str:
        """The token to send now, refreshing first when it is about to expire."""
        ...

    def after_unauthorized(self, rejected: str, refresh: Callable[[str], TokenPair]) -> bool:
        """A 401 came back for ``rejected``: True when a new token is ready to try once."""
        ...


@dataclass(frozen=True)
class LongLivedToken:
    """A private integration's long-lived token: nothing to refresh."""

    token: str = field(repr=False)

    def access_token(self, refresh: Callable[[str], TokenPair]) -> str:
        return self.token

    def after_unauthorized(self, rejected: str, refresh: Callable[[str], TokenPair]) -> bool:
        return False


@dataclass(frozen=True)
class OAuthApp:
    """The integration's identity, as set in amoCRM."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str


class OAuthTokens:
    """The current pair behind a store, refreshed single-flight.

    Given ``secrets``, the app's client secret and every pair loaded or stored go into
    that registry, so a log pipeline reading it masks them.
    """

    def __init__(
        self,
        app: OAuthApp,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
        refresh_ahead: float = REFRESH_AHEAD_SECONDS,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.secrets = secrets
        if secrets is not None:
            secrets.add(app.client_secret)
        self._clock = clock
        self._refresh_ahead = refresh_ahead
        self._lock = threading.Lock()
        self._pair: TokenPair | None = None
        # A refresh token amoCRM refused stays refused: threads queued behind the refusal,
        # and every later call, get the same answer without presenting it again.
        self._refused: str | None = None

    def current(self) -> TokenPair | None:
        with self._lock:
            if self._pair is None:
                self._pair = self._load()
            return self._pair

    def adopt(self, pair: TokenPair) -> None:
        """Store a pair obtained elsewhere (an authorization-code exchange), then use it."""
        with self._lock, self._exclusive():
            self._save(pair)
            self._pair = pair

    def access_token(self, refresh: Callable[[str], TokenPair]) -> str:
        pair = self.current()
        if pair is None:
            raise AuthorizationRequired(f"no OAuth tokens are stored yet: {REAUTHORISE_HINT}")
        if self._expiring(pair):
            pair = self._refresh_once(pair.access_token, refresh, ahead=True)
        return pair.access_token

    def after_unauthorized(self, rejected: str, refresh: Callable[[str], TokenPair]) -> bool:
        pair = self._refresh_once(rejected, refresh, ahead=False)
        return pair.access_token != rejected

    def _exclusive(self) -> AbstractContextManager[None]:
        if isinstance(self.store, SharedTokenStore):
            return self.store.exclusive()
        return nullcontext()

    def _expiring(self, pair: TokenPair) -> bool:
        return pair.expires_within(self._refresh_ahead, self._clock())

    def _refresh_once(
        self, stale_access: str, refresh: Callable[[str], TokenPair], *, ahead: bool
    ) -> TokenPair:
        """A pair to use instead of ``stale_access``.

        The store's pair if another holder (thread or process) already replaced it, else a
        fresh one. With ``ahead`` the store's pair must not be about to expire either.
        """
        with self._lock, self._exclusive():
            pair = self._load()
            if pair is None:
                raise AuthorizationRequired(f"no OAuth tokens are stored: {REAUTHORISE_HINT}")
            if pair.access_token != stale_access and not (ahead and self._expiring(pair)):
                self._pair = pair
                return pair  # another holder refreshed while this one waited
            if pair.refresh_token == self._refused:
                raise AuthorizationRequired(
                    f"the stored refresh token was already refused: {REAUTHORISE_HINT}"
                )
            try:
                fresh = refresh(pair.refresh_token)
            except AuthorizationRequired:
                # A holder that writes without the lock may have spent it first.
                newer = self._load()
                if newer is not None and newer.refresh_token != pair.refresh_token:
                    self._pair = newer
                    return newer
                self._refused = pair.refresh_token
                raise
            # Persist before anyone can use it: the old refresh token is already dead.
            self._save(fresh)
            self._pair = fresh
            return fresh

    def _load(self) -> TokenPair | None:
        pair = self.store.load()
        if pair is not None and self.secrets is not None:
            self.secrets.add_pair(pair)
        return pair

    def _save(self, pair: TokenPair) -> None:
        if self.secrets is not None:
            self.secrets.add_pair(pair)
        self.store.save(pair)
