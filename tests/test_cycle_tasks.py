"""Breach tasks exactly once per lead and clock: crashes, a lost state directory, overlap."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from amo_client.errors import AmoError
from tests.client_kit import Tap
from tests.cycle_kit import World, build_world, make_client, make_cycle, task_posts
from tests.oracle import engine_state
from worker.store import StateStore, TaskMark


def due_leads(world: World) -> set[int]:
    now = world.now()
    return {i for i in world.leads.values() if engine_state(world, i, now).reaction_task_due}


def assert_one_task_per_due_lead(world: World) -> None:
    per_lead: dict[int, int] = {}
    for task in world.fake.tasks:
        per_lead[int(task["entity_id"])] = per_lead.get(int(task["entity_id"]), 0) + 1
    due = due_leads(world)
    assert due
    assert per_lead == dict.fromkeys(due, 1)


class Crash(Exception):
    pass


def test_a_crash_between_creating_and_recording_leaves_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(cycle.store, "record_task", crash)
    with pytest.raises(Crash):
        cycle.run(world.now())
    assert world.fake.tasks  # amoCRM has them; the ledger holds only the claims
    assert {e.mark for e in StateStore(tmp_path / "state.sqlite3").ledger()} == {TaskMark.CLAIMED}

    restarted = make_cycle(world, tmp_path, client=world.new_client())
    world.fake.reset_request_log()
    report = restarted.run(world.advance(timedelta(minutes=1)))

    assert report.tasks_created == 0
    assert task_posts(world.fake.request_log) == []
    assert_one_task_per_due_lead(world)
    ledger = StateStore(tmp_path / "state.sqlite3").ledger()
    assert {e.mark for e in ledger} == {TaskMark.CREATED}
    assert {e.task_id for e in ledger} == {int(t["id"]) for t in world.fake.tasks}


def test_a_lost_answer_to_the_create_request_leaves_no_duplicate(tmp_path: Path) -> None:
    world = build_world()
    world.fake.timeout_next(path="/api/v4/tasks", method="POST", after_processing=True)

    with pytest.raises(AmoError):
        make_cycle(world, tmp_path).run(world.now())
    assert world.fake.tasks

    make_cycle(world, tmp_path, client=world.new_client()).run(world.advance(timedelta(minutes=1)))
    assert_one_task_per_due_lead(world)


def test_a_create_request_that_never_arrived_is_sent_again(tmp_path: Path) -> None:
    world = build_world()
    world.fake.fail_next(10, status=502, path="/api/v4/tasks", method="POST")

    with pytest.raises(AmoError):
        make_cycle(world, tmp_path).run(world.now())
    assert world.fake.tasks == []

    world.fake.clear_faults()
    make_cycle(world, tmp_path, client=world.new_client()).run(world.advance(timedelta(minutes=1)))
    assert_one_task_per_due_lead(world)


def test_a_deleted_state_directory_leaves_no_duplicate(tmp_path: Path) -> None:
    world = build_world()
    state = tmp_path / "state"
    first = make_cycle(world, state)
    assert first.run(world.now()).tasks_created > 0
    first.store.close()
    shutil.rmtree(state)

    world.fake.reset_request_log()
    report = make_cycle(world, state, client=world.new_client()).run(
        world.advance(timedelta(minutes=1))
    )

    assert report.full_sync
    assert report.tasks_created == 0
    assert task_posts(world.fake.request_log) == []
    assert_one_task_per_due_lead(world)


def test_a_task_an_agent_already_completed_is_not_created_again(tmp_path: Path) -> None:
    world = build_world()
    first = make_cycle(world, tmp_path / "a")
    first.run(world.now())
    for task in world.fake.tasks:
        world.fake.complete_task(int(task["id"]), result="ответили клиенту")

    make_cycle(world, tmp_path / "b", client=world.new_client()).run(
        world.advance(timedelta(minutes=1))
    )

    assert_one_task_per_due_lead(world)


def test_overlapping_cycles_on_one_state_directory_never_duplicate_a_task(
    tmp_path: Path,
) -> None:
    world = build_world()
    entered, release = threading.Event(), threading.Event()

    def hold_task_creation(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path == "/api/v4/tasks":
            entered.set()
            assert release.wait(10)

    held_client = make_client(
        world.fake, world.clock, Tap(world.fake.transport, before=hold_task_creation)
    )
    held = make_cycle(world, tmp_path, client=held_client)
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(held.run(world.now())))
    worker.start()
    try:
        assert entered.wait(10)
        rival = make_cycle(world, tmp_path, client=make_client(world.fake, world.clock))
        overlapping = rival.run(world.now())
        assert overlapping.skipped
        assert overlapping.requests == 0
    finally:
        release.set()
        worker.join(10)
    assert len(outcome) == 1

    after = rival.run(world.advance(timedelta(minutes=1)))
    assert not after.skipped
    assert after.tasks_created == 0
    assert_one_task_per_due_lead(world)
