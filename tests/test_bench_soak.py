"""The soak's oracle: it finds leads whose fields are not the engine's, doubled breach tasks
and accepted leads without their note."""

from __future__ import annotations

import random
import time

from amo_client.auth import LongLivedToken
from amo_client.client import AmoClient
from amo_client.fake import WON_STATUS_ID, FakeAmoCRM
from bench.soak import POLICY_FILE
from bench.soak_kit import ACCEPTANCE, Account, judge, make_account
from sla.policy import load_policy
from worker.admin import provision
from worker.tasks import MARKERS, BreachClock


def account() -> Account:
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
