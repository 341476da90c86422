"""Public value types of the fake amoCRM: what tests seed with and inspect."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from amo_client.fake.replies import Reply

WON_STATUS_ID = 142
LOST_STATUS_ID = 143
WON_STATUS_NAME = "Успешно реализовано"
LOST_STATUS_NAME = "Закрыто и не реализовано"
UNSORTED_STATUS_NAME = "Неразобранное"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it. ``status`` is None when the transport raised instead."""

    method: str
    path: str
    query: str
    status: int | None
    error: str | None = None
    body: Any = None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class TokenGrant:
    """One call of ``POST /oauth2/access_token``: the grant type and what came of it."""

    grant_type: str
    issued: bool
    hint: str | None = None


@dataclass(frozen=True)
class PipelineRef:
    """A seeded pipeline: its id and its statuses by name, in board order (142 and 143 last)."""

    id: int
    name: str
    statuses: Mapping[str, int]
    first_status_id: int
    unsorted_status_id: int | None

    def status(self, name: str) -> int:
        return self.statuses[name]


FaultKind = Literal["status", "timeout", "connect", "odd"]

OddShape = Literal[
    "empty_object", "empty_embedded", "null_list", "html", "truncated", "list", "no_content"
]
"""A 2xx answer that is not what the documentation promises (see ``FakeAmoCRM.odd_answer_next``)."""

ODD_SHAPES: tuple[OddShape, ...] = (
    "empty_object",
    "empty_embedded",
    "null_list",
    "html",
    "truncated",
    "list",
    "no_content",
)


RandomFaultKind = Literal[
    "rate_limited",
    "server_error",
    "timeout",
    "timeout_after_processing",
    "disconnect",
    "odd_answer",
]
"""What :meth:`FakeAmoCRM.fault_at_random` may do to a request:

* ``rate_limited``: nginx's HTML 429, the request not served;
* ``server_error``: a 500, 502, 503 or 504, the request not served;
* ``timeout``: no answer, the request not served;
* ``timeout_after_processing``: the request served (a write takes effect), its answer lost;
* ``disconnect``: the connection refused, the request not served;
* ``odd_answer``: the request served, its answer replaced by one of :data:`ODD_SHAPES`.
"""

RANDOM_FAULT_KINDS: tuple[RandomFaultKind, ...] = (
    "rate_limited",
    "server_error",
    "timeout",
    "timeout_after_processing",
    "disconnect",
    "odd_answer",
)


@dataclass
class Fault:
    """A failure waiting for the next matching requests."""

    kind: FaultKind
    remaining: int
    reply: Reply | None = None
    path: str | re.Pattern[str] | None = None
    method: str | None = None
    after_processing: bool = False
    shape: OddShape | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        if isinstance(self.path, str):
            return self.path.rstrip("/") == path
        return self.path.search(path) is not None


@dataclass(frozen=True)
class PageTurn:
    """A read as the ``on_page`` hook (page 2 or later of a list) or the ``on_read`` hook
    (every GET) gets it before serving; ``seq`` counts the GETs since ``on_read`` was set."""

    path: str
    page: int
    query: str
    seq: int = 0


@dataclass
class AccessToken:
    value: str
    user_id: int
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    value: str
    user_id: int
    expires_at: float
    access_value: str
    used: bool = False
    revoked: bool = False


@dataclass
class AuthorizationCode:
    value: str
    user_id: int
    expires_at: float
    used: bool = False


@dataclass
class Entity:
    """A lead, a company or a contact as the fake keeps it; rendered to amoCRM's JSON."""

    kind: str
    id: int
    name: str
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    price: int = 0
    pipeline_id: int = 0
    status_id: int = 0
    closed_at: int | None = None
    fields: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    company_ids: list[int] = field(default_factory=list)
    contact_ids: list[int] = field(default_factory=list)  # the first is the main contact
    deleted_at: int | None = None
    deleted_by: int | None = None


@dataclass
class StoredEvent:
    seq: int
    id: str
    type: str
    entity_type: str
    entity_id: int
    created_by: int
    created_at: int
    value_after: list[dict[str, Any]] | None
    value_before: list[dict[str, Any]] | None
    visible_at: float = 0.0
    indexed: bool = True


@dataclass
class Status:
    id: int
    name: str
    sort: int
    pipeline_id: int
    color: str
    type: int
    is_editable: bool


@dataclass
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool
    is_unsorted_on: bool
    statuses: list[Status] = field(default_factory=list)

    def status(self, status_id: int) -> Status | None:
        for status in self.statuses:
            if status.id == status_id:
                return status
        return None
