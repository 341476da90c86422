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

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem
from amo_client.models import Event
from worker.store import StoredEvent

log = structlog.get_logger("worker.events")

STRUCTURAL_EVENTS = frozenset({"lead_status_changed", "lead_deleted", "lead_restored"})
NOTE_DELETED = "common_note_deleted"


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


class KeptEvents:
    """The events a cycle read, kept small until the store takes them.

    A lead's event is kept as the store keeps it (its JSON, about 250 bytes; parsed, an
    event costs about 2 KB, and a first read brings a month of them). A contact's or a
    company's event is kept as read: only reply types are asked for, and the replies are
    attributed to requests before they are stored.
    """

    def __init__(self) -> None:
        self.of_leads: list[StoredEvent] = []
        self.others: list[Event] = []
        self.deleted_notes: set[int] = set()  # as ``common_note_deleted`` events say

    def add(self, event: Event) -> None:
        if event.entity_type != "lead":
            self.others.append(event)
            return
        self.of_leads.append(stored_event(event))
        if event.type == NOTE_DELETED:
            self.deleted_notes |= deleted_note_ids([event])

    def by_lead(self) -> dict[int, list[str]]:
        """The leads' events as JSON, by lead, in the order read."""
        grouped: dict[int, list[str]] = {}
        for event in self.of_leads:
            grouped.setdefault(event.lead_id, []).append(event.data)
        return grouped


@dataclass(frozen=True)
class EventRead:
    events: KeptEvents  # the feed's events; the histories read by id are added to them
    cursor: FeedCursor


def stored_event(event: Event) -> StoredEvent:
    return StoredEvent(
        event.id, event.entity_id, int(event.created_at.timestamp()), event.model_dump_json()
    )


def deleted_note_ids(events: Iterable[Event]) -> set[int]:
    """The notes that ``common_note_deleted`` events say are gone."""
    gone: set[int] = set()
    for event in events:
        if event.type != NOTE_DELETED:
            continue
        for item in [*(event.value_before or ()), *(event.value_after or ())]:
            note = item.get("note") if isinstance(item, dict) else None
            note_id = note.get("id") if isinstance(note, dict) else None
            if isinstance(note_id, int):
                gone.add(note_id)
    return gone


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
    events = KeptEvents()
    started: datetime | None = None
    read_any = False
    for event in client.iter_events(
        entity=("lead", "contact", "company"),
        types=types,
        created_from=start,
        on_invalid=_skipped,
        confirm_empty=cursor is None,  # the first read: 30 days of nothing is asked again
    ):
        check_stop()
        started = started or client.server_time
        read_any = True
        events.add(event)
        read_to = max(read_to, int(event.created_at.timestamp()))
    if read_any:
        # The cursor follows amoCRM's clock (the worker's when amoCRM's is unknown), as the
        # leads' does: left on the newest event, a quiet account would read that event's
        # minute again in every cycle. An empty answer moves nothing (absence is not
        # evidence).
        clock = started or client.server_time or now
        read_to = max(read_to, int((clock - options.overlap).timestamp()))
    return EventRead(events, FeedCursor(read_to=read_to, covered_from=covered_from))


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
) -> Iterator[Event]:
    """Every event of the given leads, and of their contacts and companies (the client asks
    for 10 entities a request)."""
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
            yield event


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
