"""Notes on leads and companies: the types amoCRM takes and what it refuses in them, notes added,
edited and deleted, and the event each one records."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from amo_client.fake.events import AccountEvents
from amo_client.fake.replies import ItemError
from amo_client.fake.store import NOTE_EVENTS

TEXT_NOTE_TYPES = frozenset({"common", "service_message", "extended_service_message"})


class AccountNotes(AccountEvents):
    """Keeps the notes of leads and companies and records their events."""

    @property
    def notes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_note(note) for note in self._notes.values()]

    def add_note(
        self,
        entity_id: int,
        text: str | None = None,
        *,
        note_type: str = "common",
        params: Mapping[str, Any] | None = None,
        created_by: int,
        at: float | None = None,
        entity: str = "leads",
    ) -> int:
        """A note on a lead (or on a company, ``entity="companies"``) as a person or a PBX adds it.

        ``text`` becomes ``params.text``; ``params`` holds the rest of the note (a call's
        ``duration`` in seconds, ``phone``, ``uniq``, ``source``, ``link``). The event amoCRM
        records for the type is recorded too, once, with the note's id in ``value_after``
        (``common_note_added`` for a common note, ``incoming_call``/``outgoing_call`` for
        calls). The entity's ``updated_at`` is not touched.
        """
        with self._lock:
            if entity not in self._entities or entity_id not in self._entities[entity]:
                raise KeyError(entity_id)
            body = dict(params or {})
            if text is not None:
                body["text"] = text
            errors = note_content_errors(note_type, body)
            if errors:
                raise ValueError("; ".join(f"{error.path}: {error.detail}" for error in errors))
            return self._store_note(
                entity, entity_id, note_type, body, author=created_by, at=self._when(at)
            )

    def edit_note(self, note_id: int, text: str, *, by: int, at: float | None = None) -> None:
        """Change a text note's text as a person does in the interface.

        The note's ``updated_at`` becomes ``at`` (default: the server clock) and its
        ``updated_by`` becomes ``by``; no event is recorded and the entity is not touched.
        """
        with self._lock:
            note = self._notes.get(note_id)
            if note is None:
                raise KeyError(note_id)
            if note["note_type"] not in TEXT_NOTE_TYPES:
                raise ValueError(f"a {note['note_type']} note has no text to edit")
            note["params"]["text"] = text
            note["updated_at"] = max(note["updated_at"], self._when(at))
            note["updated_by"] = by
            self._touch()

    def delete_note(self, note_id: int, *, by: int, at: float | None = None) -> None:
        """Delete a note as a person does in the interface (the API cannot delete notes).

        The note leaves every list and ``GET .../notes/{id}`` answers 204. A
        ``common_note_deleted`` event by ``by`` is recorded on the note's entity with
        ``value_before`` ``[{"note": {"id": note_id}}]`` and an empty ``value_after``: the
        mirror of ``common_note_added``, as amoCRM's deletion events put what went away in
        ``value_before`` (the exact shape is not documented).
        """
        with self._lock:
            note = self._notes.pop(note_id, None)
            if note is None:
                raise KeyError(note_id)
            self._deleted_notes[note_id] = note
            self._record_event(
                "common_note_deleted",
                note["entity_type"],
                note["entity_id"],
                by,
                self._when(at),
                before=[{"note": {"id": note_id}}],
            )
            self._touch()

    @property
    def deleted_note_ids(self) -> list[int]:
        """Notes deleted in the interface, by id."""
        with self._lock:
            return sorted(self._deleted_notes)

    def _store_note(
        self,
        kind: str,
        entity_id: int,
        note_type: str,
        params: Mapping[str, Any],
        *,
        author: int,
        at: int,
    ) -> int:
        """Keep a checked note and record its event; the new note's id."""
        note_id = self._new_id("note")
        self._notes[note_id] = {
            "id": note_id,
            "entity_id": entity_id,
            "entity_type": kind,
            "created_by": author,
            "updated_by": author,
            "created_at": at,
            "updated_at": at,
            "responsible_user_id": author or self.owner_id,
            "group_id": 0,
            "note_type": note_type,
            "params": copy.deepcopy(dict(params)),
        }
        self._record_event(
            NOTE_EVENTS[note_type], kind, entity_id, author, at, after=[{"note": {"id": note_id}}]
        )
        self._touch()
        return note_id


def note_content_errors(note_type: Any, params: Any) -> list[ItemError]:
    """What amoCRM refuses in a new note's type and ``params``."""
    errors: list[ItemError] = []
    if note_type not in NOTE_EVENTS:
        errors.append(ItemError("NotSupportedChoice", "note_type", "Unknown note type."))
    if params is not None and not isinstance(params, dict):
        errors.append(ItemError("InvalidType", "params", "This value should be of type object."))
    elif note_type in TEXT_NOTE_TYPES:
        text = (params or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            errors.append(ItemError("NotBlank", "params.text", "This value should not be blank."))
    elif note_type in ("call_in", "call_out"):
        duration = (params or {}).get("duration", 0)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            errors.append(
                ItemError("InvalidType", "params.duration", "This value should be of type int.")
            )
    return errors
