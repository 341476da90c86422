"""Replies filed on the lead's contact, given to the request they answer (spec §4).

The events feed carries the contacts' events in the same requests as the leads' (one
``filter[entity]`` of both), so this costs no request. Each contact event of a reaction
type is attributed by :func:`sla.replies.attribute` among the tracked requests linked
to the contact (read ``with=contacts``) and becomes an event of that request, under the
event's own id, so it is stored, de-duplicated and read back like the lead's own events.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime

import structlog

from amo_client.client import AmoClient
from amo_client.models import Event, Lead
from sla.replies import RequestSpan, attribute, counts_on_contact, request_span
from sla.state import LOST, STATUS_CHANGED, WON
from worker.cache import TrackedLead

log = structlog.get_logger("worker.replies")

CONTACT = "contact"
COMPANY = "company"
FILED_ON = frozenset({CONTACT, COMPANY})  # where amoCRM may file a request's replies
PLURAL = {CONTACT: "contacts", COMPANY: "companies"}
# The lead events that say when a contact became the lead's (read with the feed).
CONTACT_LINKS = frozenset({"entity_linked"})


def spans_by_contact(
    tracked: Mapping[int, TrackedLead],
    pipeline_id: int,
    wanted: Collection[tuple[str, int]],
) -> dict[tuple[str, int], list[RequestSpan]]:
    """The tracked requests of each ``wanted`` contact and company, as spans of when they
    were open (only those requests' copies are parsed)."""
    spans: dict[tuple[str, int], list[RequestSpan]] = {}
    for lead_id, item in tracked.items():
        owners = [owner for owner in item.owners if owner in wanted]
        if not owners:
            continue
        lead = item.lead
        for entity, owner_id in owners:
            spans.setdefault((entity, owner_id), []).append(
                request_span(
                    lead_id,
                    lead.created_at,
                    _closed_at(lead),
                    item.events,
                    pipeline_id=pipeline_id,
                    contact_id=owner_id,
                    entity=entity,
                )
            )
    return spans


def contact_replies(
    events: Iterable[Event],
    tracked: Mapping[int, TrackedLead],
    *,
    pipeline_id: int,
    reaction_types: Collection[str],
    talk_lead: Callable[[int], int | None] = lambda talk_id: None,
) -> list[Event]:
    """The contacts' reaction events, each as an event of the request it answers;
    ``talk_lead`` names a chat talk's lead, asked only when several requests were open."""
    replies = [
        e for e in events if e.entity_type in FILED_ON and counts_on_contact(e.type, reaction_types)
    ]
    if not replies:
        return []
    spans = spans_by_contact(
        tracked, pipeline_id, {(event.entity_type, event.entity_id) for event in replies}
    )
    attributed: list[Event] = []
    for event in replies:
        requests = spans.get((event.entity_type, event.entity_id))
        if not requests:
            continue
        found = attribute(event.created_at, requests)
        if found.ambiguous and event.talk_id is not None:
            found = attribute(event.created_at, requests, named=talk_lead(event.talk_id))
        if found.lead_id is not None:
            attributed.append(
                event.model_copy(update={"entity_id": found.lead_id, "entity_type": "lead"})
            )
        elif found.ambiguous:
            log.warning(
                "reaction_ambiguous",
                **{f"{event.entity_type}_id": event.entity_id},
                event_id=event.id,
                lead_ids=list(found.candidates),
                problem="a reply on a contact with several open requests counts for none",
            )
    return attributed


def replies_for_lead(
    client: AmoClient, lead: Lead, *, pipeline_id: int, reaction_types: Collection[str]
) -> list[Event]:
    """One request's replies filed on its contacts and company, judged among every support
    request of each of them as amoCRM holds them now (``explain``, which has no cache)."""
    owners = [(CONTACT, c) for c in lead.contact_ids]
    if lead.company_id is not None:
        owners.append((COMPANY, lead.company_id))
    if not owners:
        return []
    others = {lead.id}
    for entity, owner_id in owners:
        others |= set(client.contact_lead_ids(owner_id, PLURAL[entity]))
    leads = {
        other.id: other
        for other in client.iter_leads(ids=sorted(others), with_=("contacts",))
        if other.pipeline_id == pipeline_id
    }
    histories = by_entity(
        client.iter_events(
            entity="lead",
            entity_ids=sorted(leads),
            types=sorted(CONTACT_LINKS | {STATUS_CHANGED}),
        )
    )
    tracked = {i: TrackedLead.of(other, histories.get(i, ())) for i, other in leads.items()}
    events: list[Event] = []
    for entity in (CONTACT, COMPANY):
        ids = [owner_id for kind, owner_id in owners if kind == entity]
        if ids:
            events += client.iter_events(
                entity=entity, entity_ids=ids, types=sorted(reaction_types)
            )
    return [
        event
        for event in contact_replies(
            events,
            tracked,
            pipeline_id=pipeline_id,
            reaction_types=reaction_types,
            talk_lead=client.talk_lead_id,
        )
        if event.entity_id == lead.id
    ]


def by_entity(events: Iterable[Event]) -> dict[int, list[Event]]:
    grouped: dict[int, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.entity_id, []).append(event)
    return grouped


def _closed_at(lead: Lead) -> datetime | None:
    return lead.closed_at if lead.status_id in (WON, LOST) else None
