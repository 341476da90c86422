"""The amoCRM API v4 client: one class over one ``httpx.Client``.

What it takes care of, so that callers never have to:

* **Rate.** Every request of the process passes one :class:`RateLimiter` (7/s by
  default), so a full-speed run does not meet amoCRM's limit at all.
* **Retries.** One policy (:meth:`AmoClient._retrying`): 429 (an HTML page without
  Retry-After), 5xx, timeouts and dropped connections are retried with bounded
  exponential backoff and jitter. A POST, which is not idempotent, is retried only
  when amoCRM cannot have acted on it (a 429, a connection that never opened). 401
  and the other 4xx are never retried.
* **Auth.** A long-lived token, or OAuth: refreshed ahead of expiry and once after a
  401, single-flight, the new pair stored before it is used (:mod:`amo_client.auth`).
* **The gateway's HTML 403** means the account is blocked for abuse: the circuit
  opens and no request leaves for ``circuit_cooldown`` seconds.
* **Paging.** Iterators follow ``_links.next`` and stop at HTTP 204, amoCRM's answer
  to an empty list; page sizes stay within each list's cap. Items are checked one by
  one: an item that does not fit its model is skipped and reported as an
  :class:`InvalidItem` (to ``on_invalid``, or as an ``item_invalid`` warning), and the
  rest of its page still arrives.
* **Shapes.** A success status whose body is not what the call needs (not JSON, no
  ``_embedded`` list, fewer created items than sent) is an :class:`UnexpectedAnswer`,
  never an empty list; a GET or PATCH meeting one is tried again, at most
  ``UNEXPECTED_ATTEMPTS`` attempts in all.
* **Batch writes.** A 400 ``validation-errors`` names the bad items; the batch is sent
  again without them, and the caller learns which ids failed and why.

* **Stopping.** After :meth:`AmoClient.request_stop` every wait (retry backoff, a 429's
  backoff, the rate limiter) ends at once and its call raises :class:`StopRequested`;
  a request already on the wire is not cut short.

``transport``, ``sleep`` and the clocks are injectable, so tests run it against
:class:`amo_client.fake.FakeAmoCRM` or respx without waiting. With the default
``time.sleep`` a wait is a wait on the stop event; any other ``sleep`` (a virtual clock)
is called as given, and the stop is checked before and after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Generic, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential_jitter

from amo_client.auth import (
    REAUTHORISE_HINT,
    LongLivedToken,
    OAuthTokens,
    TokenPair,
)
from amo_client.errors import (
    AccountBlocked,
    AmoError,
    ApiError,
    AuthorizationRequired,
    BadRequest,
    CircuitOpen,
    Forbidden,
    InvalidItem,
    ItemError,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    StopRequested,
    TransportError,
    Unauthorized,
    UnexpectedAnswer,
    Unreachable,
    ValidationFailed,
)
from amo_client.models import (
    Account,
    BatchResult,
    Company,
    CreatedEntity,
    CustomField,
    EntityRef,
    EntityUpdate,
    Event,
    Lead,
    NewCustomField,
    NewNote,
    NewTask,
    Note,
    Pipeline,
    Task,
    User,
    UserGroup,
    Webhook,
)
from amo_client.ratelimit import RateLimiter, Slot

log = structlog.get_logger("amo_client")

LEADS_PAGE: Final = 250
EVENTS_PAGE: Final = 100
CUSTOM_FIELDS_PAGE: Final = 50
TASKS_PAGE: Final = 250
COMPANIES_PAGE: Final = 250
NOTES_PAGE: Final = 250
IDS_PER_REQUEST: Final = 50
MAX_EVENT_FILTER_IDS: Final = 10
WRITE_BATCH: Final = 50
UNEXPECTED_ATTEMPTS: Final = 3
EXCERPT_LENGTH: Final = 120
USER_AGENT: Final = "amo-sla/0.1 (+https://github.com/amo-sla)"

M = TypeVar("M", bound=BaseModel)
Credentials = LongLivedToken | OAuthTokens
Reader = Callable[[str, str, httpx.Response], Any]
InvalidHandler = Callable[[InvalidItem], None]
# Told of every request sent: its method and answer status (None: no answer came).
RequestObserver = Callable[[str, int | None], None]
# Told of every retry, by reason: rate_limited, server_error, transport, unexpected_answer.
RetryObserver = Callable[[str], None]
# Told of every request's rate-limiter slot once it is answered (or failed): when the
# limiter let it go, when it went on the wire, when its answer came back.
SlotObserver = Callable[[Slot], None]


@dataclass(frozen=True)
class Written:
    """One write amoCRM accepted: the collection (``leads``, ``leads/notes``, ``tasks``), the
    ids it changed or created, and the span of amoCRM's clock it was stamped within."""

    kind: str
    ids: tuple[int, ...]
    since: datetime
    until: datetime
    moved: tuple[int, ...] = ()  # the leads the write moved to another stage


# Told of every write amoCRM accepted (a webhook that only echoes it is no news).
WriteObserver = Callable[[Written], None]


