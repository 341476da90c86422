"""Reading lead events: the account-wide feed since the cursor, and whole histories by id.

One feed read, filtered to the event types that matter, covers every lead, contact and
company of the account at once (replies amoCRM files on the contact or the company, see
``worker/replies.py``): a quiet account costs one request (a 204). The store keeps the
feed's events of leads the worker does not track for a while (the buffer), so a lead that
turns up later finds its history there. A lead whose life the buffer does not cover
(created before it, or before the worker's first read) has its history read by id.

amoCRM indexes some events late. The feed's cursor steps back a minute at every read,
and a full reconcile reads the feed again from two reconcile intervals back, so an event
listed up to one interval late is still read; events are de-duplicated by id, so reading
one twice costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem
from amo_client.models import Event

log = structlog.get_logger("worker.events")

STRUCTURAL_EVENTS = frozenset({"lead_status_changed", "lead_deleted", "lead_restored"})


@dataclass(frozen=True)
class EventReadOptions:
    # The feed's cursor steps back this far at every read.
    overlap: timedelta = timedelta(minutes=1)
    # How long the store keeps events of leads the worker does not track.
    buffer: timedelta = timedelta(days=3)
    # How far back the first read of the feed goes; older leads' histories are read by id.
    history_horizon: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class FeedCursor:
    """Where the feed stands: ``read_to`` is the newest event seen, ``covered_from`` the
    instant since which the feed was read without a gap (unix seconds)."""

    read_to: int
    covered_from: int


@dataclass(frozen=True)
class EventRead:
    events: tuple[Event, ...]  # every event read: the feed's and the histories read by id
    cursor: FeedCursor


def read_feed(
    client: AmoClient,
    *,
    types: Sequence[str],
    cursor: FeedCursor | None,
    reread_from: int | None,
    oldest_lead: datetime | None,
    now: datetime,
    options: EventReadOptions,
    check_stop: Callable[[], None],
) -> EventRead:
    """The account-wide feed since the cursor, or since ``reread_from`` when that is older."""
    if cursor is None:
        start = max(oldest_lead or now, now - options.history_horizon)
        covered_from = int(start.timestamp())
        read_to = covered_from
    else:
        covered_from, read_to = cursor.covered_from, cursor.read_to
        begin = read_to if reread_from is None else min(read_to, reread_from)
        start = datetime.fromtimestamp(max(begin, covered_from), UTC) - options.overlap
    events: list[Event] = []
    started: datetime | None = None
    for event in client.iter_events(
        entity=("lead", "contact", "company"),
        types=types,
        created_from=start,
        on_invalid=_skipped,
        confirm_empty=cursor is None,  # the first read: 30 days of nothing is asked again
    ):
        check_stop()
        started = started or client.server_time
        events.append(event)
        read_to = max(read_to, int(event.created_at.timestamp()))
    if events:
        # The cursor follows amoCRM's clock (the worker's when amoCRM's is unknown), as the
        # leads' does: left on the newest event, a quiet account would read that event's
        # minute again in every cycle. An empty answer moves nothing (absence is not
        # evidence).
        clock = started or client.server_time or now
        read_to = max(read_to, int((clock - options.overlap).timestamp()))
    return EventRead(tuple(events), FeedCursor(read_to=read_to, covered_from=covered_from))


def needs_history(
    created: Mapping[int, datetime],
    cursor: FeedCursor,
    *,
    first_read: bool,
    now: datetime,
    options: EventReadOptions,
) -> list[int]:
    """The leads (by creation time) whose events the feed and the buffer do not all hold."""
    covered_from = cursor.covered_from
    if not first_read:
        covered_from = max(covered_from, int((now - options.buffer).timestamp()))
    return sorted(lead_id for lead_id, at in created.items() if int(at.timestamp()) < covered_from)


def read_histories(
    client: AmoClient,
    lead_ids: Collection[int],
    *,
    types: Sequence[str],
    check_stop: Callable[[], None],
    contact_ids: Collection[int] = (),
    company_ids: Collection[int] = (),
) -> list[Event]:
    """Every event of the given leads, and of their contacts and companies (the client asks
    for 10 entities a request)."""
    events: list[Event] = []
    for entity, ids in (("lead", lead_ids), ("contact", contact_ids), ("company", company_ids)):
        if not ids:
            continue
        for event in client.iter_events(
            entity=entity,
            entity_ids=sorted(ids),
            types=types,
            on_invalid=_skipped,
            confirm_empty=True,  # a whole history read once: an empty answer is asked again
        ):
            check_stop()
            events.append(event)
    return events


def by_lead(events: Iterable[Event]) -> dict[int, list[Event]]:
    grouped: dict[int, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.entity_id, []).append(event)
    return grouped


def left_pipeline(updated_at: datetime, events: Sequence[Event], pipeline_id: int) -> bool:
    """Whether an event newer than the cached lead says it was deleted or moved away."""
    for event in sorted(events, key=lambda e: (e.created_at, e.id), reverse=True):
        if event.created_at < updated_at:
            return False
        if event.type == "lead_restored":
            return False
        if event.type == "lead_deleted":
            return True
        after = event.status_after
        if event.type == "lead_status_changed" and after is not None:
            return after.pipeline_id != pipeline_id
    return False


def _skipped(item: InvalidItem) -> None:
    log.warning("event_invalid", event_id=item.item_id, problem=item.problem)
