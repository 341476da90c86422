"""The sync cycle under random agent and robot churn, faults and kills (a hypothesis state machine).

The rules act on the fake amoCRM on a virtual clock: requests created, answered, moved,
closed, reopened, deleted, restored and retagged, agreed dates typed, stages added,
customers writing again (chat, e-mail, calls; on the lead or its contact), time passed
over working hours, weekends and holidays; cycles run clean, with data changing between
the pages of a read, with injected faults, and killed at a random request, after which a
new worker starts on the same state directory or on an empty one. The policy is the
example preset with next response and an escalation ladder
(``sla/presets/crmbp_next_response.toml``): several steps per clock and per waiting period.

After every clean cycle (no fault injected, no change between pages):

1. every request of the support pipeline (open or closed, not deleted) holds the fields the
   engine derives from its whole history as amoCRM holds it
   (:func:`tests.oracle.engine_state`) at the cycle's ``now``, the next response's two
   included; a request with an event the feed listed late is exempt until a full reconcile
   has run since the feed listed it (the worker only promises to catch it then);
2. no lead has more than one task per clock, waiting period and step (tasks counted by
   their marker lines, which name all three);
3. every task's step fired at some cycle's ``now``, by the engine on the whole history, or
   on the history without the events the feed listed late (a task made while a late reply
   was not yet listed was right when it was made);
4. every request (under the precondition of 1) whose engine state owes a step's task has
   it;
5. every time the worker moved a lead out of the acceptance stage it left one acceptance note;
6. every webhook the fake amoCRM sent for these changes (it is subscribed to the worker's
   endpoint, :mod:`worker.webhooks`, called in process) was answered 200, and a cycle run
   because hooks came (``run_hooked_cycle``) is a cycle like any other.

A faulted, page-churned or killed cycle is checked only through the clean cycle after it,
which must heal everything.

CI runs 25 examples of up to 30 steps; ``SLA_STATEFUL_EXAMPLES=500`` (and ``SLA_STATEFUL_STEPS``)
runs more. A failure prints a
``@reproduce_failure`` blob; ``pytest --hypothesis-seed=N`` replays a seed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import amo_client.client as client_module
from amo_client.fake import PageTurn
from sla.policy import load_policy
from tests.asgi_kit import AsgiClient
from tests.churn_kit import (
    FAULTS,
    ODD_SHAPES,
    Killed,
    KillingTransport,
    acceptance_notes,
    accepted_by_worker,
    fired_markers,
    inject_fault,
    live_request_ids,
    marker_counts,
)
from tests.cycle_kit import (
    ACCEPTANCE,
    HOLD,
    LOST,
    MOSCOW,
    REACTION_TEXT,
    RESOLUTION_TEXT,
    STAGES,
    WON,
    WORKER_SINCE,
    World,
    at,
    build_world,
    make_client,
    make_cycle,
    stage_options,
)
from tests.oracle import engine_state, expected_fields, stored_fields
from worker.cycle import LAST_FULL_SYNC, CycleOptions, SyncCycle
from worker.errors import is_fatal
from worker.tasks import TaskOptions, step_marker
from worker.webhooks import WEBHOOK_EVENTS, build_app

EXAMPLES = int(os.environ.get("SLA_STATEFUL_EXAMPLES", "25"))
STEPS = int(os.environ.get("SLA_STATEFUL_STEPS", "30"))
# Small pages, so that a handful of requests spans several pages of every list.
PAGE = 3
HOOK_SECRET = "stateful-" + "s" * 24

TAG_SETS: tuple[tuple[str, ...], ...] = (
    ("Приоритет",),
    ("По факту",),
    ("Приоритет", "Нестандартное"),
    ("По факту", "Доработка"),
    ("Приоритет", "Доработка"),
    (),
    ("счёт",),
    ("Приоритет", "По факту"),
    (" по факту ", "авария"),
)
REPLIES = ("outgoing_chat_message", "outgoing_call", "common_note_added")
CHANNELS = ("chat", "chat", "mail", "call")
LATENESS = (0, 0, 0, 90, 600)  # seconds between an event and the feed listing it
POLICY = load_policy(
    (
        Path(__file__).resolve().parent.parent / "sla" / "presets" / "crmbp_next_response.toml"
    ).read_text(encoding="utf-8")
)


minutes = st.integers(1, 59).map(lambda n: timedelta(minutes=n))
hours = st.integers(1, 30).map(lambda n: timedelta(hours=n))
days = st.integers(1, 5).map(lambda n: timedelta(days=n))


@dataclass(frozen=True)
class Late:
    event_id: str
    lead_id: int
    visible_at: datetime


class CycleMachine(RuleBasedStateMachine):
    """One support pipeline, its agents and robots, and the worker's cycles on it."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = (client_module.LEADS_PAGE, client_module.EVENTS_PAGE)
        client_module.LEADS_PAGE = PAGE  # type: ignore[misc]
        client_module.EVENTS_PAGE = PAGE  # type: ignore[misc]
        self.root = Path(tempfile.mkdtemp(prefix="sla-stateful-"))
        self.world: World = build_world(seed=False, policy=POLICY)
        self.options = self.cycle_options(timedelta(hours=6))
        self.dirs = 0
        self.cycle = self.start_worker(lose_state=True)
        self.requests: list[int] = []  # every support lead created, deleted ones too
        self.stages = [self.world.support.status(name) for name in STAGES]
        self.late: list[Late] = []
        self.fulls: list[datetime] = []  # when full reconciles ran, as the stores recorded them
        self.ever_fired: set[tuple[int, str]] = set()  # (lead, marker) of steps that fired
        # (lead, marker) of steps that fired after the first start: their task was due then,
        # even if a retag or a late event has since moved the step before it.
        self.fired_as_news: set[tuple[int, str]] = set()
        self.hooks = 0  # hooks the endpoint took since the last hooked cycle
        self.pinned = True  # the first start pinned before every request (no past breach)
        self.first_start: datetime | None = None  # the first start the first state recorded
        self.contact_churned: set[int] = set()  # see note_contact_churn
        self.subscribe_worker_endpoint()

    def subscribe_worker_endpoint(self) -> None:
        """The fake's account webhooks go to the worker's endpoint, called in process."""
        fake = self.world.fake

        def took_hook() -> None:
            self.hooks += 1

        endpoint = AsgiClient(
            build_app(trigger=took_hook, secret=HOOK_SECRET, subdomain=fake.subdomain)
        )

        def deliver(request: httpx.Request) -> httpx.Response:
            answer = endpoint.request(
                request.method,
                request.url.path,
                content=request.content,
                headers=dict(request.headers),
            )
            return httpx.Response(answer.status_code)

        fake.webhook_transport = httpx.MockTransport(deliver)
        fake.subscribe_webhook(f"https://worker.test/amocrm/webhook/{HOOK_SECRET}", WEBHOOK_EVENTS)

    def teardown(self) -> None:
        client_module.LEADS_PAGE, client_module.EVENTS_PAGE = self.pages  # type: ignore[misc]
        self.world.fake.stop_webhooks()
        self.cycle.store.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the worker ------------------------------------------------------------------------
    def cycle_options(self, full_every: timedelta, *, pinned: bool = True) -> CycleOptions:
        return CycleOptions(
            stages=stage_options(next_response=True),
            tasks=TaskOptions(
                reaction_text=REACTION_TEXT,
                resolution_text=RESOLUTION_TEXT,
                supervisor_user_id=self.world.agents[1],
            ),
            full_reconcile_interval=full_every,
            first_start=WORKER_SINCE if pinned else None,
        )

    def start_worker(self, *, lose_state: bool) -> SyncCycle:
        """A new worker process: a new client, the old state directory or a new empty one."""
        if lose_state:
            self.dirs += 1
        state_dir = self.root / f"state{self.dirs}"
        state_dir.mkdir(exist_ok=True)
        client = make_client(self.world.fake, self.world.clock)
        return make_cycle(self.world, state_dir, client=client, options=self.options)

    def note_full(self) -> None:
        """Record the full reconcile the last cycle ran, if it ran one (even if it failed later)."""
        last = self.cycle.store.get_int(LAST_FULL_SYNC)
        if last is not None:
            moment = datetime.fromtimestamp(last, UTC)
            if moment not in self.fulls:
                self.fulls.append(moment)

    def note_breaches(self, now: datetime) -> None:
        """Remember which steps the engine calls fired at ``now`` (whole or listed history)."""
        hidden = frozenset(
            late.event_id for late in self.late if late.event_id in self.unlisted_ids()
        )
        every_late = frozenset(late.event_id for late in self.late)
        for lead_id in self.live_ids():
            for view in (
                engine_state(self.world, lead_id, now),
                engine_state(self.world, lead_id, now, hidden=hidden),
                engine_state(self.world, lead_id, now, hidden=every_late),
            ):
                for marker in fired_markers(view):
                    self.ever_fired.add((lead_id, marker))
                first = self.note_first_start()
                for step in view.ladder:
                    if (
                        step.fired
                        and step.at is not None
                        and first is not None
                        and step.at >= first
                    ):
                        self.fired_as_news.add((lead_id, step_marker(step, MOSCOW)))

    def unlisted_ids(self) -> set[str]:
        return set(self.world.fake.unindexed_event_ids)

    def live_ids(self) -> list[int]:
        return [i for i in self.requests if self.world.fake.lead(i) is not None]

    def run_clean(self) -> None:
        now = self.world.now()
        self.note_breaches(now)
        report = self.cycle.run(now)
        assert not report.skipped
        assert not report.stopped_early
        self.note_full()
        self.check(now)

    # --- agents and robots -----------------------------------------------------------------
    @initialize(
        tags=st.lists(st.sampled_from(TAG_SETS), min_size=1, max_size=5),
        full_every=st.sampled_from([timedelta(hours=6), timedelta(hours=1)]),
        past=st.lists(st.integers(30, 4000), max_size=3),
        pinned=st.booleans(),
    )
    def open_requests(
        self,
        tags: list[tuple[str, ...]],
        full_every: timedelta,
        past: list[int],
        pinned: bool,
    ) -> None:
        """Requests arriving now and, on an account the worker first starts on, some from
        ``past`` minutes before (breached before the worker existed, unless pinned)."""
        self.pinned = pinned
        self.options = self.cycle_options(full_every, pinned=pinned)
        self.cycle.store.close()
        self.cycle = self.start_worker(lose_state=False)
        for one in tags:
            self.create_request(one, by_robot=True)
        for minutes in past:
            lead_id = self.world.fake.add_lead(
                f"Обращение {len(self.requests) + 1}",
                pipeline_id=self.world.support.id,
                tags=["Приоритет"],
                created_at=(self.world.now() - timedelta(minutes=minutes)).timestamp(),
                responsible_user_id=self.world.agents[0],
            )
            self.requests.append(lead_id)

    @rule(tags=st.sampled_from(TAG_SETS), by_robot=st.booleans())
    def create_request(self, tags: tuple[str, ...], by_robot: bool) -> None:
        anna, oleg = self.world.agents
        lead_id = self.world.fake.add_lead(
            f"Обращение {len(self.requests) + 1}",
            pipeline_id=self.world.support.id,
            tags=list(tags),
            created_by=0 if by_robot else anna,
            responsible_user_id=oleg if len(self.requests) % 2 else anna,
        )
        self.requests.append(lead_id)

    def pick_live(self, index: int) -> int | None:
        """One of the support pipeline's requests that are not deleted, or None."""
        live = live_request_ids(self.world)
        return live[index % len(live)] if live else None

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        kind=st.sampled_from(REPLIES),
        late=st.sampled_from(LATENESS),
    )
    def agent_replies(self, index: int, kind: str, late: int) -> None:
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        event_id = self.world.fake.add_event(
            lead_id, kind, created_by=self.world.agents[index % 2], visible_after=late or None
        )
        if late:
            now = self.world.now()
            self.late.append(Late(event_id, lead_id, now + timedelta(seconds=late)))

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        kind=st.sampled_from(REPLIES),
        share=st.booleans(),
        talk=st.booleans(),
    )
    def agent_replies_on_the_contact(self, index: int, kind: str, share: bool, talk: bool) -> None:
        """As an account that files replies on the contact: the request gets a contact
        (sometimes another request's, so the reply may be ambiguous unless its chat talk
        names the request) and the reply is filed there. A link and a reply never share a
        second: amoCRM's events carry seconds, so nothing could tell which came first
        (README, "Replies filed on the contact")."""
        fake = self.world.fake
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        second = timedelta(seconds=1)
        if not fake.lead_contacts(lead_id):
            other = self.pick_live(index + 1) if share else None
            shared = fake.lead_contacts(other) if other is not None else []
            contact = shared[0] if shared else fake.add_contact(f"Клиент {lead_id}")
            self.world.advance(second)
            fake.link_contact(lead_id, contact, by=self.world.agents[0])
        self.world.advance(second)
        fake.replies_filed_on = "contact"
        try:
            fake.reply(lead_id, kind, created_by=self.world.agents[index % 2], talk_about_lead=talk)
        finally:
            fake.replies_filed_on = "lead"
        self.world.advance(second)

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        channel=st.sampled_from(CHANNELS),
        late=st.sampled_from(LATENESS),
        on_contact=st.booleans(),
    )
    def customer_writes(self, index: int, channel: str, late: int, on_contact: bool) -> None:
        """The customer writes again: on the lead, listed by the feed at once or late, or on
        the request's own contact (a contact of no other request, so never ambiguous)."""
        fake = self.world.fake
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        if not on_contact:
            event_id = fake.add_event(
                lead_id,
                {"chat": "incoming_chat_message", "mail": "incoming_mail"}.get(
                    channel, "incoming_call"
                ),
                created_by=0,
                visible_after=late or None,
            )
            if late:
                now = self.world.now()
                self.late.append(Late(event_id, lead_id, now + timedelta(seconds=late)))
            return
        second = timedelta(seconds=1)
        if not fake.lead_contacts(lead_id):
            self.world.advance(second)
            fake.link_contact(lead_id, fake.add_contact(f"Клиент {lead_id}"), by=0)
        self.world.advance(second)
        fake.replies_filed_on = "contact"
        try:
            fake.customer_writes(lead_id, channel, talk_about_lead=True)
        finally:
            fake.replies_filed_on = "lead"
        self.world.advance(second)

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        kind=st.sampled_from(REPLIES),
        gap=minutes,
        channel=st.sampled_from(CHANNELS),
        by_robot=st.booleans(),
        wait=st.none() | hours,
    )
    def conversation(
        self,
        *,
        index: int,
        kind: str,
        gap: timedelta,
        channel: str,
        by_robot: bool,
        wait: timedelta | None,
    ) -> None:
        """Someone answers (an agent, or a chat bot whose answer is none), and after ``gap``
        the customer writes again: a waiting period, if the request was answered; then
        ``wait`` passes."""
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        by = 0 if by_robot else self.world.agents[index % 2]
        self.world.fake.add_event(lead_id, kind, created_by=by)
        self.world.advance(gap)
        self.world.fake.customer_writes(lead_id, channel)
        if wait is not None:
            self.world.advance(wait)

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50))
    def bot_writes(self, index: int) -> None:
        lead_id = self.pick_live(index)
        if lead_id is not None:
            self.world.fake.add_event(lead_id, "outgoing_chat_message", created_by=0)

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        stage=st.integers(0, 20),
        by_robot=st.booleans(),
    )
    def move(self, index: int, stage: int, by_robot: bool) -> None:
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        targets = [*self.stages, WON, LOST]
        by = 0 if by_robot else self.world.agents[index % 2]
        self.world.fake.move_lead(lead_id, targets[stage % len(targets)], by_user=by)

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50))
    def send_for_acceptance(self, index: int) -> None:
        """An agent reports the work done: the customer has a business day for remarks."""
        lead_id = self.pick_live(index)
        if lead_id is not None:
            self.world.fake.move_lead(
                lead_id, self.world.support.status(ACCEPTANCE), by_user=self.world.agents[0]
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), won=st.booleans())
    def close(self, index: int, won: bool) -> None:
        lead_id = self.pick_live(index)
        if lead_id is not None:
            self.world.fake.move_lead(
                lead_id, WON if won else LOST, by_user=self.world.agents[index % 2]
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), to_hold=st.booleans())
    def reopen(self, index: int, to_hold: bool) -> None:
        closed = [
            i
            for i in live_request_ids(self.world)
            if (self.world.fake.lead(i) or {}).get("status_id") in (WON, LOST)
        ]
        if closed:
            target = self.world.support.status(HOLD if to_hold else STAGES[1])
            self.world.fake.move_lead(
                closed[index % len(closed)], target, by_user=self.world.agents[index % 2]
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50))
    def delete(self, index: int) -> None:
        lead_id = self.pick_live(index)
        if lead_id is not None:
            self.note_contact_churn(lead_id)
            self.world.fake.delete_lead(lead_id, by=self.world.agents[0])

    def note_contact_churn(self, lead_id: int) -> None:
        """A request deleted or restored that shares a contact with others: replies on the
        contact from while they were open are judged as the worker read them (README,
        "Replies filed on the contact"), so those requests leave the field comparison."""
        fake = self.world.fake
        for contact_id in fake.lead_contacts(lead_id):
            shared = set(fake.contact_leads(contact_id))
            if len(shared) > 1:
                self.contact_churned |= shared

    @precondition(lambda self: self.world.fake.deleted_lead_ids)
    @rule(index=st.integers(0, 50))
    def restore(self, index: int) -> None:
        trash = self.world.fake.deleted_lead_ids
        lead_id = trash[index % len(trash)]
        self.world.fake.restore_lead(lead_id, by=self.world.agents[1])
        self.note_contact_churn(lead_id)

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), tags=st.sampled_from(TAG_SETS))
    def retag(self, index: int, tags: tuple[str, ...]) -> None:
        lead_id = self.pick_live(index)
        if lead_id is not None:
            self.world.fake.update_lead(lead_id, by_user=self.world.agents[0], tags=list(tags))

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), hours_from_now=st.none() | st.integers(-30, 200))
    def agree_date(self, index: int, hours_from_now: int | None) -> None:
        lead_id = self.pick_live(index)
        if lead_id is None:
            return
        field_id = self.world.fake.field_id("SLA: срок по согласованию")
        assert field_id is not None
        value = (
            None
            if hours_from_now is None
            else int((self.world.now() + timedelta(hours=hours_from_now)).timestamp())
        )
        self.world.fake.update_lead(
            lead_id, by_user=self.world.agents[1], custom_fields={field_id: value}
        )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50))
    def move_to_sales(self, index: int) -> None:
        lead_id = self.pick_live(index)
        if lead_id is not None:
            sales = self.world.other
            self.world.fake.move_lead(
                lead_id,
                sales.first_status_id,
                pipeline_id=sales.id,
                by_user=self.world.agents[index % 2],
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), stage=st.integers(0, 20))
    def back_to_support(self, index: int, stage: int) -> None:
        away = [
            i
            for i in self.live_ids()
            if (self.world.fake.lead(i) or {}).get("pipeline_id") == self.world.other.id
        ]
        if away:
            self.world.fake.move_lead(
                away[index % len(away)],
                self.stages[stage % len(self.stages)],
                pipeline_id=self.world.support.id,
                by_user=self.world.agents[index % 2],
            )

    @precondition(lambda self: len(self.stages) < 8)
    @rule()
    def add_stage(self) -> None:
        stage = self.world.fake.add_status(self.world.support.id, f"Этап {len(self.stages) + 1}")
        self.stages.append(stage)

    @rule(delta=minutes | hours | days)
    def time_passes(self, delta: timedelta) -> None:
        self.world.advance(delta)

    @rule(delta=minutes | hours)
    def a_little_time_passes(self, delta: timedelta) -> None:
        self.world.advance(delta)

    # --- the worker's cycles ---------------------------------------------------------------
    @rule()
    def run_cycle(self) -> None:
        self.run_clean()

    @rule()
    def run_hooked_cycle(self) -> None:
        """The cycle the service runs when hooks came (none when none did)."""
        assert self.world.fake.wait_for_webhooks(), "the fake's hooks were not all answered"
        if self.hooks:
            self.hooks = 0
            self.run_clean()

    @rule(delta=hours | days)
    def run_cycle_much_later(self, delta: timedelta) -> None:
        self.world.advance(delta)
        self.run_clean()

    @rule(delta=st.integers(5, 600).map(lambda n: timedelta(seconds=n)) | minutes)
    def run_cycle_a_little_later(self, delta: timedelta) -> None:
        self.world.advance(delta)
        self.run_clean()

    @precondition(lambda self: self.requests)
    @rule(
        index=st.integers(0, 50),
        change=st.sampled_from(["close", "create", "empty answer"]),
        turn=st.integers(1, 12),
    )
    def run_cycle_while_pages_turn(self, index: int, change: str, turn: int) -> None:
        """Just before the cycle's ``turn``-th read request, between two pages of whichever
        read it falls in: a lead is closed or created, or that request is answered with an
        empty list (a 204)."""
        fake = self.world.fake

        def churn(page: PageTurn) -> None:
            if page.seq != turn:
                return
            fake.on_read(None)
            if change == "empty answer":
                fake.odd_answer_next("no_content", path=page.path, method="GET")
                return
            if change == "create":
                self.create_request(("Приоритет",), by_robot=True)
                return
            lead_id = self.pick_live(index)
            if lead_id is not None:
                fake.move_lead(lead_id, WON, by_user=self.world.agents[0])

        now = self.world.now()
        self.note_breaches(now)
        fake.on_read(churn)
        try:
            self.cycle.run(now)
        finally:
            fake.on_read(None)
            fake.clear_faults()  # an empty answer the cycle did not meet is not the next one's
            self.note_full()

    @rule(
        fault=st.sampled_from(FAULTS),
        count=st.integers(1, 8),
        shape=st.sampled_from(ODD_SHAPES),
        path=st.sampled_from(["/api/v4/leads", "/api/v4/events", "/api/v4/tasks", None]),
    )
    def run_cycle_with_faults(self, fault: str, count: int, shape: str, path: str | None) -> None:
        fake = self.world.fake
        inject_fault(fake, fault, count, shape=shape, path=path)
        now = self.world.now()
        self.note_breaches(now)
        failure: Exception | None = None
        try:
            self.cycle.run(now)
        except Exception as error:  # a failed cycle is allowed; the next clean one heals
            failure = error
        finally:
            fake.clear_faults()
            self.note_full()
        assert failure is None or not is_fatal(failure), failure

    @rule(at=st.integers(1, 40), after_processing=st.booleans(), lose_state=st.booleans())
    def kill_worker(self, at: int, after_processing: bool, lose_state: bool) -> None:
        """The worker dies at its ``at``-th request; a new one starts, with its state or without."""
        transport = KillingTransport(
            self.world.fake.transport, at, after_processing=after_processing
        )
        self.cycle.client = make_client(self.world.fake, self.world.clock, transport)
        now = self.world.now()
        self.note_breaches(now)
        with contextlib.suppress(Killed):
            self.cycle.run(now)
        self.note_full()
        self.note_first_start()  # before the state may be lost with it
        self.cycle.store.close()
        self.cycle = self.start_worker(lose_state=lose_state)

    @rule(
        request=st.sampled_from(
            [
                ("GET", "/api/v4/leads"),
                ("GET", "/api/v4/events"),
                ("PATCH", "/api/v4/leads"),
                ("GET", "/api/v4/tasks"),
                ("POST", "/api/v4/tasks"),
                ("POST", "/api/v4/leads/notes"),
            ]
        ),
        nth=st.integers(1, 3),
        after_processing=st.booleans(),
        lose_state=st.booleans(),
    )
    def kill_worker_at(
        self, request: tuple[str, str], nth: int, after_processing: bool, lose_state: bool
    ) -> None:
        """The worker dies at its ``nth`` request of one kind (if the cycle makes that many)."""
        transport = KillingTransport(
            self.world.fake.transport, nth, after_processing=after_processing, only=request
        )
        self.cycle.client = make_client(self.world.fake, self.world.clock, transport)
        now = self.world.now()
        self.note_breaches(now)
        with contextlib.suppress(Killed):
            self.cycle.run(now)
        self.note_full()
        self.note_first_start()  # before the state may be lost with it
        self.cycle.store.close()
        self.cycle = self.start_worker(lose_state=lose_state)

    # --- the invariants --------------------------------------------------------------------
    def exempt(self, lead_id: int) -> bool:
        """A lead with an event the feed listed late that no full reconcile has read since,
        or one whose contact's replies a deletion or a restoration made judged otherwise."""
        return lead_id in self.contact_churned or any(
            late.lead_id == lead_id and not self.caught(late) for late in self.late
        )

    def caught(self, late: Late) -> bool:
        """Whether a full reconcile ran since the feed listed the event (it rereads the feed
        far enough back for any event listed less than a reconcile interval late)."""
        return any(full >= late.visible_at for full in self.fulls)

    def settled_at(self, lead_id: int) -> datetime | None:
        """When the worker let the closed lead go (the first full reconcile a retention after
        its last change), if it did: events on it since change nothing (README)."""
        raw = self.world.fake.lead(lead_id) or {}
        if raw.get("status_id") not in (WON, LOST) or self.cycle.tracked_lead(lead_id):
            return None
        changed = datetime.fromtimestamp(raw["updated_at"], UTC)
        retention = self.options.closed_retention
        return min((full for full in self.fulls if full - retention > changed), default=None)

    def note_first_start(self) -> datetime | None:
        """The first start the first state recorded, noted once it is there."""
        recorded = self.cycle.store.first_start()
        if self.first_start is None and recorded is not None:
            self.first_start = datetime.fromtimestamp(recorded, UTC)
        return self.first_start

    def check(self, now: datetime) -> None:
        world = self.world
        assert world.fake.wait_for_webhooks(), "the fake's hooks were not all answered"
        refused = [d for d in world.fake.webhook_deliveries if d.status != 200]
        assert not refused, f"hooks the endpoint did not take: {refused}"
        disagreeing = self.cycle.disagreements(now)
        assert not disagreeing, f"kept results differ from a full recompute: {disagreeing}"
        counts = marker_counts(world)
        # The first start: as the first state recorded it (a killed cycle's too), and as
        # the current one believes it (found again in amoCRM after a lost state).
        believed = datetime.fromtimestamp(self.cycle.store.first_start() or 0, UTC)
        original = self.note_first_start() or believed
        doubled = {key: n for key, n in counts.items() if n > 1}
        assert not doubled, f"more than one task per lead, clock, period and step: {doubled}"
        unfounded = sorted(set(counts) - self.ever_fired)
        assert not unfounded, f"tasks for steps that never fired: {unfounded}"
        notes, accepted = acceptance_notes(world), accepted_by_worker(world)
        assert notes == accepted, f"acceptance notes {dict(notes)} for moves {dict(accepted)}"
        for lead_id in live_request_ids(world):
            if lead_id not in self.requests or self.exempt(lead_id):
                continue
            state = engine_state(world, lead_id, now, until=self.settled_at(lead_id))
            status = (world.fake.lead(lead_id) or {})["status_id"]
            wanted = expected_fields(state, next_response=True)
            assert stored_fields(world, lead_id) == wanted, (
                f"{'closed' if status in (WON, LOST) else 'open'} lead {lead_id} at "
                f"{now.isoformat()}: {stored_fields(world, lead_id)} != {wanted}"
            )
            for step in state.ladder:
                if not step.owed or step.at is None:
                    continue
                key = (lead_id, step_marker(step, MOSCOW))
                if self.pinned or step.at >= believed:
                    assert counts[key] == 1, f"no task: {key}"
                elif step.at < original and key not in self.fired_as_news:
                    # spec §5: a step from before the first start (that was never news)
                    assert counts[key] == 0, f"a task for a past step: {key}"

    @invariant()
    def tasks_never_doubled(self) -> None:
        counts = marker_counts(self.world)
        assert all(n == 1 for n in counts.values()), counts


CycleMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCycleStateful = CycleMachine.TestCase


# --- what the machine found, as plain tests ---------------------------------------------------


def run_at(cycle: SyncCycle, world: World, moment: float) -> None:
    world.clock.advance(moment - world.clock.time())
    cycle.run(world.now())


def test_an_event_listed_late_across_a_full_reconcile_is_read(tmp_path: Path) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    quiet, other = (
        world.fake.add_lead(
            name, pipeline_id=world.support.id, tags=["По факту"], created_at=at(5, 10, 0)
        )
        for name in ("Тишина", "Другое")
    )
    options = replace(
        make_cycle(world, tmp_path / "probe").options, full_reconcile_interval=timedelta(hours=1)
    )
    cycle = make_cycle(world, tmp_path, options=options)
    run_at(cycle, world, at(5, 12, 0))  # the first full reconcile
    # A call at 12:55 that the feed lists ten minutes late, and one listed at once.
    world.fake.add_event(
        quiet, "outgoing_call", created_by=anna, at=at(5, 12, 55), visible_after=600
    )
    world.fake.add_event(other, "outgoing_call", created_by=anna, at=at(5, 12, 58))
    run_at(cycle, world, at(5, 12, 59))
    run_at(cycle, world, at(5, 13, 1))  # a full reconcile while the call is not listed yet
    for moment in (at(5, 13, 10), at(5, 13, 30), at(5, 14, 2), at(5, 15, 3)):
        run_at(cycle, world, moment)  # the later full reconciles read from 13:00 on

    assert stored_fields(world, quiet)["SLA: реакция"] == int(at(5, 12, 55))
    assert stored_fields(world, quiet) == expected_fields(engine_state(world, quiet, world.now()))


