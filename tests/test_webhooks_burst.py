"""10,000 webhooks in one burst: every one answered 200, a handful of cycles, amoCRM never
asked more than 7 times a second, and the worker keeps syncing. The hooks go through the
worker's ASGI application in process (the loopback socket only slows the test down; the
benchmark, bench.webhooks, drives the real socket)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

from bench.webhook_rig import SECRET, live_rig
from tests.asgi_kit import burst

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HOOKS = 10_000


def test_a_burst_of_10000_hooks_is_answered_and_gives_a_handful_of_cycles(
    tmp_path: Path,
) -> None:
    with live_rig(tmp_path, leads=3, min_interval=3.0) as rig:
        since = time.monotonic()
        cycles_before = rig.service.cycles_started
        bodies = [
            urlencode(
                {
                    "leads[update][0][id]": str(rig.leads[n % len(rig.leads)]),
                    "leads[update][0][last_modified]": str(1_700_000_000 + n),
                    "account[id]": str(rig.fake.account_id),
                    "account[subdomain]": rig.fake.subdomain,
                }
            ).encode()
            for n in range(HOOKS)
        ]

        statuses = burst(rig.app, f"/amocrm/webhook/{SECRET}", bodies, FORM)
        took = time.monotonic() - since
        print(f"{HOOKS} hooks answered in {took:.1f} s")

        assert len(statuses) == HOOKS
        assert set(statuses) == {200}
        assert rig.metrics.value("amo_sla_webhooks_received_total") == HOOKS
        # The worker keeps syncing: a reply after the burst still reaches the fields.
        replied = rig.reply(rig.leads[0])
        shown = rig.wait_reacted(rig.leads[0], timeout=10.0)
        assert shown is not None
        assert shown - replied < 10.0
        cycles = rig.service.cycles_started - cycles_before
        # Capped: one cycle per 3 s at most while the burst and the reply lasted, plus one.
        assert 1 <= cycles <= (time.monotonic() - since) / 3.0 + 2, (cycles, took)
        assert rig.fake.busiest_second(since) <= 7
        assert rig.fake.rate_limited_total == 0
    assert rig.exit_codes == [0]
