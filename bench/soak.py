"""Soak: across faults, crashes and kill -9 the worker writes nothing twice and loses nothing.

The fake amoCRM, served over loopback HTTP from this process, holds a support pipeline of
``--leads`` requests of both tariffs (answered, on hold, closed, awaiting acceptance, with
agreed dates, bots' noise) on the wall clock, under ``bench/soak_policy.toml``: CRMBP's
tariffs with targets of minutes, so requests breach while the soak runs. Agents work the
pipeline in a thread at random instants throughout. The real worker runs as ``python -m
worker once`` subprocesses configured through the environment, on one state directory:

1. faults: ``--fault-rate`` of all requests get a 429, a 5xx, a timeout, a connection
   dropped after amoCRM applied the request, a refused connection or an odd 2xx answer;
   each ``once`` is sent SIGKILL after a random 0..``--kill-window-ms`` ms, until
   ``--kills`` of them died that way (a run that finishes first is counted, not killed);
2. the agents stop, the faults stop, and ``once`` runs until one run writes nothing;
3. every lead of the pipeline is compared with the engine run on the lead and its whole
   history as the fake holds them (the oracle a fault-free run is checked against in the
   tests), breach tasks are counted by lead and marker, acceptance notes by lead.

Prints the leads whose fields differ from the engine's, the duplicate and the missing
breach tasks and acceptance notes, and the counts; exits 1 when any of those is not zero.

    .venv/bin/python -m bench.soak [--kills 100 --fault-rate 0.1 --leads 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import FakeAmoCRM, FakeServer
from bench.soak_kit import (
    ACCEPTANCE,
    HOLD,
    PIPELINE,
    Account,
    Agents,
    Verdict,
    judge,
    make_account,
    seed_requests,
)
from sla.policy import load_policy
from worker.admin import provision
from worker.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
POLICY_FILE = Path(__file__).with_name("soak_policy.toml")
WRITES = {"PATCH", "POST"}


@dataclass(frozen=True)
class Run:
    """One ``once`` process: how it ended and what it sent."""

    number: int
    started: float
    finished: float
    killed: bool
    exit_code: int | None
    requests: int
    writes: int
    failure: str | None  # the error type of a run that exited non-zero

    @property
    def phase(self) -> str:
        """Where a killed run was when it died."""
        if self.requests == 0:
            return "before its first request"
        return "after sending a write" if self.writes else "while reading"


@dataclass(frozen=True)
class Soak:
    account: Account
    server: FakeServer
    state_dir: Path
    logs: Path
    supervisor: int

    def environment(self) -> dict[str, str]:
        keep = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AMO_", "SLA_"))
        }
        return {
            **keep,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), keep.get("PYTHONPATH")])),
            "AMO_BASE_URL": self.server.url,
            "AMO_LONG_LIVED_TOKEN": self.account.fake.long_lived_token,
            "SLA_PIPELINE": PIPELINE,
            "SLA_HOLD_STAGES": HOLD,
            "SLA_ACCEPTANCE_STAGES": ACCEPTANCE,
            "SLA_POLICY_FILE": str(POLICY_FILE),
            "SLA_SUPERVISOR_USER_ID": str(self.supervisor),
            "SLA_STATE_DIR": str(self.state_dir),
            "SLA_LOG_FORMAT": "json",
        }

    def once(self, number: int, kill_after: float | None) -> Run:
        """Run ``once``; with ``kill_after`` (seconds) SIGKILL it then if it still runs."""
        fake = self.account.fake
        seen = len(fake.request_log)
        log_path = self.logs / f"{number:04d}.log"
        started = time.time()
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker", "once"],
                env=self.environment(),
                cwd=self.logs,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            killed = False
            try:
                process.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                killed = True
            code = process.wait()
        finished = time.time()
        sent = fake.request_log[seen:]
        return Run(
            number=number,
            started=started,
            finished=finished,
            killed=killed,
            exit_code=None if killed else code,
            requests=len(sent),
            writes=sum(1 for request in sent if request.method in WRITES),
            failure=None if killed or code == 0 else failure_of(log_path),
        )


def failure_of(log_path: Path) -> str:
    """The error type named by the last ``command_failed`` or ``cycle_failed`` log line, or
    the last line of what the process printed (a traceback's) when it logged none."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    found = next((line[:120] for line in reversed(lines) if line.strip()), "no output")
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") in {"command_failed", "cycle_failed"}:
            found = str(entry.get("error_type", "unknown"))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def prepare(args: argparse.Namespace, scratch: Path) -> Soak:
    port = free_port()
    fake = FakeAmoCRM(base_url=f"http://127.0.0.1:{port}", max_requests_per_second=7.0)
    policy = load_policy(POLICY_FILE.read_text(encoding="utf-8"))
    account = make_account(fake, policy, random.Random(args.seed))
    with AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    ) as c:
        provision(c, dry_run=False, say=lambda line: None)
    seed_requests(account, args.leads, time.time())
    fake.reset_request_log()
    server = fake.serve(port=port)
    logs = scratch / "runs"
    logs.mkdir()
    return Soak(account, server, scratch / "state", logs, account.supervisor)


