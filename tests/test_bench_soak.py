"""The soak's verdict: it finds leads whose fields are not the engine's, doubled breach tasks
and accepted leads without their note, and passes an account the worker has synced."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import WON_STATUS_ID, FakeAmoCRM
from bench.soak import POLICY_FILE
from bench.soak_kit import ACCEPTANCE, HOLD, PIPELINE, Account, judge, make_account, seed_requests
from sla.policy import load_policy
from tests.client_kit import FakeClock
from worker.admin import provision
from worker.cycle import CycleOptions, SyncCycle
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import MARKERS, BreachClock, TaskOptions


def account() -> Account:
    """The soak's account with its fields provisioned and no request yet."""
    fake = FakeAmoCRM(max_requests_per_second=None)
    policy = load_policy(POLICY_FILE.read_text(encoding="utf-8"))
    made = make_account(fake, policy, random.Random(1))  # noqa: S311 - not for secrets
    with AmoClient(
        fake.base_url, LongLivedToken(fake.long_lived_token), transport=fake.transport
    ) as client:
        provision(client, dry_run=False, say=lambda line: None)
    return made


def test_an_unworked_request_differs_and_misses_its_task() -> None:
    soak = account()
    now = time.time()
    lead = soak.fake.add_lead(
        "Не работает вход", pipeline_id=soak.support.id, tags=["Приоритет"], created_at=now - 600
    )

    verdict = judge(soak, now, now + 1, supervised=True)

    assert [difference.lead_id for difference in verdict.differences] == [lead]
    assert verdict.differences[0].fields()["SLA: статус"] == (None, "Просрочено")
    assert (lead, MARKERS[BreachClock.REACTION]) in verdict.missing_tasks
    assert verdict.failed


def test_a_doubled_task_and_a_lost_note_are_found() -> None:
    soak = account()
    now = time.time()
    lead = soak.fake.add_lead(
        "Ошибка при импорте",
        pipeline_id=soak.support.id,
        status_id=soak.support.status(ACCEPTANCE),
        tags=["Приоритет"],
        created_at=now - 600,
    )
    for _ in range(2):
        soak.fake.add_task(
            lead, f"Просрочена реакция\n{MARKERS[BreachClock.REACTION]}", complete_till=now
        )
    soak.fake.move_lead(lead, WON_STATUS_ID, by_user=soak.fake.api_user_id)

    verdict = judge(soak, now, now + 1, supervised=True)

    assert verdict.duplicate_tasks == {(lead, MARKERS[BreachClock.REACTION]): 2}
    assert verdict.missing_notes == (lead,)


def test_an_account_the_worker_has_synced_passes(tmp_path: Path) -> None:
    soak = account()
    seed_requests(soak, 40, time.time())
    options = CycleOptions(
        stages=StageOptions(
            pipeline=PIPELINE, hold_stages=(HOLD,), acceptance_stages=(ACCEPTANCE,)
        ),
        tasks=TaskOptions(
            reaction_text="Просрочена реакция: «{lead_name}»",
            resolution_text="Просрочено решение: «{lead_name}»",
            supervisor_user_id=soak.supervisor,
        ),
    )
    clock = FakeClock()  # the client's pacing only: the fake here has no rate limit
    client = AmoClient(
        soak.fake.base_url,
        LongLivedToken(soak.fake.long_lived_token),
        transport=soak.fake.transport,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    store = StateStore(tmp_path / "state.sqlite3")
    cycle = SyncCycle(client, store, soak.policy, options, lock_path=tmp_path / "cycle.lock")
    with client:
        for _ in range(5):  # as the soak's clean pass: until a cycle writes nothing
            started = time.time()
            report = cycle.run(datetime.fromtimestamp(started, UTC))
            if report.leads_written == 0 and report.tasks_created == 0:
                break
    finished = time.time()

    verdict = judge(soak, started, finished, supervised=True, first_start=store.first_start())
    store.close()

    assert verdict.differences == ()
    assert not verdict.failed, verdict
    assert verdict.compared == 40
    assert len(verdict.by_status) > 1, verdict.by_status  # not one blanket value
