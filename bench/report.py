"""The SLA report for a month of 10,000 requests from the fake amoCRM, with the month before.

The fake holds October 2025's support requests (both CRMBP tariffs, some non-standard,
most answered and closed, some on hold, a few left unanswered), as many in September (the
period the report compares with, read in the same pass), 60 companies, a third of them
with an hour package, time notes on a fifth of the requests, and a sales pipeline.
The report runs through the real client, whose 7 req/s limiter sleeps on a virtual
clock: nothing waits for real, and the fake sees the same spacing as amoCRM would.

Two runs of ``report`` for October, on 10 November:

* cold: no state directory, so every request's history is read by id (ten a request);
* warm: after the worker's cycle has kept both months' requests in its cache (a history
  horizon of 75 days and a long retention for closed requests), whose histories then need
  no per-lead request at all.

Prints the requests of each by kind, the time amoCRM's 7 req/s would take, the compute
time (the wall time less the time spent inside the fake), and the report's peak memory,
twice:

* the most Python memory allocated at once during a third run, a cold one under
  ``tracemalloc`` (the fake's answers are allocated in this process too, so it is an upper
  bound; the fake's own store of 10,000 leads, allocated before, is not counted);
* the peak resident set size of a process that only makes the report, cold: a fresh
  interpreter whose fake amoCRM, seeded the same way, runs in another process and answers
  over loopback HTTP on a virtual clock the two share (:mod:`bench.fake_process`, as
  ``bench.cycle_requests`` measures the worker's cycle).

Exits 1 if a target is missed: under 60 s of compute, under 300 MB resident, no per-lead
history request for a cached lead.

    .venv/bin/python -m bench.report [--count 10000]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, LoggedRequest
from bench.fake_process import VirtualClock, run_worker, served_fake
from sla.policy import default_policy
from worker.admin import provision
from worker.cycle import CycleOptions, SyncCycle
from worker.fields import Ledger
from worker.ledgers.options import LedgerOptions
from worker.setup import StageOptions, resolve_setup
from worker.sla_report import Period, ReadStats, Sources, collect, write_report
from worker.store import StateStore
from worker.tasks import TaskOptions

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2025, 11, 10, 10, 0, tzinfo=MOSCOW)
OCTOBER = Period(date(2025, 10, 1), date(2025, 10, 31), MOSCOW)
SEPTEMBER = OCTOBER.previous()
PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента", "Проверка клиентом")
SEED = 20_251_110
COMPUTE_TARGET_S = 60
MEMORY_TARGET_MB = 300
RATE = 7


@dataclass
class Timed(httpx.BaseTransport):
    """Adds up the real time spent inside the fake amoCRM."""

    inner: httpx.BaseTransport
    seconds: float = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        began = time.perf_counter()
        try:
            return self.inner.handle_request(request)
        finally:
            self.seconds += time.perf_counter() - began


@dataclass
class Measured:
    label: str
    stats: ReadStats
    kinds: Counter[str]
    wall: float
    in_fake: float
    requests: int = 0
    cached_asked: int = 0
    page: Path = field(default_factory=Path)
    peak_mb: float = 0.0
    counts: tuple[int, int] = (0, 0)  # requests of the period and of the one before

    @property
    def compute(self) -> float:
        return self.wall - self.in_fake


def seed_account(fake: FakeAmoCRM, client: AmoClient, count: int) -> None:
    """Provision the account's fields (through ``client``, on the fake) and seed it."""
    provision(client, dry_run=False, say=lambda line: None, ledgers=frozenset({Ledger.PACKAGES}))
    seed(fake, count)


