"""A bench's memory figure: its code alone in a fresh interpreter, the fake amoCRM in another.

A bench that measures resident memory runs its measured part through :func:`run_worker`:
a fresh interpreter (``python -m <bench> --memory-worker …``) that prints its figures as
one JSON line, so no bench runner, fake amoCRM or seed shares its RSS. Inside, the worker
opens :func:`served_fake`: the fake amoCRM is seeded and served over loopback HTTP in a
process of its own, on a virtual clock (:class:`SharedClock`) that the two processes share,
so the client's limiter sleeps for nothing and the fake sees the spacing it would see for
real. :class:`VirtualClock` is the same clock for a bench that runs the fake in-process.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import httpx

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM

# Fills the fake before it is served, through the fake itself and an in-process client
# (for provisioning); a module-level function, or a partial of one, to reach the spawned
# process.
Seeder = Callable[[FakeAmoCRM, AmoClient], object]


def run_worker(module: str, *args: str) -> dict[str, Any]:
    """Runs ``python -m <module> --memory-worker <args>`` in a fresh interpreter, so nothing
    else shares its RSS, and returns the figures of the JSON object on its last line.

    Call it while the calling process is small: a child starts with its parent's resident
    pages counted in its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--memory-worker", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@dataclass
class VirtualClock:
    """A virtual clock that a fake amoCRM and a client in one process share: sleeping only
    moves it. ``sent``: when each request left the client, for benches that stamp them."""

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


class SharedClock:
    """A virtual clock shared with the fake's process: ``epoch`` plus the seconds slept."""

    def __init__(self, wall: Synchronized[float], mono: Synchronized[float], epoch: float) -> None:
        self.wall, self.mono, self.epoch = wall, mono, epoch

    def time(self) -> float:
        return self.epoch + self.wall.value

    def monotonic(self) -> float:
        return self.mono.value

    def sleep(self, seconds: float) -> None:
        self.wall.value += max(seconds, 0.0)
        self.mono.value += max(seconds, 0.0)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


@dataclass(frozen=True)
class ServedFake:
    """The fake amoCRM of another process, as a client in this one reaches it."""

    base_url: str
    token: str
    clock: SharedClock

    def client(self, transport: httpx.BaseTransport | None = None) -> AmoClient:
        """The real client over loopback HTTP, its limiter sleeping on the shared clock."""
        return AmoClient(
            self.base_url,
            LongLivedToken(self.token),
            transport=transport,
            sleep=self.clock.sleep,
            monotonic=self.clock.monotonic,
            clock=self.clock.time,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve_fake(
    seeder: Seeder,
    port: int,
    wall: Synchronized[float],
    mono: Synchronized[float],
    ready: multiprocessing.Queue[str],
    *,
    epoch: float,
) -> None:
    clock = SharedClock(wall, mono, epoch)
    fake = FakeAmoCRM(
        base_url=f"http://127.0.0.1:{port}",
        clock=clock.time,
        monotonic=clock.monotonic,
        max_requests_per_second=7.0,
    )
    # Seeded here, in-process: provisioning the fields goes through the fake's transport.
    client = AmoClient(
        fake.base_url,
        LongLivedToken(fake.long_lived_token),
        transport=fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        clock=clock.time,
    )
    seeder(fake, client)
    client.close()
    fake.serve(port=port)
    ready.put(fake.long_lived_token)
    while True:
        time.sleep(3600)


@contextmanager
def served_fake(seeder: Seeder, *, epoch: float, timeout: float = 900) -> Iterator[ServedFake]:
    """The fake amoCRM (7 req/s) seeded by ``seeder`` and served over loopback HTTP from a
    process of its own while the block runs; the shared clock starts at ``epoch``."""
    context = multiprocessing.get_context("spawn")
    wall, mono = context.Value("d", 0.0), context.Value("d", 1_000.0)
    ready: multiprocessing.Queue[str] = context.Queue()
    port = free_port()
    server = context.Process(
        target=_serve_fake,
        args=(seeder, port, wall, mono, ready),
        kwargs={"epoch": epoch},
        daemon=True,
    )
    server.start()
    try:
        token = ready.get(timeout=timeout)
        yield ServedFake(f"http://127.0.0.1:{port}", token, SharedClock(wall, mono, epoch))
    finally:
        server.terminate()
        server.join(timeout=10)
