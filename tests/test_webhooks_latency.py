"""Reply to field: an agent's reply in the fake amoCRM reaches the lead's SLA fields within
seconds with webhooks on, while the poll interval is 10 minutes; without webhooks it waits
for the poll. Real clocks, the real HTTP server on loopback, the fake posting its hooks."""

from __future__ import annotations

import time
from pathlib import Path

from bench.webhook_rig import live_rig
from worker.service import JOB_ID

TEN_MINUTES = 600.0


def test_with_webhooks_a_reply_shows_in_the_fields_within_5_s(tmp_path: Path) -> None:
    with live_rig(tmp_path, leads=3, poll_interval=TEN_MINUTES) as rig:
        lead_id = rig.leads[0]
        assert rig.reacted_at(lead_id) is None

        replied = rig.reply(lead_id)
        shown = rig.wait_reacted(lead_id, timeout=5.0)

        assert shown is not None, "the reply did not reach the lead's fields within 5 s"
        assert shown - replied < 5.0
        assert rig.reacted_at(rig.leads[1]) is None  # nobody answered that one
        deliveries = rig.fake.webhook_deliveries
        assert deliveries
        assert all(d.status == 200 for d in deliveries)
        assert rig.metrics.value("amo_sla_webhooks_received_total") >= 1
        assert rig.metrics.value("amo_sla_webhook_cycles_total") >= 1
    assert rig.exit_codes == [0]


def test_without_webhooks_the_reply_waits_for_the_poll(tmp_path: Path) -> None:
    with live_rig(tmp_path, leads=3, webhooks=False, poll_interval=TEN_MINUTES) as rig:
        lead_id = rig.leads[0]
        cycles = rig.cycles_ok()

        rig.reply(lead_id)
        shown = rig.wait_reacted(lead_id, timeout=5.0)

        assert shown is None  # nothing told the worker: the reply waits for the next poll
        assert rig.cycles_ok() == cycles
        assert rig.fake.webhook_deliveries == []
        scheduler = rig.service._scheduler
        assert scheduler is not None
        job = scheduler.get_job(JOB_ID)
        assert job is not None
        assert job.next_run_time is not None
        wait = job.next_run_time.timestamp() - time.time()
        assert TEN_MINUTES - 30 < wait <= TEN_MINUTES


def test_without_webhooks_a_short_poll_brings_the_reply_at_the_poll(tmp_path: Path) -> None:
    poll = 3.0
    with live_rig(tmp_path, leads=3, webhooks=False, poll_interval=poll) as rig:
        lead_id = rig.leads[0]
        rig.wait_cycles(2)  # just after a poll: the next one is a whole interval away
        replied = rig.reply(lead_id)

        shown = rig.wait_reacted(lead_id, timeout=poll + 5.0)

        assert shown is not None
        assert shown - replied > poll / 2  # it came with the poll, not at once