def seed(fake: FakeAmoCRM, count: int) -> None:
    rng = random.Random(SEED + count)
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    agents = [fake.add_user(f"Агент {n}") for n in range(12)]
    hours_id = fake.field_id("Пакет: часов", entity="companies")
    paid_id = fake.field_id("Пакет: оплачен", entity="companies")
    companies = []
    for number in range(60):
        fields = {}
        if number % 3 == 0 and hours_id is not None and paid_id is not None:
            paid = datetime(2025, 10, 1 + number % 20, tzinfo=MOSCOW)
            fields = {hours_id: rng.choice([2, 5, 10]), paid_id: int(paid.timestamp())}
        companies.append(
            fake.add_company(
                f"Компания {number}", responsible_user_id=agents[0], custom_fields=fields
            )
        )
    in_work, waiting = support.status(STAGES[1]), support.status(STAGES[2])
    start = OCTOBER.start.timestamp()
    months = [(SEPTEMBER.start.timestamp(), start), (start, OCTOBER.end.timestamp())]
    for number in range(2 * count):
        created = rng.uniform(*months[number % 2])
        tags = [rng.choice(["Приоритет", "По факту"])]
        if rng.random() < 0.15:
            tags.append(rng.choice(["Нестандартное", "Доработка"]))
        agent = rng.choice(agents)
        lead = fake.add_lead(
            f"Обращение {number}",
            pipeline_id=support.id,
            tags=tags,
            created_at=created,
            responsible_user_id=agent,
            company_id=rng.choice(companies) if rng.random() < 0.9 else None,
        )
        roll = rng.random()
        if roll < 0.05:
            continue  # nobody answered
        answered = created + rng.expovariate(1 / 5400)
        fake.add_event(lead, "outgoing_chat_message", created_by=agent, at=answered)
        if rng.random() < 0.2:
            fake.add_note(
                lead,
                f"Время: {rng.randint(5, 150)} мин — работа по обращению",
                created_by=agent,
                at=answered + 600,
            )
        if roll < 0.12:
            fake.move_lead(lead, waiting, by_user=agent, at=answered + 60)
        elif roll < 0.2:
            fake.move_lead(lead, in_work, by_user=agent, at=answered + 60)
        else:
            fake.move_lead(lead, in_work, by_user=agent, at=answered + 60)
            fake.move_lead(lead, 142, by_user=agent, at=answered + rng.expovariate(1 / 86400))
    for number in range(count // 10):
        fake.add_lead(f"Сделка {number}", pipeline_id=sales.id, created_at=start + 3600)


def kind_of(request: LoggedRequest) -> str:
    if request.path == "/api/v4/events":
        if any(key.startswith("filter[entity_id]") for key in parse_qs(request.query)):
            return "per-lead event calls"
        return "event feed pages"
    if request.path == "/api/v4/leads" and request.method == "GET":
        return "lead pages"
    if request.path == "/api/v4/leads/notes":
        return "note pages"
    if request.path == "/api/v4/companies":
        return "company pages"
    return "other (users, account setup)"


def stages() -> StageOptions:
    return StageOptions(
        pipeline=PIPELINE,
        hold_stages=(STAGES[2],),
        acceptance_stages=(STAGES[3],),
        ledgers=frozenset({Ledger.PACKAGES}),
    )


def make_report(
    client: AmoClient, base_url: str, out: Path, cache: Path | None
) -> tuple[ReadStats, Path, tuple[int, int]]:
    """October's report through ``client``, written to ``out``: its read stats and page."""
    setup = resolve_setup(
        stages(),
        client.pipelines(),
        list(client.iter_lead_custom_fields()),
        list(client.iter_company_custom_fields()),
    )
    sources = Sources(
        client,
        setup,
        default_policy(),
        LedgerOptions(packages=True, zone=MOSCOW),
        cache=cache,
        lead_url=f"{base_url}/leads/detail/{{id}}",
    )
    figures, stats = collect(sources, OCTOBER, NOW)
    counts = (len(figures.requests), len(figures.previous_requests))
    return stats, write_report(figures, out).page, counts


def run_report(
    fake: FakeAmoCRM,
    clock: VirtualClock,
    out: Path,
    label: str,
    cache: Path | None,
    *,
    trace: bool = False,
) -> Measured:
    timed = Timed(fake.transport)
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=timed,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )
    logged = len(fake.request_log)
    if trace:
        tracemalloc.start()
    began = time.perf_counter()
    stats, page, counts = make_report(client, fake.base_url, out, cache)
    wall = time.perf_counter() - began
    peak = 0.0
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    requests = fake.request_log[logged:]
    client.close()
    cached: set[int] = set()
    if cache is not None:
        store = StateStore(cache)
        cached = set(store.load_leads())
        store.close()
    asked = {
        int(value)
        for request in requests
        if kind_of(request) == "per-lead event calls"
        for key, values in parse_qs(request.query).items()
        if key.startswith("filter[entity_id]")
        for value in values
    }
    return Measured(
        label,
        stats,
        Counter(kind_of(r) for r in requests),
        wall,
        timed.seconds,
        requests=len(requests),
        cached_asked=len(asked & cached),
        page=page,
        peak_mb=peak,
        counts=counts,
    )


def fill_cache(fake: FakeAmoCRM, clock: VirtualClock, state: Path) -> None:
    """The worker's cycle, keeping the month's requests (closed ones too) in its cache."""
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )
    state.mkdir(parents=True, exist_ok=True)
    cycle = SyncCycle(
        client,
        StateStore(state / "state.sqlite3"),
        default_policy(),
        CycleOptions(
            stages=stages(),
            tasks=TaskOptions(reaction_text="{lead_name}", resolution_text="{lead_name}"),
            history_horizon=timedelta(days=75),
            closed_retention=timedelta(days=90),
            ledgers=LedgerOptions(packages=True, zone=MOSCOW),
        ),
        wall_clock=clock.now,
    )
    cycle.run(clock.now())
    cycle.store.close()
    client.close()


