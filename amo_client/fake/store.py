"""What an amoCRM account of the fake holds, the lock that guards it, its ids and its users.

The account's behaviour is added by the mixins that ``state.AccountState`` is made of.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from amo_client.fake.records import Entity, PageTurn, Pipeline, StoredEvent

if TYPE_CHECKING:
    from amo_client.fake.fields import CustomField
    from amo_client.fake.webhooks import Delivery, HookSender, Subscription

SINGULAR = {"leads": "lead", "companies": "company", "contacts": "contact", "customers": "customer"}
PLURAL = {singular: plural for plural, singular in SINGULAR.items()}
# The note types amoCRM takes by POST, and the event each one records on its entity.
NOTE_EVENTS = {
    "common": "common_note_added",
    "call_in": "incoming_call",
    "call_out": "outgoing_call",
    "service_message": "service_note_added",
    "extended_service_message": "service_note_added",
    "sms_in": "incoming_sms",
    "sms_out": "outgoing_sms",
    "attachment": "attachment_note_added",
    "geolocation": "geo_note_added",
    "message_cashier": "message_to_cashier_note_added",
}
NOTE_EVENT_TYPES = frozenset(NOTE_EVENTS.values())


class AccountStore:
    """Everything an amoCRM account holds, guarded by one re-entrant lock."""

    def __init__(
        self,
        *,
        base_url: str,
        clock: Callable[[], float],
        account_id: int,
        account_name: str,
        timezone: str,
        owner_name: str,
        record_change_events: bool,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.subdomain = (urlsplit(self.base_url).hostname or "example").split(".")[0]
        self.account_id = account_id
        self.account_name = account_name
        self.timezone = timezone
        self.record_change_events = record_change_events
        # amoCRM's "API filtering" (alpha) account option: when off, ``filter[...]`` on lead,
        # company and note lists is silently ignored and every list returns everything.
        self.api_filter_enabled = True
        # Seconds between an event happening and amoCRM's events feed listing it (0: at once).
        self.event_index_delay = 0.0
        self._clock = clock
        self.created_at = int(clock())
        self._lock = threading.RLock()
        self._next_ids: dict[str, int] = {
            "user": 5_000_001,
            "pipeline": 7_000_001,
            "status": 60_000_001,
            "field": 900_001,
            "enum": 1_500_001,
            "lead": 30_000_001,
            "company": 40_000_001,
            "contact": 45_000_001,
            "task": 20_000_001,
            "note": 80_000_001,
            "tag": 100_001,
            "event": 1,
            "talk": 1_001,
            "webhook": 1,
            "group": 1,
        }
        self._users: dict[int, dict[str, Any]] = {}
        # Groups of users («отделы») by id; every account has group 0.
        self._user_groups: dict[int, str] = {0: "Отдел продаж"}
        self._pipelines: dict[int, Pipeline] = {}
        self._fields: dict[str, dict[int, CustomField]] = {"leads": {}, "companies": {}}
        self._entities: dict[str, dict[int, Entity]] = {
            "leads": {},
            "companies": {},
            "contacts": {},
        }
        # Chat talks by id: the contact and the lead each one is about (or none).
        self._talks: dict[int, dict[str, Any]] = {}
        # Where this account files the chat messages, calls and e-mails of :meth:`reply`:
        # on the lead, its main contact or its company (spec §4; real accounts differ).
        self.replies_filed_on: str = "lead"
        self._trash: dict[int, Entity] = {}
        self._tags: dict[str, dict[str, int]] = {"leads": {}, "companies": {}}
        self._tasks: dict[int, dict[str, Any]] = {}
        self._tasks_by_entity: dict[tuple[str, int], list[int]] = {}
        self._notes: dict[int, dict[str, Any]] = {}
        self._deleted_notes: dict[int, dict[str, Any]] = {}
        self._events: list[StoredEvent] = []
        self._events_by_id: dict[str, StoredEvent] = {}
        self._events_by_entity: dict[tuple[str, int], list[StoredEvent]] = {}
        self._unindexed: list[StoredEvent] = []
        self._page_hook: Callable[[PageTurn], None] | None = None
        self._read_hook: Callable[[PageTurn], None] | None = None
        self._reads_since_hook = 0
        self._task_types: list[dict[str, Any]] = [
            {"id": 1, "name": "Связаться", "color": None, "icon_id": None, "code": "FOLLOW_UP"},
            {"id": 2, "name": "Встреча", "color": None, "icon_id": None, "code": "MEETING"},
        ]
        # Account webhooks (amo_client.fake.webhooks): amoCRM's timings, settable for tests.
        self.webhook_timeout = 2.0
        self.webhook_retry_delays: tuple[float, ...] = (300.0, 900.0, 900.0, 3600.0)
        self.webhook_disable_after = 100
        self.webhook_window = 7200.0
        self.webhook_transport: Any = None  # an httpx transport; None: real HTTP
        self._subscriptions: dict[str, Subscription] = {}
        self._deliveries: list[Delivery] = []
        self._sender: HookSender | None = None
        # Bumped by every change; list requests reuse their filtered selection while it holds.
        self._version = 0
        self.owner_id = self.add_user(owner_name, email="admin@example.com", is_admin=True)
        self.api_user_id = self.owner_id

    def now(self) -> int:
        return int(self._clock())

    def _when(self, at: float | None) -> int:
        return int(at) if at is not None else self.now()

    def _new_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + 1
        return value

    def _claim_id(self, kind: str, wanted: int | None) -> int:
        if wanted is None:
            return self._new_id(kind)
        self._next_ids[kind] = max(self._next_ids[kind], wanted + 1)
        return wanted

    def _touch(self) -> None:
        self._version += 1

    def _href(self, path: str) -> dict[str, dict[str, str]]:
        return {"self": {"href": f"{self.base_url}{path}"}}

    def _tag_id(self, kind: str, name: str) -> int:
        registry = self._tags[kind]
        if name not in registry:
            registry[name] = self._new_id("tag")
        return registry[name]

    def add_user(
        self,
        name: str,
        *,
        email: str | None = None,
        user_id: int | None = None,
        is_admin: bool = False,
        is_active: bool = True,
        group_id: int | None = None,
    ) -> int:
        """A user; ``group_id`` names one of :meth:`add_user_group`'s groups (None: none)."""
        with self._lock:
            if group_id is not None and group_id not in self._user_groups:
                raise KeyError(group_id)
            new_id = self._claim_id("user", user_id)
            self._users[new_id] = {
                "id": new_id,
                "name": name,
                "email": email or f"user{new_id}@example.com",
                "lang": "ru",
                "rights": {
                    "leads": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
                    "contacts": {
                        "view": "A",
                        "edit": "A",
                        "add": "A",
                        "delete": "A",
                        "export": "A",
                    },
                    "companies": {
                        "view": "A",
                        "edit": "A",
                        "add": "A",
                        "delete": "A",
                        "export": "A",
                    },
                    "tasks": {"edit": "A", "delete": "A"},
                    "mail_access": False,
                    "catalog_access": False,
                    "status_rights": [],
                    "is_admin": is_admin,
                    "is_free": False,
                    "is_active": is_active,
                    "group_id": group_id,
                    "role_id": None,
                },
            }
            self._touch()
            return new_id

    def add_user_group(self, name: str) -> int:
        """A group of users («отдел»), listed by ``GET /api/v4/account?with=users_groups``."""
        with self._lock:
            group_id = self._new_id("group")
            self._user_groups[group_id] = name
            self._touch()
            return group_id

    def company_leads(self, company_id: int) -> list[int]:
        """The leads linked to a company, by id."""
        return self._leads_linked(lambda lead: company_id in lead.company_ids)

    def contact_leads(self, contact_id: int) -> list[int]:
        """The leads a contact is linked to, by id."""
        return self._leads_linked(lambda lead: contact_id in lead.contact_ids)

    def _leads_linked(self, linked: Callable[[Entity], bool]) -> list[int]:
        with self._lock:
            return sorted(i for i, lead in self._entities["leads"].items() if linked(lead))
