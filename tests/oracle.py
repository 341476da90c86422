"""The expected-fields oracle: what a lead's SLA fields must hold, from the engine alone.

:func:`engine_state` runs the engine (:func:`worker.explain.explain`: :mod:`sla.state` on the
inputs :mod:`worker.mapping` reads) on the lead and its whole history as the fake amoCRM holds
them, with the replies filed on its contacts and company that spec §4 gives it.
:func:`expected_fields` turns that state into the values spec §5 puts in the written fields,
by field *name*; :func:`stored_fields` reads what amoCRM holds, by name too. Nothing here goes
through the worker's field ids, diffing, cache or its own state-to-field mapping
(:func:`worker.fields.desired_values`), so a worker that writes a wrong value, or a right one to
the wrong field, differs from the oracle.

The sync-cycle tests, both state machines and the soak (``bench/soak_kit.py``) judge the worker
with it; it lives among the tests, which the soak imports already, and the worker never
imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from amo_client.fake import LOST_STATUS_ID, WON_STATUS_ID, FakeAmoCRM, PipelineRef
from amo_client.models import Event, Lead
from sla.policy import Policy
from sla.replies import attribute, counts_on_contact, request_span
from sla.state import SlaState, StageRoles
from worker.explain import explain
from worker.fields import COMPANY_FIELD_SPECS, FIELD_SPECS, FieldSpec, FieldType
from worker.mapping import lead_events as lead_events_of

AGREED_DUE = "SLA: срок по согласованию"  # typed by people, read by the engine
# The fields spec §5 has the worker write on every request (the ledgers' come with them).
SLA_FIELDS = tuple(spec for spec in FIELD_SPECS if spec.written and spec.needed(frozenset()))
# With a policy that has next-response targets (spec §4.1), two more.
NEXT_RESPONSE_FIELDS = tuple(
    spec
    for spec in FIELD_SPECS
    if spec.written and spec.needed(frozenset(), True) and spec not in SLA_FIELDS
)


class SupportAccount(Protocol):
    """A fake account with a support pipeline (the cycle tests' world, the soak's account)."""

    @property
    def fake(self) -> FakeAmoCRM: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def roles(self) -> StageRoles: ...


def support_roles(support: PipelineRef, *, first: str, hold: str, acceptance: str) -> StageRoles:
    """The stage roles of a support pipeline, straight from the fake (not the worker's lookup):
    won, lost and the acceptance stage are done, and acceptance ends as won."""
    waiting = support.status(acceptance)
    return StageRoles(
        pipeline_id=support.id,
        first_status_id=support.status(first),
        hold=frozenset({support.status(hold)}),
        done=frozenset({WON_STATUS_ID, LOST_STATUS_ID, waiting}),
        acceptance=frozenset({waiting}),
        accepted_status_id=WON_STATUS_ID,
    )


def engine_state(
    account: SupportAccount,
    lead_id: int,
    now: datetime,
    *,
    until: datetime | None = None,
    hidden: Collection[str] = (),
) -> SlaState:
    """The engine at ``now`` on the lead and its whole history as amoCRM holds them (with the
    replies filed on its contacts and company that are its own); ``until``: without the
    events made after it; ``hidden``: without these events (by id), as while the feed did not
    list them yet."""
    fake = account.fake
    raw = fake.lead(lead_id)
    assert raw is not None, lead_id
    events = [Event.model_validate(event) for event in fake.lead_events(lead_id)]
    events += contact_replies(account, lead_id)
    events = [
        event
        for event in events
        if str(event.id) not in hidden and (until is None or event.created_at <= until)
    ]
    return explain(
        Lead.model_validate(raw),
        events,
        policy=account.policy,
        roles=account.roles,
        now=now,
        agreed_due_field_id=fake.field_id(AGREED_DUE),
    ).state


def expected_fields(state: SlaState, *, next_response: bool = False) -> dict[str, object]:
    """What spec §5 says the written SLA fields hold for ``state``, by field name, in the form
    :func:`stored_fields` reads them; with ``next_response``, the next response's two as well
    (spec §4.1)."""

    def unix(moment: datetime | None) -> int | None:
        return None if moment is None else int(moment.timestamp())

    fields: dict[str, object] = {
        "SLA: реакция до": unix(state.reaction.due),
        "SLA: решение до": unix(state.resolution.due),
        "SLA: реакция": unix(state.reaction.finished_at),
        "SLA: реакция просрочена": state.reaction.breached,
        "SLA: решение просрочено": state.resolution.breached,
        "SLA: статус": state.status.value,
        "SLA: осталось, мин": state.remaining_minutes,
    }
    if next_response:
        fields["SLA: ответ до"] = unix(state.next_response.due)
        fields["SLA: ответ просрочен"] = state.next_response.breached
    return fields


def stored_fields(account: SupportAccount, lead_id: int) -> dict[str, object]:
    """The written SLA fields of the lead as amoCRM returns them, by name; with a policy that
    has next-response targets, its two fields too."""
    more = NEXT_RESPONSE_FIELDS if account.policy.next_response is not None else ()
    return read_fields(account.fake.lead(lead_id), (*SLA_FIELDS, *more))


def lead_fields(account: SupportAccount, lead_id: int) -> dict[str, object]:
    """Every lead field the worker knows (the SLA's and the ledgers'), as amoCRM returns them."""
    return read_fields(account.fake.lead(lead_id), FIELD_SPECS)


def company_fields(account: SupportAccount, company_id: int) -> dict[str, object]:
    """Every company field the worker knows (the ledgers'), as amoCRM returns them."""
    return read_fields(account.fake.company(company_id), COMPANY_FIELD_SPECS)


def read_fields(
    raw: Mapping[str, Any] | None, specs: Iterable[FieldSpec[Any]]
) -> dict[str, object]:
    """The fields ``specs`` name on an entity as amoCRM returns it, by name: a date as unix
    seconds, a number as a whole one (amoCRM sends numbers as text), a select as its option's
    text, a checkbox as a bool; a field not set is None, an unset checkbox False."""
    by_name = {
        entry["field_name"]: entry["values"]
        for entry in (raw or {}).get("custom_fields_values") or ()
    }
    found: dict[str, object] = {}
    for spec in specs:
        values = by_name.get(spec.name)
        value = values[0]["value"] if values else None
        if spec.type is FieldType.CHECKBOX:
            found[spec.name] = bool(value)
        elif spec.type is FieldType.NUMERIC and value is not None:
            found[spec.name] = int(Decimal(str(value).replace(",", ".")))
        else:
            found[spec.name] = value
    return found


def contact_replies(account: SupportAccount, lead_id: int) -> list[Event]:
    """The replies filed on the lead's contacts and company that spec §4 gives to this lead,
    judged among every support request of each of them as amoCRM holds them now."""
    fake, pipeline = account.fake, account.roles.pipeline_id
    reaction_types = account.policy.conversation_event_types
    found: list[Event] = []
    raw_lead = fake.lead(lead_id)
    company = Lead.model_validate(raw_lead).company_id if raw_lead is not None else None
    owners = [("contact", c, fake.contact_leads(c)) for c in fake.lead_contacts(lead_id)]
    if company is not None:
        owners.append(("company", company, fake.company_leads(company)))
    for entity, owner_id, linked in owners:
        spans = []
        for other in linked:
            raw = fake.lead(other)
            if raw is None or raw["pipeline_id"] != pipeline:
                continue
            lead = Lead.model_validate(raw)
            history = lead_events_of([Event.model_validate(e) for e in fake.lead_events(other)])
            closed = lead.closed_at if lead.status_id in (WON_STATUS_ID, LOST_STATUS_ID) else None
            spans.append(
                request_span(
                    other,
                    lead.created_at,
                    closed,
                    history,
                    pipeline_id=pipeline,
                    contact_id=owner_id,
                    entity=entity,
                )
            )
        for raw_event in fake.contact_events(owner_id, entity):
            event = Event.model_validate(raw_event)
            if not counts_on_contact(event.type, reaction_types):
                continue
            judged = attribute(event.created_at, spans)
            if judged.ambiguous and event.talk_id is not None:
                talk = fake.talk(event.talk_id) or {}
                named = talk.get("entity_id") if talk.get("entity_type") == "lead" else None
                judged = attribute(event.created_at, spans, named=named)
            if judged.lead_id == lead_id:
                found.append(event.model_copy(update={"entity_id": lead_id, "entity_type": "lead"}))
    return found
