"""The ledgers' step of a sync cycle: read what changed, plan, write the companies, store.

It keeps the ledger cache and the planner between cycles; the cycle calls it once a cycle
(:meth:`LedgerStep.plan`), stores its read with the rest (:meth:`LedgerStep.persist`) and
hands it the companies to write (:meth:`LedgerStep.write_companies`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

import structlog

from amo_client.client import AmoClient
from amo_client.models import EntityUpdate, Lead
from sla.ledger import Package
from sla.state import LOST, STATUS_CHANGED, WON, LeadEvent, SlaState
from worker.errors import describe
from worker.events import by_lead, read_histories
from worker.fields import CompanyField, SlaField, Value
from worker.ledgers.cache import (
    LedgerCache,
    LedgerRead,
    load_ledger_cache,
    remember_written,
    save_companies,
)
from worker.ledgers.cache import apply as apply_read
from worker.ledgers.cache import persist as persist_read
from worker.ledgers.company import package_of
from worker.ledgers.facts import RequestFacts, facts_of
from worker.ledgers.options import LedgerOptions
from worker.ledgers.plan import LedgerPlan, LedgerPlanner, plan_ledgers, settle_left, touched_by
from worker.ledgers.read import read_ledgers
from worker.mapping import lead_events
from worker.setup import AccountSetup
from worker.store import StateStore
from worker.tasks import TaskPlan

log = structlog.get_logger("worker.ledgers")

LEDGER_SINCE = "ledger_since"  # when the ledgers first read the support requests

# A lead's SLA state at ``now``, from the lead and its history (the cycle's engine call).
Compute = Callable[[Lead, Sequence[LeadEvent], datetime], SlaState]


class LedgerStep:
    """The company ledgers between cycles: their cache (loaded once from the state store)
    and their planner (which plans again only what changed)."""

    def __init__(
        self,
        client: AmoClient,
        store: StateStore,
        options: LedgerOptions,
        check_stop: Callable[[], None],
    ) -> None:
        self.client = client
        self.store = store
        self.options = options
        self._check_stop = check_stop
        self._cache: LedgerCache | None = None
        self._planner: LedgerPlanner | None = None
        self._unreadable_notes: frozenset[int] = frozenset()  # as the last read found them

    @property
    def cache(self) -> LedgerCache:
        if self._cache is None:
            self._cache = load_ledger_cache(self.store, unit=self.options.unit)
        return self._cache

    @property
    def values(self) -> Mapping[int, Mapping[SlaField, Value]]:
        """The ledger field values planned for each tracked request."""
        return {} if self._planner is None else self._planner.values

    def drop(self) -> None:
        """Forget the cache and the plan: the state store is read again at the next cycle."""
        self._cache = self._planner = None

    def plan_everything_again(self) -> None:
        """Plan every company at the next cycle (the account's ids changed)."""
        self._planner = None

    def plan(
        self,
        *,
        tracked: Mapping[int, object],
        new: Collection[int],
        touched: Collection[int],
        forgotten: Collection[int],
        deleted_notes: Collection[int],
        facts: Mapping[int, RequestFacts],
        setup: AccountSetup,
        compute: Compute,
        now: datetime,
        full: bool,
    ) -> tuple[LedgerRead, LedgerPlan]:
        """Read what the company ledgers need and plan their fields and tasks; ``facts``
        are those of the requests computed in this cycle, ``tracked`` the open requests."""
        cache = self.cache
        planner = self._planner
        if planner is None:
            planner = self._planner = LedgerPlanner()
        if self.store.get_int(LEDGER_SINCE) is None:
            facts = {**self._earlier_requests(setup, compute, now), **facts}
        ledger_read = read_ledgers(
            self.client,
            self.store,
            cache,
            facts=facts,
            tracked=tracked,
            gone=forgotten,
            deleted_notes=deleted_notes,
            now=now,
            full=full,
            options=self.options,
            check_stop=self._check_stop,
            written_fields=[
                field_id
                for key in (CompanyField.PACKAGE_USED, CompanyField.QUOTAS)
                if (field_id := setup.company_fields.id_of(key)) is not None
            ],
            company_fields=frozenset(setup.company_fields.ids.values()),
        )
        # A request the cycle tracks again (reopened, moved back) may hold facts the ledgers
        # kept all along: its fields are planned again all the same.
        again = touched_by(cache, ledger_read, also=new)
        self._unreadable_notes = ledger_read.unreadable_notes
        apply_read(cache, ledger_read)
        planner.forget(forgotten)
        plan = planner.plan(
            cache,
            again,
            tracked=tracked,
            fields=setup.company_fields,
            options=self.options,
            now=now,
            everything=full,  # a new planner plans every company at its first cycle
        )
        settle_left(cache, plan)
        for lead_id, problems in plan.lead_problems.items():
            if full or lead_id in touched:
                for problem in problems:
                    log.warning("lead_problem", lead_id=lead_id, problem=problem)
        for company_id, problems in plan.company_problems.items():
            if full or company_id in ledger_read.companies:
                for problem in problems:
                    log.warning("company_problem", company_id=company_id, problem=problem)
        return ledger_read, plan

    def summary(self, setup: AccountSetup) -> str:
        """The ledgers' state after a cycle, for ``check``."""
        cache = self.cache
        linked = [
            cache.companies[i]
            for i in cache.company_leads
            if i is not None and i in cache.companies
        ]
        packages = [
            package_of(company, setup.company_fields, self.options.zone, self.options.unit)
            for company in linked
        ]
        with_package = sum(1 for package in packages if isinstance(package, Package))
        broken = sum(1 for package in packages if isinstance(package, str))
        return (
            f"ledgers: {len(linked)} companies linked to support requests, {with_package} with "
            f"an hour package ({broken} whose package fields cannot be read); "
            f"{len(cache.entries)} time entries, {len(self._unreadable_notes)} time notes "
            "that cannot be read (each logged as lead_problem)"
        )

    def persist(self, ledger_read: LedgerRead, now: datetime) -> None:
        """Store what was read (inside the cycle's transaction)."""
        persist_read(self.store, ledger_read, self.cache)
        if self.store.get_int(LEDGER_SINCE) is None:
            self.store.set_int(LEDGER_SINCE, int(now.timestamp()))

    def write_companies(
        self, plan: LedgerPlan, *, stopped: bool, stored: Callable[[], None]
    ) -> tuple[int, list[int]]:
        """Write the companies' ledger fields (none when the cycle is ``stopped``); returns
        how many were written and the companies refused. What did not land is planned again;
        ``stored`` runs in the transaction that keeps what was written."""
        refused: list[int] = []
        written_count = 0
        if stopped:
            unwritten = {w.company_id for w in plan.company_writes}
        else:
            written_count, refused = self._write(plan, stored)
            unwritten = set(refused)
        if self._planner is not None:
            self._planner.again(unwritten)
        return written_count, refused

    def covers(self, task: TaskPlan, planned_now: bool) -> bool:
        """Whether this cycle planned the ledger task's lead or company again, so a task it
        did not plan is no longer owed (always, when the ledgers start afresh)."""
        planner = self._planner
        if planner is None or not planned_now:
            return True
        covered = planner.companies if task.entity_type == "companies" else planner.leads
        return task.entity_id in covered

    def disagreements(
        self,
        tracked: Collection[int],
        setup: AccountSetup,
        owed: Callable[[Sequence[TaskPlan]], list[str]],
        now: datetime,
    ) -> list[str]:
        """What planning every company afresh at ``now`` finds that the kept plan lacks:
        a tracked request whose ledger fields differ, and what ``owed`` says of its tasks."""
        cache, planner = self._cache, self._planner
        if cache is None or planner is None:
            return []
        full, _ = plan_ledgers(
            requests=cache.requests,
            entries=cache.entries.values(),
            companies={i: c for i, c in cache.companies.items() if i in cache.company_leads},
            tracked=tracked,
            fields=setup.company_fields,
            options=self.options,
            now=now,
        )
        found = [
            f"lead {lead_id}: {planner.values.get(lead_id)} != {full.lead_values.get(lead_id)}"
            for lead_id in sorted(tracked)
            if full.lead_values.get(lead_id) != planner.values.get(lead_id)
        ]
        return found + owed(full.tasks)

    def _write(self, plan: LedgerPlan, stored: Callable[[], None]) -> tuple[int, list[int]]:
        if not plan.company_writes:
            return 0, []
        result = self.client.update_companies(
            [EntityUpdate(w.company_id, w.values) for w in plan.company_writes]
        )
        for company_id, problem in result.failed.items():
            log.warning("company_invalid", company_id=company_id, problem=problem)
        written = [w for w in plan.company_writes if w.company_id not in result.failed]
        for write in written:
            log.info("company_written", company_id=write.company_id, fields=len(write.values))
        changed = remember_written(self.cache, written)
        with self.store.transaction():
            save_companies(self.store, changed)
            stored()
        return len(written), sorted(result.failed)

    def _earlier_requests(
        self, setup: AccountSetup, compute: Compute, now: datetime
    ) -> dict[int, RequestFacts]:
        """The first time the ledgers run: the closed support requests of their horizon, as
        facts (their tariff from their tags; registered as spec §1 says: at creation, or
        when moved into the pipeline, read from their stage changes, ten leads a request).
        The open ones are the cycle's own: every tracked lead is computed in every cycle."""
        since = now - self.options.horizon
        closed = [
            lead
            for lead in self.client.iter_leads(
                pipeline_id=setup.pipeline_id,
                status_ids=(WON, LOST),
                updated_from=since,
                by_update=True,
            )
            if lead.pipeline_id == setup.pipeline_id  # amoCRM may ignore a filter
            and lead.status_id in (WON, LOST)
            and lead.updated_at >= since
        ]
        moves = by_lead(
            read_histories(
                self.client,
                [lead.id for lead in closed],
                types=[STATUS_CHANGED],
                check_stop=self._check_stop,
            )
        )
        facts: dict[int, RequestFacts] = {}
        for lead in closed:
            self._check_stop()
            try:
                state = compute(lead, lead_events(moves.get(lead.id, ())), now)
                facts[lead.id] = facts_of(lead, state, setup.roles.done)
            except Exception as error:
                log.warning("lead_invalid", lead_id=lead.id, problem=describe(error))
        return facts
