"""300 requests through AmoClient as fast as it goes, against the fake enforcing 7 req/s.

The fake amoCRM is served over loopback HTTP on real time (its 7 req/s window reads the
real monotonic clock), so every request pays real connection, parsing and scheduling
costs between the client's rate limiter and the server's counter, as it would against
amoCRM. One thread (as the worker's cycle spends its requests), then four sharing one
client, drive a mix of reads (the account, a lead by id, a page of leads, events,
pipelines). Prints the achieved rate and how many
requests the fake answered with 429 (the fake counts each request as it arrives, in a
sliding second: a 429 is an eighth request within one). Target: no 429 at 6.5 req/s or
more from one thread, no 429 from four (each request's second runs from its answer, so
requests in flight together pay their latency: the four threads' rate is printed, not
aimed at). ``--load N`` runs N other processes that keep a core busy each, so the client, the
fake and the loopback between them are scheduled late, as on a loaded machine.

    .venv/bin/python -m bench.client_rate [--load 2]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Sequence

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM

TARGET_RATE = 6.5


def free_port() -> int:
    # The fake writes absolute _links, so it has to know its own address before it serves.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def seed(fake: FakeAmoCRM) -> list[int]:
    support = fake.add_pipeline("Поддержка", ["Новое", "В работе", "Ждём клиента"])
    return [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(120)]


def workload(amo: AmoClient, lead_ids: list[int]) -> list[Callable[[], object]]:
    """One request each: reads the worker makes every cycle."""
    return [
        amo.account,
        lambda: amo.lead(lead_ids[0]),
        lambda: list(amo.iter_leads()),  # 120 leads: one page
        lambda: list(amo.iter_events(entity_ids=lead_ids[:10])),
        amo.pipelines,
    ]


def drive(
    workload: list[Callable[[], object]], count: int, threads: int
) -> tuple[float, list[BaseException]]:
    """Make ``count`` calls from ``threads`` threads; the seconds taken and the errors raised."""
    calls = itertools.cycle(workload)
    turn = threading.Lock()
    left = count
    failures: list[BaseException] = []

    def worker() -> None:
        nonlocal left
        while True:
            with turn:
                if left <= 0:
                    return
                left -= 1
                call = next(calls)
            try:
                call()
            except Exception as error:
                failures.append(error)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.monotonic() - began, failures


def burn(stop: object) -> None:
    """Keep one core busy until ``stop`` (a multiprocessing Event) is set."""
    while not stop.is_set():  # type: ignore[attr-defined]
        sum(range(10_000))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rate", type=float, default=7.0, help="the client's cap, req/s")
    parser.add_argument(
        "--in-process", action="store_true", help="use the fake's httpx transport, not loopback"
    )
    parser.add_argument("--load", type=int, default=0, help="processes burning a core each")
    arguments = parser.parse_args(argv)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(arguments.load)]
    for burner in burners:
        burner.start()
    try:
        return max(measure(arguments, threads) for threads in arguments.threads)
    finally:
        stop.set()
        for burner in burners:
            burner.join()


def measure(arguments: argparse.Namespace, threads: int) -> int:

    port = free_port()
    fake = FakeAmoCRM(base_url=f"http://127.0.0.1:{port}", max_requests_per_second=7.0)
    lead_ids = seed(fake)
    server = None if arguments.in_process else fake.serve(port=port)
    amo = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport if arguments.in_process else None,
        max_requests_per_second=arguments.rate,
    )
    amo.account()  # warm the connection pool outside the timed run
    fake.reset_request_log()
    sent_before = amo.requests_sent
    elapsed, failures = drive(workload(amo, lead_ids), arguments.requests, threads)
    amo.close()
    if server is not None:
        server.close()

    sent = amo.requests_sent - sent_before
    limited = fake.rate_limited_total
    rate = fake.requests_total / elapsed
    via = "in-process transport" if arguments.in_process else f"loopback HTTP {fake.base_url}"
    print(f"fake amoCRM enforcing 7 req/s on real time, via {via}")
    print(f"client cap: {arguments.rate:g} req/s, {threads} thread(s)")
    print(f"other processes burning a core each: {arguments.load}")
    print(f"calls: {arguments.requests}, requests sent: {sent}, answered: {fake.requests_total}")
    print(f"elapsed: {elapsed:.2f} s")
    print(f"achieved: {rate:.2f} req/s")
    print(f"429s: {limited}")
    print(f"statuses: {dict(sorted(fake.status_counts.items()))}")
    print(f"failed calls: {len(failures)}")
    if threads == 1:
        met = limited == 0 and rate >= TARGET_RATE and not failures
        target = f"0 429s at >= {TARGET_RATE} req/s"
    else:
        met = limited == 0 and not failures
        target = "0 429s"
    print(f"target ({target}): {'met' if met else 'NOT met'}\n")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