class AmoClient:
    """A client of one amoCRM account. Thread-safe; one per process."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        max_requests_per_second: float = 7.0,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 30.0,
        circuit_cooldown: float = 900.0,
        on_request: RequestObserver | None = None,
        on_retry: RetryObserver | None = None,
        on_slot: SlotObserver | None = None,
        on_write: WriteObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_write = on_write
        # This thread's last attempt: when it went out and amoCRM's clock on its answer.
        self._attempt = threading.local()
        self._on_request = on_request
        self._on_retry = on_retry
        self._on_slot = on_slot
        self.credentials = credentials
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/hal+json"},
        )
        self._sleep = sleep
        self._stop = threading.Event()
        self._monotonic = monotonic
        self._clock = clock
        self._limiter = RateLimiter(max_requests_per_second, clock=monotonic, sleep=self._pause)
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._circuit_cooldown = circuit_cooldown
        self._blocked_until = 0.0
        self._counter_lock = threading.Lock()
        self.requests_sent = 0
        self._server_time: datetime | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def request_stop(self) -> None:
        """End every wait of every call at once with :class:`StopRequested`, now and later.

        Thread-safe and final for this client. A call that needs no wait still goes out.
        """
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or raise :class:`StopRequested` as soon as a stop is requested."""
        if not self._stop.is_set():
            if self._sleep is time.sleep:
                self._stop.wait(seconds)
            else:
                self._sleep(seconds)
        if self._stop.is_set():
            raise StopRequested("a stop was requested while a call waited to reach amoCRM")

    def __enter__(self) -> AmoClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def server_time(self) -> datetime | None:
        """amoCRM's clock at its latest answer (its ``Date`` header), if one was read.

        Cursors over ``updated_at`` are kept on this clock rather than the worker's, so a
        worker whose clock runs ahead of amoCRM's cannot skip a change.
        """
        return self._server_time

    # --- OAuth ---------------------------------------------------------------------------------

    def exchange_code(self, code: str) -> TokenPair:
        """Trade an authorization code (single-use, 20 minutes) for a pair, and store it."""
        tokens = self._oauth()
        body = {
            "client_id": tokens.app.client_id,
            "client_secret": tokens.app.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": tokens.app.redirect_uri,
        }
        pair = self._token_grant(body, "the authorization code was not accepted")
        tokens.adopt(pair)
        log.info("token_obtained", expires_at=int(pair.expires_at))
        return pair

    def _refresh(self, refresh_token: str) -> TokenPair:
        tokens = self._oauth()
        body = {
            "client_id": tokens.app.client_id,
            "client_secret": tokens.app.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "redirect_uri": tokens.app.redirect_uri,
        }
        pair = self._token_grant(body, "the refresh token was not accepted")
        log.info("token_refreshed", expires_at=int(pair.expires_at))
        return pair

    def _oauth(self) -> OAuthTokens:
        if not isinstance(self.credentials, OAuthTokens):
            raise AuthorizationRequired("this client uses a long-lived token, not OAuth")
        return self.credentials

    def _token_grant(self, body: Mapping[str, str], refused: str) -> TokenPair:
        response, _ = self._send("POST", "/oauth2/access_token", json=body, authorize=False)
        if response.status_code in (400, 401, 403):
            hint = _json_text(response, "hint") or _json_text(response, "detail")
            raise AuthorizationRequired(
                f"{refused} ({hint or response.status_code}): {REAUTHORISE_HINT}"
            )
        self._raise_for_status("POST", "/oauth2/access_token", response)
        try:
            return TokenPair.from_grant(response.json(), self._clock())
        except ValueError as error:
            # No excerpt: the body of a token answer holds tokens.
            raise UnexpectedAnswer(
                response.status_code, "POST", "/oauth2/access_token", str(error)
            ) from None

    # --- account, pipelines, fields ------------------------------------------------------------

    def probe(self, *, within: float = 8.0, attempts: int = 2) -> None:
        """Raise :class:`Unreachable` unless amoCRM answers within ``within`` seconds over
        ``attempts`` tries; any HTTP answer will do (the request carries no token). An
        admin's command asks first, so an address that does not answer is one line, not
        minutes of retries."""
        last: httpx.TransportError | None = None
        for _ in range(attempts):
            slot = self._limiter.acquire()
            with self._counter_lock:
                self.requests_sent += 1
            try:
                response = self._http.get("/api/v4/account", timeout=within / attempts)
            except httpx.TransportError as error:
                self._observe("GET", None)
                last = error
                continue
            finally:
                self._limiter.answered(slot)
            self._observe("GET", response.status_code)
            return
        reason = str(last) or type(last).__name__
        raise Unreachable(
            f"amoCRM at {self.base_url} does not answer ({reason}, {attempts} tries within "
            f"{within:g} s): check AMO_SUBDOMAIN or AMO_BASE_URL and the network"
        )

    def account(self) -> Account:
        body = self._call(
            "GET",
            "/api/v4/account",
            params={"with": "datetime_settings,task_types,is_api_filter_enabled"},
            read=_read_object,
        )
        if body is None:
            raise UnexpectedAnswer(204, "GET", "/api/v4/account", "an empty answer")
        return Account.model_validate(body)

    def user_groups(self) -> list[UserGroup]:
        """The account's groups of users («отделы»)."""
        body = self._call(
            "GET", "/api/v4/account", params={"with": "users_groups"}, read=_read_object
        )
        if body is None:
            raise UnexpectedAnswer(204, "GET", "/api/v4/account", "an empty answer")
        return Account.model_validate(body).embedded.users_groups

    def iter_users(self, *, on_invalid: InvalidHandler | None = None) -> Iterator[User]:
        return self._paged(
            "/api/v4/users", {"limit": 250}, "users", User, kind="user", on_invalid=on_invalid
        )

    def pipelines(self, *, on_invalid: InvalidHandler | None = None) -> list[Pipeline]:
        return list(
            self._paged(
                "/api/v4/leads/pipelines",
                {},
                "pipelines",
                Pipeline,
                kind="pipeline",
                on_invalid=on_invalid,
                confirm_empty=True,  # an account always has a pipeline
            )
        )

    def iter_lead_custom_fields(
        self, *, on_invalid: InvalidHandler | None = None
    ) -> Iterator[CustomField]:
        return self._paged(
            "/api/v4/leads/custom_fields",
            {"limit": CUSTOM_FIELDS_PAGE},
            "custom_fields",
            CustomField,
            kind="custom_field",
            on_invalid=on_invalid,
            confirm_empty=True,  # "no fields" would stop the worker: asked twice
        )

    def iter_company_custom_fields(
        self, *, on_invalid: InvalidHandler | None = None
    ) -> Iterator[CustomField]:
        return self._paged(
            "/api/v4/companies/custom_fields",
            {"limit": CUSTOM_FIELDS_PAGE},
            "custom_fields",
            CustomField,
            kind="custom_field",
            on_invalid=on_invalid,
            confirm_empty=True,  # "no fields" would stop the worker: asked twice
        )

    def create_lead_custom_fields(self, fields: Sequence[NewCustomField]) -> list[CustomField]:
        return self._create_fields("leads", fields)

    def create_company_custom_fields(self, fields: Sequence[NewCustomField]) -> list[CustomField]:
        return self._create_fields("companies", fields)

    def _create_fields(self, kind: str, fields: Sequence[NewCustomField]) -> list[CustomField]:
        created: list[CustomField] = []
        for batch in _chunks(fields, WRITE_BATCH):
            items = []
            for spec in batch:
                item: dict[str, Any] = {"name": spec.name, "type": spec.type}
                if spec.enums:
                    item["enums"] = [
                        {"value": value, "sort": (index + 1) * 10}
                        for index, value in enumerate(spec.enums)
                    ]
                if spec.sort is not None:
                    item["sort"] = spec.sort
                if spec.code is not None:
                    item["code"] = spec.code
                items.append(item)
            answer = self._write("POST", f"/api/v4/{kind}/custom_fields", items, "custom_fields")
            created.extend(CustomField.model_validate(item) for item in answer)
        return created

    def update_lead_custom_fields(self, fields: Sequence[Mapping[str, Any]]) -> list[CustomField]:
        """PATCH lead fields; each item is ``{"id": ..., <what changes>}`` as amoCRM takes it.

        A select's ``enums`` replace its options: amoCRM drops every option left out, so
        send the kept ones with their ids along with the new ones."""
        updated: list[CustomField] = []
        for batch in _chunks(fields, WRITE_BATCH):
            answer = self._write(
                "PATCH", "/api/v4/leads/custom_fields", batch, "custom_fields", exact=False
            )
            updated.extend(CustomField.model_validate(item) for item in answer)
        return updated

    # --- leads and companies -------------------------------------------------------------------

    def iter_leads(
        self,
        *,
        pipeline_id: int | None = None,
        status_ids: Iterable[int] | None = None,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
        ids: Iterable[int] | None = None,
        order: tuple[str, str] = ("id", "asc"),
        with_: Iterable[str] = (),
        on_invalid: InvalidHandler | None = None,
        by_update: bool = False,
        confirm_empty: bool = False,
        recheck_crowded: bool = False,
    ) -> Iterator[Lead]:
        """Leads matching every given filter.

        By offset pages in ``order`` (by id unless asked otherwise), or with ``by_update``
        page after page by ``updated_at`` (:meth:`_by_update`), which a lead leaving the
        filter mid-read (closed, moved, deleted) cannot make skip another.
        """
        params: dict[str, Any] = {"limit": LEADS_PAGE, f"order[{order[0]}]": order[1]}
        if pipeline_id is not None:
            params["filter[pipeline_id]"] = pipeline_id
        if status_ids is not None:
            if pipeline_id is None:
                raise ValueError("status_ids need pipeline_id")
            for index, status_id in enumerate(status_ids):
                params[f"filter[statuses][{index}][pipeline_id]"] = pipeline_id
                params[f"filter[statuses][{index}][status_id]"] = status_id
        if updated_from is not None:
            params["filter[updated_at][from]"] = int(updated_from.timestamp())
        if updated_to is not None:
            params["filter[updated_at][to]"] = int(updated_to.timestamp())
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return iter(())
            for index, lead_id in enumerate(wanted):
                params[f"filter[id][{index}]"] = lead_id
        if with_:
            params["with"] = ",".join(with_)
        if by_update:
            del params[f"order[{order[0]}]"]
            return self._by_update(
                "/api/v4/leads",
                params,
                "leads",
                Lead,
                kind="lead",
                on_invalid=on_invalid,
                confirm_empty=confirm_empty,
                recheck_crowded=recheck_crowded,
            )
        return self._paged(
            "/api/v4/leads", params, "leads", Lead, kind="lead", on_invalid=on_invalid
        )

    def deleted_lead_ids(self, ids: Iterable[int]) -> set[int]:
        """Which of ``ids`` amoCRM's trash holds (``with=only_deleted``): the evidence that a
        lead is gone, where a list that leaves it out is none."""
        wanted = list(dict.fromkeys(ids))
        found: set[int] = set()
        for chunk in _chunks(wanted, IDS_PER_REQUEST):
            params: dict[str, Any] = {"limit": LEADS_PAGE, "with": "only_deleted"}
            for index, lead_id in enumerate(chunk):
                params[f"filter[id][{index}]"] = lead_id
            trashed = self._paged(
                "/api/v4/leads", params, "leads", EntityRef, kind="lead", on_invalid=None
            )
            found.update(item.id for item in trashed if item.id in chunk)
        return found

    def talk_lead_id(self, talk_id: int) -> int | None:
        """The lead a chat talk is linked to (``GET /api/v4/talks/{id}``: ``entity_type``
        ``lead``), or None."""
        body = self._call("GET", f"/api/v4/talks/{talk_id}", read=_read_object)
        if body is None or body.get("entity_type") != "lead":
            return None
        entity_id = body.get("entity_id")
        return entity_id if isinstance(entity_id, int) else None

    def contact_lead_ids(self, contact_id: int, entity: str = "contacts") -> list[int]:
        """The leads a contact (or, with ``entity="companies"``, a company) is linked to
        (``GET /api/v4/{entity}/{id}?with=leads``); none when amoCRM has no such entity."""
        body = self._call(
            "GET",
            f"/api/v4/{entity}/{contact_id}",
            params={"with": "leads"},
            read=_read_object,
        )
        if body is None:
            return []
        embedded = body.get("_embedded") or {}
        leads = embedded.get("leads") or [] if isinstance(embedded, dict) else []
        return [EntityRef.model_validate(item).id for item in leads]

    def lead(self, lead_id: int, *, with_: Iterable[str] = ()) -> Lead | None:
        params = {"with": ",".join(with_)} if with_ else {}
        body = self._call("GET", f"/api/v4/leads/{lead_id}", params=params, read=_read_object)
        return None if body is None else Lead.model_validate(body)

    def update_leads(self, updates: Sequence[EntityUpdate]) -> BatchResult:
        return self._update_batches("leads", updates)

    def iter_companies(
        self,
        *,
        ids: Iterable[int] | None = None,
        updated_from: datetime | None = None,
        on_invalid: InvalidHandler | None = None,
    ) -> Iterator[Company]:
        """Companies by id (any number: ``IDS_PER_REQUEST`` a request) and/or updated since."""
        base: dict[str, Any] = {"limit": COMPANIES_PAGE}
        if updated_from is not None:
            base["filter[updated_at][from]"] = int(updated_from.timestamp())
        id_chunks: list[Sequence[int] | None] = [None]
        if ids is not None:
            id_chunks = list(_chunks(list(dict.fromkeys(ids)), IDS_PER_REQUEST))
        for chunk in id_chunks:
            params = dict(base)
            for index, company_id in enumerate(chunk or ()):
                params[f"filter[id][{index}]"] = company_id
            if chunk is None and updated_from is not None:  # a read that could shift
                yield from self._by_update(
                    "/api/v4/companies",
                    params,
                    "companies",
                    Company,
                    kind="company",
                    on_invalid=on_invalid,
                )
                continue
            yield from self._paged(
                "/api/v4/companies",
                params,
                "companies",
                Company,
                kind="company",
                on_invalid=on_invalid,
            )

    def company(self, company_id: int) -> Company | None:
        body = self._call("GET", f"/api/v4/companies/{company_id}", read=_read_object)
        return None if body is None else Company.model_validate(body)

    def update_companies(self, updates: Sequence[EntityUpdate]) -> BatchResult:
        return self._update_batches("companies", updates)

    def _update_batches(self, kind: str, updates: Sequence[EntityUpdate]) -> BatchResult:
        """PATCH in batches; items amoCRM rejects are dropped and the rest sent again."""
        written: list[int] = []
        failed: dict[int, str] = {}
        for batch in _chunks(updates, WRITE_BATCH):
            pending = list(batch)
            while pending:
                try:
                    items = [u.as_json() for u in pending]
                    # amoCRM leaves out items that change nothing: no count to check.
                    self._write("PATCH", f"/api/v4/{kind}", items, kind, exact=False)
                except ValidationFailed as error:
                    bad = error.bad_indexes() & set(range(len(pending)))
                    if not bad:
                        raise
                    for index in sorted(bad):
                        reasons = [str(i) for i in error.items if i.request_index == index]
                        failed[pending[index].id] = "; ".join(
                            reason.split(": ", 1)[1] for reason in reasons
                        )
                    pending = [u for i, u in enumerate(pending) if i not in bad]
                    continue
                written.extend(u.id for u in pending)
                break
        return BatchResult(written=tuple(written), failed=failed)

    # --- events --------------------------------------------------------------------------------

    def iter_events(
        self,
        *,
        entity: str | Sequence[str] = "lead",
        entity_ids: Sequence[int] | None = None,
        types: Iterable[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        created_by: Sequence[int] | None = None,
        on_invalid: InvalidHandler | None = None,
        confirm_empty: bool = False,
    ) -> Iterator[Event]:
        """Events, newest first; ``entity_ids`` and ``created_by`` any length (chunked by 10).
        ``confirm_empty`` asks an empty first answer again.

        ``entity`` may name several types (``("lead", "contact")``), which amoCRM takes in
        one request; ``entity_ids`` need exactly one."""
        entities = [entity] if isinstance(entity, str) else list(entity)
        if entity_ids is not None and len(entities) != 1:
            raise ValueError("entity_ids need exactly one entity type")
        base: dict[str, Any] = {"limit": EVENTS_PAGE}
        for index, name in enumerate(entities):
            base[f"filter[entity][{index}]"] = name
        for index, event_type in enumerate(types or ()):
            base[f"filter[type][{index}]"] = event_type
        if created_from is not None:
            base["filter[created_at][from]"] = int(created_from.timestamp())
        if created_to is not None:
            base["filter[created_at][to]"] = int(created_to.timestamp())
        id_chunks: list[Sequence[int] | None] = (
            list(_chunks(entity_ids, MAX_EVENT_FILTER_IDS)) if entity_ids is not None else [None]
        )
        creator_chunks: list[Sequence[int] | None] = (
            list(_chunks(created_by, MAX_EVENT_FILTER_IDS)) if created_by is not None else [None]
        )
        for id_chunk in id_chunks:
            for creator_chunk in creator_chunks:
                params = dict(base)
                for index, entity_id in enumerate(id_chunk or ()):
                    params[f"filter[entity_id][{index}]"] = entity_id
                for index, user_id in enumerate(creator_chunk or ()):
                    params[f"filter[created_by][{index}]"] = user_id
                yield from self._paged(
                    "/api/v4/events",
                    params,
                    "events",
                    Event,
                    kind="event",
                    on_invalid=on_invalid,
                    confirm_empty=confirm_empty,
                )

    # --- webhooks ------------------------------------------------------------------------------

    def webhooks(self, *, destination: str | None = None) -> list[Webhook]:
        """The account's webhooks (``disabled`` tells which amoCRM has switched off)."""
        params = {"filter[destination]": destination} if destination is not None else {}
        return list(
            self._paged(
                "/api/v4/webhooks", params, "webhooks", Webhook, kind="webhook", on_invalid=None
            )
        )

    def subscribe_webhook(
        self, destination: str, settings: Sequence[str], *, sort: int | None = None
    ) -> Webhook:
        """Subscribe ``destination`` to ``settings`` (events); the same destination is updated."""
        body: dict[str, Any] = {"destination": destination, "settings": list(settings)}
        if sort is not None:
            body["sort"] = sort
        answer = self._call("POST", "/api/v4/webhooks", json=body, read=_read_object)
        if answer is None:
            raise UnexpectedAnswer(204, "POST", "/api/v4/webhooks", "an empty answer")
        try:
            return Webhook.model_validate(answer)
        except ValidationError as error:
            raise UnexpectedAnswer(
                200, "POST", "/api/v4/webhooks", f"not a webhook: {_problem(error)}"
            ) from None

    def unsubscribe_webhook(self, destination: str) -> None:
        """Remove the subscription of ``destination``."""
        self._call("DELETE", "/api/v4/webhooks", json={"destination": destination}, read=_read_any)

    # --- tasks and notes -----------------------------------------------------------------------

    def iter_tasks(
        self,
        *,
        entity_type: str | None = None,
        entity_ids: Iterable[int] | None = None,
        is_completed: bool | None = None,
        responsible_user_ids: Iterable[int] | None = None,
        on_invalid: InvalidHandler | None = None,
        confirm_empty: bool = False,
    ) -> Iterator[Task]:
        """Tasks matching every filter; ``confirm_empty`` asks an empty answer again (for a
        read whose "none" would make the worker create one)."""
        params: dict[str, Any] = {"limit": TASKS_PAGE}
        if entity_type is not None:
            params["filter[entity_type]"] = entity_type
        for index, entity_id in enumerate(entity_ids or ()):
            params[f"filter[entity_id][{index}]"] = entity_id
        for index, user_id in enumerate(responsible_user_ids or ()):
            params[f"filter[responsible_user_id][{index}]"] = user_id
        if is_completed is not None:
            params["filter[is_completed]"] = int(is_completed)
        return self._paged(
            "/api/v4/tasks",
            params,
            "tasks",
            Task,
            kind="task",
            on_invalid=on_invalid,
            confirm_empty=confirm_empty,
        )

    def create_tasks(self, tasks: Sequence[NewTask]) -> list[CreatedEntity]:
        """Create tasks; the ids come back in the order the tasks were given."""
        created: list[CreatedEntity] = []
        for batch in _chunks(tasks, WRITE_BATCH):
            items = [task.model_dump(exclude_none=True) for task in batch]
            answer = self._write("POST", "/api/v4/tasks", items, "tasks")
            created.extend(CreatedEntity.model_validate(item) for item in answer)
        return created

    def iter_notes(
        self,
        entity: str = "leads",
        *,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
        note_types: Iterable[str] | None = None,
        entity_ids: Iterable[int] | None = None,
        ids: Iterable[int] | None = None,
        order: tuple[str, str] = ("updated_at", "asc"),
        on_invalid: InvalidHandler | None = None,
    ) -> Iterator[Note]:
        """Notes of ``entity`` (leads, contacts, companies, customers) matching every filter.

        There is no filter by creation time (amoCRM ignores ``filter[created_at]`` on notes):
        read by ``updated_at``, which an edit moves too. Every given filter is applied again
        to what comes back, since amoCRM may ignore a filter and answer with everything.
        ``entity_ids`` and ``ids`` of any length are sent ``IDS_PER_REQUEST`` at a time,
        each chunk in ``order``. A read from ``updated_from`` in ``updated_at`` order pages
        by ``updated_at`` itself (:meth:`_by_update`): a note edited mid-read comes again
        later and pushes no other past a page boundary. Other reads page by offset.
        """
        base: dict[str, Any] = {"limit": NOTES_PAGE, f"order[{order[0]}]": order[1]}
        if updated_from is not None:
            base["filter[updated_at][from]"] = int(updated_from.timestamp())
        if updated_to is not None:
            base["filter[updated_at][to]"] = int(updated_to.timestamp())
        types = list(dict.fromkeys(note_types)) if note_types is not None else None
        for index, note_type in enumerate(types or ()):
            base[f"filter[note_type][{index}]"] = note_type
        wanted_entities = list(dict.fromkeys(entity_ids)) if entity_ids is not None else None
        wanted_ids = list(dict.fromkeys(ids)) if ids is not None else None
        if wanted_entities == [] or wanted_ids == [] or types == []:
            return
        entity_chunks: list[Sequence[int] | None] = (
            list(_chunks(wanted_entities, IDS_PER_REQUEST)) if wanted_entities else [None]
        )
        id_chunks: list[Sequence[int] | None] = (
            list(_chunks(wanted_ids, IDS_PER_REQUEST)) if wanted_ids else [None]
        )

        entity_set, id_set, type_set = (
            set(wanted_entities or ()),
            set(wanted_ids or ()),
            set(types or ()),
        )

        def asked_for(note: Note) -> bool:
            return (
                (wanted_entities is None or note.entity_id in entity_set)
                and (wanted_ids is None or note.id in id_set)
                and (types is None or note.note_type in type_set)
                and (updated_from is None or note.updated_at >= updated_from)
                and (updated_to is None or note.updated_at <= updated_to)
            )

        for entity_chunk in entity_chunks:
            for id_chunk in id_chunks:
                params = dict(base)
                for index, entity_id in enumerate(entity_chunk or ()):
                    params[f"filter[entity_id][{index}]"] = entity_id
                for index, note_id in enumerate(id_chunk or ()):
                    params[f"filter[id][{index}]"] = note_id
                if order == ("updated_at", "asc") and updated_from is not None:
                    # No note is asked for by id again: a crowded second is read to the end.
                    notes = self._by_update(
                        f"/api/v4/{entity}/notes",
                        params,
                        "notes",
                        Note,
                        kind="note",
                        on_invalid=on_invalid,
                        recheck_crowded=True,
                    )
                else:
                    notes = self._paged(
                        f"/api/v4/{entity}/notes",
                        params,
                        "notes",
                        Note,
                        kind="note",
                        on_invalid=on_invalid,
                    )
                yield from (note for note in notes if asked_for(note))

    def create_notes(
        self, notes: Sequence[NewNote], *, entity: str = "leads"
    ) -> list[CreatedEntity]:
        created: list[CreatedEntity] = []
        for batch in _chunks(notes, WRITE_BATCH):
            items = [note.as_json() for note in batch]
            answer = self._write("POST", f"/api/v4/{entity}/notes", items, "notes")
            created.extend(CreatedEntity.model_validate(item) for item in answer)
        return created

    # --- the request core ----------------------------------------------------------------------

    def _paged(
        self,
        path: str,
        params: Mapping[str, Any],
        key: str,
        model: type[M],
        *,
        kind: str,
        on_invalid: InvalidHandler | None,
        confirm_empty: bool = False,
    ) -> Iterator[M]:
        """Every valid item of every page; the others go to ``on_invalid`` (or the log).
        With ``confirm_empty`` an empty first answer is asked again too."""
        pages = _Pages(
            self,
            path,
            key,
            model,
            kind=kind,
            report=on_invalid or _log_invalid,
            expect_more=confirm_empty,
        )
        url: str | None = path
        query: Mapping[str, Any] | None = params
        while url is not None:
            items, url = pages.page(query, url)  # an empty answer ends it (a 204, past the end)
            yield from items
            # An empty page that a next link promised is asked again once, since absence is
            # not evidence (the feed's cursor would pass what it hid).
            query, pages.expect_more = None, True  # the next link carries the whole query

    def _by_update(
        self,
        path: str,
        params: Mapping[str, Any],
        key: str,
        model: type[M],
        *,
        kind: str,
        on_invalid: InvalidHandler | None,
        confirm_empty: bool = False,
        recheck_crowded: bool = False,
    ) -> Iterator[M]:
        """Every valid item, read in ``updated_at`` order page after page by ``updated_at``
        itself (keyset), never by offset, so an item that leaves the filter mid-read shifts
        nothing past a page boundary; one updated mid-read comes again later, newer.

        Each page asks ``filter[updated_at][from]`` = the newest ``updated_at`` seen so far
        (amoCRM's ``from`` includes it), so a second split between two pages is read whole;
        what comes twice is yielded once per (id, ``updated_at``). A page of one second only
        (more items share it than a page holds, as after a mass write) is followed by offset
        pages until the second is passed; with ``recheck_crowded`` that second is read again
        at the end until a read of it brings nothing new, since an item leaving the filter
        mid-read shifts those offsets. An empty answer
        (204 or no items) after a page that promised more is asked again once before it is
        taken as the end, and so is an empty first answer when ``confirm_empty``: absence is
        not evidence.
        """
        reader = _Pages(
            self,
            path,
            key,
            model,
            kind=kind,
            report=on_invalid or _log_invalid,
            expect_more=confirm_empty,
        )
        base = {k: v for k, v in params.items() if k != "filter[updated_at][from]"}
        base["order[updated_at]"] = "asc"
        low: int | None = params.get("filter[updated_at][from]")
        crowded: list[int] = []  # seconds more items shared than a page holds
        url: str | None = path
        query: Mapping[str, Any] | None = (
            base if low is None else {**base, "filter[updated_at][from]": low}
        )
        while url is not None:
            items, more = reader.page(query, url)
            yield from reader.fresh(items)
            if not items or more is None:
                break
            top = max(_updated(item) for item in items)
            if low is None or top > low:
                low, reader.expect_more = top, True
                url, query = path, {**base, "filter[updated_at][from]": low}
            else:  # a whole page of one second: go on by offset through it
                if not crowded or crowded[-1] != low:
                    crowded.append(low)
                url, query, reader.expect_more = more, None, True
        if recheck_crowded:
            for second in crowded:
                yield from reader.reread(
                    {**base, "filter[updated_at][from]": second, "filter[updated_at][to]": second}
                )

    def _write(
        self, method: str, path: str, items: Sequence[Any], key: str, *, exact: bool = True
    ) -> list[Any]:
        """Send a batch; the answer's ``_embedded.<key>`` items, as many as sent if ``exact``."""
        body = self._call(
            method, path, json=items, read=_written_reader(key, len(items) if exact else None)
        )
        answer = list(body["_embedded"][key])
        if self._on_write is not None:
            # amoCRM stamps the change between the last attempt's request and its answer
            # (the attempts before it changed nothing); the answer's Date header has whole
            # seconds, so the span reaches back one more.
            last = self._attempt
            until = getattr(last, "answered", None) or datetime.fromtimestamp(self._clock(), UTC)
            took = self._monotonic() - getattr(last, "sent", self._monotonic())
            since = until - timedelta(seconds=took + 1)
            sent = items if method == "PATCH" else answer
            ids = tuple(
                i["id"] for i in sent if isinstance(i, dict) and isinstance(i.get("id"), int)
            )
            moved = tuple(
                i["id"] for i in sent if isinstance(i, dict) and "status_id" in i and i["id"] in ids
            )
            self._on_write(Written(path.removeprefix("/api/v4/"), ids, since, until, moved))
        return answer

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        read: Reader,
    ) -> Any:
        """One API call: authorised, rate-limited, retried; the body ``read`` makes of it."""
        path = httpx.URL(url).path
        token = self.credentials.access_token(self._refresh)
        response, body = self._send(method, url, params=params, json=json, token=token, read=read)
        if response.status_code == 401 and self.credentials.after_unauthorized(
            token, self._refresh
        ):
            token = self.credentials.access_token(self._refresh)
            response, body = self._send(
                method, url, params=params, json=json, token=token, read=read
            )
        self._raise_for_status(method, path, response)
        return body

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        token: str | None = None,
        authorize: bool = True,
        read: Reader | None = None,
    ) -> tuple[httpx.Response, Any]:
        """The answer, and what ``read`` makes of it when the status is not an error.

        ``read`` runs inside the retried attempt, so a garbled answer is retried like a 5xx.
        """
        path = httpx.URL(url).path
        headers = {"Authorization": f"Bearer {token}"} if authorize and token else {}

        def attempt() -> tuple[httpx.Response, Any]:
            self._check_circuit(method, path)
            slot = self._limiter.acquire()
            with self._counter_lock:
                self.requests_sent += 1
            try:
                self._limiter.sending(slot)
                self._attempt.sent, self._attempt.answered = self._monotonic(), None
                response = self._http.request(
                    method, url, params=params, json=json, headers=headers
                )
            except httpx.TransportError as error:
                self._observe(method, None)
                raise _transport_error(method, path, error) from None
            finally:
                self._limiter.answered(slot)
                if self._on_slot is not None:
                    self._on_slot(slot)
            self._observe(method, response.status_code)
            self._attempt.answered = self._note_server_time(response)
            status = response.status_code
            if status == 429:
                raise RateLimited(status, method, path, "too many requests")
            if status >= 500:
                raise ServerError(status, method, path, _detail(response))
            if status == 403 and _is_html(response):
                self._open_circuit(method, path)
                raise AccountBlocked(status, method, path, "blocked by amoCRM's gateway")
            if read is not None and status < 400:
                return response, read(method, path, response)
            return response, None

        return self._retrying(method).__call__(attempt)

    def _observe(self, method: str, status: int | None) -> None:
        if self._on_request is not None:
            self._on_request(method, status)

    def _before_retry(self, state: RetryCallState) -> None:
        _log_retry(state)
        if self._on_retry is not None:
            outcome = state.outcome
            self._on_retry(_retry_reason(outcome.exception() if outcome is not None else None))

    def _note_server_time(self, response: httpx.Response) -> datetime | None:
        """amoCRM's clock on the answer (its Date header), kept as the latest known."""
        stamp = response.headers.get("date")
        if not stamp:
            return None
        try:
            moment = parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        self._server_time = moment
        return moment

    def _retrying(self, method: str) -> Retrying:
        idempotent = method.upper() != "POST"

        def retryable(error: BaseException) -> bool:
            if isinstance(error, RateLimited):
                return True
            if isinstance(error, ServerError | _Undelivered):
                return idempotent or isinstance(error, _Undelivered)
            if isinstance(error, TransportError | UnexpectedAnswer):
                return idempotent
            return False

        return Retrying(
            stop=stop_any(stop_after_attempt(self._max_attempts), _UnexpectedTooOften()),
            wait=wait_exponential_jitter(initial=self._backoff_initial, max=self._backoff_max),
            retry=retry_if_exception(retryable),
            sleep=self._pause,
            before_sleep=self._before_retry,
            reraise=True,
        )

    def _check_circuit(self, method: str, path: str) -> None:
        if self._blocked_until and self._monotonic() < self._blocked_until:
            left = round(self._blocked_until - self._monotonic())
            raise CircuitOpen(
                f"{method} {path}: not sent, amoCRM blocked the account; retry in {left} s",
                self._blocked_until,
            )

    def _open_circuit(self, method: str, path: str) -> None:
        with self._counter_lock:
            already_open = self._monotonic() < self._blocked_until
            self._blocked_until = self._monotonic() + self._circuit_cooldown
        if not already_open:
            log.error(
                "api_blocked",
                method=method,
                path=path,
                cooldown_s=self._circuit_cooldown,
                hint="amoCRM blocked the account for too many requests or errors; "
                "no calls until the cool-down ends",
            )

    def _raise_for_status(self, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _detail(response)
        if status == 400:
            items = _validation_items(response)
            if items is not None:
                raise ValidationFailed(method, path, items)
            raise BadRequest(status, method, path, detail)
        if status == 401:
            raise Unauthorized(
                f"{method} {path}: HTTP 401, the token was not accepted"
                + (
                    f"; {REAUTHORISE_HINT}"
                    if isinstance(self.credentials, OAuthTokens)
                    else "; issue a new long-lived token in the integration's settings"
                )
            )
        error_class: type[ApiError] = {
            402: PaymentRequired,
            403: Forbidden,
            404: NotFound,
            429: RateLimited,
        }.get(status, ServerError if status >= 500 else BadRequest)
        raise error_class(status, method, path, detail)


class _UnexpectedTooOften(stop_base):
    """Stop once ``UNEXPECTED_ATTEMPTS`` attempts have been made and the last was garbled."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return isinstance(error, UnexpectedAnswer) and (
            retry_state.attempt_number >= UNEXPECTED_ATTEMPTS
        )


class _Undelivered(TransportError):
    """The connection never opened: the request cannot have reached amoCRM."""


def _transport_error(method: str, path: str, error: httpx.TransportError) -> TransportError:
    kind = type(error).__name__
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return _Undelivered(f"{method} {path}: {kind}")
    return TransportError(f"{method} {path}: {kind}")


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    fields: dict[str, Any] = {
        "attempt": state.attempt_number,
        "wait_s": round(wait, 2),
        "error": str(error),
    }
    if isinstance(error, RateLimited):
        log.warning("api_rate_limited", **fields)
    else:
        log.warning("api_retry", **fields)


def _retry_reason(error: BaseException | None) -> str:
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ServerError):
        return "server_error"
    if isinstance(error, UnexpectedAnswer):
        return "unexpected_answer"
    return "transport"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_object(method: str, path: str, response: httpx.Response) -> dict[str, Any] | None:
    """The JSON object of a 2xx answer; None for 204 or an empty body."""
    status = response.status_code
    if not 200 <= status < 300:
        raise UnexpectedAnswer(status, method, path, "not a success status", _excerpt(response))
    if status == 204 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        raise UnexpectedAnswer(status, method, path, "not JSON", _excerpt(response)) from None
    if not isinstance(body, dict):
        raise UnexpectedAnswer(status, method, path, "not a JSON object", _excerpt(response))
    return body


def _read_any(method: str, path: str, response: httpx.Response) -> None:
    """Any 2xx answer: the call's effect is all that counts."""
    status = response.status_code
    if not 200 <= status < 300:
        raise UnexpectedAnswer(status, method, path, "not a success status", _excerpt(response))


def _embedded_list(
    method: str, path: str, response: httpx.Response, body: dict[str, Any], key: str
) -> list[Any]:
    embedded = body.get("_embedded")
    items = embedded.get(key) if isinstance(embedded, dict) else None
    if not isinstance(items, list):
        raise UnexpectedAnswer(
            response.status_code, method, path, f"no _embedded.{key} list", _excerpt(response)
        )
    return items


def _page_reader(key: str) -> Reader:
    """A page of a list: an object with an ``_embedded.<key>`` list, or None for 204."""

    def read(method: str, path: str, response: httpx.Response) -> dict[str, Any] | None:
        body = _read_object(method, path, response)
        if body is not None:
            _embedded_list(method, path, response, body, key)
        return body

    return read


def _written_reader(key: str, count: int | None) -> Reader:
    """A write's answer: an object with an ``_embedded.<key>`` list of ``count`` items."""

    def read(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        body = _read_object(method, path, response)
        if body is None:
            raise UnexpectedAnswer(response.status_code, method, path, "an empty answer")
        items = _embedded_list(method, path, response, body, key)
        if count is not None and len(items) != count:
            raise UnexpectedAnswer(
                response.status_code,
                method,
                path,
                f"{len(items)} items in _embedded.{key} for {count} sent",
                _excerpt(response),
            )
        return body

    return read


def _raw_id(item: object) -> int | str | None:
    found = item.get("id") if isinstance(item, dict) else None
    return found if isinstance(found, int | str) and not isinstance(found, bool) else None


def _problem(error: ValidationError, shown: int = 3) -> str:
    """Where and why an item failed its model, without the values it held."""
    problems = error.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'item'}: {problem['msg']}"
        for problem in problems[:shown]
    ]
    if len(problems) > shown:
        parts.append(f"and {len(problems) - shown} more")
    return "; ".join(parts)