def faulty_phase(soak: Soak, args: argparse.Namespace, rng: random.Random) -> list[Run]:
    runs: list[Run] = []
    window = args.kill_window_ms / 1000
    while sum(run.killed for run in runs) < args.kills and len(runs) < 4 * args.kills + 10:
        runs.append(soak.once(len(runs) + 1, rng.uniform(0, window)))
    return runs


def clean_phase(soak: Soak, first: int, limit: int) -> list[Run]:
    runs: list[Run] = []
    while len(runs) < limit:
        run = soak.once(first + len(runs), None)
        runs.append(run)
        if run.exit_code == 0 and run.writes == 0:
            break
    return runs


@dataclass(frozen=True)
class Outcome:
    faulty: list[Run]
    clean: list[Run]
    verdict: Verdict
    agents: Mapping[str, int]
    faults: Mapping[str, int]
    seconds: float


def report(args: argparse.Namespace, fake: FakeAmoCRM, outcome: Outcome) -> None:
    faulty, clean, verdict = outcome.faulty, outcome.clean, outcome.verdict
    agents, faults, seconds = outcome.agents, outcome.faults, outcome.seconds
    killed = [run for run in faulty if run.killed]
    finished = [run for run in faulty if not run.killed]
    print(
        f"soak: {args.leads} requests seeded, fault rate {args.fault_rate:.0%}, "
        f"kills after 0..{args.kill_window_ms} ms, seed {args.seed}"
    )
    print(f"  wall time: {seconds:.0f} s")
    print(f"  runs of `once`: {len(faulty) + len(clean)}")
    print(f"    under faults: {len(faulty)}")
    print(f"      killed (SIGKILL): {len(killed)}")
    for phase, count in sorted(Counter(run.phase for run in killed).items()):
        print(f"        {phase}: {count}")
    codes = Counter(run.exit_code for run in finished)
    took = sorted(run.finished - run.started for run in finished)
    median = f"{took[len(took) // 2]:.1f} s" if took else "-"
    print(f"      finished: {len(finished)} ({_codes(codes)}; median duration {median})")
    for failure, count in sorted(Counter(r.failure for r in finished if r.failure).items()):
        print(f"        exit {_code_of(finished, failure)}, {failure}: {count}")
    print(
        f"    clean pass: {len(clean)} (until one wrote nothing; "
        f"writes per run: {', '.join(str(run.writes) for run in clean)})"
    )
    log = fake.request_log
    print(f"  requests: {len(log)} ({sum(1 for r in log if r.method in WRITES)} writes)")
    print(f"  faults injected: {sum(faults.values())}")
    for kind, count in sorted(faults.items(), key=lambda item: -item[1]):
        print(f"    {kind}: {count}")
    print(f"  429 from the fake's own rate limit: {fake.rate_limited_total}")
    print(f"  agents' actions: {sum(agents.values())}")
    for name, count in sorted(agents.items(), key=lambda item: -item[1]):
        print(f"    {name}: {count}")
    print(
        f"  leads compared with the engine: {verdict.compared} "
        f"({', '.join(f'{s}: {n}' for s, n in verdict.by_status.most_common())})"
    )
    print(f"  breach tasks: {verdict.tasks}; acceptance notes: {verdict.notes}")
    print(f"  LEADS WHOSE FIELDS DIFFER FROM THE ENGINE'S: {len(verdict.differences)}")
    for difference in verdict.differences[:20]:
        print(f"    lead {difference.lead_id}: {difference.fields()}")
    print(f"  DUPLICATE TASKS (same lead and marker): {len(verdict.duplicate_tasks)}")
    for (lead_id, marker), count in sorted(verdict.duplicate_tasks.items())[:20]:
        print(f"    lead {lead_id} {marker}: {count}")
    print(f"  missing breach tasks: {len(verdict.missing_tasks)}")
    print(
        f"  breaches from before the worker's first start: {verdict.past_breaches}, "
        f"tasks for them: {len(verdict.past_tasks)} (spec §5: none)"
    )
    for lead_id, marker in verdict.missing_tasks[:20]:
        print(f"    lead {lead_id} {marker}")
    print(f"  duplicate acceptance notes: {len(verdict.duplicate_notes)}")
    for lead_id, count in sorted(verdict.duplicate_notes.items())[:20]:
        print(f"    lead {lead_id}: {count}")
    print(f"  leads accepted by the worker without their note: {len(verdict.missing_notes)}")
    for lead_id in verdict.missing_notes[:20]:
        print(f"    lead {lead_id}")
    print(f"  verdict: {'FAILED' if verdict.failed else 'ok'}")