def memory_worker(count: int) -> dict[str, float]:
    """A cold report alone in this process, the fake amoCRM served from another one."""
    with served_fake(functools.partial(seed_account, count=count), epoch=NOW.timestamp()) as served:
        client = served.client()
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory(prefix="amo-sla-bench-report-") as scratch:
            stats, _, _ = make_report(client, served.base_url, Path(scratch) / "rss", None)
        client.close()
        return {
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_mb": baseline,
            "read_by_id": stats.read_by_id,
            "requests": client.requests_sent,
        }


def print_run(run: Measured) -> None:
    stats = run.stats
    print(f"\n{run.label}:")
    print(f"  requests of October: {run.counts[0]}, of September (the comparison): {run.counts[1]}")
    print(f"  requests spent: {run.requests} (at {RATE} req/s: {run.requests / RATE:.0f} s)")
    for kind, count in sorted(run.kinds.items()):
        print(f"    {kind:32} {count:6}")
    print(
        f"  histories: {stats.from_cache} from the cache, {stats.read_by_id} read by id "
        f"({stats.history_requests} requests); per-lead calls for cached leads: "
        f"{run.cached_asked}"
    )
    print(
        f"  wall time {run.wall:.1f} s, of it {run.in_fake:.1f} s inside the fake amoCRM: "
        f"compute {run.compute:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker)))
        return 0
    # First, while this process is small: a child starts with its parent's resident pages
    # counted in its peak RSS, and the fake's 10,000 leads below grow this one.
    alone = run_worker("bench.report", str(args.count))
    clock = VirtualClock(wall=NOW.timestamp())
    fake = FakeAmoCRM(
        clock=clock.time,
        monotonic=clock.monotonic,
        account_name="Поддержка",
        max_requests_per_second=float(RATE),
    )
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )
    began = time.perf_counter()
    seed_account(fake, client, args.count)
    client.close()
    print(
        f"bench.report: October 2025, {args.count} support requests in the fake amoCRM and as "
        "many in September "
        f"(seeded in {time.perf_counter() - began:.1f} s); report made on {NOW:%d.%m.%Y %H:%M}"
    )
    with tempfile.TemporaryDirectory(prefix="amo-sla-bench-report-") as scratch:
        root = Path(scratch)
        cold = run_report(fake, clock, root / "cold", "cold (no cache)", None)
        print_run(cold)
        fill_cache(fake, clock, root / "state")
        warm = run_report(
            fake, clock, root / "warm", "warm (the cycle's cache)", root / "state" / "state.sqlite3"
        )
        print_run(warm)
        size = cold.page.stat().st_size
        traced = run_report(fake, clock, root / "traced", "traced", None, trace=True)
    peak = traced.peak_mb
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nreport.html {size / 1024:.0f} KB; leads that could not be computed: "
          f"{len(cold.stats.skipped)}")  # fmt: skip
    print(
        f"peak memory of the report (cold, tracemalloc): {peak:.0f} MB; the whole process, "
        f"with the fake amoCRM and the worker's cycle that filled the cache: {rss:.0f} MB RSS"
    )
    print(
        f"peak RSS of the report (cold) in a process of its own, the fake amoCRM in another "
        f"over loopback HTTP: {alone['peak_mb']:.0f} MB (target < {MEMORY_TARGET_MB} MB); "
        f"{alone['baseline_mb']:.0f} MB of it before the report (interpreter and libraries); "
        f"{alone['requests']:,.0f} requests, {alone['read_by_id']:,.0f} histories read by id"
    )
    problems = []
    if max(cold.compute, warm.compute) >= COMPUTE_TARGET_S:
        problems.append(f"compute over {COMPUTE_TARGET_S} s")
    if alone["peak_mb"] >= MEMORY_TARGET_MB:
        problems.append(f"resident memory over {MEMORY_TARGET_MB} MB")
    if alone["requests"] != cold.requests:
        problems.append(
            f"the process of its own spent {alone['requests']:.0f} requests, "
            f"the cold run {cold.requests}"
        )
    if warm.cached_asked:
        problems.append(f"{warm.cached_asked} cached leads were read by id")
    if warm.stats.from_cache == 0:
        problems.append("the warm run found nothing in the cache")
    print(
        f"targets: compute < {COMPUTE_TARGET_S} s, memory < {MEMORY_TARGET_MB} MB RSS, no per-lead "
        f"call for a cached lead: {'missed: ' + '; '.join(problems) if problems else 'met'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