def _log_invalid(invalid: InvalidItem) -> None:
    log.warning("item_invalid", kind=invalid.kind, id=invalid.item_id, problem=invalid.problem)


def _excerpt(response: httpx.Response) -> str:
    text = response.content[: EXCERPT_LENGTH * 4].decode("utf-8", "replace")
    return " ".join(text.split())[:EXCERPT_LENGTH]


class _Pages(Generic[M]):
    """The pages of one read, and (for a read by ``updated_at``) what it yielded."""

    def __init__(
        self,
        client: AmoClient,
        path: str,
        key: str,
        model: type[M],
        *,
        kind: str,
        report: InvalidHandler,
        expect_more: bool,
    ) -> None:
        self.client, self.path, self.key, self.model = client, path, key, model
        self.kind, self.report, self.expect_more = kind, report, expect_more
        self.read = _page_reader(key)
        self.yielded: set[tuple[int, int]] = set()

    def page(self, query: Mapping[str, Any] | None, url: str) -> tuple[list[M], str | None]:
        """One page's valid items and its next link; an empty answer where more was
        promised is asked again once."""
        body = self.client._call("GET", url, params=query, read=self.read)
        if body is not None and not body["_embedded"][self.key] and self.expect_more:
            body = None
        if body is None and self.expect_more:
            body = self.client._call("GET", url, params=query, read=self.read)
        if body is None:
            return [], None
        items = list(_valid_items(body["_embedded"][self.key], self.model, self.kind, self.report))
        return items, _next_link(body)

    def fresh(self, items: list[M]) -> Iterator[M]:
        for item in items:
            stamp = (int(getattr(item, "id", 0)), _updated(item))
            if stamp not in self.yielded:
                self.yielded.add(stamp)
                yield item

    def reread(self, window: Mapping[str, Any]) -> Iterator[M]:
        """Read one second by offset, again until a read of it brings nothing new."""
        while True:
            before = len(self.yielded)
            url: str | None = self.path
            query: Mapping[str, Any] | None = window
            while url is not None:
                items, url = self.page(query, url)
                query = None
                yield from self.fresh(items)
            if len(self.yielded) == before:
                return


