"""Requests per sync cycle against the fake amoCRM, for 1,000 and 10,000 open leads.

The fake holds a support pipeline of N open requests (both CRMBP tariffs, some
non-standard, half answered by an agent, some with a bot's or a robot's noise, some on
hold), a few closed ones and a sales pipeline of N/10 leads. The worker runs through the
real client, whose 7 req/s limiter sleeps on a virtual clock: nothing waits for real, and
the fake and the limiter see the same spacing as against amoCRM. Three cycles:

* the first full sync (empty state directory);
* the next cycle, five minutes later, which reads back the leads the first one wrote
  (amoCRM's ``updated_at`` filter cannot tell the worker's own writes from others');
* a steady cycle, five minutes after that, with nothing changed.

Prints the requests of each by kind, the targets, the most requests the client sent
within any one second, and the peak memory of the 10,000-lead run. Exits 1 if a target
is missed.

    .venv/bin/python -m bench.cycle_requests [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, LoggedRequest
from sla.policy import default_policy
from worker.admin import provision
from worker.cycle import CycleOptions, CycleReport, SyncCycle
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions

MOSCOW = ZoneInfo("Europe/Moscow")
# A Sunday night: the business clocks stand still, so no deadline falls between the
# cycles and what a cycle spends is for reading, not for a breach that just happened.
START = datetime(2025, 11, 9, 3, 0, tzinfo=MOSCOW)
PIPELINE = "Техподдержка"
STAGES = ("Новое обращение", "В работе", "Ждём клиента")
SEED = 20_251_105
LEADS_PAGE, EVENTS_PAGE, WRITE_BATCH = 250, 100, 50
STEADY_TARGET = 3
RATE_TARGET = 7
MEMORY_TARGET_MB = 200
KINDS = ("lead pages", "event pages", "per-lead event calls", "writes", "task calls", "other")


@dataclass
class VirtualClock:
    wall: float
    mono: float = 1_000.0
    sent: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.wall += max(seconds, 0.0)
        self.mono += max(seconds, 0.0)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall, UTC)


class Stamping(httpx.BaseTransport):
    """Notes when each request leaves the client (after its limiter let it go)."""

    def __init__(self, inner: httpx.BaseTransport, clock: VirtualClock) -> None:
        self.inner = inner
        self.clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.sent.append(self.clock.monotonic())
        return self.inner.handle_request(request)


def seed(fake: FakeAmoCRM, count: int) -> None:
    rng = random.Random(SEED + count)
    support = fake.add_pipeline(PIPELINE, STAGES, unsorted=False)
    sales = fake.add_pipeline("Продажи", ["Первичный контакт", "Переговоры"])
    agents = [fake.add_user(f"Агент {n}") for n in range(10)]
    in_work, waiting = support.status(STAGES[1]), support.status(STAGES[2])
    now = START.timestamp()
    for number in range(count):
        created = now - rng.uniform(600, 10 * 86400)
        tags = [rng.choice(["Приоритет", "По факту"])]
        if rng.random() < 0.2:
            tags.append(rng.choice(["Нестандартное", "Доработка"]))
        agent = rng.choice(agents)
        lead = fake.add_lead(
            f"Обращение {number}",
            pipeline_id=support.id,
            tags=tags,
            created_at=created,
            responsible_user_id=agent,
        )
        if rng.random() < 0.1:
            fake.add_event(lead, "outgoing_chat_message", created_by=0, at=created + 30)
        if rng.random() < 0.5:
            answered = min(created + rng.uniform(300, 7200), now - 60)
            fake.add_event(lead, "outgoing_chat_message", created_by=agent, at=answered)
            if rng.random() < 0.2:
                fake.move_lead(lead, waiting, by_user=agent, at=answered + 60)
            elif rng.random() < 0.3:
                fake.move_lead(lead, in_work, by_user=agent, at=answered + 60)
        elif rng.random() < 0.05:
            fake.move_lead(lead, in_work, by_user=0, at=created + 60)
    for number in range(count // 100):
        created = now - rng.uniform(86400, 20 * 86400)
        lead = fake.add_lead(
            f"Закрытое {number}", pipeline_id=support.id, tags=["Приоритет"], created_at=created
        )
        fake.move_lead(lead, 142, by_user=agents[0], at=created + 3600)
    for number in range(count // 10):
        fake.add_lead(f"Сделка {number}", pipeline_id=sales.id, created_at=now - 86400)


def kind_of(request: LoggedRequest) -> str:
    if request.path == "/api/v4/leads" and request.method == "GET":
        return "lead pages"
    if request.path == "/api/v4/events":
        return "per-lead event calls" if "filter[entity_id]" in request.query else "event pages"
    if request.path == "/api/v4/leads" and request.method == "PATCH":
        return "writes"
    if request.path == "/api/v4/tasks":
        return "task calls"
    return "other"


def worker_held(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated that no frame of the fake amoCRM allocated."""
    return sum(
        stat.size
        for stat in snapshot.statistics("traceback")
        if not any("/amo_client/fake/" in frame.filename for frame in stat.traceback)
    )


def max_in_any_second(times: Sequence[float]) -> int:
    window: deque[float] = deque()
    most = 0
    for moment in sorted(times):
        window.append(moment)
        while window[0] <= moment - 1.0:
            window.popleft()
        most = max(most, len(window))
    return most


