"""One sync cycle: read what changed, compute the SLA of the leads it changed, write what
differs.

The cycle is a plain object with an injected clock (``run(now)``): the scheduler
decides when it runs, tests call it directly. It reads (:mod:`worker.leads`,
:mod:`worker.events`), plans (the engine over the leads whose input changed or whose next
change instant came, :mod:`worker.computed`; the company ledgers' step,
:class:`worker.ledgers.step.LedgerStep`), stores what it read, then applies the plan
(:mod:`worker.writes`, :mod:`worker.tasks`). A full reconcile computes and plans
everything, and the two paths must agree (:meth:`SyncCycle.disagreements`,
:meth:`SyncCycle.ledger_disagreements`, checked by the state machines).

Requests it spends, by design (amoCRM allows 7 a second):

* leads changed since the cursor, in the support pipeline (one 204 when nothing changed);
* lead events since the cursor, account-wide and filtered to the types that matter
  (one 204 when nothing happened); per-lead event calls only for a lead whose history
  predates what the worker has kept (a reopened old lead), and for the contacts of a lead
  restored or moved into the pipeline (a reply filed there while it was away);
* one PATCH per 50 leads whose fields differ, and task calls only when a breach needs a
  task.

A steady cycle over unchanged leads therefore costs two requests (four with the ledgers:
notes and companies), and next to no CPU, whatever the number of leads. A full reconcile
(the first start, then every ``full_reconcile_interval``) reads the account's setup and
every open lead again, and the event feed of the last two reconcile intervals (events
amoCRM lists late).

The cache is stored before any write or task, so a crash after it loses no read; a
breach task is claimed in the ledger before its request (:mod:`worker.tasks`). A file
lock keeps two processes on one state directory from running cycles at the same time.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import structlog

from amo_client.client import AmoClient
from amo_client.errors import StopRequested
from amo_client.models import Event, Lead
from sla.policy import Policy
from sla.state import LOST, WON, LeadEvent, SlaState, compute_sla
from worker.cache import GENERATION, TrackedLead, load_tracked
from worker.computed import Computations
from worker.errors import describe
from worker.events import (
    STRUCTURAL_EVENTS,
    EventReadOptions,
    FeedCursor,
    by_lead,
    left_pipeline,
    needs_history,
    read_feed,
    read_histories,
    stored_event,
)
from worker.fields import (
    FIELD_SPECS,
    SlaField,
    Value,
    current_values,
    desired_values,
    differing,
)
from worker.first_start import earliest_change, first_start
from worker.leads import LeadRead, LeadReadOptions, read_leads
from worker.ledgers.cache import LedgerRead
from worker.ledgers.facts import RequestFacts, facts_of
from worker.ledgers.options import LEDGER_EVENTS, LedgerOptions
from worker.ledgers.plan import LedgerPlan
from worker.ledgers.step import LedgerStep
from worker.mapping import lead_facts
from worker.replies import CONTACT_LINKS, contact_replies
from worker.setup import AccountSetup, StageOptions, resolve_setup
from worker.store import StateStore, StoredEvent, StoredLead
from worker.tasks import (
    GroupHeads,
    TaskOptions,
    TaskPlan,
    created_tasks,
    ensure_tasks,
    is_ladder_key,
    past_breaches,
    plan_tasks,
)
from worker.writes import PlannedWrite, apply_writes, with_written

log = structlog.get_logger("worker.cycle")

LEADS_CURSOR = "leads_cursor"
PAST_BREACHES_LOGGED = 100  # lead ids named in the ``past_breaches`` line
EVENTS_CURSOR = "events_cursor"
EVENTS_SINCE = "events_since"
LAST_FULL_SYNC = "last_full_sync"

__all__ = ["CycleLocked", "CycleOptions", "CycleReport", "PlannedWrite", "SyncCycle"]


@dataclass(frozen=True)
class CycleOptions:
    stages: StageOptions
    tasks: TaskOptions
    full_reconcile_interval: timedelta = timedelta(hours=6)
    # Events of leads the worker does not track are kept this long, so a lead that shows
    # up later (created, moved into the pipeline, reopened) finds its history there.
    event_buffer: timedelta = timedelta(days=3)
    # How far back the first start reads the event feed and closed requests; older open
    # leads get their history by per-lead calls.
    history_horizon: timedelta = timedelta(days=30)
    # Both cursors step back this far at every read; what is read twice is de-duplicated.
    overlap: timedelta = timedelta(minutes=1)
    # A closed lead stays cached this long after its last change, then is dropped (at the
    # next full reconcile).
    closed_retention: timedelta = timedelta(days=1)
    ledgers: LedgerOptions = field(default_factory=LedgerOptions)
    # The worker's first start on the account when the admin pins it; otherwise the state
    # records the first cycle's instant.
    first_start: datetime | None = None

    @property
    def lead_reads(self) -> LeadReadOptions:
        return LeadReadOptions(overlap=self.overlap, history_horizon=self.history_horizon)

    @property
    def event_reads(self) -> EventReadOptions:
        return EventReadOptions(
            overlap=self.overlap, buffer=self.event_buffer, history_horizon=self.history_horizon
        )


@dataclass(frozen=True)
class CycleReport:
    started_at: datetime
    finished_at: datetime
    full_sync: bool
    leads_read: int
    leads_computed: int
    leads_written: int
    leads_failed: int
    tasks_created: int
    requests: int
    next_change_at: datetime | None
    skipped: bool = False  # another process held the state directory's lock
    stopped_early: bool = False
    writes: tuple[PlannedWrite, ...] = ()
    tasks: tuple[TaskPlan, ...] = ()
    breached: int = 0  # tracked requests with a clock breached, as last computed
    tracked: int = 0  # open and recently closed requests the cycle tracks
    # The tracked requests breached, by clock (reaction, resolution, next_response).
    breached_by: Mapping[str, frozenset[int]] = field(default_factory=dict)
    companies_written: int = 0
    ledger: LedgerPlan | None = None
    first_start: datetime | None = None
    # Leads breached before the first start, whose task is withheld (spec §5).
    past_breaches: tuple[int, ...] = ()

    def summary(self) -> dict[str, object]:
        return {
            "full_sync": self.full_sync,
            "leads_read": self.leads_read,
            "leads_computed": self.leads_computed,
            "leads_written": self.leads_written,
            "leads_failed": self.leads_failed,
            "tasks_created": self.tasks_created,
            "requests": self.requests,
            "duration_s": round((self.finished_at - self.started_at).total_seconds(), 3),
            "next_change_at": self.next_change_at.isoformat() if self.next_change_at else None,
            "skipped": self.skipped,
            "stopped_early": self.stopped_early,
            "companies_written": self.companies_written,
        }


class CycleLocked(Exception):
    """Another process is running a cycle on the same state directory."""


@dataclass(frozen=True)
class _Read:
    """The tracked leads after this cycle's reads, and what the store must learn of them."""

    tracked: dict[int, TrackedLead]
    touched: frozenset[int]  # leads read again or given new events
    new: frozenset[int]  # leads the cache did not hold before this read
    forgotten: frozenset[int]
    # The replies found on contacts, as the store keeps them (the leads' own events are
    # stored as soon as they are read), and the notes the events say are deleted.
    events: tuple[StoredEvent, ...]
    deleted_notes: frozenset[int]
    leads_cursor: int
    feed: FeedCursor
    leads_read: int


