"""When each of some keys (leads, companies) next changes by itself."""

from __future__ import annotations

import heapq
from datetime import datetime


class Wakeups:
    """When each of some keys (leads, companies) next changes by itself: a heap of instants,
    each key's latest one the valid one (older entries are skipped when they come up)."""

    def __init__(self) -> None:
        self._at: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    def schedule(self, key: int, at: datetime | None) -> None:
        if at is None:
            self._at.pop(key, None)
            return
        moment = at.timestamp()
        self._at[key] = moment
        heapq.heappush(self._heap, (moment, key))
        if len(self._heap) > 2 * len(self._at) + 1_000:
            self._heap = [(moment, key) for key, moment in self._at.items()]
            heapq.heapify(self._heap)

    def discard(self, key: int) -> None:
        self._at.pop(key, None)

    def due(self, now: datetime) -> set[int]:
        """The keys whose instant has come by ``now``; each is taken off (set it again)."""
        found: set[int] = set()
        moment = now.timestamp()
        while self._heap and self._heap[0][0] <= moment:
            at, key = heapq.heappop(self._heap)
            if self._at.get(key) == at:
                del self._at[key]
                found.add(key)
        return found

    def earliest(self) -> float | None:
        while self._heap:
            at, key = self._heap[0]
            if self._at.get(key) == at:
                return at
            heapq.heappop(self._heap)
        return None
