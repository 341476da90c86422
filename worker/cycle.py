"""One sync cycle: read what changed, compute every open lead's SLA, write what differs.

The cycle is a plain object with an injected clock (``run(now)``): the scheduler
decides when it runs, tests call it directly.

Requests it spends, by design (amoCRM allows 7 a second):

* leads changed since the cursor, in the support pipeline (one 204 when nothing changed);
* lead events since the cursor, account-wide and filtered to the types that matter
  (one 204 when nothing happened); per-lead event calls only for a lead whose
  history predates what the worker has seen (a reopened old lead);
* one PATCH per 50 leads whose fields differ, and task calls only when a breach
  needs a task.

A steady cycle over unchanged leads therefore costs two requests, whatever the
number of leads. A full re-read of the pipeline (first start, and every
``full_reconcile_interval``) costs ceil(open leads / 250) lead pages plus the
event pages.

Breach tasks are created exactly once per lead and clock: the ledger claims a
task durably before the create request, and a claim that was never confirmed
(a crash, or a lost state directory) is settled by looking for the task in
amoCRM first. A file lock keeps two processes on one state directory from
running cycles at the same time.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import structlog

from amo_client.client import AmoClient
from amo_client.models import (
    CustomFieldValues,
    EntityUpdate,
    Event,
    FieldValue,
    Lead,
    LeadEmbedded,
    NewNote,
    OutgoingValue,
    SelectValue,
    Tag,
)
from sla.policy import Policy
from sla.state import LeadEvent, SlaState, compute_sla
from worker.fields import BadFieldValue, FieldMap, SlaField, Value, changed_values
from worker.mapping import lead_events, lead_facts
from worker.setup import LOST, WON, AccountSetup, StageOptions, resolve_setup
from worker.store import StateStore, StoredEvent, StoredLead
from worker.tasks import TaskOptions, TaskPlan, ensure_tasks, plan_tasks

log = structlog.get_logger("worker.cycle")

T = TypeVar("T")

WRITE_BATCH = 50
LEADS_CURSOR = "leads_cursor"
EVENTS_CURSOR = "events_cursor"
EVENTS_SINCE = "events_since"
LAST_FULL_SYNC = "last_full_sync"
GENERATION = "generation"
STRUCTURAL_EVENTS = frozenset({"lead_status_changed", "lead_deleted", "lead_restored"})


@dataclass(frozen=True)
class CycleOptions:
    stages: StageOptions
    tasks: TaskOptions
    full_reconcile_interval: timedelta = timedelta(hours=6)
    # Events of leads the worker does not track yet are kept this long, so a lead that
    # shows up later (created, or moved into the pipeline) finds its history here.
    event_buffer: timedelta = timedelta(days=3)
    # How far back the first sync reads the account-wide event feed; older open leads
    # get their history by per-lead calls.
    history_horizon: timedelta = timedelta(days=30)
    # The event cursor steps back this far (events are deduplicated by id), so an
    # event amoCRM indexes a little late is still seen.
    event_overlap: timedelta = timedelta(minutes=1)
    # A closed lead stays cached this long after its last change, then is dropped.
    closed_retention: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class PlannedWrite:
    lead_id: int
    lead_name: str
    values: Mapping[int, Value]
    status_id: int | None = None  # set when the lead is moved (acceptance)


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
    states: Mapping[int, SlaState] = field(default_factory=dict)

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
        }


class CycleLocked(Exception):
    """Another process is running a cycle on the same state directory."""


class _StopRequested(Exception):
    """The service asked the cycle to stop while it was still reading."""


@dataclass
class _Tracked:
    """A cached lead: the few values the cycle consults on every pass, the rest as JSON.

    Kept as pydantic models, with every field value a model of its own, 10,000 leads
    cost over 100 MB; as amoCRM's JSON (the form the store keeps too) a few MB. The
    lead is parsed when it is computed, one at a time.
    """

    data: str
    status_id: int
    created_at: datetime
    updated_at: datetime
    events: list[LeadEvent]
    event_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, lead: Lead, events: list[LeadEvent] | None = None) -> _Tracked:
        item = cls("", 0, lead.created_at, lead.updated_at, events or [])
        item.lead = lead
        return item

    @property
    def lead(self) -> Lead:
        return Lead.model_validate_json(self.data)

    @lead.setter
    def lead(self, lead: Lead) -> None:
        self.data = lead.model_dump_json(by_alias=True, exclude_none=True)
        self.status_id = lead.status_id
        self.created_at = lead.created_at
        self.updated_at = lead.updated_at


@dataclass
class _Pass:
    """What one cycle has learnt so far; persisted in one transaction at its end."""

    now: datetime
    full: bool
    touched: set[int] = field(default_factory=set)  # leads read or given new events
    written: set[int] = field(default_factory=set)  # leads this cycle wrote to
    new: set[int] = field(default_factory=set)  # leads tracked for the first time
    forgotten: set[int] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    leads_read: int = 0
    leads_cursor: int = 0
    events_cursor: int = 0
    events_since: int = 0
    first_event_read: bool = False


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
        self._tracked: dict[int, _Tracked] | None = None
        self._generation: int | None = None  # the store's generation the cache reflects
        self._stop = threading.Event()
        self._event_types = sorted(policy.reaction_event_types | STRUCTURAL_EVENTS)

    # --- the Cycle protocol -----------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def run(self, now: datetime) -> CycleReport:
        requests_before = self.client.requests_sent
        try:
            with _exclusive(self.lock_path):
                try:
                    return self._run(now, requests_before)
                except BaseException:
                    # The cache may hold half of this cycle; the store holds the last whole one.
                    self._tracked = None
                    raise
        except CycleLocked:
            log.warning("cycle_skipped_locked", lock=str(self.lock_path))
            return CycleReport(
                started_at=now,
                finished_at=now,
                full_sync=False,
                leads_read=0,
                leads_computed=0,
                leads_written=0,
                leads_failed=0,
                tasks_created=0,
                requests=0,
                next_change_at=None,
                skipped=True,
            )

    def tracked_lead(self, lead_id: int) -> tuple[Lead, list[LeadEvent]] | None:
        item = (self._tracked or {}).get(lead_id)
        return None if item is None else (item.lead, list(item.events))

    # --- one cycle ---------------------------------------------------------------------------
    def _run(self, now: datetime, requests_before: int) -> CycleReport:
        started = self.wall_clock()
        setup = self._account_setup()
        tracked = self._load_cache()
        last_full = self.store.get_int(LAST_FULL_SYNC)
        interval = self.options.full_reconcile_interval.total_seconds()
        step = _Pass(now=now, full=last_full is None or now.timestamp() - last_full >= interval)
        try:
            self._read_leads(setup, tracked, step)
            self._read_events(setup, tracked, step)
        except _StopRequested:
            # Nothing was written yet: leave without persisting, and without the cache this
            # pass has half updated; the next start reads from the stored cursors again.
            self._tracked = None
            return self._stopped_report(started, step, requests_before)

        states: dict[int, SlaState] = {}
        writes: list[PlannedWrite] = []
        failed = 0
        for lead_id, item in sorted(tracked.items()):
            fresh = lead_id in step.touched or step.full
            lead = item.lead
            try:
                state = self._compute(lead, item.events, setup, now)
                values = changed_values(lead, state, setup.fields)
            except (BadFieldValue, ValueError) as error:
                failed += 1
                if fresh:
                    log.warning("lead_invalid", lead_id=lead_id, problem=str(error))
                continue
            # The derivation's trace is for `explain`; kept for every lead it would cost MBs.
            states[lead_id] = replace(state, trace=())
            if fresh:
                for problem in state.problems:
                    log.warning("lead_problem", lead_id=lead_id, problem=problem)
            move_to = setup.roles.accepted_status_id if state.accept_now else None
            if values or move_to is not None:
                writes.append(PlannedWrite(lead_id, lead.name, values, move_to))

        leads = {
            lead_id: tracked[lead_id].lead
            for lead_id, state in states.items()
            if state.reaction_task_due or state.resolution_task_due
        }
        task_plans = plan_tasks(states, leads, self.options.tasks)
        written = write_failed = tasks_created = 0
        stopped = False
        if not self.dry_run:
            written, write_failed, stopped = self._write(writes, tracked, setup, step)
            if not stopped:
                tasks_created = ensure_tasks(
                    self.client, self.store, task_plans, self.options.tasks, now
                )
            self._drop_settled(tracked, setup, step)
            self._persist(tracked, step)
        next_change = min(
            (s.next_change_at for s in states.values() if s.next_change_at is not None),
            default=None,
        )
        return CycleReport(
            started_at=started,
            finished_at=self.wall_clock(),
            full_sync=step.full,
            leads_read=step.leads_read,
            leads_computed=len(states),
            leads_written=written,
            leads_failed=failed + write_failed,
            tasks_created=tasks_created,
            requests=self.client.requests_sent - requests_before,
            next_change_at=next_change,
            stopped_early=stopped,
            writes=tuple(writes),
            tasks=tuple(task_plans),
            states=states,
        )

    def _stopped_report(self, started: datetime, step: _Pass, requests_before: int) -> CycleReport:
        return CycleReport(
            started_at=started,
            finished_at=self.wall_clock(),
            full_sync=step.full,
            leads_read=step.leads_read,
            leads_computed=0,
            leads_written=0,
            leads_failed=0,
            tasks_created=0,
            requests=self.client.requests_sent - requests_before,
            next_change_at=None,
            stopped_early=True,
        )

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _StopRequested

    def _account_setup(self) -> AccountSetup:
        if self.setup is None:
            pipelines = self.client.pipelines()
            fields = list(self.client.iter_lead_custom_fields())
            self.setup = resolve_setup(self.options.stages, pipelines, fields)
        return self.setup

    def _load_cache(self) -> dict[int, _Tracked]:
        generation = self.store.get_int(GENERATION)
        if self._tracked is not None and generation != self._generation:
            # Another process (a `once` next to the service) ran a cycle on this state
            # directory since: it consumed events past the cursors this cache was built with.
            self._tracked = None
        if self._tracked is None:
            self._generation = generation
            events = self.store.load_events()
            self._tracked = {}
            for lead_id, data in self.store.load_leads().items():
                parsed = [Event.model_validate_json(raw) for raw in events.get(lead_id, ())]
                item = _Tracked.of(Lead.model_validate_json(data), lead_events(parsed))
                item.event_ids = {e.id for e in parsed}
                self._tracked[lead_id] = item
        return self._tracked

    # --- reading ---------------------------------------------------------------------------------
    def _read_leads(self, setup: AccountSetup, tracked: dict[int, _Tracked], step: _Pass) -> None:
        cursor = self.store.get_int(LEADS_CURSOR)
        step.leads_cursor = cursor or 0
        # amoCRM's clock at its first answer of this read: every change the read may have
        # missed carries an updated_at at or past it, whatever the worker's own clock says.
        read_started: datetime | None = None

        def take(leads: Iterable[Lead]) -> None:
            nonlocal read_started
            for lead in leads:
                self._check_stop()
                if read_started is None:
                    read_started = self.client.server_time
                self._take_lead(lead, setup, tracked, step)
            if read_started is None:
                read_started = self.client.server_time

        if step.full:
            seen: set[int] = set()

            def noting(leads: Iterable[Lead]) -> Iterator[Lead]:
                for lead in leads:
                    seen.add(lead.id)
                    yield lead

            take(
                noting(
                    self.client.iter_leads(
                        pipeline_id=setup.pipeline_id, status_ids=setup.open_status_ids
                    )
                )
            )
            closed = setup.roles.done
            self._forget(
                [
                    i
                    for i, item in tracked.items()
                    if i not in seen and item.status_id not in closed
                ],
                tracked,
                step,
            )
        if cursor is None:
            # First start: requests closed shortly before it get their final status too.
            take(
                self.client.iter_leads(
                    pipeline_id=setup.pipeline_id,
                    status_ids=(WON, LOST),
                    updated_from=step.now - self.options.history_horizon,
                )
            )
        else:
            # The read steps back a little: a lead amoCRM stamps with a slightly older
            # updated_at than the last one seen is read again (and found unchanged), not lost.
            since = datetime.fromtimestamp(cursor, UTC) - self.options.event_overlap
            take(self.client.iter_leads(pipeline_id=setup.pipeline_id, updated_from=since))
        # The cursor follows amoCRM's clock, not only the newest lead: left at the newest
        # lead's updated_at, a quiet account would re-read every lead of that last minute
        # (all of them, after the first sync wrote them) in each cycle. amoCRM stamps
        # updated_at at the change, so nothing older than the overlap can still turn up.
        clock = read_started or step.now
        step.leads_cursor = max(
            step.leads_cursor, int((clock - self.options.event_overlap).timestamp())
        )

    def _take_lead(
        self, lead: Lead, setup: AccountSetup, tracked: dict[int, _Tracked], step: _Pass
    ) -> None:
        lead = _slim(lead, setup)
        step.leads_read += 1
        step.leads_cursor = max(step.leads_cursor, int(lead.updated_at.timestamp()))
        known = tracked.get(lead.id)
        if lead.pipeline_id != setup.pipeline_id:
            # Only when the account's API filtering is off does amoCRM send these at all.
            if known is not None:
                self._forget([lead.id], tracked, step)
            return
        if known is None:
            tracked[lead.id] = _Tracked.of(lead)
            step.new.add(lead.id)
            step.forgotten.discard(lead.id)
        elif lead.updated_at > known.updated_at or step.full:
            known.lead = lead
        else:
            return  # the same version as cached: nothing changed
        step.touched.add(lead.id)

    def _forget(self, lead_ids: Iterable[int], tracked: dict[int, _Tracked], step: _Pass) -> None:
        for lead_id in list(lead_ids):
            tracked.pop(lead_id, None)
            step.forgotten.add(lead_id)
            step.new.discard(lead_id)

    def _read_events(self, setup: AccountSetup, tracked: dict[int, _Tracked], step: _Pass) -> None:
        cursor = self.store.get_int(EVENTS_CURSOR)
        since = self.store.get_int(EVENTS_SINCE)
        step.first_event_read = cursor is None or since is None
        if cursor is None or since is None:
            oldest = min((item.created_at for item in tracked.values()), default=step.now)
            start = max(oldest, step.now - self.options.history_horizon)
            since = int(start.timestamp())
        else:
            start = datetime.fromtimestamp(cursor, UTC) - self.options.event_overlap
        step.events_since = since
        step.events_cursor = max(cursor or since, since)
        for event in self.client.iter_events(
            entity="lead", types=self._event_types, created_from=start
        ):
            self._check_stop()
            step.events.append(event)
            step.events_cursor = max(step.events_cursor, int(event.created_at.timestamp()))

        by_lead: dict[int, list[Event]] = {}
        for event in step.events:
            by_lead.setdefault(event.entity_id, []).append(event)
        if step.new:
            self._history_of_new_leads(tracked, step, by_lead)

        for lead_id, events in by_lead.items():
            item = tracked.get(lead_id)
            if item is None:
                continue
            if _left_pipeline(item.updated_at, events, setup.pipeline_id):
                self._forget([lead_id], tracked, step)
                continue
            # The same event can arrive twice in one pass (the feed and a per-lead read).
            unseen = list({e.id: e for e in events if e.id not in item.event_ids}.values())
            if not unseen:
                continue
            item.event_ids.update(e.id for e in unseen)
            item.events = sorted(
                [*item.events, *lead_events(unseen)], key=lambda e: (e.at, e.event_id)
            )
            step.touched.add(lead_id)

    def _history_of_new_leads(
        self, tracked: dict[int, _Tracked], step: _Pass, by_lead: dict[int, list[Event]]
    ) -> None:
        """Give leads seen for the first time their earlier events.

        The store buffers events of untracked leads for ``event_buffer``; a lead created
        before what the buffer covers (a reopened old lead, say) is asked for by id.
        """
        if step.first_event_read:
            covered_from = step.events_since  # this pass read the feed from there on
        else:
            covered_from = max(
                step.events_since, int((step.now - self.options.event_buffer).timestamp())
            )
        buffered = self.store.load_events()
        uncovered = []
        for lead_id in sorted(step.new):
            if int(tracked[lead_id].created_at.timestamp()) < covered_from:
                uncovered.append(lead_id)
                continue
            for raw in buffered.get(lead_id, ()):
                by_lead.setdefault(lead_id, []).append(Event.model_validate_json(raw))
        for chunk in _chunks(uncovered, MAX_EVENT_ENTITY_IDS):
            for event in self.client.iter_events(
                entity="lead", entity_ids=chunk, types=self._event_types
            ):
                self._check_stop()
                step.events.append(event)
                by_lead.setdefault(event.entity_id, []).append(event)

    # --- computing and writing ----------------------------------------------------------------
    def _compute(
        self, lead: Lead, events: Sequence[LeadEvent], setup: AccountSetup, now: datetime
    ) -> SlaState:
        facts = lead_facts(
            lead,
            agreed_due_field_id=setup.fields.id_of(SlaField.AGREED_DUE),
            class_field_id=setup.class_field_id,
        )
        return compute_sla(facts, events, self.policy, setup.roles, now)

    def _write(
        self,
        writes: Sequence[PlannedWrite],
        tracked: dict[int, _Tracked],
        setup: AccountSetup,
        step: _Pass,
    ) -> tuple[int, int, bool]:
        written = failed = 0
        for batch in _chunks(list(writes), WRITE_BATCH):
            if self._stop.is_set():
                return written, failed, True
            result = self.client.update_leads([_lead_update(w, setup.fields) for w in batch])
            for lead_id, problem in result.failed.items():
                failed += 1
                log.warning("lead_invalid", lead_id=lead_id, problem=problem)
            for write in batch:
                if write.lead_id in result.failed:
                    continue
                written += 1
                item = tracked.get(write.lead_id)
                for clock, flag in BREACH_FLAGS.items():
                    if write.values.get(setup.fields.id_of(flag) or 0) is True:
                        log.warning("lead_breached", lead_id=write.lead_id, clock=clock)
                if item is not None:
                    item.lead = _with_written(item.lead, write, setup.fields)
                    step.touched.add(write.lead_id)
                    step.written.add(write.lead_id)
                log.info(
                    "lead_written",
                    lead_id=write.lead_id,
                    fields=len(write.values),
                    moved_to=write.status_id,
                )
            if any(w.status_id is not None and w.lead_id not in result.failed for w in batch):
                self._note_acceptances([w for w in batch if w.status_id is not None], result.failed)
        return written, failed, False

    def _note_acceptances(self, moved: Sequence[PlannedWrite], failed: Mapping[int, str]) -> None:
        notes = [
            NewNote(entity_id=w.lead_id, text=ACCEPTANCE_NOTE)
            for w in moved
            if w.lead_id not in failed
        ]
        if notes:
            self.client.create_notes(notes)

    def _drop_settled(self, tracked: dict[int, _Tracked], setup: AccountSetup, step: _Pass) -> None:
        """Closed leads leave the cache once nothing about them can change any more."""
        horizon = step.now - self.options.closed_retention
        # A lead written just now comes back in the next read (the write bumped its
        # updated_at); dropped now, it would come back as a stranger and cost per-lead
        # event calls to rebuild a history the cache already had.
        settled = [
            lead_id
            for lead_id, item in tracked.items()
            if item.status_id in (WON, LOST)
            and item.updated_at < horizon
            and lead_id not in step.written
        ]
        self._forget(settled, tracked, step)

    def _persist(self, tracked: dict[int, _Tracked], step: _Pass) -> None:
        with self.store.transaction():
            self.store.forget_leads(step.forgotten)
            self.store.save_leads(
                StoredLead(
                    lead_id,
                    int(tracked[lead_id].updated_at.timestamp()),
                    tracked[lead_id].data,
                )
                for lead_id in step.touched
                if lead_id in tracked
            )
            self.store.save_events(
                StoredEvent(
                    event.id,
                    event.entity_id,
                    int(event.created_at.timestamp()),
                    event.model_dump_json(),
                )
                for event in step.events
            )
            self.store.prune_events(
                keep_leads=list(tracked),
                older_than=int((step.now - self.options.event_buffer).timestamp()),
            )
            self.store.set_int(LEADS_CURSOR, step.leads_cursor)
            self.store.set_int(EVENTS_CURSOR, step.events_cursor)
            self.store.set_int(EVENTS_SINCE, step.events_since)
            if step.full:
                self.store.set_int(LAST_FULL_SYNC, int(step.now.timestamp()))
            self._generation = (self.store.get_int(GENERATION) or 0) + 1
            self.store.set_int(GENERATION, self._generation)


BREACH_FLAGS = {
    "reaction": SlaField.REACTION_BREACHED,
    "resolution": SlaField.RESOLUTION_BREACHED,
}
ACCEPTANCE_NOTE = (
    "Заявка принята автоматически: клиент не прислал замечаний в течение "
    "срока приёмки (1 рабочий день с уведомления)."
)
MAX_EVENT_ENTITY_IDS = 10


def _left_pipeline(updated_at: datetime, events: Sequence[Event], pipeline_id: int) -> bool:
    """Whether an event newer than the cached lead says it was deleted or moved away."""
    for event in sorted(events, key=lambda e: e.created_at, reverse=True):
        if event.created_at < updated_at:
            return False
        if event.type == "lead_deleted":
            return True
        after = event.status_after
        if event.type == "lead_status_changed" and after is not None:
            return after.pipeline_id != pipeline_id
    return False


def _slim(lead: Lead, setup: AccountSetup) -> Lead:
    """The part of a lead the cycle reads: the cache holds every open lead of the pipeline,
    and a lead as amoCRM sends it carries all of its fields, links and extras besides."""
    keep = {*setup.fields.ids.values(), setup.class_field_id}
    fields = [f for f in lead.custom_fields_values or () if f.field_id in keep]
    return Lead(
        id=lead.id,
        name=lead.name,
        status_id=lead.status_id,
        pipeline_id=lead.pipeline_id,
        responsible_user_id=lead.responsible_user_id,
        created_by=lead.created_by,
        updated_by=lead.updated_by,
        created_at=lead.created_at,
        updated_at=lead.updated_at,
        closed_at=lead.closed_at,
        is_deleted=lead.is_deleted,
        custom_fields_values=fields or None,
        embedded=LeadEmbedded(tags=[Tag(id=tag.id, name=tag.name) for tag in lead.embedded.tags]),
    )


def _lead_update(write: PlannedWrite, fields: FieldMap) -> EntityUpdate:
    status_field = fields.id_of(SlaField.STATUS)
    values: dict[int, OutgoingValue] = {}
    for field_id, value in write.values.items():
        is_select = field_id == status_field and isinstance(value, int)
        values[field_id] = SelectValue(int(value)) if is_select and value is not None else value
    return EntityUpdate(write.lead_id, values, status_id=write.status_id)


def _with_written(lead: Lead, write: PlannedWrite, fields: FieldMap) -> Lead:
    """The cached lead as amoCRM holds it after the write, so the next diff starts there."""
    status_field = fields.id_of(SlaField.STATUS)
    by_id = {field.field_id: field for field in lead.custom_fields_values or ()}
    for field_id, value in write.values.items():
        if value is None:
            by_id.pop(field_id, None)
            continue
        stored = FieldValue(enum_id=value) if field_id == status_field else FieldValue(value=value)
        by_id[field_id] = CustomFieldValues(field_id=field_id, values=[stored])
    changes: dict[str, object] = {"custom_fields_values": list(by_id.values()) or None}
    if write.status_id is not None:
        changes["status_id"] = write.status_id
    return lead.model_copy(update=changes)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
