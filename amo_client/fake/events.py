"""The account's events feed: recording what happens, with ids as amoCRM makes them, and
listing events late as amoCRM's indexing does."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from amo_client.fake.records import StoredEvent
from amo_client.fake.render import AccountRendering
from amo_client.fake.store import PLURAL, SINGULAR
from amo_client.fake.webhooks import AccountWebhooks

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class AccountEvents(AccountWebhooks, AccountRendering):
    """Records events, sends the hooks they call for, and lists them when indexed."""

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first, listed by the feed yet or not (the API: newest first)."""
        with self._lock:
            ordered = sorted(self._events, key=lambda event: (event.created_at, event.seq))
            return [self._render_event(event) for event in ordered]

    def lead_events(self, lead_id: int, event_type: str | None = None) -> list[dict[str, Any]]:
        """Events of one lead, oldest first, optionally of one type."""
        with self._lock:
            stored = self._events_by_entity.get(("lead", lead_id), [])
            ordered = sorted(stored, key=lambda event: (event.created_at, event.seq))
            return [
                self._render_event(event)
                for event in ordered
                if event_type is None or event.type == event_type
            ]

    def contact_events(self, contact_id: int, entity: str = "contact") -> list[dict[str, Any]]:
        """Events filed on one contact (or, with ``entity="company"``, company), oldest first."""
        with self._lock:
            stored = self._events_by_entity.get((entity, contact_id), [])
            ordered = sorted(stored, key=lambda event: (event.created_at, event.seq))
            return [self._render_event(event) for event in ordered]

    def add_event(
        self,
        lead_id: int,
        event_type: str,
        *,
        created_by: int,
        at: float | None = None,
        value_after: list[dict[str, Any]] | None = None,
        value_before: list[dict[str, Any]] | None = None,
        entity_type: str = "lead",
        visible_after: timedelta | float | None = None,
    ) -> str:
        """Record an event (``outgoing_chat_message``, ``outgoing_call``, ``common_note_added``...).

        ``created_by`` 0 is a robot or a bot. Without ``value_after`` the fake fills in what
        amoCRM puts there for messages and calls; for a call or a note that is a fresh note id
        with no note behind it (:meth:`add_note` keeps the note and records its event).
        The entity's ``updated_at`` is not touched.
        ``visible_after`` (default :attr:`event_index_delay`) is how long after ``at`` the
        events feed starts listing the event: amoCRM indexes some events seconds to minutes
        late, while ``created_at`` keeps the moment it happened.
        """
        with self._lock:
            plural = PLURAL.get(entity_type, entity_type)
            if plural in self._entities and lead_id not in self._entities[plural]:
                raise KeyError(lead_id)
            when = int(at) if at is not None else self.now()
            after = (
                value_after if value_after is not None else self._default_value_after(event_type)
            )
            delay = (
                visible_after.total_seconds()
                if isinstance(visible_after, timedelta)
                else visible_after
            )
            event_id = self._record_event(
                event_type,
                plural,
                lead_id,
                created_by,
                when,
                before=value_before,
                after=after,
                delay=delay,
            )
            self._touch()
            return event_id

    def _default_value_after(self, event_type: str) -> list[dict[str, Any]] | None:
        if event_type.endswith("chat_message"):
            return [
                {
                    "message": {
                        "id": secrets.token_hex(16),
                        "origin": "telegram",
                        "talk_id": self._new_id("talk"),
                    }
                }
            ]
        if event_type.endswith("_call") or event_type.endswith("note_added"):
            return [{"note": {"id": self._new_id("note")}}]
        return None

    def _event_id(self, at: int) -> str:
        number = (max(at, 0) * 1000 & (2**48 - 1)) << 80 | self._new_id("event")
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[number & 31])
            number >>= 5
        return "".join(reversed(chars))

    def _record_event(
        self,
        event_type: str,
        plural: str,
        entity_id: int,
        created_by: int,
        at: int,
        *,
        before: list[dict[str, Any]] | None = None,
        after: list[dict[str, Any]] | None = None,
        delay: float | None = None,
    ) -> str:
        lag = self.event_index_delay if delay is None else delay
        visible_at = at + lag
        event = StoredEvent(
            seq=len(self._events),
            id=self._event_id(at),
            type=event_type,
            entity_type=SINGULAR.get(plural, plural),
            entity_id=entity_id,
            created_by=created_by,
            created_at=at,
            value_after=after,
            value_before=before,
            visible_at=visible_at,
            indexed=lag <= 0 or visible_at <= self._clock(),
        )
        self._events.append(event)
        self._events_by_id[event.id] = event
        self._events_by_entity.setdefault((event.entity_type, entity_id), []).append(event)
        if not event.indexed:
            self._unindexed.append(event)
        if self._subscriptions:
            self._hook_event(event)
        return event.id

    def _index_due_events(self) -> None:
        """Let the feed list every late event whose time has come (the API calls this)."""
        if not self._unindexed:
            return
        now = self._clock()
        due = [event for event in self._unindexed if event.visible_at <= now]
        if due:
            for event in due:
                event.indexed = True
            self._unindexed = [event for event in self._unindexed if not event.indexed]
            self._touch()

    def release_events(self) -> int:
        """Index every late event now, whatever its delay; the number of events released."""
        with self._lock:
            released = len(self._unindexed)
            for event in self._unindexed:
                event.indexed = True
            self._unindexed = []
            if released:
                self._touch()
            return released

    @property
    def unindexed_event_ids(self) -> list[str]:
        """Events that happened but are not yet listed by ``GET /api/v4/events``."""
        with self._lock:
            now = self._clock()
            return [event.id for event in self._unindexed if event.visible_at > now]
