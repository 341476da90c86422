"""The tracked leads: each support request's last-read copy and its event history.

The cache is what the cycle computes from; amoCRM is the truth and every entry can be
read again from it. It lives in memory between cycles and in the state store across
restarts (:mod:`worker.store`), written in one transaction per cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from amo_client.models import EntityRef, Event, Lead, LeadEmbedded, Tag
from sla.state import LeadEvent
from worker.mapping import lead_events
from worker.packed import pack, unpack
from worker.store import StateStore

GENERATION = "generation"


@dataclass(frozen=True, slots=True)
class TrackedLead:
    """A cached lead: the few values the cycle consults on every pass, the rest as JSON.

    As pydantic models, with every field value a model of its own, 10,000 leads cost
    over 100 MB; as amoCRM's JSON (the form the store keeps too), deflated, a few MB.
    The lead is parsed when it is computed, one at a time.
    """

    packed: bytes  # amoCRM's JSON of the slimmed lead, UTF-8, deflated (:func:`pack`)
    status_id: int
    pipeline_id: int
    created_at: datetime
    updated_at: datetime
    # Where amoCRM may file the request's replies: ("contact", id) and ("company", id).
    owners: tuple[tuple[str, int], ...] = ()
    events: tuple[LeadEvent, ...] = ()

    @classmethod
    def of(cls, lead: Lead, events: Iterable[Event] = ()) -> TrackedLead:
        return cls(
            packed=pack(lead.model_dump_json(by_alias=True, exclude_none=True).encode()),
            status_id=lead.status_id,
            pipeline_id=lead.pipeline_id,
            created_at=lead.created_at,
            updated_at=lead.updated_at,
            owners=(
                *((_CONTACT, contact) for contact in lead.contact_ids),
                *(() if lead.company_id is None else ((_COMPANY, lead.company_id),)),
            ),
        ).with_events(events)

    @property
    def data(self) -> str:
        """The lead's JSON, as the store keeps it."""
        return unpack(self.packed).decode()

    @property
    def lead(self) -> Lead:
        return Lead.model_validate_json(unpack(self.packed))

    def with_lead(self, lead: Lead) -> TrackedLead:
        """The same history with another copy of the lead."""
        return replace(TrackedLead.of(lead), events=self.events)

    def with_events(self, events: Iterable[Event]) -> TrackedLead:
        """This lead with the events it has not seen yet (by id) added to its history."""
        seen = {event.event_id for event in self.events}
        unseen = lead_events({e.id: e for e in events if e.id not in seen}.values())
        if not unseen:
            return self
        return replace(self, events=tuple(sorted([*self.events, *unseen], key=_event_order)))


_CONTACT, _COMPANY = sys.intern("contact"), sys.intern("company")


def _event_order(event: LeadEvent) -> tuple[datetime, str]:
    return (event.at, event.event_id)


def slim(lead: Lead, keep_field_ids: Iterable[int | None]) -> Lead:
    """The part of a lead the cycle reads.

    The cache holds every open lead of the pipeline, and a lead as amoCRM sends it
    carries all of its fields, links and extras besides."""
    keep = set(keep_field_ids)
    fields = [f for f in lead.custom_fields_values or () if f.field_id in keep]
    return Lead(
        id=lead.id,
        name=lead.name,
        status_id=lead.status_id,
        pipeline_id=lead.pipeline_id,
        responsible_user_id=lead.responsible_user_id,
        created_by=lead.created_by,
        updated_by=lead.updated_by,
        created_at=lead.created_at,
        updated_at=lead.updated_at,
        closed_at=lead.closed_at,
        is_deleted=lead.is_deleted,
        custom_fields_values=fields or None,
        embedded=LeadEmbedded(
            tags=[Tag(id=tag.id, name=tag.name) for tag in lead.embedded.tags],
            companies=[EntityRef(id=company.id) for company in lead.embedded.companies[:1]],
            contacts=[EntityRef(id=contact.id) for contact in lead.embedded.contacts],
        ),
    )


def load_tracked(store: StateStore) -> dict[int, TrackedLead]:
    """The tracked leads with their histories, as the last whole cycle stored them."""
    leads = store.load_leads()
    events = store.load_events(leads)
    return {
        lead_id: TrackedLead.of(
            Lead.model_validate_json(data),
            (Event.model_validate_json(raw) for raw in events.get(lead_id, ())),
        )
        for lead_id, data in leads.items()
    }
