"""Leads, companies and contacts: seeded, edited and linked as people and robots do, and the
replies filed on them where the account files them."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from amo_client.fake.changes import AccountChanges
from amo_client.fake.fields import normalize_values, python_to_values
from amo_client.fake.records import LOST_STATUS_ID, WON_STATUS_ID, Entity


class AccountLeads(AccountChanges):
    """Adds, changes, links and reads leads, companies and contacts."""

    # ------------------------------------------------------------------ inspection

    def lead(self, lead_id: int) -> dict[str, Any] | None:
        """The lead as ``GET /api/v4/leads/{id}`` returns it, or None."""
        with self._lock:
            entity = self._entities["leads"].get(lead_id)
            return self._render_entity(entity, set()) if entity is not None else None

    @property
    def leads(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {
                lead_id: self._render_entity(entity, set())
                for lead_id, entity in self._entities["leads"].items()
            }

    def company(self, company_id: int) -> dict[str, Any] | None:
        with self._lock:
            entity = self._entities["companies"].get(company_id)
            return self._render_entity(entity, set()) if entity is not None else None

    @property
    def companies(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {
                company_id: self._render_entity(entity, set())
                for company_id, entity in self._entities["companies"].items()
            }

    def field_value(self, lead_id: int, field_id: int) -> list[dict[str, Any]] | None:
        """The stored ``values`` of one custom field of a lead, or None when empty."""
        with self._lock:
            values = self._entities["leads"][lead_id].fields.get(field_id)
            return copy.deepcopy(values) if values is not None else None

    def lead_contacts(self, lead_id: int) -> list[int]:
        """A lead's contacts, the main one first."""
        with self._lock:
            lead = self._entities["leads"].get(lead_id)
            return list(lead.contact_ids) if lead is not None else []

    def talk(self, talk_id: int) -> dict[str, Any] | None:
        """A chat talk as ``GET /api/v4/talks/{id}`` returns it (None: no such talk)."""
        with self._lock:
            talk = self._talks.get(talk_id)
            return None if talk is None else {**talk, "account_id": self.account_id}

    # ------------------------------------------------------------------ seeding and edits

    def add_company(
        self,
        name: str,
        *,
        company_id: int | None = None,
        responsible_user_id: int | None = None,
        tags: Sequence[str] = (),
        custom_fields: Mapping[int, Any] | None = None,
        created_at: float | None = None,
        created_by: int | None = None,
    ) -> int:
        with self._lock:
            at = int(created_at) if created_at is not None else self.now()
            author = created_by if created_by is not None else self.owner_id
            entity = Entity(
                kind="companies",
                id=self._claim_id("company", company_id),
                name=name,
                responsible_user_id=responsible_user_id or self.owner_id,
                created_by=author,
                updated_by=author,
                created_at=at,
                updated_at=at,
            )
            self._seed_contents(entity, tags, custom_fields)
            self._entities["companies"][entity.id] = entity
            self._touch()
            return entity.id

    def add_lead(
        self,
        name: str = "Обращение",
        *,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        lead_id: int | None = None,
        responsible_user_id: int | None = None,
        tags: Sequence[str] = (),
        custom_fields: Mapping[int, Any] | None = None,
        created_at: float | None = None,
        created_by: int = 0,
        company_id: int | None = None,
        price: int = 0,
        record_added_event: bool = True,
    ) -> int:
        """A lead, by default in the main pipeline's first working stage.

        ``custom_fields`` maps field id to a value, a list of values, an enum value or an
        enum id (for list fields), or raw API ``values`` dicts. ``created_by`` 0 means the
        request came in by itself (a form, a chat, the mail); a ``lead_added`` event is
        recorded unless ``record_added_event`` is False.
        """
        with self._lock:
            pipeline = self._pipeline_for(pipeline_id)
            target_status = (
                status_id if status_id is not None else self._pipeline_ref(pipeline).first_status_id
            )
            if pipeline.status(target_status) is None:
                raise ValueError(f"status {target_status} is not in pipeline {pipeline.id}")
            if company_id is not None and company_id not in self._entities["companies"]:
                raise ValueError(f"no company {company_id}")
            at = int(created_at) if created_at is not None else self.now()
            entity = Entity(
                kind="leads",
                id=self._claim_id("lead", lead_id),
                name=name,
                responsible_user_id=responsible_user_id or self.owner_id,
                created_by=created_by,
                updated_by=created_by,
                created_at=at,
                updated_at=at,
                price=price,
                pipeline_id=pipeline.id,
                status_id=target_status,
                closed_at=at if target_status in (WON_STATUS_ID, LOST_STATUS_ID) else None,
                company_ids=[company_id] if company_id is not None else [],
            )
            self._seed_contents(entity, tags, custom_fields)
            self._entities["leads"][entity.id] = entity
            if record_added_event:
                self._record_event(
                    "lead_added",
                    "leads",
                    entity.id,
                    created_by,
                    at,
                    after=[{"lead_status": {"id": target_status, "pipeline_id": pipeline.id}}],
                )
            self._touch()
            return entity.id

    def _seed_contents(
        self, entity: Entity, tags: Sequence[str], custom_fields: Mapping[int, Any] | None
    ) -> None:
        for tag in tags:
            self._tag_id(entity.kind, tag)
            if tag not in entity.tags:
                entity.tags.append(tag)
        for field_id, value in (custom_fields or {}).items():
            definition = self._fields[entity.kind].get(field_id)
            if definition is None:
                raise ValueError(f"no {entity.kind} custom field {field_id}")
            values, errors = normalize_values(
                definition, python_to_values(definition, value), f"custom_fields_values.{field_id}"
            )
            if errors:
                raise ValueError("; ".join(f"{error.path}: {error.detail}" for error in errors))
            if values is not None:
                entity.fields[field_id] = values

    def move_lead(
        self,
        lead_id: int,
        status_id: int,
        *,
        by_user: int,
        pipeline_id: int | None = None,
        at: float | None = None,
    ) -> None:
        """Move a lead as a person (or a robot, ``by_user=0``) would; records the status change."""
        self.update_lead(
            lead_id, by_user=by_user, at=at, status_id=status_id, pipeline_id=pipeline_id
        )

    def update_lead(
        self,
        lead_id: int,
        *,
        by_user: int,
        at: float | None = None,
        name: str | None = None,
        status_id: int | None = None,
        pipeline_id: int | None = None,
        responsible_user_id: int | None = None,
        tags: Sequence[str] | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
        custom_fields: Mapping[int, Any] | None = None,
    ) -> bool:
        """Change a lead as a person in the interface would; False when nothing changed.

        Records the same events an API PATCH does, attributed to ``by_user`` at ``at``
        (default: the server clock); ``updated_at`` becomes the latest change time.
        """
        item: dict[str, Any] = {"id": lead_id}
        if status_id is not None:
            item["status_id"] = status_id
        if pipeline_id is not None:
            item["pipeline_id"] = pipeline_id
        return self._update_entity(
            "leads",
            item,
            by_user=by_user,
            at=at,
            name=name,
            responsible_user_id=responsible_user_id,
            tags=tags,
            add_tags=add_tags,
            remove_tags=remove_tags,
            custom_fields=custom_fields,
        )

    def update_company(
        self,
        company_id: int,
        *,
        by_user: int,
        at: float | None = None,
        name: str | None = None,
        responsible_user_id: int | None = None,
        tags: Sequence[str] | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
        custom_fields: Mapping[int, Any] | None = None,
    ) -> bool:
        """Change a company as a person in the interface would; False when nothing changed.

        ``custom_fields`` takes what :meth:`add_lead` takes (None as a value clears the
        field). The company's ``updated_at`` becomes ``at`` (default: the server clock) and
        each changed field records a ``custom_field_{id}_value_changed`` event on it.
        """
        return self._update_entity(
            "companies",
            {"id": company_id},
            by_user=by_user,
            at=at,
            name=name,
            responsible_user_id=responsible_user_id,
            tags=tags,
            add_tags=add_tags,
            remove_tags=remove_tags,
            custom_fields=custom_fields,
        )

    def _update_entity(
        self,
        kind: str,
        item: dict[str, Any],
        *,
        by_user: int,
        at: float | None,
        name: str | None,
        responsible_user_id: int | None,
        tags: Sequence[str] | None,
        add_tags: Sequence[str],
        remove_tags: Sequence[str],
        custom_fields: Mapping[int, Any] | None,
    ) -> bool:
        with self._lock:
            if item["id"] not in self._entities[kind]:
                raise KeyError(item["id"])
            if name is not None:
                item["name"] = name
            if responsible_user_id is not None:
                item["responsible_user_id"] = responsible_user_id
            if tags is not None:
                item["_embedded"] = {"tags": [{"name": tag} for tag in tags]}
            if add_tags:
                item["tags_to_add"] = [{"name": tag} for tag in add_tags]
            if remove_tags:
                item["tags_to_delete"] = [{"name": tag} for tag in remove_tags]
            if custom_fields is not None:
                definitions = self._fields[kind]
                item["custom_fields_values"] = [
                    {
                        "field_id": field_id,
                        "values": python_to_values(definitions[field_id], value)
                        if field_id in definitions
                        else None,
                    }
                    for field_id, value in custom_fields.items()
                ]
            change, errors = self._validate_change(kind, item)
            if change is None:
                raise ValueError("; ".join(f"{error.path}: {error.detail}" for error in errors))
            return self._apply_change(change, by_user, self._when(at))

    # ------------------------------------------------------------------ contacts, links and replies

    def add_contact(
        self, name: str, *, contact_id: int | None = None, created_at: float | None = None
    ) -> int:
        """A contact (a customer's person); link it to leads with :meth:`link_contact`."""
        with self._lock:
            at = int(created_at) if created_at is not None else self.now()
            entity = Entity(
                kind="contacts",
                id=self._claim_id("contact", contact_id),
                name=name,
                responsible_user_id=self.owner_id,
                created_by=self.owner_id,
                updated_by=self.owner_id,
                created_at=at,
                updated_at=at,
            )
            self._entities["contacts"][entity.id] = entity
            self._touch()
            return entity.id

    def link_contact(
        self, lead_id: int, contact_id: int, *, by: int = 0, at: float | None = None
    ) -> None:
        """Link a contact to a lead (the first linked is the main one); the lead's JSON with
        ``with=contacts`` lists it, its ``updated_at`` becomes ``at`` and it gets an
        ``entity_linked`` event naming the contact."""
        with self._lock:
            lead = self._entities["leads"].get(lead_id)
            if lead is None:
                raise KeyError(lead_id)
            if contact_id not in self._entities["contacts"]:
                raise KeyError(contact_id)
            if contact_id in lead.contact_ids:
                return
            when = self._when(at)
            lead.contact_ids.append(contact_id)
            self._record_link("entity_linked", lead_id, contact_id, by, when, kind="contact")
            lead.updated_at = max(lead.updated_at, when)
            lead.updated_by = by
            self._touch()

    def link_company(
        self, lead_id: int, company_id: int, *, by: int = 0, at: float | None = None
    ) -> None:
        """Link a lead to a company (a lead has at most one: a linked one is replaced).

        The lead's JSON then carries ``_embedded.companies: [{"id": company_id, ...}]`` and
        its ``updated_at`` becomes ``at``; the lead gets an ``entity_linked`` event whose
        ``value_after`` is ``[{"link": {"entity": {"id": company_id, "type": "company"}}}]``
        (and an ``entity_unlinked`` one for a replaced company), as practitioners saw on
        real accounts.
        """
        with self._lock:
            lead = self._entities["leads"].get(lead_id)
            if lead is None:
                raise KeyError(lead_id)
            if company_id not in self._entities["companies"]:
                raise KeyError(company_id)
            if lead.company_ids == [company_id]:
                return
            when = self._when(at)
            for old in lead.company_ids:
                self._record_link("entity_unlinked", lead_id, old, by, when)
            lead.company_ids = [company_id]
            self._record_link("entity_linked", lead_id, company_id, by, when)
            lead.updated_at = max(lead.updated_at, when)
            lead.updated_by = by
            self._touch()

    def unlink_company(self, lead_id: int, *, by: int = 0, at: float | None = None) -> None:
        """Take the lead's company off it; ``updated_at`` and events as :meth:`link_company`."""
        with self._lock:
            lead = self._entities["leads"].get(lead_id)
            if lead is None:
                raise KeyError(lead_id)
            if not lead.company_ids:
                return
            when = self._when(at)
            for old in lead.company_ids:
                self._record_link("entity_unlinked", lead_id, old, by, when)
            lead.company_ids = []
            lead.updated_at = max(lead.updated_at, when)
            lead.updated_by = by
            self._touch()

    def _record_link(  # noqa: PLR0917 - the fake's own private helper
        self,
        event_type: str,
        lead_id: int,
        company_id: int,
        by: int,
        at: int,
        kind: str = "company",
    ) -> None:
        if not self.record_change_events:
            return
        link = [{"link": {"entity": {"id": company_id, "type": kind}}}]
        if event_type == "entity_linked":
            self._record_event(event_type, "leads", lead_id, by, at, after=link)
        else:
            self._record_event(event_type, "leads", lead_id, by, at, before=link)

    def reply(
        self,
        lead_id: int,
        event_type: str,
        *,
        created_by: int,
        at: float | None = None,
        talk_about_lead: bool = False,
    ) -> str:
        """A chat message, call or e-mail about a lead, filed where this account files them:
        on the lead, or (``replies_filed_on = "contact"``) on the lead's main contact. With
        ``talk_about_lead`` a chat message on the contact belongs to a talk linked to the
        lead (``GET /api/v4/talks/{id}`` names it)."""
        with self._lock:
            lead = self._entities["leads"].get(lead_id)
            if lead is None:
                raise KeyError(lead_id)
            if self.replies_filed_on == "company" and lead.company_ids:
                return self.add_event(
                    lead.company_ids[0],
                    event_type,
                    created_by=created_by,
                    at=at,
                    entity_type="company",
                )
            if self.replies_filed_on == "contact" and lead.contact_ids:
                contact_id = lead.contact_ids[0]
                value_after = None
                if event_type.endswith("chat_message") and talk_about_lead:
                    talk_id = self._talk_for(contact_id, lead_id)
                    value_after = [
                        {
                            "message": {
                                "id": secrets.token_hex(16),
                                "origin": "telegram",
                                "talk_id": talk_id,
                            }
                        }
                    ]
                return self.add_event(
                    contact_id,
                    event_type,
                    created_by=created_by,
                    at=at,
                    entity_type="contact",
                    value_after=value_after,
                )
            return self.add_event(lead_id, event_type, created_by=created_by, at=at)

    def customer_writes(
        self,
        lead_id: int,
        channel: str = "chat",
        *,
        at: float | None = None,
        created_by: int = 0,
        talk_about_lead: bool = False,
    ) -> str:
        """The customer writes about a lead: an ``incoming_chat_message`` (``chat``), an
        ``incoming_mail`` (``mail``) or an ``incoming_call`` (``call``), filed where this
        account files replies (:meth:`reply`). amoCRM records a customer's message as made by
        no user (``created_by`` 0); a call answered by an agent may name them."""
        kinds = {"chat": "incoming_chat_message", "mail": "incoming_mail", "call": "incoming_call"}
        if channel not in kinds:
            raise ValueError(f"channel {channel!r}: expected one of {', '.join(kinds)}")
        return self.reply(
            lead_id,
            kinds[channel],
            created_by=created_by,
            at=at,
            talk_about_lead=talk_about_lead,
        )

    def _talk_for(self, contact_id: int, lead_id: int) -> int:
        for talk in self._talks.values():
            if talk["contact_id"] == contact_id and talk["entity_id"] == lead_id:
                return int(talk["talk_id"])
        talk_id = self._new_id("talk")
        self._talks[talk_id] = {
            "talk_id": talk_id,
            "contact_id": contact_id,
            "entity_id": lead_id,
            "entity_type": "lead",
            "chat_id": secrets.token_hex(8),
            "origin": "telegram",
            "is_in_work": True,
        }
        return talk_id
