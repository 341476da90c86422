"""A client-side cap on requests per second, shared by every thread of the process.

amoCRM counts requests in a one-second window (7 per account) and answers the
excess with an HTML 429 and no Retry-After. Requests leave no closer together
than ``1 / rate`` seconds, and no more than ``floor(rate)`` leave within any
window of ``floor(rate) / rate`` seconds plus ``margin`` (for a whole-number rate
such as the default 7, one second plus the margin). The margin absorbs the jitter
between when a request leaves here and when it reaches amoCRM, so a full-speed run
stays clear of 429s at the cost of a few percent of throughput.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        per_second: float,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.per_second = per_second
        self._capacity = max(1, math.floor(per_second))
        self._window = self._capacity / per_second + margin
        self._spacing = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()

    def acquire(self) -> float:
        """Wait until one more request may leave; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self._window:
                    self._sent.popleft()
                delay = 0.0
                if self._sent:
                    delay = max(delay, self._sent[-1] + self._spacing - now)
                if len(self._sent) >= self._capacity:
                    delay = max(delay, self._sent[0] + self._window - now)
                if delay <= 0:
                    self._sent.append(now)
                    return waited
                # Sleeping under the lock queues the other threads behind this one, in order.
                self._sleep(delay)
                waited += delay