def test_the_workers_own_acceptance_is_no_reaction(tmp_path: Path) -> None:
    world = build_world(seed=False)
    lead_id = world.fake.add_lead(
        "Отчёт готов", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 10, 0)
    )
    # A robot sends the result to the customer; nobody has answered the request.
    world.fake.move_lead(lead_id, world.support.status(ACCEPTANCE), by_user=0, at=at(5, 10, 5))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    run_at(cycle, world, at(6, 13, 0))  # a business day later the worker accepts it
    assert (world.fake.lead(lead_id) or {})["status_id"] == WON
    run_at(cycle, world, at(6, 13, 5))

    assert stored_fields(world, lead_id)["SLA: реакция"] is None


def test_a_request_accepted_twice_gets_two_notes(tmp_path: Path) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    acceptance = world.support.status(ACCEPTANCE)
    lead_id = world.fake.add_lead(
        "Отчёт", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 10, 0)
    )
    world.fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=at(5, 10, 10))
    world.fake.move_lead(lead_id, acceptance, by_user=anna, at=at(5, 11, 0))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(6, 12, 0))  # accepted after a business day
    # The customer objects after all: reopened, fixed, sent for acceptance again.
    world.fake.move_lead(lead_id, world.support.status(STAGES[1]), by_user=anna, at=at(6, 14, 0))
    world.fake.move_lead(lead_id, acceptance, by_user=anna, at=at(6, 15, 0))
    run_at(cycle, world, at(6, 15, 5))
    run_at(cycle, world, at(7, 16, 0))  # accepted again

    assert accepted_by_worker(world)[lead_id] == 2
    assert acceptance_notes(world)[lead_id] == 2


