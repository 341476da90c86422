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

Prints the requests of each by kind, the targets and the most requests the client sent
within any one second. Memory is measured apart, in a worker process of its own: the fake
amoCRM of the largest size runs in another process, served over loopback HTTP on a clock
the two processes share, and the worker process reports its peak resident set size over
the same three cycles. Exits 1 if a target is missed.

    .venv/bin/python -m bench.cycle_requests [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
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


def bench_cycle(client: AmoClient, scratch: Path, now: Callable[[], datetime]) -> SyncCycle:
    """The worker's cycle over the seeded pipeline, its state in ``scratch``."""
    return SyncCycle(
        client,
        StateStore(scratch / "state.sqlite3"),
        default_policy(),
        CycleOptions(
            stages=StageOptions(pipeline=PIPELINE, hold_stages=(STAGES[2],)),
            tasks=TaskOptions(reaction_text="Просрочена реакция #{lead_id}", resolution_text="-"),
        ),
        lock_path=scratch / "cycle.lock",
        wall_clock=now,
    )


def run_cycle(cycle: SyncCycle, fake: FakeAmoCRM, clock: VirtualClock, label: str) -> Measured:
    fake.reset_request_log()
    report = cycle.run(clock.now())
    kinds = Counter(kind_of(request) for request in fake.request_log)
    return Measured(label, report, kinds)


def bench(count: int) -> tuple[list[Measured], dict[str, float], bool]:
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
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="amo-sla-bench-") as scratch:
        cycle = bench_cycle(client, Path(scratch), clock.now)
        clock.sent.clear()
        began = time.perf_counter()
        first = run_cycle(cycle, fake, clock, "first full sync")
        figures["first_seconds"] = time.perf_counter() - began
        clock.sleep(300)
        reread = run_cycle(cycle, fake, clock, "next cycle (reads its own writes back)")
        clock.sleep(300)
        steady = run_cycle(cycle, fake, clock, "steady cycle, nothing changed")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Per-lead log lines would drown the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker)))
        return 0
    biggest = max(args.sizes)
    # First, while this process is small: a child starts with its parent's resident pages
    # counted in its peak RSS, and the in-process runs below grow this one past 1 GB.
    memory = measure_memory(biggest)
    all_met = True
    for count in args.sizes:
        runs, figures, met = bench(count)
        print_run(count, runs, figures)
        all_met = all_met and met
        print(f"  targets {'met' if met else 'MISSED'}")
    memory_met = memory["peak_mb"] < MEMORY_TARGET_MB
    all_met = all_met and memory_met
    print(
        f"\n== memory, {biggest:,} open leads, the worker in a process of its own "
        "(the fake amoCRM in another, over loopback HTTP)"
    )
    print(
        f"  worker process peak RSS over the three cycles: {memory['peak_mb']:.0f} MB "
        f"(target < {MEMORY_TARGET_MB} MB); {memory['baseline_mb']:.0f} MB of it before the "
        f"first cycle (interpreter and libraries); {memory['computed']:,} leads computed, "
        f"{memory['requests']:,} requests"
    )
    print(f"  target {'met' if memory_met else 'MISSED'}")
    return 0 if all_met else 1


# --- memory: the worker alone in its process ------------------------------------------------


def measure_memory(count: int) -> dict[str, float]:
    """Runs :func:`memory_worker` in a fresh interpreter, so nothing else shares its RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cycle_requests", "--memory-worker", str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve_fake(
    count: int,
    port: int,
    wall: Synchronized[float],
    mono: Synchronized[float],
    ready: multiprocessing.Queue[str],
) -> None:
    fake = FakeAmoCRM(
        base_url=f"http://127.0.0.1:{port}",
        clock=lambda: START.timestamp() + wall.value,
        monotonic=lambda: mono.value,
        max_requests_per_second=7.0,
    )
    seed(fake, count)
    fake.serve(port=port)
    ready.put(fake.long_lived_token)
    while True:
        time.sleep(3600)


class SharedClock:
    """The virtual clock of :class:`VirtualClock`, shared with the fake's process."""

    def __init__(self, wall: Synchronized[float], mono: Synchronized[float]) -> None:
        self.wall, self.mono = wall, mono

    def time(self) -> float:
        return START.timestamp() + self.wall.value

    def monotonic(self) -> float:
        return self.mono.value

    def sleep(self, seconds: float) -> None:
        self.wall.value += max(seconds, 0.0)
        self.mono.value += max(seconds, 0.0)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


def memory_worker(count: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    wall, mono = context.Value("d", 0.0), context.Value("d", 1_000.0)
    ready: multiprocessing.Queue[str] = context.Queue()
    port = _free_port()
    server = context.Process(target=_serve_fake, args=(count, port, wall, mono, ready), daemon=True)
    server.start()
    try:
        token = ready.get(timeout=900)
        clock = SharedClock(wall, mono)
        client = AmoClient(
            f"http://127.0.0.1:{port}",
            LongLivedToken(token),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            clock=clock.time,
        )
        provision(client, dry_run=False, say=lambda line: None)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory(prefix="amo-sla-bench-") as scratch:
            cycle = bench_cycle(client, Path(scratch), clock.now)
            computed = cycle.run(clock.now()).leads_computed
            for _ in range(2):
                clock.sleep(300)
                cycle.run(clock.now())
            cycle.store.close()
        client.close()
        return {
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_mb": baseline,
            "computed": computed,
            "requests": client.requests_sent,
        }
    finally:
        server.terminate()
        server.join(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