def _valid_items(
    items: Iterable[Any], model: type[M], kind: str, report: InvalidHandler
) -> Iterator[M]:
    """The items ``model`` reads; the others go to ``report``."""
    for item in items:
        try:
            yield model.model_validate(item)
        except ValidationError as error:
            report(InvalidItem(kind, _raw_id(item), _problem(error)))


def _updated(item: BaseModel) -> int:
    """An item's ``updated_at`` in unix seconds (0 when it has none)."""
    value = getattr(item, "updated_at", None)
    return int(value.timestamp()) if isinstance(value, datetime) else 0


def _next_link(body: Any) -> str | None:
    links = body.get("_links") if isinstance(body, dict) else None
    following = links.get("next") if isinstance(links, dict) else None
    href = following.get("href") if isinstance(following, dict) else None
    return href if isinstance(href, str) and href else None


def _is_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "").lower()


def _json_text(response: httpx.Response, key: str) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def _detail(response: httpx.Response) -> str:
    if _is_html(response):
        return response.reason_phrase or "HTML error page"
    return _json_text(response, "detail") or _json_text(response, "title")


def _validation_items(response: httpx.Response) -> list[ItemError] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    groups = body.get("validation-errors") if isinstance(body, dict) else None
    if not isinstance(groups, list) or not groups:
        return None
    items: list[ItemError] = []
    for group in groups:
        if not isinstance(group, dict):
            continue
        raw_index = str(group.get("request_id"))
        index = int(raw_index) if raw_index.isdigit() else None
        for error in group.get("errors") or ():
            if isinstance(error, dict):
                items.append(
                    ItemError(
                        request_index=index,
                        path=str(error.get("path", "")),
                        code=str(error.get("code", "")),
                        detail=str(error.get("detail", "")),
                    )
                )
    return items


__all__ = ["AmoClient", "AmoError", "Credentials"]
