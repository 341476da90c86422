"""Which tracked leads are computed, what their last states call for, and when each changes
by itself.

A lead's state is a pure function of its copy, its history and ``now``, and it stays the
same until its ``next_change_at`` (the engine's property tests hold it to that). So a
cycle computes a lead again only when its input changed (read again, new events, a write
of the worker's) or its next change instant has come; the instants wait in a heap, whose
earliest entry is also the scheduler's next wake-up. A full reconcile starts afresh.

The states themselves are not kept between cycles (at 50,000 open requests they cost tens
of MB): a cycle that needs a lead's state (its company's ledger is planned) computes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from sla.state import SlaState
from worker.wakeups import Wakeups

# The clocks a lead's state is breached on, as the metrics label them.
CLOCKS = ("reaction", "resolution", "next_response")


class Computations:
    """The tracked leads computed, those that could not be, and what their last states say."""

    def __init__(self) -> None:
        self.computed: set[int] = set()
        self.failed: set[int] = set()
        self.task_due: set[int] = set()  # the leads whose state owes an escalation task
        # The leads with each clock breached (the next response: any waiting period).
        self.breached_by: dict[str, set[int]] = {clock: set() for clock in CLOCKS}
        self._again: set[int] = set()  # computed again at the next cycle whatever happens
        self._wakeups = Wakeups()

    def stale(self, tracked: Collection[int], changed: Iterable[int], now: datetime) -> set[int]:
        """The tracked leads to compute at ``now``: those whose input changed, those whose
        next change instant has come, and any not computed yet."""
        wanted = {lead_id for lead_id in (*changed, *self._again) if lead_id in tracked}
        self._again.clear()
        wanted |= {lead_id for lead_id in self._wakeups.due(now) if lead_id in tracked}
        if len(self.computed) + len(self.failed) != len(tracked):
            wanted |= {i for i in tracked if i not in self.computed and i not in self.failed}
        return wanted

    @property
    def breached(self) -> frozenset[int]:
        """The leads with any clock breached."""
        return frozenset().union(*self.breached_by.values())

    @property
    def pending(self) -> frozenset[int]:
        """The leads to be computed again at the next cycle whatever happens."""
        return frozenset(self._again)

    def again(self, lead_ids: Iterable[int]) -> None:
        """Compute these leads again at the next cycle (a write changed or missed them)."""
        self._again.update(lead_ids)

    def put(self, lead_id: int, state: SlaState) -> None:
        self.computed.add(lead_id)
        self.failed.discard(lead_id)
        _mark(self.task_due, lead_id, state.tasks_due)
        _mark(self.breached_by["reaction"], lead_id, state.reaction.breached)
        _mark(self.breached_by["resolution"], lead_id, state.resolution.breached)
        _mark(self.breached_by["next_response"], lead_id, state.next_response.breached)
        self._wakeups.schedule(lead_id, state.next_change_at)

    def fail(self, lead_id: int) -> None:
        self.forget([lead_id])
        self.failed.add(lead_id)

    def forget(self, lead_ids: Iterable[int]) -> None:
        for lead_id in lead_ids:
            self.computed.discard(lead_id)
            self._wakeups.discard(lead_id)
            self.task_due.discard(lead_id)
            for breached in self.breached_by.values():
                breached.discard(lead_id)
            self.failed.discard(lead_id)

    def next_change_at(self) -> datetime | None:
        """The earliest instant a computed state changes by itself."""
        at = self._wakeups.earliest()
        return None if at is None else datetime.fromtimestamp(at, UTC)


def _mark(marked: set[int], lead_id: int, on: bool) -> None:
    if on:
        marked.add(lead_id)
    else:
        marked.discard(lead_id)