@dataclass
class Measured:
    label: str
    report: CycleReport
    kinds: Counter[str]


def run_cycle(cycle: SyncCycle, fake: FakeAmoCRM, clock: VirtualClock, label: str) -> Measured:
    fake.reset_request_log()
    report = cycle.run(clock.now())
    kinds = Counter(kind_of(request) for request in fake.request_log)
    return Measured(label, report, kinds)


def bench(count: int, *, trace_memory: bool) -> tuple[list[Measured], dict[str, float], bool]:
    clock = VirtualClock(wall=START.timestamp())
    fake = FakeAmoCRM(clock=clock.time, monotonic=clock.monotonic, max_requests_per_second=7.0)
    seed(fake, count)
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=Stamping(fake.transport, clock),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )
    provision(client, dry_run=False, say=lambda line: None)
    policy = default_policy()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="amo-sla-bench-") as scratch:
        cycle = SyncCycle(
            client,
            StateStore(Path(scratch) / "state.sqlite3"),
            policy,
            CycleOptions(
                stages=StageOptions(pipeline=PIPELINE, hold_stages=(STAGES[2],)),
                tasks=TaskOptions(
                    reaction_text="Просрочена реакция #{lead_id}", resolution_text="-"
                ),
            ),
            lock_path=Path(scratch) / "cycle.lock",
            wall_clock=clock.now,
        )
        if trace_memory:
            tracemalloc.start(4)
        clock.sent.clear()
        began = time.perf_counter()
        first = run_cycle(cycle, fake, clock, "first full sync")
        figures["first_seconds"] = time.perf_counter() - began
        clock.sleep(300)
        reread = run_cycle(cycle, fake, clock, "next cycle (reads its own writes back)")
        clock.sleep(300)
        steady = run_cycle(cycle, fake, clock, "steady cycle, nothing changed")
        if trace_memory:
            figures["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            figures["worker_held_mb"] = worker_held(tracemalloc.take_snapshot()) / 2**20
            tracemalloc.stop()
        figures["max_per_second"] = max_in_any_second(clock.sent)
        figures["virtual_seconds"] = clock.sent[-1] - clock.sent[0] if clock.sent else 0.0
        figures["requests"] = len(clock.sent)
        cycle.store.close()
    client.close()
    open_leads = count
    changed = first.report.leads_written
    events = first.kinds["event pages"]
    tasks = first.kinds["task calls"]
    setup_calls = first.kinds["other"]
    figures["full_target"] = (
        math.ceil(open_leads / LEADS_PAGE)
        + 1  # the first start's read of recently closed requests
        + events
        + math.ceil(changed / WRITE_BATCH)
        + setup_calls
        + tasks
    )
    met = (
        first.report.requests <= figures["full_target"]
        and first.kinds["per-lead event calls"] == 0
        and steady.report.requests <= STEADY_TARGET
        and steady.report.leads_written == 0
        and reread.report.leads_written == 0
        and figures["max_per_second"] <= RATE_TARGET
    )
    return [first, reread, steady], figures, met


def print_run(count: int, runs: list[Measured], figures: dict[str, float]) -> None:
    first = runs[0]
    computed = first.report.leads_computed
    print(
        f"\n== {count:,} open leads ({computed:,} computed: "
        f"{computed - count:,} more were closed in the last days)"
    )
    print(f"  {'cycle':<40} {'total':>6}  " + "  ".join(f"{k:>{len(k)}}" for k in KINDS))
    for run in runs:
        cells = "  ".join(f"{run.kinds[k]:>{len(k)}}" for k in KINDS)
        print(f"  {run.label:<40} {run.report.requests:>6}  {cells}")
    print(
        f"  first sync: wrote {first.report.leads_written:,} leads, "
        f"{first.report.tasks_created:,} breach tasks; "
        f"{figures['first_seconds']:.1f} s wall time here"
    )
    print(
        "  full-sync target: ceil(open/250) lead pages + 1 closed-leads read + event pages "
        f"+ ceil(changed/50) writes + setup calls + task calls = {figures['full_target']:.0f}; "
        f"spent {first.report.requests}"
    )
    print(f"  steady target: <= {STEADY_TARGET}; spent {runs[2].report.requests}")
    print(
        f"  rate: at most {figures['max_per_second']:.0f} requests in any 1 s "
        f"(target <= {RATE_TARGET}); {figures['requests']:.0f} requests over "
        f"{figures['virtual_seconds']:.1f} s of (virtual) time"
    )
    if "tracemalloc_peak_mb" in figures:
        print(
            f"  memory: peak {figures['tracemalloc_peak_mb']:.1f} MB traced during the three "
            f"cycles (worker and the in-process fake together; target < {MEMORY_TARGET_MB} MB); "
            f"{figures['worker_held_mb']:.1f} MB held by the worker after them"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args(argv)
    # Per-lead log lines would drown the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    all_met = True
    biggest = max(args.sizes)
    for count in args.sizes:
        runs, figures, met = bench(count, trace_memory=count == biggest)
        print_run(count, runs, figures)
        if count == biggest:
            met = met and figures["tracemalloc_peak_mb"] < MEMORY_TARGET_MB
        all_met = all_met and met
        print(f"  targets {'met' if met else 'MISSED'}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess max RSS: {rss_mb:.0f} MB (the fake's {biggest:,}-lead account included)")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
