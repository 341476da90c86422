"""``python -m worker backfill --since DATE [--dry-run]``: the final SLA fields of closed requests.

The cycle computes the requests it tracks: open ones, and those closed within the 30 days
before its first start. Requests closed earlier keep whatever their fields held. A
backfill reads the support pipeline's requests in a done stage changed since DATE,
recomputes each from its history with the engine (as the report does), and writes the
SLA fields that differ, 50 leads a request, at the client's pace (7 requests a second).
Written values are the engine's, so a second run finds nothing to write. Only the SLA
fields are written: no lead is moved, no task created.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from amo_client.client import AmoClient
from sla.policy import Policy
from sla.state import LOST, WON
from worker.errors import describe, is_fatal
from worker.fields import BadFieldValue, current_values, desired_values, differing
from worker.ledgers.options import LedgerOptions
from worker.setup import AccountSetup
from worker.sla_report.collect import ReadStats, Sources, compute_state, lead_histories
from worker.writes import WRITE_BATCH, PlannedWrite, apply_writes


@dataclass
class BackfillResult:
    closed: int = 0  # requests closed since the date
    planned: list[PlannedWrite] = field(default_factory=list)
    written: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # lead id: why it was left alone
    requests: int = 0


def backfill(
    client: AmoClient,
    setup: AccountSetup,
    policy: Policy,
    *,
    since: datetime,
    now: datetime,
    dry_run: bool = False,
    ledgers: LedgerOptions | None = None,
    cache: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> BackfillResult:
    result = BackfillResult()
    before = client.requests_sent
    done = sorted(setup.roles.done | {WON, LOST})
    leads = [
        lead
        for lead in client.iter_leads(
            pipeline_id=setup.pipeline_id, status_ids=done, updated_from=since
        )
        if lead.pipeline_id == setup.pipeline_id and lead.status_id in done
    ]
    progress(f"{len(leads)} requests in a done stage changed since {since:%d.%m.%Y}")
    sources = Sources(
        client, setup, policy, ledgers or LedgerOptions(), cache=cache, progress=progress
    )
    histories = lead_histories(sources, leads, now, ReadStats())
    for lead in leads:
        try:
            state = compute_state(lead, histories.get(lead.id, ()), setup, policy, now)
        except Exception as error:  # one bad lead is skipped (worker.errors' policy)
            if is_fatal(error):
                raise
            result.skipped[lead.id] = describe(error)
            continue
        closed_at = state.resolution.finished_at
        if closed_at is None or closed_at < since:
            continue
        result.closed += 1
        try:
            current = current_values(lead, setup.fields)
        except BadFieldValue:
            current = {}  # a value of the wrong type is overwritten
        values = differing(current, desired_values(state, setup.fields))
        if values:
            result.planned.append(PlannedWrite(lead.id, lead.name, values))
    progress(f"{result.closed} closed since then; {len(result.planned)} to write")
    if not dry_run:
        stop = threading.Event()
        for start in range(0, len(result.planned), WRITE_BATCH):
            batch = result.planned[start : start + WRITE_BATCH]
            outcome = apply_writes(client, batch, setup.fields, stop)
            result.written += len(outcome.written)
            result.failed.update(outcome.failed)
            progress(f"written {result.written} of {len(result.planned)}")
    result.requests = client.requests_sent - before
    return result