_NOTHING: Mapping[int, Value] = MappingProxyType({})
# The lead fields the ledgers write, as the field specs say.
LEDGER_LEAD_FIELDS = tuple(spec.key for spec in FIELD_SPECS if spec.ledger is not None)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What a cycle keeps of a lead it computed until its writes are planned: little, for a
    full reconcile holds one for every open request at once."""

    sla_values: Mapping[int, Value]  # the SLA fields that differ from what the state wants
    ledger_current: Mapping[int, Value]  # the ledger fields' values (with the ledgers on)
    name: str  # "" for a lead with nothing to write, no task and no move due
    accept_now: bool
    task_state: SlaState | None  # the state, when it calls for an escalation task
    facts: RequestFacts | None = None  # kept when they differ from the ledger cache's


class _Shared:
    """One object for equal parts of many leads' _Parsed: a full reconcile holds one for
    every open request, most with nothing to write and the same ledger values."""

    def __init__(self, setup: AccountSetup) -> None:
        self._ids = [i for key in LEDGER_LEAD_FIELDS if (i := setup.fields.id_of(key)) is not None]
        self._values: dict[tuple[object, ...], Mapping[int, Value]] = {}
        self._quiet: dict[int, _Parsed] = {}  # by the id of a mapping kept in _values

    def ledger_values(self, current: Mapping[int, Value]) -> Mapping[int, Value]:
        values = {i: current[i] for i in self._ids if i in current}
        return self._values.setdefault(tuple((i, type(v), v) for i, v in values.items()), values)

    def quiet(self, ledger_current: Mapping[int, Value]) -> _Parsed:
        """A lead with nothing to write of its SLA, and no task or move due."""
        found = self._quiet.get(id(ledger_current))
        if found is None:
            found = _Parsed(_NOTHING, ledger_current, "", accept_now=False, task_state=None)
            self._quiet[id(ledger_current)] = found
        return found


def _parse(
    lead: Lead, state: SlaState, setup: AccountSetup, shared: _Shared, *, ledgers: bool
) -> _Parsed:
    current = current_values(lead, setup.fields)
    sla_values = differing(current, desired_values(state, setup.fields))
    ledger_current = shared.ledger_values(current) if ledgers else _NOTHING
    task_due = state.tasks_due
    if not sla_values and not state.accept_now and not task_due:
        return shared.quiet(ledger_current)
    return _Parsed(
        sla_values or _NOTHING,
        ledger_current,
        lead.name,
        state.accept_now,
        state if task_due else None,
    )


def _ledger_fields(item: TrackedLead, setup: AccountSetup, shared: _Shared) -> _Parsed | None:
    """A lead's ledger field values alone (None when its fields cannot be read)."""
    try:
        current = current_values(item.lead, setup.fields)
    except ValueError:  # a value of the wrong type, a copy that no longer parses
        return None
    return shared.quiet(shared.ledger_values(current))