def test_a_reply_on_a_request_settled_long_after_it_closed_changes_nothing_until_it_reopens(
    tmp_path: Path,
) -> None:
    """Closed by a robot without a reply, let go at the full reconcile a day later: an
    agent's message on it then is no news to the worker; reopened, it is followed again
    with its whole history, the late message its reaction."""
    world = build_world(seed=False)
    anna = world.agents[0]
    lead = world.fake.add_lead(
        "Обращение", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 10, 0)
    )
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 10, 5))
    world.fake.move_lead(lead, LOST, by_user=0)
    run_at(cycle, world, at(5, 10, 10))
    run_at(cycle, world, at(6, 17, 0))  # a full reconcile more than a day later
    assert cycle.tracked_lead(lead) is None
    before = stored_fields(world, lead)
    assert before["SLA: реакция"] is None

    replied = at(6, 17, 2)
    world.fake.add_event(lead, "outgoing_chat_message", created_by=anna, at=replied)
    run_at(cycle, world, at(6, 17, 5))
    assert stored_fields(world, lead) == before

    world.fake.move_lead(lead, world.support.status(STAGES[1]), by_user=anna)
    run_at(cycle, world, at(6, 17, 10))
    assert cycle.tracked_lead(lead) is not None
    assert stored_fields(world, lead)["SLA: реакция"] == int(replied)
