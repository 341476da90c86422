"""The company ledgers under random agents, managers, faults and kills (a hypothesis state machine).

The rules act on the fake amoCRM on a virtual clock, under the Prime Gate policy: requests
created for a few companies (or none), with tariff and quota tags, some registered months ago;
agents log time in every form spec §7.1 lists (and some unreadable), edit and delete their
time notes; managers set, change and clear a company's package and relink requests to another
company or none; requests are closed as won or lost and reopened; time passes from minutes to
weeks, so packages expire and 12-month windows roll. Cycles run clean, with injected faults,
and killed at a random request, after which a new worker starts on the same state directory
or on an empty one. The worker keeps both ledgers, or only one of them.

After every clean cycle, with :mod:`tests.ledger_kit`'s oracle (spec §7 from the fake's whole
state, never from the worker's cache), at the cycle's ``now``:

1. every company linked to a support request holds «Пакет: действует до», «Пакет:
   израсходовано, мин», «Пакет: остаток, мин» and «Пакет: статус» of
   :func:`sla.ledger.package_balance` over its support requests' time entries for the package
   its fields name now (all four empty without one), and «Квоты» of
   :func:`sla.ledger.quota_summary` under the tariff of its latest request; a company whose
   every request was linked elsewhere holds no used minutes and no quota use;
2. every open request holds «SLA: затрачено, мин» (its rounded entries, empty at 0), «Пакет:
   исчерпан» (its company's package used up or expired) and «Квота: сверх лимита» (over one
   of :func:`sla.ledger.quota_uses`), and the SLA fields :mod:`tests.oracle` expects of it;
3. there is at most one package task per company and package and at most one quota task per
   request and quota; a package task exists only for a package that was used up while valid
   at some cycle's ``now``, a quota task only for a request that was open and over at some
   cycle's ``now``; and each package used up and still valid, each open request over a
   quota, has its task.

What the worker may or may not know, a closed request registered or a time entry made before
the ledger horizon (:attr:`worker.ledgers.options.LedgerOptions.horizon`), leaves a value undecided
when it changes it; such values are not checked (see :mod:`tests.ledger_kit`).

A faulted or killed cycle is checked only through the clean cycle after it, which must heal
everything; the task guards (at most one) are checked after every step.

CI runs 20 examples of 25 steps; ``SLA_STATEFUL_EXAMPLES=500`` (and ``SLA_STATEFUL_STEPS``)
run more. A failure prints a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

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
import worker.ledgers.plan as ledgers_module
from amo_client.fake import PageTurn
from tests.churn_kit import FAULTS, ODD_SHAPES, Killed, KillingTransport, inject_fault
from tests.cycle_kit import LOST, MOSCOW, STAGES, WON, World, make_client, make_cycle
from tests.ledger_kit import (
    QUOTA_TAGS,
    is_lead_note,
    ledger_options,
    ledger_world,
    package_task_counts,
    quota_task_counts,
    refuse_companies,
    refuse_tasks,
    truth,
)
from tests.oracle import company_fields, engine_state, expected_fields, lead_fields
from worker.cycle import CycleOptions, SyncCycle
from worker.errors import is_fatal
from worker.fields import Ledger

EXAMPLES = int(os.environ.get("SLA_STATEFUL_EXAMPLES", "20"))
STEPS = int(os.environ.get("SLA_STATEFUL_STEPS", "25"))
PAGE = 3  # small pages, so that a handful of leads, notes and companies spans several
PLAN_BATCH = 2  # and small planning batches, so that a full plan spans several

LEDGERS = (
    frozenset({Ledger.PACKAGES, Ledger.QUOTAS}),
    frozenset({Ledger.PACKAGES}),
    frozenset({Ledger.QUOTAS}),
)
TARIFFS: tuple[tuple[str, ...], ...] = (
    ("Микробизнес",),
    ("Микробизнес",),
    ("БигДата",),
    ("Дата Дривен",),
    (),
    ("Микробизнес", "Дата Дривен"),
    (" микробизнес ",),
)
QUOTA = st.sampled_from((None, None, *QUOTA_TAGS))
HOURS = ("2", "5", "10", "1", "1.5", "0,5")
FORMS = (
    "Время: {m} мин",
    "Время: {h} ч {r} мин — настройка воронки",
    "Время: {h}:{r:02d}",
    "Время: {m}",
    "  время:  {m} min",
    "Время: {m} минут\nподробности в переписке",
    "Время: {tenths} ч",
    "ВРЕМЯ: {h} h {r} m",
)
UNREADABLE = (
    "Время: полчаса",
    "Время: 0",
    "Время: 25 ч",
    "Время: -5 мин",
    "Время: 30 мин потом",
    "Время:",
    "Обсудили задачу",
)


@st.composite
def time_note(draw: st.DrawFn) -> str:
    """A note's text: a time entry in one of spec §7.1's forms, or not one."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(UNREADABLE))
    minutes = draw(st.integers(1, 300))
    form = draw(st.sampled_from(FORMS))
    tenths = f"{minutes // 60},{minutes % 60 // 6}"
    return form.format(m=minutes, h=minutes // 60, r=minutes % 60, tenths=tenths)


@dataclass(frozen=True)
class PastRequest:
    """A request from before the worker started: its company, tags, age, end and notes."""

    company: int | None
    tariff: tuple[str, ...]
    quota: str | None
    days_ago: int
    closed: int | None
    notes: tuple[str, ...]


past_requests = st.builds(
    PastRequest,
    company=st.none() | st.integers(0, 3),
    tariff=st.sampled_from(TARIFFS),
    quota=QUOTA,
    days_ago=st.integers(0, 400),
    closed=st.sampled_from((None, WON, LOST)),
    notes=st.lists(time_note(), max_size=3).map(tuple),
)
package_spec = st.none() | st.tuples(st.sampled_from(HOURS), st.integers(-45, 2))
minutes = st.integers(1, 59).map(lambda n: timedelta(minutes=n))
hours = st.integers(1, 30).map(lambda n: timedelta(hours=n))
days = st.integers(1, 9).map(lambda n: timedelta(days=n))
weeks = st.integers(1, 6).map(lambda n: timedelta(weeks=n))


class LedgerMachine(RuleBasedStateMachine):
    """A support pipeline under Prime Gate, its companies, agents and managers, and the worker."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = (
            client_module.LEADS_PAGE,
            client_module.EVENTS_PAGE,
            client_module.NOTES_PAGE,
            client_module.COMPANIES_PAGE,
        )
        client_module.LEADS_PAGE = PAGE  # type: ignore[misc]
        client_module.EVENTS_PAGE = PAGE  # type: ignore[misc]
        client_module.NOTES_PAGE = PAGE  # type: ignore[misc]
        client_module.COMPANIES_PAGE = PAGE  # type: ignore[misc]
        self.plan_batch = ledgers_module.PLAN_BATCH
        ledgers_module.PLAN_BATCH = PLAN_BATCH
        self.root = Path(tempfile.mkdtemp(prefix="sla-ledgers-"))
        self.world: World = ledger_world()
        self.options: CycleOptions = ledger_options(self.world.policy, LEDGERS[0])
        self.dirs = 0
        self.cycle: SyncCycle | None = None
        self.companies: list[int] = []
        self.requests: list[int] = []
        self.ever_used_up: set[tuple[int, date, int]] = set()
        self.ever_over: set[tuple[int, str]] = set()
        self.relinked_from: set[int] = set()  # companies a request was linked away from
        self.checked = 0
        # Until then a ledger task amoCRM refused may be missing: it is tried again after
        # the worker's retry_rejected_after.
        self.tasks_refused_until: datetime | None = None

    def teardown(self) -> None:
        leads_page, events_page, notes_page, companies_page = self.pages
        client_module.LEADS_PAGE = leads_page  # type: ignore[misc]
        client_module.EVENTS_PAGE = events_page  # type: ignore[misc]
        client_module.NOTES_PAGE = notes_page  # type: ignore[misc]
        client_module.COMPANIES_PAGE = companies_page  # type: ignore[misc]
        ledgers_module.PLAN_BATCH = self.plan_batch
        if self.cycle is not None:
            self.cycle.store.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the worker ------------------------------------------------------------------------
    @property
    def worker(self) -> SyncCycle:
        assert self.cycle is not None
        return self.cycle

    def start_worker(self, *, lose_state: bool) -> SyncCycle:
        """A new worker process: a new client, the old state directory or a new empty one."""
        if lose_state:
            self.dirs += 1
        state_dir = self.root / f"state{self.dirs}"
        state_dir.mkdir(exist_ok=True)
        client = make_client(self.world.fake, self.world.clock)
        return make_cycle(self.world, state_dir, client=client, options=self.options)

    def restart(self, *, lose_state: bool) -> None:
        self.worker.store.close()
        self.cycle = self.start_worker(lose_state=lose_state)

    def note_truth(self, now: datetime) -> None:
        """Remember which packages are used up and which requests over a quota at ``now``
        (on everything amoCRM holds: the worker never sees more)."""
        seen = truth(self.world, now, self.options.ledgers)
        self.ever_used_up |= seen.used_up_packages(seen.every)
        self.ever_over |= seen.over_leads(seen.every)

    def run_clean(self) -> None:
        now = self.world.now()
        self.note_truth(now)
        report = self.worker.run(now)
        assert not report.skipped
        assert not report.stopped_early
        disagreeing = self.worker.ledger_disagreements(now)
        assert not disagreeing, f"kept ledger fields differ from a full plan: {disagreeing}"
        self.check(now)

    # --- set-up: companies and the requests before the worker ------------------------------
    @initialize(
        ledgers=st.sampled_from(LEDGERS),
        full_every=st.sampled_from([timedelta(hours=6), timedelta(hours=1)]),
        packages=st.lists(package_spec, min_size=2, max_size=4),
        past=st.lists(past_requests, max_size=8),
    )
    def start(
        self,
        ledgers: frozenset[Ledger],
        full_every: timedelta,
        packages: list[tuple[str, int] | None],
        past: list[PastRequest],
    ) -> None:
        self.options = ledger_options(self.world.policy, ledgers, full_every=full_every)
        for index, package in enumerate(packages):
            company = self.world.fake.add_company(
                f"ООО Клиент {index + 1}", responsible_user_id=self.world.agents[1]
            )
            self.companies.append(company)
            if package is not None:
                self.set_package(index, *package)
        now = self.world.now()
        for item in past:
            created = now - timedelta(days=item.days_ago, hours=item.days_ago % 7)
            lead_id = self.add_request(item.company, item.tariff, item.quota, created)
            for offset, text in enumerate(item.notes):
                moment = min(created + timedelta(hours=offset + 1), now)
                self.world.fake.add_note(
                    lead_id, text, created_by=self.world.agents[0], at=moment.timestamp()
                )
            if item.closed is not None:
                closed = min(created + timedelta(days=2), now)
                self.world.fake.move_lead(
                    lead_id, item.closed, by_user=self.world.agents[0], at=closed.timestamp()
                )
        self.cycle = self.start_worker(lose_state=True)

    def add_request(
        self, company: int | None, tariff: tuple[str, ...], quota: str | None, created: datetime
    ) -> int:
        tags = [*tariff, *([quota] if quota else [])]
        lead_id = self.world.fake.add_lead(
            f"Обращение {len(self.requests) + 1}",
            pipeline_id=self.world.support.id,
            tags=tags,
            created_at=created.timestamp(),
            responsible_user_id=self.world.agents[len(self.requests) % 2],
            company_id=None if company is None else self.companies[company % len(self.companies)],
        )
        self.requests.append(lead_id)
        return lead_id

    # --- agents and managers ---------------------------------------------------------------
    @rule(
        company=st.none() | st.integers(0, 3),
        tariff=st.sampled_from(TARIFFS),
        quota=QUOTA,
        days_ago=st.sampled_from((0, 0, 0, 2, 40, 200, 350)),
    )
    def create_request(
        self, company: int | None, tariff: tuple[str, ...], quota: str | None, days_ago: int
    ) -> None:
        """A request comes in now, or is imported with an earlier creation date."""
        now = self.world.now()
        lead_id = self.add_request(company, tariff, quota, now - timedelta(days=days_ago))
        if days_ago:
            # An import sets created_at; amoCRM stamps updated_at with the moment of the import.
            self.world.fake.update_lead(
                lead_id, by_user=self.world.agents[0], name=f"Импорт {lead_id}"
            )

    def pick(self, index: int, *, open_only: bool = False) -> int | None:
        leads = [i for i in self.requests if not open_only or self.is_open(i)]
        return leads[index % len(leads)] if leads else None

    def time_notes(self, *, open_only: bool = False) -> list[int]:
        """The agents' notes on support requests (the worker's own are not theirs to edit),
        or only those on open requests, where the fields show every change."""
        open_leads = {i for i in self.requests if self.is_open(i)}
        return sorted(
            int(note["id"])
            for note in self.world.fake.notes
            if is_lead_note(note)
            and note["note_type"] == "common"
            and note["created_by"] in self.world.agents
            and (not open_only or int(note["entity_id"]) in open_leads)
        )

    def is_open(self, lead_id: int) -> bool:
        return (self.world.fake.lead(lead_id) or {}).get("status_id") not in (None, WON, LOST)

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), text=time_note(), open_only=st.booleans())
    def log_time(self, index: int, text: str, open_only: bool) -> None:
        lead_id = self.pick(index, open_only=open_only)
        if lead_id is not None:
            self.world.fake.add_note(lead_id, text, created_by=self.world.agents[index % 2])

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), text=time_note(), open_only=st.booleans())
    def edit_time(self, index: int, text: str, open_only: bool) -> None:
        notes = self.time_notes(open_only=open_only)
        if notes:
            self.world.fake.edit_note(notes[index % len(notes)], text, by=self.world.agents[0])

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), open_only=st.booleans())
    def delete_time(self, index: int, open_only: bool) -> None:
        notes = self.time_notes(open_only=open_only)
        if notes:
            self.world.fake.delete_note(notes[index % len(notes)], by=self.world.agents[1])

    @precondition(lambda self: self.companies)
    @rule(
        company=st.integers(0, 3),
        hours_text=st.sampled_from(HOURS),
        paid_in_days=st.integers(-45, 2),
    )
    def set_package(self, company: int, hours_text: str, paid_in_days: int) -> None:
        """A manager records a payment: the hours and the payment day (entered at noon or as
        the day's midnight, as a date field can hold either)."""
        day = self.world.now().astimezone(MOSCOW).date() + timedelta(days=paid_in_days)
        paid = datetime.combine(day, time(12 if paid_in_days % 2 else 0), tzinfo=MOSCOW)
        fake = self.world.fake
        hours_id = fake.field_id("Пакет: часов", entity="companies")
        paid_id = fake.field_id("Пакет: оплачен", entity="companies")
        assert hours_id is not None
        assert paid_id is not None
        fake.update_company(
            self.companies[company % len(self.companies)],
            by_user=self.world.agents[1],
            custom_fields={hours_id: hours_text, paid_id: int(paid.timestamp())},
        )

    @precondition(lambda self: self.companies)
    @rule(company=st.integers(0, 3))
    def clear_package(self, company: int) -> None:
        fake = self.world.fake
        hours_id = fake.field_id("Пакет: часов", entity="companies")
        paid_id = fake.field_id("Пакет: оплачен", entity="companies")
        assert hours_id is not None
        assert paid_id is not None
        fake.update_company(
            self.companies[company % len(self.companies)],
            by_user=self.world.agents[1],
            custom_fields={hours_id: None, paid_id: None},
        )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), company=st.none() | st.integers(0, 3))
    def relink(self, index: int, company: int | None) -> None:
        """A manager links the request to another company, or takes its company off."""
        lead_id = self.pick(index)
        if lead_id is None or self.world.fake.lead(lead_id) is None:
            return
        before = (self.world.fake.lead(lead_id) or {}).get("_embedded", {}).get("companies")
        self.relinked_from |= {int(c["id"]) for c in before or ()}
        if company is None:
            self.world.fake.unlink_company(lead_id, by=self.world.agents[1])
        else:
            target = self.companies[company % len(self.companies)]
            self.world.fake.link_company(lead_id, target, by=self.world.agents[1])

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), won=st.booleans())
    def close(self, index: int, won: bool) -> None:
        lead_id = self.pick(index, open_only=True)
        if lead_id is not None:
            self.world.fake.move_lead(
                lead_id, WON if won else LOST, by_user=self.world.agents[index % 2]
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50))
    def reopen(self, index: int) -> None:
        closed = [
            i
            for i in self.requests
            if (self.world.fake.lead(i) or {}).get("status_id") in (WON, LOST)
        ]
        if closed:
            self.world.fake.move_lead(
                closed[index % len(closed)],
                self.world.support.status(STAGES[1]),
                by_user=self.world.agents[index % 2],
            )

    @precondition(lambda self: self.requests)
    @rule(index=st.integers(0, 50), tariff=st.sampled_from(TARIFFS), quota=QUOTA)
    def retag(self, index: int, tariff: tuple[str, ...], quota: str | None) -> None:
        lead_id = self.pick(index, open_only=True)
        if lead_id is not None:
            tags = [*tariff, *([quota] if quota else [])]
            self.world.fake.update_lead(lead_id, by_user=self.world.agents[0], tags=tags)

    @rule(delta=minutes | hours | days | weeks)
    def time_passes(self, delta: timedelta) -> None:
        self.world.advance(delta)

    # --- the worker's cycles ---------------------------------------------------------------
    @rule()
    def run_cycle(self) -> None:
        self.run_clean()

    @rule(delta=minutes | hours | days | weeks)
    def run_cycle_later(self, delta: timedelta) -> None:
        self.world.advance(delta)
        self.run_clean()

    @precondition(lambda self: self.requests)
    @rule(
        path=st.sampled_from(
            ["/api/v4/leads/notes", "/api/v4/leads", "/api/v4/companies", "/api/v4/events"]
        ),
        turn=st.integers(2, 4),
        index=st.integers(0, 50),
        change=st.sampled_from(["edit", "log", "close", "relink"]),
        text=time_note(),
    )
    def run_cycle_while_reads_turn(
        self, path: str, turn: int, index: int, change: str, text: str
    ) -> None:
        """An agent changes the account just before the cycle's ``turn``-th request to
        ``path``, between two pages of that read: an entry edited or logged, a request
        closed or linked elsewhere."""
        fake, agent = self.world.fake, self.world.agents[0]
        reads: list[PageTurn] = []

        def churn(read: PageTurn) -> None:
            if read.path == path:
                reads.append(read)
            if len(reads) != turn:
                return
            fake.on_read(None)
            if change == "edit" and (notes := self.time_notes()):
                fake.edit_note(notes[index % len(notes)], text, by=agent)
            elif change == "log" and (lead_id := self.pick(index)) is not None:
                fake.add_note(lead_id, text, created_by=agent)
            elif change == "close" and (lead_id := self.pick(index, open_only=True)) is not None:
                fake.move_lead(lead_id, WON, by_user=agent)
            elif (
                change == "relink" and (lead_id := self.pick(index)) is not None and self.companies
            ):
                fake.link_company(lead_id, self.companies[index % len(self.companies)], by=agent)

        now = self.world.now()
        self.note_truth(now)
        fake.on_read(churn)
        try:
            self.worker.run(now)
        finally:
            fake.on_read(None)
        self.note_truth(now)  # the account as the change left it, at the same instant

    @rule(
        fault=st.sampled_from(FAULTS),
        count=st.integers(1, 8),
        shape=st.sampled_from(ODD_SHAPES),
        path=st.sampled_from(
            [
                "/api/v4/leads/notes",
                "/api/v4/companies",
                "/api/v4/events",
                "/api/v4/leads",
                "/api/v4/tasks",
                None,
            ]
        ),
    )
    def run_cycle_with_faults(self, fault: str, count: int, shape: str, path: str | None) -> None:
        fake = self.world.fake
        written = path if path in ("/api/v4/companies", "/api/v4/leads") else "/api/v4/leads"
        inject_fault(fake, fault, count, shape=shape, path=path, write_path=written)
        now = self.world.now()
        self.note_truth(now)
        failure: Exception | None = None
        try:
            self.worker.run(now)
        except Exception as error:  # a failed cycle is allowed; the next clean one heals
            failure = error
        finally:
            fake.clear_faults()
        assert failure is None or not is_fatal(failure), failure

    @rule(companies=st.booleans(), tasks=st.booleans())
    def run_cycle_with_refusals(self, companies: bool, tasks: bool) -> None:
        """amoCRM refuses items of a write in one cycle (a field value, a task's user): the
        refused companies are written at the next cycle, the refused tasks once they may
        be tried again."""
        client, now = self.worker.client, self.world.now()
        self.note_truth(now)
        if companies:
            setattr(client, "update_companies", refuse_companies)  # noqa: B010 - one cycle
        if tasks:
            setattr(client, "create_tasks", refuse_tasks)  # noqa: B010 - one cycle
            self.tasks_refused_until = now + self.options.tasks.retry_rejected_after
        try:
            self.worker.run(now)
        finally:
            for name in ("update_companies", "create_tasks"):
                client.__dict__.pop(name, None)

    def run_killed(self, transport: KillingTransport, *, lose_state: bool) -> None:
        self.worker.client = make_client(self.world.fake, self.world.clock, transport)
        now = self.world.now()
        self.note_truth(now)
        with contextlib.suppress(Killed):
            self.worker.run(now)
        self.restart(lose_state=lose_state)

    @rule(at=st.integers(1, 40), after_processing=st.booleans(), lose_state=st.booleans())
    def kill_worker(self, at: int, after_processing: bool, lose_state: bool) -> None:
        """The worker dies at its ``at``-th request; a new one starts, with its state or without."""
        transport = KillingTransport(
            self.world.fake.transport, at, after_processing=after_processing
        )
        self.run_killed(transport, lose_state=lose_state)

    @rule(
        request=st.sampled_from(
            [
                ("GET", "/api/v4/leads/notes"),
                ("GET", "/api/v4/companies"),
                ("PATCH", "/api/v4/companies"),
                ("PATCH", "/api/v4/leads"),
                ("GET", "/api/v4/tasks"),
                ("POST", "/api/v4/tasks"),
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
        self.run_killed(transport, lose_state=lose_state)

    # --- the invariants --------------------------------------------------------------------
    def check(self, now: datetime) -> None:
        world, options = self.world, self.options.ledgers
        seen = truth(world, now, options)
        for company_id in seen.companies:
            expected = seen.company_expected(company_id)
            stored = company_fields(world, company_id)
            actual = {name: stored.get(name) for name in expected}
            assert actual == expected, (
                f"company {company_id} at {now.isoformat()}: {actual} != {expected}"
            )
        linked = {r.company_id for r in seen.every.requests.values()}
        for company_id in sorted(self.relinked_from - linked):
            # Every request it had was linked elsewhere: it holds no minutes and no quota use.
            stored = company_fields(world, company_id)
            quotas = seen.company_expected(company_id).get("Квоты")
            assert stored.get("Пакет: израсходовано, мин") in (None, 0), (company_id, stored)
            # No quota use; the limits («из 2») of a plan it no longer has a request of may
            # stay when the state that knew it left was lost before its next write.
            assert stored.get("Квоты") in (None, quotas) or quota_uses(stored["Квоты"]) == {0}, (
                company_id,
                stored,
                quotas,
            )
        for lead_id, request in seen.certain.requests.items():
            if not request.open:
                continue
            sla = expected_fields(engine_state(world, lead_id, now))
            expected = sla | seen.lead_expected(lead_id)
            stored = lead_fields(world, lead_id)
            actual = {name: stored[name] for name in expected}
            assert actual == expected, (
                f"open lead {lead_id} at {now.isoformat()}: {actual} != {expected}"
            )
        packages, quotas = package_task_counts(world), quota_task_counts(world)
        refused = self.tasks_refused_until is not None and now < self.tasks_refused_until
        unfounded = sorted(set(packages) - self.ever_used_up)
        assert not unfounded, f"package tasks for packages never used up: {unfounded}"
        unfounded_quota = sorted(set(quotas) - self.ever_over)
        assert not unfounded_quota, f"quota tasks for requests never over: {unfounded_quota}"
        if options.packages and not refused:
            for key in seen.used_up_packages(seen.certain):
                assert packages[key] == 1, f"no package task for {key}: {dict(packages)}"
        if options.quotas and not refused:
            for over in seen.over_leads(seen.certain):
                assert quotas[over] == 1, f"no quota task for {over}: {dict(quotas)}"
        self.checked += 1

    @invariant()
    def ledger_tasks_never_doubled(self) -> None:
        doubled: dict[object, int] = {
            **{k: n for k, n in package_task_counts(self.world).items() if n > 1},
            **{k: n for k, n in quota_task_counts(self.world).items() if n > 1},
        }
        assert not doubled, f"more than one ledger task: {doubled}"


LedgerMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgersStateful = LedgerMachine.TestCase


def quota_uses(text: object) -> set[int]:
    """The uses of a «Квоты» value such as «Настройки: 0 из 2; Удалённые подключения: 1»."""
    return {int(part.split(":", 1)[1].split("из", 1)[0].strip()) for part in str(text).split(";")}
