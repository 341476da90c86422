"""API handlers for leads, companies, contacts, chat talks and the events feed, with the filters
amoCRM applies to their lists and the 400s it gives for bad filters and bad PATCH items."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from amo_client.fake.changes import Change
from amo_client.fake.paging import (
    EVENTS_MAX_LIMIT,
    LEADS_MAX_LIMIT,
    Call,
    Handlers,
    in_range,
    order_by,
    request_id,
)
from amo_client.fake.query import (
    BadQuery,
    QueryNode,
    as_int,
    as_ints,
    as_range,
    as_strings,
    children,
    lookup,
)
from amo_client.fake.records import Entity, StoredEvent
from amo_client.fake.replies import ItemError, Reply, hal, no_content, problem, validation_failed
from amo_client.fake.store import SINGULAR

MAX_EVENT_FILTER_IDS = 10


@dataclass(frozen=True)
class _EntityFilter:
    """``filter[...]`` and ``query`` of a lead or company list; all given conditions must hold."""

    ids: frozenset[int]
    pipelines: frozenset[int]
    statuses: frozenset[tuple[int, int]]
    responsible: frozenset[int]
    creators: frozenset[int]
    updaters: frozenset[int]
    names: frozenset[str]
    created: tuple[int | None, int | None]
    updated: tuple[int | None, int | None]
    closed: tuple[int | None, int | None]
    search: str

    @classmethod
    def parse(cls, query: dict[str, QueryNode]) -> _EntityFilter:
        def ints(name: str) -> frozenset[int]:
            return frozenset(as_ints(lookup(query, "filter", name), f"filter[{name}]"))

        def span(name: str) -> tuple[int | None, int | None]:
            return as_range(lookup(query, "filter", name), f"filter[{name}]")

        search = query.get("query")
        return cls(
            ids=ints("id"),
            pipelines=ints("pipeline_id"),
            statuses=frozenset(_status_pairs(lookup(query, "filter", "statuses"))),
            responsible=ints("responsible_user_id"),
            creators=ints("created_by"),
            updaters=ints("updated_by"),
            names=frozenset(as_strings(lookup(query, "filter", "name"))),
            created=span("created_at"),
            updated=span("updated_at"),
            closed=span("closed_at"),
            search=search.strip().lower() if isinstance(search, str) else "",
        )

    def matches(self, entity: Entity) -> bool:
        closed_ok = self.closed == (None, None) or (
            entity.closed_at is not None and in_range(entity.closed_at, self.closed)
        )
        return (
            (not self.pipelines or entity.pipeline_id in self.pipelines)
            and (not self.statuses or (entity.pipeline_id, entity.status_id) in self.statuses)
            and (not self.responsible or entity.responsible_user_id in self.responsible)
            and (not self.creators or entity.created_by in self.creators)
            and (not self.updaters or entity.updated_by in self.updaters)
            and (not self.names or entity.name in self.names)
            and in_range(entity.created_at, self.created)
            and in_range(entity.updated_at, self.updated)
            and closed_ok
            and (not self.search or _matches_search(entity, self.search))
        )


def _status_pairs(node: QueryNode | None) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for position, child in enumerate(children(node)):
        name = f"filter[statuses][{position}]"
        if not isinstance(child, dict):
            raise BadQuery(name, "expected pipeline_id and status_id")
        pipeline_id = as_int(child.get("pipeline_id"), f"{name}[pipeline_id]")
        status_id = as_int(child.get("status_id"), f"{name}[status_id]")
        if pipeline_id is None or status_id is None:
            raise BadQuery(name, "expected pipeline_id and status_id")
        pairs.append((pipeline_id, status_id))
    return pairs


def _matches_search(entity: Entity, needle: str) -> bool:
    if needle in entity.name.lower() or needle == str(entity.id):
        return True
    for values in entity.fields.values():
        for value in values:
            if needle in str(value.get("value", "")).lower():
                return True
    return False


class LeadHandlers(Handlers):
    """Answers for leads, companies, contacts, talks and events."""

    # leads and companies

    def _list_entities(self, call: Call, match: re.Match[str]) -> Reply:
        kind = match.group(1)
        with_ = self._with(call)
        if kind == "leads" and "only_deleted" in with_:
            trash = self.state._trash
            deleted = self._selection(
                call, lambda: self._select_deleted(call.query), variant="only_deleted"
            )
            return self._paged(
                call,
                kind,
                deleted,
                lambda lead_id: self.state._render_deleted_lead(trash[lead_id]),
                cap=LEADS_MAX_LIMIT,
            )
        ids = self._selection(call, lambda: self._select_entities(kind, call.query))
        entities = self.state._entities[kind]
        return self._paged(
            call,
            kind,
            ids,
            lambda entity_id: self.state._render_entity(entities[entity_id], with_),
            cap=LEADS_MAX_LIMIT,
        )

    def _select_entities(self, kind: str, query: dict[str, QueryNode]) -> list[int]:
        if not self.state.api_filter_enabled:
            query = {key: node for key, node in query.items() if key != "filter"}
        wanted = _EntityFilter.parse(query)
        pool = self.state._entities[kind]
        candidates: Iterable[Entity] = (
            [pool[entity_id] for entity_id in sorted(wanted.ids) if entity_id in pool]
            if wanted.ids
            else pool.values()
        )
        selected = [entity for entity in candidates if wanted.matches(entity)]
        order_key, descending = order_by(query, ("id", "created_at", "updated_at"))
        selected.sort(key=lambda e: (getattr(e, order_key), e.id), reverse=descending)
        return [entity.id for entity in selected]

    def _select_deleted(self, query: dict[str, QueryNode]) -> list[int]:
        """Leads in the trash: ``filter[id]`` and ``filter[updated_at]`` (the deletion time)
        apply, other filters are ignored since a deleted lead shows no stage, name or dates."""
        ids = frozenset(as_ints(lookup(query, "filter", "id"), "filter[id]"))
        deleted_between = as_range(lookup(query, "filter", "updated_at"), "filter[updated_at]")
        selected = [
            entity
            for entity in self.state._trash.values()
            if (not ids or entity.id in ids) and in_range(entity.deleted_at or 0, deleted_between)
        ]
        order_key, descending = order_by(query, ("id", "updated_at"))
        selected.sort(
            key=lambda e: ((e.deleted_at or 0) if order_key == "updated_at" else e.id, e.id),
            reverse=descending,
        )
        return [entity.id for entity in selected]

    def _get_entity(self, call: Call, match: re.Match[str]) -> Reply:
        kind, entity_id = match.group(1), int(match.group(2))
        with_ = self._with(call)
        if kind == "leads" and "only_deleted" in with_:
            trashed = self.state._trash.get(entity_id)
            if trashed is None:
                return no_content()
            return hal(self.state._render_deleted_lead(trashed))
        entity = self.state._entities[kind].get(entity_id)
        if entity is None:
            return no_content()
        return hal(self.state._render_entity(entity, with_))

    def _patch_entities(self, call: Call, match: re.Match[str]) -> Reply:
        kind = match.group(1)
        items = call.body
        if not isinstance(items, list) or not items:
            return problem(400, "Request validation failed", **{"validation-errors": []})
        changes: list[Change] = []
        rejected: list[tuple[str, list[ItemError]]] = []
        for index, item in enumerate(items):
            change, errors = self.state._validate_change(kind, item)
            if errors:
                rejected.append((request_id(item, index), errors))
            elif change is not None:
                changes.append(change)
        if rejected:
            return validation_failed(rejected)
        at = self.state.now()
        for change in changes:
            self.state._apply_change(change, call.user_id, at)
        return hal(
            {
                "_links": self.state._href(f"/api/v4/{kind}"),
                "_embedded": {
                    kind: [
                        {
                            "id": change.entity.id,
                            "updated_at": change.entity.updated_at,
                            "_links": self.state._href(f"/api/v4/{kind}/{change.entity.id}"),
                        }
                        for change in changes
                    ]
                },
            }
        )

    def _patch_entity(self, call: Call, match: re.Match[str]) -> Reply:
        kind, entity_id = match.group(1), int(match.group(2))
        if entity_id not in self.state._entities[kind]:
            return problem(404, "Entity not found")
        item = dict(call.body) if isinstance(call.body, dict) else call.body
        if isinstance(item, dict):
            item["id"] = entity_id
        change, errors = self.state._validate_change(kind, item)
        if change is None:
            return validation_failed([("0", errors)])
        self.state._apply_change(change, call.user_id, self.state.now())
        entity = change.entity
        return hal(
            {
                "id": entity.id,
                "updated_at": entity.updated_at,
                "_links": self.state._href(f"/api/v4/{kind}/{entity.id}"),
            }
        )

    # contacts and talks

    def _get_contact(self, call: Call, match: re.Match[str]) -> Reply:
        """A contact; ``with=leads`` lists the leads it is linked to (``_embedded.leads``)."""
        contact_id = int(match.group(1))
        entity = self.state._entities["contacts"].get(contact_id)
        if entity is None:
            return no_content()
        out: dict[str, Any] = {
            "id": entity.id,
            "name": entity.name,
            "created_at": entity.created_at,
            "updated_at": entity.updated_at,
            "account_id": self.state.account_id,
            "_links": self.state._href(f"/api/v4/contacts/{entity.id}"),
            "_embedded": {"tags": [], "companies": []},
        }
        if "leads" in self._with(call):
            out["_embedded"]["leads"] = [
                {"id": lead_id, "_links": self.state._href(f"/api/v4/leads/{lead_id}")}
                for lead_id in self.state.contact_leads(contact_id)
            ]
        return hal(out)

    def _get_talk(self, call: Call, match: re.Match[str]) -> Reply:
        talk = self.state.talk(int(match.group(1)))
        return no_content() if talk is None else hal(talk)

    # events

    def _list_events(self, call: Call, match: re.Match[str]) -> Reply:
        query = call.query
        entity_types = as_strings(lookup(query, "filter", "entity"))
        entity_ids = as_ints(lookup(query, "filter", "entity_id"), "filter[entity_id]")
        creators = as_ints(lookup(query, "filter", "created_by"), "filter[created_by]")
        rejected: list[ItemError] = []
        if len(entity_ids) > MAX_EVENT_FILTER_IDS:
            rejected.append(
                ItemError(
                    "TooManyElements",
                    "filter.entity_id",
                    f"This collection should contain {MAX_EVENT_FILTER_IDS} elements or less.",
                )
            )
        if entity_ids and len(set(entity_types)) != 1:
            rejected.append(
                ItemError(
                    "NotSupportedChoice",
                    "filter.entity",
                    "Filter by entity_id needs exactly one entity type.",
                )
            )
        if len(creators) > MAX_EVENT_FILTER_IDS:
            rejected.append(
                ItemError(
                    "TooManyElements",
                    "filter.created_by",
                    f"This collection should contain {MAX_EVENT_FILTER_IDS} elements or less.",
                )
            )
        if rejected:
            return validation_failed([("0", rejected)])
        self.state._index_due_events()
        events = self._selection(
            call, lambda: self._select_events(query, entity_types, entity_ids, creators)
        )
        return self._paged(call, "events", events, self.state._render_event, cap=EVENTS_MAX_LIMIT)

    def _select_events(
        self,
        query: dict[str, QueryNode],
        entity_types: list[str],
        entity_ids: list[int],
        creators: list[int],
    ) -> list[StoredEvent]:
        types = set(as_strings(lookup(query, "filter", "type")))
        event_ids = set(as_strings(lookup(query, "filter", "id")))
        created_from, created_to = as_range(
            lookup(query, "filter", "created_at"), "filter[created_at]"
        )
        wanted_entities = {SINGULAR.get(name, name) for name in entity_types}
        creator_set = set(creators)
        candidates: Iterable[StoredEvent]
        if entity_ids:
            entity_type = next(iter(wanted_entities))
            candidates = [
                event
                for entity_id in dict.fromkeys(entity_ids)
                for event in self.state._events_by_entity.get((entity_type, entity_id), [])
            ]
        else:
            candidates = self.state._events
        selected = [
            event
            for event in candidates
            if event.indexed
            and (not wanted_entities or event.entity_type in wanted_entities)
            and (not types or event.type in types)
            and (not event_ids or event.id in event_ids)
            and (not creator_set or event.created_by in creator_set)
            and (created_from is None or event.created_at >= created_from)
            and (created_to is None or event.created_at <= created_to)
        ]
        selected.sort(key=lambda event: (event.created_at, event.seq), reverse=True)
        return selected

    def _get_event(self, call: Call, match: re.Match[str]) -> Reply:
        self.state._index_due_events()
        event = self.state._events_by_id.get(match.group(1))
        if event is None or not event.indexed:
            return no_content()
        return hal(self.state._render_event(event))
