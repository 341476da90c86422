"""Webhooks under load: 2,000 hooks in 20 s against the real server, with agents replying.

The worker runs as ``run`` assembles it (:mod:`bench.webhook_rig`): the sync cycle on the
scheduler with a 10-minute poll, the HTTP server on a loopback port, the fake amoCRM on real
clocks posting its own webhooks there whenever its state changes. Eight threads send 2,000
webhook POSTs over loopback within 20 s (amoCRM's form, one of the account's leads each),
while an agent replies to one request every two seconds in the fake; each reply reaches
the worker only as one more hook among the 2,000.

Prints, measured in this one run:

* the endpoint's answer time (median, p99, max) and how many hooks were answered 200;
* how many cycles ran (the triggers are debounced and rate-capped: a handful, not 2,000);
* the most requests amoCRM received in any one second, and how many got 429;
* the reply-to-field latency (an agent's note to «SLA: реакция» in the lead), median and max.

Targets: p99 under 50 ms, every hook 200, at most 7 requests in any second, every reply
in its lead's fields. Exits 1 if one is missed.

``--leads N`` seeds the support pipeline with N open requests (12 by default) before the
worker's first sync; the run starts after it, after the cycle that reads its writes back,
and after the two minutes a read still reaches back to them: the replies then land among
N tracked requests of an account in its steady state.

    .venv/bin/python -m bench.webhooks [--hooks 2000] [--seconds 20] [--threads 8] [--leads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.webhook_rig import Rig, live_rig
from worker.logs import configure_logging

P99_TARGET_MS = 50.0
MAX_REQUESTS_PER_SECOND = 7
REPLY_EVERY_S = 2.0
REPLY_WAIT_S = 15.0
DEFAULT_LEADS = 12
SETTLE_S = 125.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def send_hooks(
    rig: Rig, count: int, seconds: float, offset: int, step: int
) -> tuple[list[float], list[int]]:
    """Hooks number offset, offset + step, ... each at its moment of the run; answer times
    (seconds) and statuses."""
    timings: list[float] = []
    statuses: list[int] = []
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    start = time.monotonic()
    with httpx.Client(timeout=5.0) as client:
        for number in range(offset, count, step):
            lead_id = rig.leads[number % len(rig.leads)]
            body = urlencode(
                {
                    "leads[update][0][id]": str(lead_id),
                    "leads[update][0][last_modified]": str(int(time.time())),
                    "account[id]": str(rig.fake.account_id),
                    "account[subdomain]": rig.fake.subdomain,
                }
            )
            due = start + seconds * number / count
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            try:
                status = client.post(rig.hook_url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            timings.append(time.perf_counter() - sent)
            statuses.append(status)
    return timings, statuses


def replies(rig: Rig, seconds: float, latencies: list[float | None]) -> None:
    """An agent answers one request every REPLY_EVERY_S; each reply's latency to the field."""
    watchers: list[threading.Thread] = []
    lock = threading.Lock()

    def watch(lead_id: int, replied: float) -> None:
        shown = rig.wait_reacted(lead_id, REPLY_WAIT_S)
        with lock:
            latencies.append(None if shown is None else shown - replied)

    start = time.monotonic()
    for number, lead_id in enumerate(rig.leads):
        due = start + 1.0 + number * REPLY_EVERY_S
        if due > start + seconds:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        replied = rig.reply(lead_id)
        watcher = threading.Thread(target=watch, args=(lead_id, replied), daemon=True)
        watcher.start()
        watchers.append(watcher)
    for watcher in watchers:
        watcher.join()


def settle(rig: Rig, leads: int) -> None:
    """Wait for the steady state: the cycle that reads the first sync's writes back, and
    the two minutes in which a cycle's read still reaches back to those writes (the cursor
    steps back a minute, from a minute back)."""
    rig.service.trigger("bench")
    rig.wait_cycles(2, timeout=60.0 + leads / 50)
    time.sleep(SETTLE_S)
    rig.service.trigger("bench")
    rig.wait_cycles(3, timeout=60.0 + leads / 50)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hooks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--leads", type=int, default=DEFAULT_LEADS)
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING")

    with (
        tempfile.TemporaryDirectory() as state_dir,
        live_rig(Path(state_dir), leads=args.leads) as rig,
    ):
        if args.leads > DEFAULT_LEADS:
            settle(rig, args.leads)
        since = time.monotonic()
        cycles_before = rig.service.cycles_started
        results: list[tuple[list[float], list[int]]] = []
        latencies: list[float | None] = []

        def sender(offset: int) -> None:
            results.append(send_hooks(rig, args.hooks, args.seconds, offset, args.threads))

        threads = [
            threading.Thread(target=sender, args=(offset,)) for offset in range(args.threads)
        ]
        threads.append(threading.Thread(target=replies, args=(rig, args.seconds, latencies)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - since
        cycles = rig.service.cycles_started - cycles_before
        busiest = rig.fake.busiest_second(since)
        limited = rig.fake.rate_limited_total
        hooks_from_fake = len(rig.fake.webhook_deliveries)

    timings = [t * 1000 for result in results for t in result[0]]
    statuses = [s for result in results for s in result[1]]
    answered = statuses.count(200)
    p99 = percentile(timings, 0.99)
    shown = [latency for latency in latencies if latency is not None]
    print(
        f"bench.webhooks: {len(statuses)} hooks from {args.threads} threads in {took:.1f} s, "
        f"{args.leads:,} open requests tracked"
    )
    print(
        f"  answer time: median {statistics.median(timings):.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(timings):.1f} ms (target p99 < {P99_TARGET_MS:.0f} ms)"
    )
    print(f"  answered 200: {answered} of {len(statuses)}")
    print(f"  cycles run: {cycles}")
    print(
        f"  amoCRM requests in the busiest second: {busiest} (limit {MAX_REQUESTS_PER_SECOND}); "
        f"429 answers: {limited}"
    )
    print(f"  hooks the fake amoCRM sent on its own changes: {hooks_from_fake}")
    if shown:
        print(
            f"  reply to field: {len(shown)} of {len(latencies)} replies, median "
            f"{statistics.median(shown):.2f} s, max {max(shown):.2f} s"
        )
    missed = []
    if p99 >= P99_TARGET_MS:
        missed.append("p99 answer time")
    if answered != len(statuses) or len(statuses) != args.hooks:
        missed.append("hooks answered 200")
    if busiest > MAX_REQUESTS_PER_SECOND or limited:
        missed.append("amoCRM's rate limit")
    if not latencies or len(shown) != len(latencies):
        missed.append("every reply in its fields")
    print("targets: " + ("all met" if not missed else "MISSED: " + ", ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
