"""A stateful fake of the amoCRM API v4, served through an ``httpx`` transport.

What it reproduces, because clients written against the documentation trip on it:

* Lists are HAL: ``{"_page", "_links": {"self", "next"}, "_embedded": {...}}``; ``next`` only
  while another page exists; an empty list, a page past the end and a missing entity by id
  are HTTP 204 with no body. Paging is by offset over live data, so entities updated while a
  client pages through ``order[updated_at]`` shift between pages, as they do in amoCRM.
* ``limit`` is capped (leads, tasks, notes, companies, users 250; events 100; custom fields 50).
  A larger ``limit`` is not an error: amoCRM silently falls back to its default page of 50,
  which is what the fake does too.
* Events: newest first; ``filter[entity_id]`` takes at most 10 ids and needs exactly one
  ``filter[entity]``, ``filter[created_by]`` at most 10 ids, otherwise 400.
* 7 requests per second per account (sliding one-second window on an injectable monotonic
  clock); the excess gets nginx's HTML 429 page without Retry-After. Rejected requests do not
  use up the window.
* Batch PATCH/POST validate every item first; one bad item rejects the whole request with 400
  ``validation-errors`` naming each bad item by ``request_id`` (its index) and each bad value
  by its path. Echoing ``enum_code`` back is such an error.
* OAuth: authorization codes and refresh tokens are single-use. A spent refresh token gets
  ``{"hint": "Token has been revoked", ...}`` (HTTP 400 by default; amoCRM answered 401 in
  older reports, hence ``revoked_refresh_status``). amoCRM runs league/oauth2-server, whose
  refresh grant revokes the access token paired with the refresh token it spends. Whether
  amoCRM's token store honours that revocation is not documented anywhere we found, so
  both are modelled: by default the old access token stops working at once (the stricter
  case); with ``revoke_access_on_refresh=False`` it stays valid until its own expiry.
* Changes made through the API are recorded in the events feed as made by the token's user
  (``api_user_id``), not by 0: amoCRM attributes an integration's actions to the user who
  installed it. ``created_by`` 0 only comes from seeding, for robots.
* Chat messages, calls and notes are events; they do not change the lead's ``updated_at``,
  so a poller that reads only ``filter[updated_at]`` misses them. Notes are listed by their
  own ``updated_at``, which an edit moves; ``filter[created_at]`` on notes is silently
  ignored; a note deleted in the interface leaves the lists and leaves a
  ``common_note_deleted`` event behind.
* Numeric custom field values come back as strings, dates as unix seconds, checkboxes as bools.
* Churn: leads deleted, restored and merged in the interface, stages added, renamed and
  deleted, events the feed lists late, data changing between the pages of one read (see
  ``AccountState``); odd 2xx answers (``{}``, HTML, cut JSON, a list, 204) by
  :meth:`FakeAmoCRM.odd_answer_next`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_plus

import httpx

from amo_client.fake.api import Api
from amo_client.fake.faults import Faults
from amo_client.fake.paging import Call
from amo_client.fake.records import Fault, LoggedRequest
from amo_client.fake.replies import (
    Reply,
    default_error,
    nginx_page,
    odd_reply,
    problem,
    unauthorized,
)
from amo_client.fake.server import FakeServer
from amo_client.fake.state import AccountState
from amo_client.fake.tokens import Tokens


@dataclass(frozen=True)
class _Incoming:
    request: httpx.Request
    method: str
    path: str
    query_text: str
    content: bytes
    content_type: str
    body: Any

    @classmethod
    def read(cls, request: httpx.Request) -> _Incoming:
        content = request.read()
        content_type = request.headers.get("content-type", "")
        return cls(
            request=request,
            method=request.method.upper(),
            path=request.url.path.rstrip("/") or "/",
            query_text=unquote_plus(request.url.query.decode("ascii", "replace")),
            content=content,
            content_type=content_type,
            body=_parse_json(content) if content and "json" in content_type else None,
        )


class _Transport(httpx.BaseTransport):
    def __init__(self, fake: FakeAmoCRM) -> None:
        self._fake = fake

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._fake.handle(request)


class FakeAmoCRM(Tokens, Faults, AccountState):
    """An amoCRM account in memory, reachable through :attr:`transport` at :attr:`base_url`.

    Seed it with :meth:`add_pipeline`, :meth:`add_user`, :meth:`add_custom_field`,
    :meth:`add_lead`, :meth:`move_lead`, :meth:`update_lead`, :meth:`add_event`,
    :meth:`add_task`, :meth:`add_note`, :meth:`add_company`, :meth:`update_company`,
    :meth:`link_company`; churn it with :meth:`delete_lead`, :meth:`restore_lead`,
    :meth:`merge_leads`, :meth:`edit_note`, :meth:`delete_note`, :meth:`unlink_company`,
    :meth:`add_status`, :meth:`rename_status`,
    :meth:`delete_status`, :attr:`event_index_delay`, :meth:`release_events`,
    :meth:`on_page`; break it with :meth:`fail_next`,
    :meth:`odd_answer_next`, :meth:`timeout_next`, :meth:`disconnect_next`,
    :meth:`fault_at_random`, :meth:`block_account`, :meth:`revoke_tokens`; inspect it with
    :attr:`request_log`, :attr:`rate_limited_total`, :attr:`faults_injected`,
    :meth:`lead`, :attr:`tasks`, :attr:`notes`, :attr:`events`. Every public method is
    thread-safe.
    """

    def __init__(
        self,
        *,
        base_url: str = "https://example.amocrm.ru",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_requests_per_second: float | None = 7.0,
        long_lived_token: str | None = None,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",  # noqa: S107 - a fake's well-known secret
        redirect_uri: str = "https://example.com/amocrm/oauth",
        access_token_lifetime: float = 86400.0,
        refresh_token_lifetime: float = 90 * 86400.0,
        long_lived_token_lifetime: float = 5 * 365 * 86400.0,
        revoked_refresh_status: int = 400,
        revoke_access_on_refresh: bool = True,
        account_id: int = 31_000_001,
        account_name: str = "Поддержка",
        timezone: str = "Europe/Moscow",
        owner_name: str = "Администратор",
        block_after_rate_limited: int | None = None,
        record_change_events: bool = True,
    ) -> None:
        super().__init__(
            base_url=base_url,
            clock=clock,
            account_id=account_id,
            account_name=account_name,
            timezone=timezone,
            owner_name=owner_name,
            record_change_events=record_change_events,
        )
        self._start_tokens(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
            long_lived_token=long_lived_token,
            long_lived_token_lifetime=long_lived_token_lifetime,
            revoked_refresh_status=revoked_refresh_status,
            revoke_access_on_refresh=revoke_access_on_refresh,
        )
        self._start_faults(
            monotonic=monotonic,
            max_requests_per_second=max_requests_per_second,
            block_after_rate_limited=block_after_rate_limited,
        )
        self._transport = _Transport(self)
        self._api = Api(self)
        self._log: list[LoggedRequest] = []
        self._requests_total = 0
        self._status_counts: Counter[int] = Counter()

    # ------------------------------------------------------------------ transport

    @property
    def transport(self) -> httpx.BaseTransport:
        return self._transport

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request; raises ``httpx`` transport errors for injected failures."""
        incoming = _Incoming.read(request)
        with self._lock:
            self._requests_total += 1
            reply, error = self._respond(incoming)
            self._log.append(
                LoggedRequest(
                    method=incoming.method,
                    path=incoming.path,
                    query=incoming.query_text,
                    status=None if error is not None else reply.status,
                    error=type(error).__name__ if error is not None else None,
                    body=incoming.body,
                )
            )
            if error is not None:
                raise error
            self._status_counts[reply.status] += 1
        headers = dict(reply.headers)
        # Like every HTTP server, amoCRM stamps its answers with its own clock.
        headers.setdefault("date", formatdate(self._clock(), usegmt=True))
        if reply.content_type is not None:
            headers["content-type"] = reply.content_type
        return httpx.Response(reply.status, headers=headers, content=reply.body, request=request)

    def _respond(self, incoming: _Incoming) -> tuple[Reply, httpx.TransportError | None]:
        """The gateway first (ban, injected faults, rate limit), then the application."""
        request = incoming.request
        if self._blocked:
            return nginx_page(403), None
        fault = self._take_fault(incoming.method, incoming.path)
        if fault is None or fault.kind == "odd" or fault.after_processing:
            return self._served(incoming, fault)
        if fault.kind == "status":
            return fault.reply or default_error(503), None
        error: httpx.TransportError = (
            httpx.ConnectError("Connection refused (injected)", request=request)
            if fault.kind == "connect"
            else httpx.ReadTimeout("timed out (injected)", request=request)
        )
        return Reply(0), error

    def _served(
        self, incoming: _Incoming, fault: Fault | None
    ) -> tuple[Reply, httpx.TransportError | None]:
        """Past the rate limit into the application; a fault then bends or loses its answer."""
        if self._rate_limited():
            return nginx_page(429), None
        reply = self._serve(incoming)
        if fault is None:
            return reply, None
        if fault.shape is not None:
            key = next(
                (part for part in reversed(incoming.path.split("/")) if not part.isdigit()), ""
            )
            return odd_reply(fault.shape, reply, key), None
        return reply, httpx.ReadTimeout("timed out after processing", request=incoming.request)

    def _serve(self, incoming: _Incoming) -> Reply:
        if incoming.path == "/oauth2/access_token":
            if incoming.method != "POST":
                return problem(405, f"Method {incoming.method} is not allowed")
            return self._oauth_token(incoming.body, incoming.content_type, incoming.content)
        user_id = self._authenticate(incoming.request.headers.get("authorization"))
        if user_id is None:
            return unauthorized()
        call = Call(
            method=incoming.method,
            path=incoming.path,
            pairs=list(incoming.request.url.params.multi_items()),
            body=incoming.body,
            user_id=user_id,
        )
        return self._api.dispatch(call)

    # ------------------------------------------------------------------ inspection

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._requests_total

    @property
    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._status_counts)

    def reset_request_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._requests_total = 0
            self._rate_limited_total = 0
            self._status_counts.clear()

    # ------------------------------------------------------------------ local HTTP

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> FakeServer:
        """Serve the fake over plain HTTP on ``host:port`` (0 = any free port) for curl."""
        return FakeServer(self, host, port)


def _parse_json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
