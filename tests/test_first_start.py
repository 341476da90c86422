"""Spec §5 on day one: breaches from before the worker's first start get fields, no task.

The seeded account is busy before the worker ever runs: some requests ran out of reaction
time hours or days earlier. The first cycle writes every field, «Просрочено» included,
creates no task for those breaches and logs them as ``past_breaches``; a breach after the
first start gets its task. A lost state directory does not move the first start: it is
found again in amoCRM (the worker's own earliest «SLA: статус» change).
"""

from __future__ import annotations

import dataclasses
import io
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import structlog

from sla.state import SlaStatus
from tests.cycle_kit import World, build_world, make_cycle, stage_options, task_options
from tests.oracle import engine_state, stored_fields
from worker.cycle import LAST_FULL_SYNC, CycleOptions, SyncCycle
from worker.report import print_plan
from worker.store import StateStore
from worker.tasks import TaskOptions


def options(**tasks: object) -> CycleOptions:
    task = dataclasses.replace(task_options(), **tasks)  # type: ignore[arg-type]
    return CycleOptions(stages=stage_options(), tasks=task)


def cycle_on(world: World, state_dir: Path, **tasks: object) -> SyncCycle:
    return make_cycle(world, state_dir, options=options(**tasks))


def breached_now(world: World, *more: int) -> dict[int, datetime]:
    """The requests whose reaction task is due at the world's now, with their deadline."""
    now = world.now()
    found: dict[int, datetime] = {}
    for lead_id in (*world.leads.values(), *more):
        state = engine_state(world, lead_id, now)
        if state.reaction_task_due and state.reaction.due is not None:
            found[lead_id] = state.reaction.due
    return found


def new_request(world: World, minutes_ago: int) -> int:
    return world.fake.add_lead(
        "Не приходят уведомления",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=(world.now() - timedelta(minutes=minutes_ago)).timestamp(),
        responsible_user_id=world.agents[0],
    )


def test_the_first_cycle_flags_old_breaches_without_a_task_and_logs_them(tmp_path: Path) -> None:
    world = build_world()
    old = breached_now(world)
    assert old, "the seeded account has breaches from before the worker"

    start = world.now()
    with structlog.testing.capture_logs() as logs:
        report = cycle_on(world, tmp_path).run(start)

    assert world.fake.tasks == []
    assert report.tasks == ()
    assert set(report.past_breaches) == set(old)
    for lead_id in old:
        fields = stored_fields(world, lead_id)
        assert fields["SLA: реакция просрочена"] is True
        assert fields["SLA: статус"] == SlaStatus.BREACHED.value
    (logged,) = [entry for entry in logs if entry["event"] == "past_breaches"]
    assert logged["count"] == len(old)
    assert set(logged["lead_ids"]) == set(old)
    assert report.first_start == start.replace(microsecond=0)  # whole seconds, as recorded


def test_a_breach_after_the_first_start_gets_its_task_and_the_old_ones_still_none(
    tmp_path: Path,
) -> None:
    world = build_world()
    old = breached_now(world)
    cycle = cycle_on(world, tmp_path)
    cycle.run(world.now())
    fresh = new_request(world, minutes_ago=0)

    with structlog.testing.capture_logs() as logs:
        report = cycle.run(world.advance(timedelta(hours=2)))

    assert {int(task["entity_id"]) for task in world.fake.tasks} == {fresh}
    assert report.tasks_created == 1
    assert not [entry for entry in logs if entry["event"] == "past_breaches"]

    cycle.store.set_int(LAST_FULL_SYNC, 0)  # a full reconcile computes the old ones again
    report = cycle.run(world.advance(timedelta(minutes=5)))
    assert report.full_sync
    assert set(report.past_breaches) >= set(old)
    assert {int(task["entity_id"]) for task in world.fake.tasks} == {fresh}


def test_all_asks_for_tasks_for_every_past_breach(tmp_path: Path) -> None:
    world = build_world()
    old = breached_now(world)

    cycle_on(world, tmp_path, past_breach_age=None).run(world.now())

    assert sorted(int(task["entity_id"]) for task in world.fake.tasks) == sorted(old)


def test_an_age_asks_for_tasks_for_the_younger_past_breaches_only(tmp_path: Path) -> None:
    world = build_world()
    young = new_request(world, minutes_ago=90)  # reaction due 30 min ago
    old = breached_now(world, young)
    assert young in old
    start = world.now()
    within = {lead_id for lead_id, due in old.items() if start - due <= timedelta(minutes=45)}
    assert young in within
    assert within != set(old), "some seeded breaches are older than 45 minutes"

    report = cycle_on(world, tmp_path, past_breach_age=timedelta(minutes=45)).run(start)

    assert {int(task["entity_id"]) for task in world.fake.tasks} == within
    assert set(report.past_breaches) == set(old) - within


