"""What stands between a client and the account: the rate limit (7 requests a second by default,
nginx's HTML 429 beyond), a ban's HTML 403, and injected faults (errors, odd 2xx, timeouts)."""

from __future__ import annotations

import random
import re
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amo_client.fake.records import ODD_SHAPES, RANDOM_FAULT_KINDS, Fault, OddShape, RandomFaultKind
from amo_client.fake.replies import Reply, default_error, encode
from amo_client.fake.store import AccountStore

SERVER_ERRORS = (500, 502, 503, 504)


@dataclass(frozen=True)
class _Chance:
    """Faults drawn at random: each request is hit with probability ``rate``."""

    rate: float
    kinds: tuple[RandomFaultKind, ...]
    rng: random.Random

    def draw(self) -> tuple[RandomFaultKind, Fault] | None:
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        if kind == "rate_limited":
            return kind, Fault("status", 1, reply=default_error(429))
        if kind == "server_error":
            return kind, Fault("status", 1, reply=default_error(self.rng.choice(SERVER_ERRORS)))
        if kind == "disconnect":
            return kind, Fault("connect", 1)
        if kind == "odd_answer":
            return kind, Fault("odd", 1, shape=self.rng.choice(ODD_SHAPES))
        return kind, Fault("timeout", 1, after_processing=kind == "timeout_after_processing")


class Faults(AccountStore):
    """The rate limit, the ban and the faults waiting for the next requests."""

    def _start_faults(
        self,
        *,
        monotonic: Callable[[], float],
        max_requests_per_second: float | None,
        block_after_rate_limited: int | None,
    ) -> None:
        self.max_requests_per_second = max_requests_per_second
        self.block_after_rate_limited = block_after_rate_limited
        self._monotonic = monotonic
        self._faults: list[Fault] = []
        self._chance: _Chance | None = None
        self._faults_injected: Counter[str] = Counter()
        self._blocked = False
        self._window: deque[float] = deque()
        self._rate_limited_total = 0

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        drawn = self._chance.draw() if self._chance is not None else None
        if drawn is None:
            return None
        kind, fault = drawn
        self._faults_injected[kind] += 1
        return fault

    def _rate_limited(self) -> bool:
        limit = self.max_requests_per_second
        if limit is None:
            return False
        now = self._monotonic()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= int(limit):
            self._rate_limited_total += 1
            threshold = self.block_after_rate_limited
            if threshold is not None and self._rate_limited_total >= threshold:
                self._blocked = True
            return True
        self._window.append(now)
        return False

    @property
    def rate_limited_total(self) -> int:
        """How many requests got 429."""
        with self._lock:
            return self._rate_limited_total

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        body: str | bytes | Mapping[str, Any] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` instead of serving them.

        Without ``body`` the answer is what amoCRM's stack sends: nginx HTML for 403/429/5xx,
        problem JSON otherwise. ``path`` is an exact path or a compiled pattern (searched).
        """
        if body is None:
            reply = default_error(status)
            if headers:
                reply = Reply(reply.status, reply.body, reply.content_type, dict(headers))
        else:
            if isinstance(body, Mapping):
                raw, kind = encode(dict(body)), content_type or "application/problem+json"
            elif isinstance(body, str):
                raw, kind = body.encode("utf-8"), content_type or "text/html"
            else:
                raw, kind = body, content_type or "application/octet-stream"
            reply = Reply(status, raw, kind, dict(headers or {}))
        with self._lock:
            self._faults.append(Fault("status", count, reply=reply, path=path, method=method))

    def odd_answer_next(
        self,
        shape: OddShape,
        count: int = 1,
        *,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with a 2xx that breaks the documented shape.

        The request is served first (a write takes effect), then its answer is replaced:

        * ``empty_object``: 200 ``{}``;
        * ``empty_embedded``: 200 ``{"_embedded": {}}``;
        * ``null_list``: 200 ``{"_embedded": {"leads": null}}``, the key being the list's own
          (the last word of the path that is not a number);
        * ``html``: 200 with an HTML page (a proxy's or a maintenance page);
        * ``truncated``: the real answer's status, headers and JSON cut in half;
        * ``list``: 200 with a JSON array (the embedded items, or ``[]``) instead of an object;
        * ``no_content``: 204 without a body where 200 with a body was due.

        Like :meth:`fail_next` it waits in the same queue of faults, so ``clear_faults``
        drops it too.
        """
        with self._lock:
            self._faults.append(Fault("odd", count, path=path, method=method, shape=shape))

    def timeout_next(
        self,
        count: int = 1,
        *,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Raise ``httpx.ReadTimeout`` for the next ``count`` matching requests.

        With ``after_processing`` the request takes effect first and only its answer is lost,
        the case that makes a retried POST create a duplicate.
        """
        with self._lock:
            self._faults.append(
                Fault("timeout", count, path=path, method=method, after_processing=after_processing)
            )

    def disconnect_next(
        self,
        count: int = 1,
        *,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
    ) -> None:
        """Raise ``httpx.ConnectError`` for the next ``count`` matching requests."""
        with self._lock:
            self._faults.append(Fault("connect", count, path=path, method=method))

    def fault_at_random(
        self,
        rate: float,
        *,
        kinds: Sequence[RandomFaultKind] = RANDOM_FAULT_KINDS,
        seed: int | None = None,
    ) -> None:
        """From now on hit each request with probability ``rate`` by a fault drawn from ``kinds``.

        A queued fault (:meth:`fail_next` and the others) still goes first. The kinds are those
        of :data:`RandomFaultKind`; :attr:`faults_injected` counts them, and ``clear_faults``
        stops the draw. ``seed`` makes the draws repeatable for one order of requests.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, not {rate}")
        unknown = sorted(set(kinds) - set(RANDOM_FAULT_KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be some of {', '.join(RANDOM_FAULT_KINDS)}: {unknown}")
        with self._lock:
            rng = random.Random(seed)  # noqa: S311 - it draws faults, not secrets
            self._chance = _Chance(rate, tuple(kinds), rng)

    @property
    def faults_injected(self) -> dict[str, int]:
        """How many requests :meth:`fault_at_random` hit, by kind."""
        with self._lock:
            return dict(self._faults_injected)

    def clear_faults(self) -> None:
        """Drop the queued faults and stop :meth:`fault_at_random`."""
        with self._lock:
            self._faults.clear()
            self._chance = None

    def block_account(self, blocked: bool = True) -> None:
        """While blocked every request gets nginx's HTML 403, as a banned account does."""
        with self._lock:
            self._blocked = blocked

    @property
    def blocked(self) -> bool:
        with self._lock:
            return self._blocked
