"""The worker's first start on the account, the line between past breaches and news (spec §5).

In order: the instant the admin pins (``SLA_FIRST_START``); the one the state's record
keeps; else, on a new or lost state directory, the earliest change amoCRM recorded of
the worker's own «SLA: статус» field (found by halving the time range, one event request
a step, so a lost state directory does not move the line); else this cycle's ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from amo_client.client import AmoClient

log = structlog.get_logger("worker.first_start")

# How far back amoCRM is searched for the worker's first write, and to what precision.
SEARCH_BACK = timedelta(days=5 * 366)
PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class FirstStart:
    at: datetime
    is_this_cycle: bool  # no earlier cycle on this account is known: this one logs the past
    source: str  # "pinned", "record", "amocrm" or "now"


def earliest_change(
    client: AmoClient, event_type: str, now: datetime, *, entity: str = "lead"
) -> datetime | None:
    """The earliest instant (to ``PRECISION``) an event of ``event_type`` exists, or None."""

    def any_until(until: datetime) -> bool:
        events = client.iter_events(
            entity=entity,
            types=[event_type],
            created_from=now - SEARCH_BACK,
            created_to=until,
            confirm_empty=True,  # one odd empty answer would move the line later
        )
        return next(iter(events), None) is not None

    if not any_until(now):
        return None
    low, high = now - SEARCH_BACK, now  # none at or before low (or low is the limit), one by high
    while high - low > PRECISION:
        middle = low + (high - low) / 2
        if any_until(middle):
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def first_start(
    *,
    pinned: datetime | None,
    recorded: datetime | None,
    recover: Callable[[], datetime | None],
    now: datetime,
) -> FirstStart:
    """Which instant is the first start; ``recover`` asks amoCRM and is called only when
    neither the admin nor the record says."""
    if pinned is not None:
        return FirstStart(pinned, recorded is None, "pinned")
    if recorded is not None:
        return FirstStart(recorded, False, "record")
    recovered = recover()
    if recovered is not None and recovered <= now:
        log.info("first_start_recovered", first_start=recovered.isoformat())
        return FirstStart(recovered, False, "amocrm")
    # In whole seconds, as the record keeps it: every cycle draws the same line.
    return FirstStart(now.astimezone(UTC).replace(microsecond=0), True, "now")
