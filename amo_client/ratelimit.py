"""A client-side cap on requests per second, shared by every thread of the process.

amoCRM counts requests in a one-second window (7 per account) and answers the excess with
an HTML 429 and no Retry-After. amoCRM counts a request when it arrives, which is some time
after it leaves here: scheduling on a busy machine, the network. That time cannot be
measured, but it is bounded: a request has arrived by the time its answer is back. So a
request's place in the window is the moment its answer came back (or it failed), and no
more than ``floor(rate)`` requests leave within ``floor(rate) / rate`` seconds (one second
at the default 7) plus ``margin`` of the answers of those before them. Whatever the delay
in transit, amoCRM never sees more than the rate within its window; a request pays for its
own latency once in every ``floor(rate)``. Requests also leave no closer together than
``1 / rate`` seconds.

The margin is not there for the delay in transit, which no fixed margin covers. From the
limiter's decision to the fake amoCRM's count, with both cores of the machine busy, two
runs of ``bench.client_load`` (2,000 requests each from one thread over loopback HTTP)
measured 4.7 to 4.9 ms at the median, 34 to 42 ms at the 99th percentile and 172 to 202 ms
at most. A limiter that counted from its decisions with a 50 ms margin could let eight
requests into one of amoCRM's seconds as soon as one was more than 50 ms late and the
seven after it were not. The margin covers only what the answer cannot bound: amoCRM's
clock running at another rate than this one over a second (microseconds) and the
precision of its count (a millisecond if it keeps milliseconds). 10 ms is ten times that
and costs 1 % of the rate; the closest eight consecutive requests the fake counted were
1.0126 and 1.0144 s apart.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Slot:
    """One request's place in the window: when the limiter let it go, when it went on the
    wire, and when its answer came back."""

    __slots__ = ("answered", "left", "sent")

    def __init__(self, left: float) -> None:
        self.left = left
        self.sent: float | None = None  # None until the request is handed to the transport
        self.answered: float | None = None  # None while the request is on its way


class RateLimiter:
    def __init__(
        self,
        per_second: float,
        *,
        margin: float = 0.01,
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
        self._slots: list[Slot] = []
        self._last_left: float | None = None

    def acquire(self) -> Slot:
        """Wait until one more request may leave; pass the slot to :meth:`answered` when its
        answer is back (or the request failed)."""
        with self._lock:
            while True:
                now = self._clock()
                self._slots = [
                    slot
                    for slot in self._slots
                    if slot.answered is None or slot.answered > now - self._window
                ]
                delay = 0.0
                if self._last_left is not None:
                    delay = self._last_left + self._spacing - now
                if len(self._slots) >= self._capacity:
                    # The window frees up when the earliest answered slot leaves it; slots
                    # still on their way hold theirs until they are answered.
                    answered = [s.answered for s in self._slots if s.answered is not None]
                    wait = (min(answered) + self._window - now) if answered else self._spacing
                    delay = max(delay, wait)
                if delay <= 0:
                    slot = Slot(now)
                    self._slots.append(slot)
                    self._last_left = now
                    return slot
                # Sleeping under the lock queues the other threads behind this one, in order.
                self._sleep(delay)

    def sending(self, slot: Slot) -> None:
        """The request of ``slot`` goes on the wire now (it may be later than it was let go:
        a busy machine schedules the sending thread late). The window does not need it: the
        answer bounds it, and a later send only moves amoCRM's count later."""
        slot.sent = self._clock()

    def answered(self, slot: Slot) -> None:
        """The request of ``slot`` is answered (or failed): its window runs from now.

        Without the lock: a thread sleeping in :meth:`acquire` holds it, and may be waiting
        for exactly this answer (one attribute set is atomic)."""
        slot.answered = self._clock()