@dataclass(frozen=True)
class _Plan:
    results: Computations  # what every tracked lead's last computed state says
    computed: frozenset[int]  # the leads computed in this cycle for their own sake
    due: Mapping[int, SlaState]  # the states among them that call for a breach task
    writes: tuple[PlannedWrite, ...]
    settled: frozenset[int]  # closed leads nothing can change any more: dropped from the cache
    ledger: LedgerPlan | None = None
    ledger_read: LedgerRead | None = None


class SyncCycle:
    """The worker's cycle over one support pipeline."""

    def __init__(
        self,
        client: AmoClient,
        store: StateStore,
        policy: Policy,
        options: CycleOptions,
        *,
        lock_path: Path | None = None,
        dry_run: bool = False,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.store = store
        self.policy = policy
        self.options = options
        self.lock_path = lock_path
        self.dry_run = dry_run
        self.wall_clock = wall_clock
        self.setup: AccountSetup | None = None
        self._tracked: dict[int, TrackedLead] | None = None
        self._generation: int | None = None  # the store's generation the cache reflects
        self._stop = threading.Event()
        ledger_events = LEDGER_EVENTS if options.ledgers.packages else frozenset()
        self._event_types = sorted(
            policy.conversation_event_types | STRUCTURAL_EVENTS | CONTACT_LINKS | ledger_events
        )
        self._ledgers = (
            LedgerStep(client, store, options.ledgers, self._check_stop)
            if options.ledgers.on
            else None
        )
        self._results: Computations | None = None
        self._results_setup: AccountSetup | None = None  # the setup the results were made with
        # The tasks planned and not yet created (refused, or a stop came first), by
        # (entity type, id, clock): offered again until created or no longer owed.
        self._tasks_open: dict[tuple[str, int, str], TaskPlan] = {}
        # Who heads each user's group, read when a step first goes to one; read again
        # after every full reconcile.
        self._heads = GroupHeads(client, policy.ladder.group_heads)

    # --- the Cycle protocol -----------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self.client.request_stop()

    def run(self, now: datetime) -> CycleReport:
        requests_before = self.client.requests_sent
        started = self.wall_clock()
        try:
            with _exclusive(self.lock_path):
                try:
                    return self._run(now, started, requests_before)
                except StopRequested:
                    # Nothing half done is kept: the store holds the last whole cycle.
                    self._drop_caches()
                    return self._report(started, requests_before, stopped_early=True)
                except BaseException:
                    self._drop_caches()
                    raise
        except CycleLocked:
            log.warning("cycle_skipped_locked", lock=str(self.lock_path))
            return self._report(started, requests_before, skipped=True)

    def _drop_caches(self) -> None:
        self._tracked = self._results = None
        if self._ledgers is not None:
            self._ledgers.drop()
        self._tasks_open.clear()

    def _owed_tasks(
        self, plan: _Plan, read: _Read, first_start: datetime
    ) -> tuple[list[TaskPlan], tuple[int, ...]]:
        """The tasks to ensure in this cycle: those the states and ledgers planned now call
        for, and those still open from earlier cycles that nothing planned again; with the
        leads whose breach task is withheld as older than the first start."""
        due = dict(sorted(plan.due.items()))
        fresh = plan_tasks(
            due,
            lambda lead_id: read.tracked[lead_id].lead,
            self.options.tasks,
            first_start,
            head_of=self._heads,
        )
        withheld = tuple(past_breaches(due, first_start, self.options.tasks))
        if plan.ledger is not None:
            fresh += plan.ledger.tasks
        planned = {_task_key(task) for task in fresh}
        # A task stays owed while nothing plans its lead or company again.
        still_open = [
            task
            for key, task in self._tasks_open.items()
            if key not in planned and not self._planned_again(task, plan, read)
        ]
        return [*fresh, *still_open], withheld

    def disagreements(self, now: datetime) -> list[int]:
        """The tracked leads a full recompute at ``now`` would act on differently from the
        incremental path (after a cycle at ``now``): a field of the cached copy (what amoCRM
        holds after the worker's writes) that differs from the fresh state's, a breach task
        due or not, an acceptance not made. A lead the cycle's own write changed is left
        out: it is computed again at the next cycle, from what amoCRM then holds."""
        if self._tracked is None or self._results is None or self.setup is None:
            return []
        setup, results = self.setup, self._results
        found = []
        for lead_id, item in sorted(self._tracked.items()):
            if lead_id in results.pending:
                continue
            try:
                lead = item.lead
                fresh = self._compute(lead, item.events, setup, now)
                current = current_values(lead, setup.fields)
            except Exception:
                if lead_id not in results.failed:
                    found.append(lead_id)
                continue
            task_due = fresh.tasks_due
            if (
                lead_id not in results.computed
                or differing(current, desired_values(fresh, setup.fields))
                or task_due != (lead_id in results.task_due)
                or fresh.accept_now
            ):
                found.append(lead_id)
        return found

    def state(self, lead_id: int, now: datetime) -> SlaState | None:
        """The tracked lead's state at ``now``, computed from the cached copy and history."""
        item = (self._tracked or {}).get(lead_id)
        if item is None or self.setup is None:
            return None
        return self._compute(item.lead, item.events, self.setup, now)

    def ledger_disagreements(self, now: datetime) -> list[str]:
        """What planning every company afresh at ``now`` finds that the kept plan lacks
        (after a cycle at ``now``): a tracked request whose ledger fields differ, a task owed
        that is neither created nor still open."""
        if self._ledgers is None or self.setup is None or self._tracked is None:
            return []

        def owed(tasks: Sequence[TaskPlan]) -> list[str]:
            created = created_tasks(self.store, tasks)
            return [
                f"task {key} owed, neither created nor open"
                for task in tasks
                if (key := _task_key(task)) not in created and key not in self._tasks_open
            ]

        return self._ledgers.disagreements(self._tracked.keys(), self.setup, owed, now)

    def _planned_again(self, task: TaskPlan, plan: _Plan, read: _Read) -> bool:
        """Whether this cycle planned the task's lead or company again (so a task it did not
        plan is no longer owed), or the lead is no longer tracked."""
        if task.entity_type == "leads" and task.entity_id not in read.tracked:
            return True
        if task.entity_type == "leads" and is_ladder_key(task.clock):
            return task.entity_id in plan.computed
        if self._ledgers is None:
            return True
        return self._ledgers.covers(task, planned_now=plan.ledger is not None)

    def open_leads(self) -> list[Lead]:
        """The open requests the last cycle tracked."""
        tracked = self._tracked or {}
        return [item.lead for item in tracked.values() if item.status_id not in (WON, LOST)]

    def ledgers_summary(self) -> str | None:
        """The ledgers' state after the last cycle (None with the ledgers off)."""
        if self._ledgers is None or self.setup is None:
            return None
        return self._ledgers.summary(self.setup)

    def tracked_lead(self, lead_id: int) -> tuple[Lead, list[LeadEvent]] | None:
        item = (self._tracked or {}).get(lead_id)
        return None if item is None else (item.lead, list(item.events))

    # --- one cycle ---------------------------------------------------------------------------
    def _run(self, now: datetime, started: datetime, requests_before: int) -> CycleReport:
        last_full = self.store.get_int(LAST_FULL_SYNC)
        interval = self.options.full_reconcile_interval.total_seconds()
        full = last_full is None or now.timestamp() - last_full >= interval
        setup = self._account_setup(again=full)
        first_start, first_cycle = self._first_start(now, setup)
        read = self._read(setup, self._load_cache(), now, full, last_full)
        plan = self._plan(read, setup, now, full)
        self._tracked = read.tracked
        task_plans, withheld = self._owed_tasks(plan, read, first_start)
        if first_cycle and withheld:
            # The first ids only: a log line of thousands of ids is split (Docker's json-file
            # cuts lines at 16 KB) and no longer parses; `explain` and the fields say the rest.
            log.warning(
                "past_breaches",
                count=len(withheld),
                lead_ids=sorted(withheld)[:PAST_BREACHES_LOGGED],
                first_start=first_start.isoformat(),
                tasks="none: breached before the worker's first start on the account",
            )
        written = failed = tasks_created = companies_written = 0
        stopped = False
        if not self.dry_run:
            self._persist(read, plan, now, full)
            outcome = apply_writes(self.client, plan.writes, setup.fields, self._stop)
            self._remember_written(outcome.written, setup)
            # A write that did not land (refused, stopped, the lead moved) is planned again.
            plan.results.again(
                {w.lead_id for w in plan.writes} - {w.lead_id for w in outcome.written}
            )
            written, failed, stopped = len(outcome.written), len(outcome.failed), outcome.stopped
            if plan.ledger is not None and self._ledgers is not None:
                companies_written, refused = self._ledgers.write_companies(
                    plan.ledger, stopped=stopped, stored=self._bump_generation
                )
                failed += len(refused)
            if failed:
                # A field deleted in amoCRM shows first as rejected writes: then the setup
                # no longer matches the account, which only the admin can fix.
                self._account_setup(again=True)
            if not stopped:
                tasks_created = ensure_tasks(
                    self.client, self.store, task_plans, self.options.tasks, now
                )
        else:
            plan.results.again(w.lead_id for w in plan.writes)
        created = created_tasks(self.store, task_plans)
        self._tasks_open = {
            key: task for task in task_plans if (key := _task_key(task)) not in created
        }
        if self.dry_run:  # what a real cycle would create: the ledger's tasks are made
            task_plans = [task for task in task_plans if _task_key(task) not in created]
        return CycleReport(
            started_at=started,
            finished_at=self.wall_clock(),
            full_sync=full,
            leads_read=read.leads_read,
            leads_computed=len(plan.computed),
            leads_written=written,
            leads_failed=len(plan.results.failed) + failed,
            tasks_created=tasks_created,
            requests=self.client.requests_sent - requests_before,
            next_change_at=plan.results.next_change_at(),
            stopped_early=stopped,
            writes=plan.writes,
            tasks=tuple(task_plans),
            breached=len(plan.results.breached),
            tracked=len(read.tracked),
            breached_by={k: frozenset(v) for k, v in plan.results.breached_by.items()},
            companies_written=companies_written,
            ledger=plan.ledger,
            first_start=first_start,
            past_breaches=withheld,
        )

    def _first_start(self, now: datetime, setup: AccountSetup) -> tuple[datetime, bool]:
        """The worker's first start on the account, and whether this cycle is the first."""
        recorded = self.store.first_start()
        status_field = setup.fields.ids.get(SlaField.STATUS)
        found = first_start(
            pinned=self.options.first_start,
            recorded=None if recorded is None else datetime.fromtimestamp(recorded, UTC),
            recover=lambda: (
                None
                if status_field is None
                else earliest_change(self.client, f"custom_field_{status_field}_value_changed", now)
            ),
            now=now,
        )
        if recorded is None and not self.dry_run:
            self.store.keep_first_start(int(found.at.timestamp()))
        return found.at, found.is_this_cycle

    def _report(
        self,
        started: datetime,
        requests_before: int,
        *,
        skipped: bool = False,
        stopped_early: bool = False,
    ) -> CycleReport:
        return CycleReport(
            started_at=started,
            finished_at=self.wall_clock(),
            full_sync=False,
            leads_read=0,
            leads_computed=0,
            leads_written=0,
            leads_failed=0,
            tasks_created=0,
            requests=self.client.requests_sent - requests_before,
            next_change_at=None,
            skipped=skipped,
            stopped_early=stopped_early,
        )

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested("the worker is stopping")

    def _account_setup(self, *, again: bool) -> AccountSetup:
        """The account's ids for the configured names; read again at every full reconcile."""
        if self.setup is None or again:
            pipelines = self.client.pipelines()
            fields = list(self.client.iter_lead_custom_fields())
            company_fields = (
                list(self.client.iter_company_custom_fields())
                if self.options.stages.ledgers
                else []
            )
            setup = resolve_setup(self.options.stages, pipelines, fields, company_fields)
            self._heads = GroupHeads(self.client, self.policy.ladder.group_heads)
            if setup != self.setup:
                for problem in setup.loose_names:
                    log.warning("setup_name_loose", problem=problem)
                if self._ledgers is not None:
                    self._ledgers.plan_everything_again()  # the companies, with the new ids
            self.setup = setup
        return self.setup

    def _load_cache(self) -> dict[int, TrackedLead]:
        generation = self.store.get_int(GENERATION)
        if self._tracked is not None and generation != self._generation:
            # Another process (a `once` next to the service) ran a cycle on this state
            # directory since: it consumed events past the cursors this cache was built with.
            self._drop_caches()
        if self._tracked is None:
            self._generation = generation
            self._tracked = load_tracked(self.store)
        return self._tracked

    # --- reading ---------------------------------------------------------------------------
    def _read(
        self,
        setup: AccountSetup,
        cached: dict[int, TrackedLead],
        now: datetime,
        full: bool,
        last_full: int | None,
    ) -> _Read:
        leads = read_leads(
            self.client,
            setup,
            cached,
            cursor=self.store.get_int(LEADS_CURSOR),
            now=now,
            full=full,
            options=self.options.lead_reads,
            check_stop=self._check_stop,
        )
        tracked = cached
        new, touched = _take_leads(tracked, leads, full)
        forgotten = set(leads.gone)
        for lead_id in leads.gone:
            tracked.pop(lead_id, None)

        cursor = self._feed_cursor()
        feed = read_feed(
            self.client,
            types=self._event_types,
            cursor=cursor,
            reread_from=_reread_from(last_full, self.options) if full else None,
            oldest_lead=min((t.created_at for t in tracked.values()), default=None),
            now=now,
            options=self.options.event_reads,
            check_stop=self._check_stop,
        )
        fresh = [i for i in new if i in tracked]
        uncovered = needs_history(
            {i: tracked[i].created_at for i in fresh},
            feed.cursor,
            first_read=cursor is None,
            now=now,
            options=self.options.event_reads,
        )
        # A lead that existed at the last feed read and was not followed then (restored,
        # moved into the pipeline): its own events are kept, but a reply filed on its contact
        # while it was away was given to no request. Its contacts' replies are read again.
        returning = [
            i
            for i in fresh
            if cursor is not None
            and i not in uncovered
            and tracked[i].owners
            and tracked[i].created_at.timestamp() < cursor.read_to
        ]
        owners = [*uncovered, *returning]
        kept = feed.events
        for event in read_histories(
            self.client,
            uncovered,
            types=self._event_types,
            check_stop=self._check_stop,
            contact_ids={c for i in owners for c in tracked[i].lead.contact_ids},
            company_ids={c for i in owners if (c := tracked[i].lead.company_id) is not None},
        ):
            kept.add(event)
        grouped = kept.by_lead()
        for lead_id, raws in self.store.load_events(set(fresh) - set(uncovered)).items():
            grouped.setdefault(lead_id, []).extend(raws)
        if not self.dry_run:
            # Stored now, not held until the cycle's reads are: a first read brings a month
            # of them. Only the cursors say what was read, and they move in _persist.
            with self.store.transaction():
                self.store.save_events(kept.of_leads)
        kept.of_leads.clear()
        # Parsed one lead at a time, and only the tracked leads' (the feed has every lead's).
        parsed = (
            (lead_id, [Event.model_validate_json(raw) for raw in raws])
            for lead_id in list(grouped)
            if (raws := grouped.pop(lead_id)) and lead_id in tracked
        )
        # The requests' own events first: a reply on a contact is judged on their histories.
        replies = contact_replies(
            kept.others,
            self._with_events(tracked, parsed, setup, forgotten, touched),
            pipeline_id=setup.pipeline_id,
            reaction_types=self.policy.conversation_event_types,
            talk_lead=functools.cache(self.client.talk_lead_id),
        )
        self._with_events(tracked, by_lead(replies).items(), setup, forgotten, touched)
        return _Read(
            tracked=tracked,
            touched=frozenset(touched - forgotten),
            new=frozenset(new) & tracked.keys(),
            forgotten=frozenset(forgotten - tracked.keys()),
            events=tuple(map(stored_event, replies)),
            deleted_notes=frozenset(kept.deleted_notes),
            leads_cursor=leads.cursor,
            feed=feed.cursor,
            leads_read=leads.received,
        )

    @staticmethod
    def _with_events(
        tracked: dict[int, TrackedLead],
        grouped: Iterable[tuple[int, Sequence[Event]]],
        setup: AccountSetup,
        forgotten: set[int],
        touched: set[int],
    ) -> dict[int, TrackedLead]:
        """Add each tracked lead's new events (in place); a lead whose events say it was
        deleted or moved away is forgotten."""
        for lead_id, events in grouped:
            item = tracked.get(lead_id)
            if item is None:
                continue
            if left_pipeline(item.updated_at, events, setup.pipeline_id):
                tracked.pop(lead_id)
                forgotten.add(lead_id)
                continue
            updated = item.with_events(events)
            if updated is not item:
                tracked[lead_id] = updated
                touched.add(lead_id)
        return tracked

    def _feed_cursor(self) -> FeedCursor | None:
        read_to, covered_from = self.store.get_int(EVENTS_CURSOR), self.store.get_int(EVENTS_SINCE)
        if read_to is None or covered_from is None:
            return None
        return FeedCursor(read_to=read_to, covered_from=covered_from)

    # --- planning --------------------------------------------------------------------------
    def _plan(self, read: _Read, setup: AccountSetup, now: datetime, full: bool) -> _Plan:
        shared = _Shared(setup)
        results, parsed = self._compute_changed(read, setup, now, full, shared)
        computed = frozenset(parsed)
        ledger_read = ledger = None
        ledger_values: Mapping[int, Mapping[SlaField, Value]] = {}
        if self._ledgers is not None:
            ledger_read, ledger = self._ledgers.plan(
                tracked=read.tracked,
                new=read.new,
                touched=read.touched,
                forgotten=read.forgotten,
                deleted_notes=read.deleted_notes,
                facts={i: f for i, p in parsed.items() if (f := p.facts) is not None},
                setup=setup,
                compute=lambda lead, events, at: self._compute(lead, events, setup, at),
                now=now,
                full=full,
            )
            ledger_values = self._ledgers.values
        # The leads whose wanted values may have changed: the ones computed now, and (with
        # the ledgers on) the ones the ledgers planned now. A lead not computed now has its
        # SLA fields as its state wants them (else it would be due again), so only its
        # ledger fields are read.
        if ledger is not None:
            for lead_id in sorted(ledger.lead_values.keys() - parsed.keys() - results.failed):
                found = _ledger_fields(read.tracked[lead_id], setup, shared)
                if found is not None:
                    parsed[lead_id] = found
        due = {i: state for i in computed if (state := parsed[i].task_state) is not None}
        writes: list[PlannedWrite] = []
        for lead_id in sorted(parsed):
            lead = parsed[lead_id]
            values = dict(lead.sla_values)
            if ledger is not None:
                wanted = {
                    field_id: value
                    for key, value in ledger_values.get(lead_id, {}).items()
                    if (field_id := setup.fields.id_of(key)) is not None
                }
                values |= differing(lead.ledger_current, wanted)
            move_to = setup.roles.accepted_status_id if lead.accept_now else None
            if values or move_to is not None:
                since = (
                    _entered(read.tracked[lead_id].events, setup.roles.acceptance)
                    if move_to is not None
                    else None
                )
                writes.append(
                    PlannedWrite(
                        lead_id,
                        lead.name or read.tracked[lead_id].lead.name,
                        values,
                        move_to,
                        since,
                        read.tracked[lead_id].status_id if move_to is not None else None,
                    )
                )
        settled: frozenset[int] = frozenset()
        if full:  # a closed lead is dropped at the first full reconcile after its retention
            planned = {w.lead_id for w in writes}
            horizon = now - self.options.closed_retention
            settled = frozenset(
                lead_id
                for lead_id, item in read.tracked.items()
                if item.status_id in (WON, LOST)
                and item.updated_at < horizon
                and lead_id not in planned
            )
        return _Plan(results, computed, due, tuple(writes), settled, ledger, ledger_read)

    def _compute_changed(
        self, read: _Read, setup: AccountSetup, now: datetime, full: bool, shared: _Shared
    ) -> tuple[Computations, dict[int, _Parsed]]:
        """Compute the leads whose state may have changed (every one at a full reconcile, or
        when the setup changed); a lead that cannot be computed is logged and left out (the
        per-lead policy). Returns what every lead's last state says and what was parsed of
        the leads computed now (held for this cycle only)."""
        results = self._results
        if results is None or full or setup != self._results_setup:
            results = self._results = Computations()
            self._results_setup = setup
        results.forget(read.forgotten)
        stale = results.stale(read.tracked, read.touched, now)
        parsed: dict[int, _Parsed] = {}
        ledgers = self._ledgers.cache if self._ledgers is not None else None
        for lead_id in sorted(stale):
            item = read.tracked[lead_id]
            fresh = full or lead_id in read.touched
            try:
                lead = item.lead
                state = self._compute(lead, item.events, setup, now)
                found = _parse(lead, state, setup, shared, ledgers=ledgers is not None)
            except Exception as error:
                results.fail(lead_id)
                if fresh:
                    log.warning("lead_invalid", lead_id=lead_id, problem=describe(error))
                continue
            if ledgers is not None:
                facts = facts_of(lead, state, setup.roles.done)
                if ledgers.requests.get(lead_id) != facts:
                    found = replace(found, facts=facts)
            results.put(lead_id, state)
            parsed[lead_id] = found
            if fresh:
                for problem in state.problems:
                    log.warning("lead_problem", lead_id=lead_id, problem=problem)
        return results, parsed

    def _compute(
        self, lead: Lead, events: Sequence[LeadEvent], setup: AccountSetup, now: datetime
    ) -> SlaState:
        facts = lead_facts(
            lead,
            agreed_due_field_id=setup.fields.id_of(SlaField.AGREED_DUE),
            class_field_id=setup.class_field_id,
        )
        return compute_sla(facts, events, self.policy, setup.roles, now)

    # --- storing ---------------------------------------------------------------------------
    def _persist(self, read: _Read, plan: _Plan, now: datetime, full: bool) -> None:
        """Store this cycle's reads in one transaction, before anything is written."""
        for lead_id in plan.settled:
            read.tracked.pop(lead_id, None)
        plan.results.forget(plan.settled)
        with self.store.transaction():
            self.store.forget_leads(read.forgotten | plan.settled)
            self.store.save_leads(
                _stored(lead_id, read.tracked[lead_id])
                for lead_id in read.touched
                if lead_id in read.tracked
            )
            self.store.save_events(read.events)
            if full:
                self.store.prune_events(
                    keep_leads=list(read.tracked),
                    older_than=int((now - self.options.event_buffer).timestamp()),
                )
            self.store.set_int(LEADS_CURSOR, read.leads_cursor)
            self.store.set_int(EVENTS_CURSOR, read.feed.read_to)
            self.store.set_int(EVENTS_SINCE, read.feed.covered_from)
            if full:
                self.store.set_int(LAST_FULL_SYNC, int(now.timestamp()))
            if plan.ledger_read is not None and self._ledgers is not None:
                self._ledgers.persist(plan.ledger_read, now)
            self._bump_generation()

    def _remember_written(self, written: Sequence[PlannedWrite], setup: AccountSetup) -> None:
        """The cache holds what amoCRM holds after the writes, so the next diff starts there."""
        tracked = self._tracked
        if tracked is None or not written:
            return
        if self._results is not None:
            # A lead moved to another stage is computed again from what amoCRM now holds;
            # the fields written are the state's own output, which it does not read.
            self._results.again(w.lead_id for w in written if w.status_id is not None)
        for write in written:
            item = tracked.get(write.lead_id)
            if item is not None:
                tracked[write.lead_id] = item.with_lead(
                    with_written(item.lead, write, setup.fields)
                )
        with self.store.transaction():
            self.store.save_leads(
                _stored(w.lead_id, tracked[w.lead_id]) for w in written if w.lead_id in tracked
            )
            self._bump_generation()

    def _bump_generation(self) -> None:
        self._generation = (self.store.get_int(GENERATION) or 0) + 1
        self.store.set_int(GENERATION, self._generation)


def _take_leads(
    tracked: dict[int, TrackedLead], read: LeadRead, full: bool
) -> tuple[list[int], set[int]]:
    """Put the leads just read into the cache; returns which are new and which changed.

    The cache is changed in place: a full read replaces every copy, and holding the old
    ones until the end of the cycle would double its memory."""
    new: list[int] = []
    touched: set[int] = set()
    for lead_id, fresh in read.leads.items():
        known = tracked.get(lead_id)
        if known is None:
            tracked[lead_id] = fresh
            new.append(lead_id)
            touched.add(lead_id)
        elif fresh is known:  # the same copy (a full read finds most of them so)
            if full:
                touched.add(lead_id)
        elif full or _differs(known, fresh):
            tracked[lead_id] = replace(fresh, events=known.events)
            touched.add(lead_id)
        elif fresh.updated_at > known.updated_at:
            # Only its time of change moved (the worker's own write read back): a new copy,
            # the same state.
            tracked[lead_id] = replace(fresh, events=known.events)
    return new, touched


# What a lead's JSON holds that its SLA state does not depend on.
_CHANGE_STAMPS = ("updated_at", "updated_by")


def _differs(known: TrackedLead, fresh: TrackedLead) -> bool:
    """Whether the lead holds something else now than the cached copy (two changes within
    one second share an updated_at, so this compares what they hold)."""
    if fresh.packed == known.packed:
        return False
    if fresh.updated_at < known.updated_at:
        return False  # an older copy (a page read before a change): the cache is newer
    before, after = json.loads(known.data), json.loads(fresh.data)
    for key in _CHANGE_STAMPS:
        before.pop(key, None)
        after.pop(key, None)
    before_fields = _field_values(before.pop("custom_fields_values", None))
    after_fields = _field_values(after.pop("custom_fields_values", None))
    if before != after or before_fields.keys() != after_fields.keys():
        return True
    for field_id, known_values in before_fields.items():
        fresh_values = after_fields[field_id]
        if len(known_values) != len(fresh_values):
            return True
        # A value the worker wrote is cached as written (an enum id alone); amoCRM sends it
        # back with the option's text besides.
        for known_value, fresh_value in zip(known_values, fresh_values, strict=True):
            if known_value != {k: v for k, v in fresh_value.items() if k in known_value}:
                return True
    return False


def _field_values(raw: object) -> dict[object, list[dict[str, object]]]:
    """A lead's custom field values by field id (names and types are labels: a state
    reads no field by them)."""
    if not isinstance(raw, list):
        return {}
    return {
        entry.get("field_id"): [v for v in entry.get("values") or () if isinstance(v, dict)]
        for entry in raw
        if isinstance(entry, dict)
    }


def _reread_from(last_full: int | None, options: CycleOptions) -> int | None:
    """Where a full reconcile reads the feed again from: two reconcile intervals back, so
    an event amoCRM lists up to one interval late is read at a reconcile after it shows."""
    if last_full is None:
        return None
    return last_full - int(options.full_reconcile_interval.total_seconds())


def _task_key(task: TaskPlan) -> tuple[str, int, str]:
    return (task.entity_type, task.entity_id, task.clock)


def _entered(events: Sequence[LeadEvent], stages: Collection[int]) -> datetime | None:
    """When the lead last moved into one of ``stages``, by its history."""
    moves = [e.at for e in events if e.status_after is not None and e.status_after[1] in stages]
    return max(moves, default=None)


def _stored(lead_id: int, item: TrackedLead) -> StoredLead:
    return StoredLead(lead_id, int(item.updated_at.timestamp()), item.data)


@contextmanager
def _exclusive(lock_path: Path | None) -> Iterator[None]:
    if lock_path is None:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CycleLocked from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