def test_a_lost_state_directory_finds_the_first_start_again_in_amocrm(tmp_path: Path) -> None:
    world = build_world()
    first = world.now()
    cycle_on(world, tmp_path / "state").run(first)
    # The worker is down for a day; a request arrives and breaches while nobody watches,
    # and the state directory is lost.
    world.advance(timedelta(hours=3))
    during = new_request(world, minutes_ago=0)
    world.advance(timedelta(hours=21))
    news = {lead_id for lead_id, due in breached_now(world, during).items() if due >= first}
    assert during in news

    report = cycle_on(world, tmp_path / "new-state").run(world.now())

    assert abs(report.first_start - first) <= timedelta(minutes=1)  # type: ignore[operator]
    assert {int(task["entity_id"]) for task in world.fake.tasks} == news
    assert set(report.past_breaches) == set(breached_now(world, during)) - news
    store = StateStore(tmp_path / "new-state" / "state.sqlite3")
    assert store.first_start() == int(report.first_start.timestamp())  # type: ignore[union-attr]


def test_a_pinned_first_start_wins_over_the_record(tmp_path: Path) -> None:
    world = build_world()
    cycle_on(world, tmp_path).run(world.now())
    pinned = world.now() - timedelta(days=60)

    cycle = make_cycle(
        world,
        tmp_path,
        options=dataclasses.replace(options(), first_start=pinned),
    )
    report = cycle.run(world.advance(timedelta(minutes=5)))

    assert report.first_start == pinned
    assert report.past_breaches == ()
    assert world.fake.tasks  # the seeded breaches are news for a worker running since then


def test_a_dry_run_on_a_new_state_lists_the_past_breaches_and_records_nothing(
    tmp_path: Path,
) -> None:
    world = build_world()
    old = breached_now(world)
    cycle = make_cycle(world, tmp_path, options=options(), dry_run=True)

    report = cycle.run(world.now())
    out = io.StringIO()
    assert cycle.setup is not None
    print_plan(report, cycle.setup, world.policy, out, dry_run=True)

    assert cycle.store.first_start() is None
    assert set(report.past_breaches) == set(old)
    assert f"{len(old)} request(s) breached before the worker's first start" in out.getvalue()
    assert "0 task(s) due" in out.getvalue()


def test_a_rebuilt_cache_keeps_the_first_start(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path)
    assert store.keep_first_start(1_700_000_000) == 1_700_000_000
    assert store.keep_first_start(1_800_000_000) == 1_700_000_000  # the first one stays
    store.close()
    with sqlite3.connect(path) as db:  # an older schema: the cache tables are rebuilt
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")

    assert StateStore(path).first_start() == 1_700_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", timedelta(0)),
        (" All ", None),
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
    ],
)
def test_past_breach_tasks_reads_none_all_or_an_age(value: str, expected: timedelta | None) -> None:
    from config.settings import parse_past_breach_tasks

    assert parse_past_breach_tasks(value) == expected


def test_the_default_task_options_give_no_task_for_a_past_breach() -> None:
    assert TaskOptions(reaction_text="", resolution_text="").past_breach_age == timedelta(0)


def test_a_deadline_in_the_second_of_the_first_start_is_judged_alike_by_every_cycle(
    tmp_path: Path,
) -> None:
    world = build_world(seed=False)
    # Its reaction is due one business hour later, in the very second of the first cycle.
    lead_id = new_request(world, minutes_ago=0)
    world.clock.advance(3600 + 0.4)
    cycle = cycle_on(world, tmp_path)
    first = cycle.run(world.now())
    second = cycle.run(world.advance(timedelta(minutes=1)))

    assert first.first_start == second.first_start
    assert (lead_id in first.past_breaches) == (lead_id in second.past_breaches)
    assert first.tasks_created + second.tasks_created == len(world.fake.tasks) <= 1


def test_the_past_breaches_line_names_the_first_hundred_ids_and_counts_all(
    tmp_path: Path,
) -> None:
    """A log line of thousands of ids would be cut by the log shipper and parse no more."""
    world = build_world()
    added = [new_request(world, minutes_ago=60 * 24 * 20) for _ in range(120)]
    old = breached_now(world, *added)
    assert len(old) > 100

    with structlog.testing.capture_logs() as logs:
        cycle_on(world, tmp_path).run(world.now())

    (logged,) = [entry for entry in logs if entry["event"] == "past_breaches"]
    assert logged["count"] == len(old)
    assert logged["lead_ids"] == sorted(old)[:100]