def _codes(codes: Counter[int | None]) -> str:
    return ", ".join(f"exit {code}: {count}" for code, count in sorted(codes.items(), key=str))


def _code_of(runs: list[Run], failure: str) -> int | None:
    return next(run.exit_code for run in runs if run.failure == failure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs to deliver")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of requests hit")
    parser.add_argument("--leads", type=int, default=300, help="requests seeded at the start")
    parser.add_argument(
        "--kill-window-ms", type=int, default=4000, help="a run is killed 0..this many ms in"
    )
    parser.add_argument("--actions-per-minute", type=float, default=90.0, help="the agents' pace")
    parser.add_argument("--clean-runs", type=int, default=20, help="most runs of the clean pass")
    parser.add_argument("--seed", type=int, default=20_251_105)
    parser.add_argument("--keep", action="store_true", help="keep the state and run logs")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    began = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="amo-sla-soak-"))
    rng = random.Random(args.seed)
    soak = prepare(args, scratch)
    agents = Agents(soak.account, args.actions_per_minute)
    try:
        agents.start()
        soak.account.fake.fault_at_random(args.fault_rate, seed=args.seed)
        faulty = faulty_phase(soak, args, rng)
        agents.stop()
        soak.account.fake.clear_faults()
        faults = soak.account.fake.faults_injected
        clean = clean_phase(soak, len(faulty) + 1, args.clean_runs)
        last = clean[-1]
        store = StateStore(soak.state_dir / "state.sqlite3")
        first_start = store.first_start()
        store.close()
        verdict = judge(
            soak.account, last.started, last.finished, supervised=True, first_start=first_start
        )
    finally:
        agents.stop()
        soak.server.close()
    outcome = Outcome(faulty, clean, verdict, agents.done, faults, time.perf_counter() - began)
    report(args, soak.account.fake, outcome)
    if args.keep:
        print(f"  state and run logs kept in {scratch}")
    else:
        _remove(scratch)
    return 1 if verdict.failed else 0


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
