"""2,000 requests through AmoClient at full speed on a loaded machine, against the fake amoCRM
served over HTTP by another process, enforcing 7 req/s.

The fake runs in a process of its own on real time and stamps every request as its rate
limit counts it (its monotonic clock, which on Linux is the client's too), so the bench
sees the requests exactly as the fake saw them. ``--load N`` (2 by default) runs N more
processes that keep a core busy each, so the client, the fake and the loopback between
them are all scheduled late, as on a busy machine. The client drives a mix of reads (the
account, a lead by id, a page of leads, events, pipelines) from ``--threads`` threads (1,
as the worker's cycle spends its requests).

Prints the requests, the 429s the fake answered, the most requests the fake saw in any
sliding second, the requests/s achieved, and where the time between the limiter and the
fake goes: from the limiter's decision to the send, from the send to the fake's count, from
the count to the answer back (with one thread, the n-th answered slot is the n-th request
the fake counted). Target: no 429 and at most 7 in any second.

    .venv/bin/python -m bench.client_load [--requests 2000] [--load 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM
from amo_client.ratelimit import Slot
from bench.client_rate import burn, drive, free_port, seed, workload

LIMIT = 7  # amoCRM's requests per second, and the fake's


def most_in_one_second(stamps: Sequence[float]) -> int:
    """The most stamps within any one second (a window [t, t + 1) of the sorted stamps)."""
    ordered = sorted(stamps)
    return max(
        (bisect.bisect_left(ordered, at + 1.0) - i for i, at in enumerate(ordered)), default=0
    )


def closest_span(stamps: Sequence[float], count: int = LIMIT + 1) -> float | None:
    """The shortest time spanned by ``count`` consecutive stamps (under a second: the last of
    them was one too many for amoCRM)."""
    ordered = sorted(stamps)
    spans = [ordered[i + count - 1] - ordered[i] for i in range(len(ordered) - count + 1)]
    return min(spans, default=None)


def spread(values: Sequence[float]) -> str:
    """Median, 99th percentile and maximum, in milliseconds."""
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    median = ordered[len(ordered) // 2]
    return (
        f"median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms"
    )


class _StampingClock:
    """The fake's monotonic clock, keeping each reading: its rate limit reads it once per
    request, under its lock, as it counts the request."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self) -> float:
        now = time.monotonic()
        self.stamps.append(now)
        return now


def _serve_fake(port: int, control: Connection) -> None:
    """The fake amoCRM's process: seeds it, serves it, then answers ``reset`` (forget the
    requests so far) and ``report`` (the stamps and counts) until ``stop``."""
    clock = _StampingClock()
    fake = FakeAmoCRM(
        base_url=f"http://127.0.0.1:{port}", monotonic=clock, max_requests_per_second=LIMIT
    )
    lead_ids = seed(fake)
    server = fake.serve(port=port)
    control.send((fake.long_lived_token, lead_ids))
    while (command := control.recv()) != "stop":
        if command == "reset":
            fake.reset_request_log()
            clock.stamps.clear()
            control.send(None)
        elif command == "report":
            control.send(
                {
                    "stamps": list(clock.stamps),
                    "requests": fake.requests_total,
                    "limited": fake.rate_limited_total,
                    "statuses": fake.status_counts,
                }
            )
    server.close()


@dataclass
class Run:
    threads: int
    calls: int
    elapsed: float
    failures: int
    slots: list[Slot]
    fake: dict[str, Any]


def measure(requests: int, threads: int, rate: float) -> Run:
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    port = free_port()
    server = context.Process(target=_serve_fake, args=(port, there), daemon=True)
    server.start()
    try:
        if not here.poll(120):
            raise RuntimeError("the fake amoCRM's process did not start serving")
        token, lead_ids = here.recv()
        slots: list[Slot] = []
        amo = AmoClient(
            f"http://127.0.0.1:{port}",
            LongLivedToken(token),
            max_requests_per_second=rate,
            on_slot=slots.append,
        )
        amo.account()  # warm the connection pool outside the timed run
        here.send("reset")
        here.recv()
        slots.clear()
        elapsed, failures = drive(workload(amo, lead_ids), requests, threads)
        amo.close()
        here.send("report")
        seen: dict[str, Any] = here.recv()
        here.send("stop")
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
    return Run(threads, requests, elapsed, len(failures), slots, seen)


def report(run: Run, rate: float, load: int) -> bool:
    stamps: list[float] = run.fake["stamps"]
    limited: int = run.fake["limited"]
    most = most_in_one_second(stamps)
    closest = closest_span(stamps)
    print(
        "fake amoCRM enforcing 7 req/s on real time, served over loopback HTTP by another process"
    )
    print(f"client cap: {rate:g} req/s, {run.threads} thread(s)")
    print(f"other processes burning a core each: {load}")
    print(f"calls: {run.calls}, failed: {run.failures}")
    print(
        f"requests: {run.fake['requests']} (statuses {dict(sorted(run.fake['statuses'].items()))})"
    )
    print(f"429s seen by the fake: {limited}")
    print(f"most requests the fake saw in any 1-second window: {most}")
    if closest is not None:
        print(
            f"closest {LIMIT + 1} consecutive requests at the fake: {closest:.4f} s first to last"
        )
    print(f"achieved: {run.fake['requests'] / run.elapsed:.2f} req/s over {run.elapsed:.1f} s")
    # (decided, sent, answered) of each request, in the order the answers came back.
    timings = [
        (slot.left, slot.sent, slot.answered)
        for slot in sorted(run.slots, key=lambda slot: slot.answered or 0.0)
        if slot.sent is not None and slot.answered is not None
    ]
    print(f"limiter's decision to the send: {spread([sent - left for left, sent, _ in timings])}")
    if run.threads == 1 and len(timings) == len(stamps):
        # One request at a time: the n-th answer is that of the n-th request the fake counted.
        pairs = list(zip(timings, stamps, strict=True))
        print(f"send to the fake's count: {spread([at - sent for (_, sent, _), at in pairs])}")
        print(
            "the fake's count to the answer back: "
            f"{spread([answered - at for (_, _, answered), at in pairs])}"
        )
        print(
            "limiter's decision to the fake's count: "
            f"{spread([at - left for (left, _, _), at in pairs])}"
        )
    met = limited == 0 and most <= LIMIT and run.failures == 0
    print(f"target (0 429s, at most {LIMIT} in any second): {'met' if met else 'NOT met'}\n")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rate", type=float, default=7.0, help="the client's cap, req/s")
    parser.add_argument("--load", type=int, default=2, help="processes burning a core each")
    arguments = parser.parse_args(argv)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(arguments.load)]
    for burner in burners:
        burner.start()
    try:
        run = measure(arguments.requests, arguments.threads, arguments.rate)
    finally:
        stop.set()
        for burner in burners:
            burner.join()
    return 0 if report(run, arguments.rate, arguments.load) else 1


if __name__ == "__main__":
    raise SystemExit(main())
