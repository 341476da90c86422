"""Replies amoCRM files on the contact (or the company) rather than the lead (spec §4,
"Where the reaction is filed"), and the customer's messages filed there (spec §4.1).

A chat message, call or e-mail filed on a contact counts for the contact's support
request that was open at that instant (registered, and linked to the contact, at or
before it; not closed before it) when exactly one was; with none it counts for nothing,
and with several for the one its payload names (a chat talk linked to a lead), else for
none: the caller reports that as ambiguous. Pure: the
requests' spans are computed from amoCRM's data by :func:`request_span`, the same for the
worker and for any oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sla.state import LOST, STATUS_CHANGED, WON, LeadEvent

_CLOSED = frozenset({WON, LOST})

# What amoCRM may file on a contact: messages, calls and e-mails, both ways (a note on a
# contact is about the person, not about a request).
CONTACT_REPLY_TYPES = frozenset(
    {
        "outgoing_chat_message",
        "outgoing_call",
        "outgoing_mail",
        "incoming_chat_message",
        "incoming_call",
        "incoming_mail",
    }
)


def counts_on_contact(event_type: str, reaction_types: Iterable[str]) -> bool:
    """Whether a contact's event of ``event_type`` can be a request's: a reaction (or a
    customer's message, when ``reaction_types`` holds the customer's types too)."""
    return event_type in CONTACT_REPLY_TYPES and event_type in set(reaction_types)


@dataclass(frozen=True)
class RequestSpan:
    """When a support request was open, for attributing a contact's reply to it."""

    lead_id: int
    registered_at: datetime
    closed_at: datetime | None = None  # closed since (None: open now)
    # Earlier stretches it was closed (closed, then reopened): from, to.
    closed_before: tuple[tuple[datetime, datetime], ...] = ()

    def open_at(self, at: datetime) -> bool:
        return (
            self.registered_at <= at
            and (self.closed_at is None or at < self.closed_at)
            and not any(start <= at < end for start, end in self.closed_before)
        )


@dataclass(frozen=True)
class Attribution:
    """Where one contact reply goes: ``lead_id``, or none (``candidates`` says why)."""

    lead_id: int | None
    candidates: tuple[int, ...]  # the requests open at the reply's instant

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


def registration(created_at: datetime, events: Iterable[LeadEvent], pipeline_id: int) -> datetime:
    """The request's registration (spec §1): its last move into the pipeline, else its
    creation."""
    entries = [
        event.at
        for event in events
        if event.type == STATUS_CHANGED
        and event.status_after is not None
        and event.status_after[0] == pipeline_id
        and event.status_before is not None
        and event.status_before[0] != pipeline_id
    ]
    return max(entries, default=created_at)


def request_span(
    lead_id: int,
    created_at: datetime,
    closed_at: datetime | None,
    events: Iterable[LeadEvent],
    *,
    pipeline_id: int,
    contact_id: int,
    entity: str = "contact",
) -> RequestSpan:
    """When the request was open as the contact's (or, with ``entity`` ``company``, the
    company's): from its registration, or from when the contact was linked to it if that
    came later (its ``entity_linked`` event; a lead created with its contact has none),
    to when it closed."""
    history = sorted(events, key=lambda event: (event.at, event.event_id))
    linked = [
        event.at
        for event in history
        if event.type == "entity_linked" and event.linked == (entity, contact_id)
    ]
    start = max([registration(created_at, history, pipeline_id), *linked])
    stretches: list[tuple[datetime, datetime]] = []
    closed_since: datetime | None = None
    for event in history:
        if event.type != STATUS_CHANGED or event.status_after is None:
            continue
        closed_now = event.status_after[1] in _CLOSED
        if closed_now and closed_since is None:
            closed_since = event.at
        elif not closed_now and closed_since is not None:
            stretches.append((closed_since, event.at))
            closed_since = None
    if closed_at is None:  # open now: a close its history shows was followed by a reopen
        closed_since = None
    elif closed_since is None:  # closed now, with no close in the history read
        closed_since = closed_at
    return RequestSpan(lead_id, start, closed_since, tuple(stretches))


def attribute(
    at: datetime, requests: Sequence[RequestSpan], named: int | None = None
) -> Attribution:
    """The request a contact's reply at ``at`` counts for: the one open then, or with
    several the one its payload ``named`` (a chat talk linked to it) if that one was open."""
    open_then = tuple(sorted(span.lead_id for span in requests if span.open_at(at)))
    if len(open_then) == 1:
        return Attribution(open_then[0], open_then)
    return Attribution(named if named in open_then else None, open_then)
