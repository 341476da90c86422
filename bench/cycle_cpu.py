"""CPU and memory of the worker's cycles at 1,000, 10,000 and 50,000 open requests.

Each size and world (no ledgers; hour packages and quotas on) runs in a fresh worker
process of its own, the fake amoCRM seeded as in ``bench.cycle_requests`` and served from
another process over loopback HTTP on a shared virtual clock (the client's limiter sleeps
for nothing). The worker process runs:

* the first full sync, then the cycle that reads its own writes back (5 minutes later);
* a steady cycle (5 minutes later, nothing changed);
* a wake-up cycle at the earliest instant a state changes by itself (a breach, an at-risk
  share reached), which the steady cycle reported as its next change;
* a full reconcile (the one the worker runs every six hours), right after.

It prints the CPU seconds of the worker's process for each (``time.process_time``), the
requests of the steady cycle, the leads each cycle computed, and the peak resident set
size of the worker process over all of them. Exits 1 if a target is missed: steady and
wake-up cycles at most 0.05 s of CPU at 10,000 and 0.15 s at 50,000; steady requests at
most 2 without the ledgers and 4 with them; peak RSS under 300 MB at 50,000 with them.

    .venv/bin/python -m bench.cycle_cpu [--sizes 1000 10000 50000]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import structlog

from bench.cycle_requests import START, bench_cycle, seed
from bench.fake_process import run_worker, served_fake
from worker.cycle import LAST_FULL_SYNC, CycleReport, SyncCycle

STEADY_REQUESTS = {False: 2, True: 4}
CPU_TARGETS = {10_000: 0.05, 50_000: 0.15}  # seconds, steady and wake-up cycles
MEMORY_TARGET_MB = {50_000: 300}  # with the ledgers
FIGURES = ("first", "steady", "wakeup", "full")


class Recording(httpx.BaseTransport):
    """Loopback HTTP that notes each request's method, path and answer."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.seen.append(f"{request.method} {request.url.path} {response.status_code}")
        return response


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(cycle: SyncCycle, now: datetime) -> tuple[CycleReport, float]:
    began = time.process_time()
    report = cycle.run(now)
    return report, time.process_time() - began


def memory_worker(count: int, *, ledgers: bool) -> dict[str, Any]:
    """The measured part, alone in its process: four kinds of cycle over one account."""
    seeder = functools.partial(seed, count=count, ledgers=ledgers)
    figures: dict[str, float] = {}
    with served_fake(seeder, epoch=START.timestamp(), timeout=3600) as served:
        clock = served.clock
        recording = Recording()
        client = served.client(recording)
        figures["baseline_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory(prefix="amo-sla-bench-") as scratch:
            cycle = bench_cycle(client, Path(scratch), clock.now, ledgers=ledgers)
            first, figures["first_cpu"] = timed(cycle, clock.now())
            figures["first_peak_mb"] = peak_mb()
            figures["first_requests"] = first.requests
            figures["first_computed"] = first.leads_computed
            clock.sleep(300)
            cycle.run(clock.now())  # reads the first sync's writes back
            clock.sleep(300)
            recording.seen.clear()
            steady, figures["steady_cpu"] = timed(cycle, clock.now())
            steady_calls = list(recording.seen)
            figures["steady_requests"] = steady.requests
            figures["steady_peak_mb"] = peak_mb()
            figures["steady_computed"] = steady.leads_computed
            figures["steady_written"] = steady.leads_written
            wake_at = steady.next_change_at
            assert wake_at is not None, "no state changes by itself: nothing to wake up for"
            clock.sleep((wake_at - clock.now()).total_seconds())
            # The wake-up cycle, not the reconcile: as if one had just run.
            cycle.store.set_int(LAST_FULL_SYNC, int(clock.now().timestamp()) - 60)
            wakeup, figures["wakeup_cpu"] = timed(cycle, clock.now())
            figures["wakeup_requests"] = wakeup.requests
            figures["wakeup_computed"] = wakeup.leads_computed
            figures["wakeup_written"] = wakeup.leads_written
            clock.sleep(5)
            cycle.store.set_int(LAST_FULL_SYNC, 0)  # due: as every six hours
            full, figures["full_cpu"] = timed(cycle, clock.now())
            assert full.full_sync
            figures["full_requests"] = full.requests
            figures["full_computed"] = full.leads_computed
            figures["full_written"] = full.leads_written
            cycle.store.close()
        client.close()
    figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**figures, "steady_calls": steady_calls}


def misses(count: int, ledgers: bool, figures: dict[str, Any]) -> list[str]:
    found = []
    if figures["steady_requests"] > STEADY_REQUESTS[ledgers]:
        calls = "; ".join(figures.get("steady_calls", ()))
        found.append(f"steady requests {figures['steady_requests']:.0f} ({calls})")
    if (limit := CPU_TARGETS.get(count)) is not None:
        for kind in ("steady", "wakeup"):
            if figures[f"{kind}_cpu"] > limit:
                found.append(f"{kind} CPU {figures[f'{kind}_cpu']:.3f} s > {limit} s")
    memory = MEMORY_TARGET_MB.get(count)
    if ledgers and memory is not None and figures["peak_mb"] >= memory:
        found.append(f"peak RSS {figures['peak_mb']:.0f} MB >= {memory} MB")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ledgers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, ledgers=args.ledgers)))
        return 0
    print(
        "CPU seconds of the worker's process per cycle (leads computed in it), the fake amoCRM "
        "in another process"
    )
    print(
        f"{'open requests':>13} {'ledgers':>7} | {'first sync':>16} | {'steady':>14} | "
        f"{'wake-up':>14} | {'full reconcile':>16} | {'steady req':>10} | {'peak RSS':>8}"
    )
    all_met = True
    for ledgers in (False, True):
        for count in args.sizes:
            figures = run_worker("bench.cycle_cpu", str(count), *(("--ledgers",) * ledgers))
            cells = [
                f"{figures[f'{kind}_cpu']:7.3f} s ({figures[f'{kind}_computed']:>6,.0f})"
                for kind in FIGURES
            ]
            print(
                f"{count:>13,} {'on' if ledgers else 'off':>7} | {cells[0]:>16} | "
                f"{cells[1]:>14} | {cells[2]:>14} | {cells[3]:>16} | "
                f"{figures['steady_requests']:>10.0f} | {figures['peak_mb']:>5.0f} MB"
            )
            found = misses(count, ledgers, figures)
            if found:
                all_met = False
                print(f"{'':>13} targets MISSED: {'; '.join(found)}")
    print(
        "targets: steady and wake-up CPU <= 0.05 s at 10,000 and <= 0.15 s at 50,000; steady "
        "requests <= 2 (<= 4 with the ledgers); peak RSS < 300 MB at 50,000 with the ledgers: "
        + ("met" if all_met else "MISSED")
    )
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
