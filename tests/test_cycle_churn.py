"""The cycle under a real account's churn: leads closed, reopened, deleted and restored,
stages added, fields deleted, pages that shift under the read, odd answers, late events.

Every expectation is the engine's state on the lead's whole history as the fake holds it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from amo_client.errors import ServerError, UnexpectedAnswer
from amo_client.fake import PageTurn
from tests.cycle_kit import (
    STAGES,
    WON,
    World,
    at,
    build_world,
    delete_field,
    make_client,
    make_cycle,
    plant_raw_value,
    stage_options,
    task_options,
    tasks_by_lead,
)
from tests.oracle import engine_state, expected_fields, stored_fields
from worker.cycle import CycleOptions, SyncCycle
from worker.errors import is_fatal
from worker.setup import SetupError
from worker.writes import ACCEPTANCE_NOTE, SERVICE, acceptance_note, ensure_acceptance_notes

Logs = list[MutableMapping[str, Any]]


def matches_engine(world: World, lead_id: int, now: datetime) -> bool:
    return stored_fields(world, lead_id) == expected_fields(engine_state(world, lead_id, now))


def answered_request(world: World, *, created: float, answered: float) -> int:
    anna = world.agents[0]
    lead_id = world.fake.add_lead(
        "Не приходят уведомления",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=created,
        responsible_user_id=anna,
    )
    world.fake.add_event(lead_id, "outgoing_chat_message", created_by=anna, at=answered)
    return lead_id


def hourly_cycle(world: World, state_dir: Path) -> SyncCycle:
    """A cycle whose full reconcile comes every hour."""
    options = CycleOptions(
        stages=stage_options(), tasks=task_options(), full_reconcile_interval=timedelta(hours=1)
    )
    return make_cycle(world, state_dir, options=options)


def many_requests(world: World, count: int, *, spread: bool = True) -> list[int]:
    """``count`` «По факту» requests of 09:00 (a second apart with ``spread``)."""
    return [
        world.fake.add_lead(
            f"Обращение {n}",
            pipeline_id=world.support.id,
            tags=["По факту"],
            created_at=at(5, 9, 0) + (n if spread else 0),
            responsible_user_id=world.agents[0],
        )
        for n in range(count)
    ]


def run_at(cycle: SyncCycle, world: World, moment: float) -> None:
    world.clock.advance(moment - world.clock.time())
    cycle.run(world.now())


def test_a_request_reopened_after_it_was_forgotten_keeps_its_reaction(tmp_path: Path) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.move_lead(lead_id, WON, by_user=anna, at=at(5, 12, 30))
    run_at(cycle, world, at(5, 12, 40))
    # Two days later the closed request has left the cache.
    run_at(cycle, world, at(7, 13, 0))
    assert cycle.tracked_lead(lead_id) is None

    world.fake.move_lead(lead_id, world.support.status(STAGES[1]), by_user=anna, at=at(7, 14, 0))
    run_at(cycle, world, at(7, 14, 5))

    assert matches_engine(world, lead_id, world.now())
    assert stored_fields(world, lead_id)["SLA: реакция"] == int(at(5, 10, 20))
    assert stored_fields(world, lead_id)["SLA: реакция просрочена"] is False
    assert lead_id not in tasks_by_lead(world)


def test_a_request_deleted_then_restored_keeps_its_reaction(tmp_path: Path) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    busy = answered_request(world, created=at(5, 10, 30), answered=at(5, 10, 40))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.delete_lead(lead_id, by=anna, at=at(5, 12, 10))
    world.fake.add_event(busy, "outgoing_call", created_by=anna, at=at(5, 12, 15))
    run_at(cycle, world, at(5, 12, 20))
    world.fake.add_event(busy, "outgoing_call", created_by=anna, at=at(5, 13, 0))
    run_at(cycle, world, at(5, 13, 5))
    assert cycle.tracked_lead(lead_id) is None

    world.fake.restore_lead(lead_id, by=anna, at=at(5, 15, 0))
    run_at(cycle, world, at(5, 15, 5))

    assert matches_engine(world, lead_id, world.now())
    assert stored_fields(world, lead_id)["SLA: реакция"] == int(at(5, 10, 20))
    assert lead_id not in tasks_by_lead(world)


def test_a_lead_closed_between_two_pages_of_a_full_read_costs_no_other_lead(
    tmp_path: Path,
) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    ids = many_requests(world, 260, spread=False)
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    run_at(cycle, world, at(5, 12, 30))  # reads its own writes back
    assert cycle.tracked_lead(ids[250]) is not None

    lead_reads: list[PageTurn] = []

    def close_one_already_read(turn: PageTurn) -> None:
        if turn.path == "/api/v4/leads":
            lead_reads.append(turn)
        if len(lead_reads) == 2:  # between the first two pages of the full read
            world.fake.move_lead(ids[0], WON, by_user=anna)
            world.fake.on_read(None)

    world.fake.on_read(close_one_already_read)
    run_at(cycle, world, at(5, 13, 1))  # the hourly full reconcile
    assert len(lead_reads) == 2
    # An agent calls the customer back: an event, which leaves the lead's updated_at alone.
    world.fake.add_event(ids[250], "outgoing_call", created_by=anna, at=at(5, 13, 10))
    run_at(cycle, world, at(5, 13, 15))

    assert cycle.tracked_lead(ids[250]) is not None
    assert matches_engine(world, ids[250], world.now())
    assert stored_fields(world, ids[250])["SLA: реакция"] == int(at(5, 13, 10))


def test_a_rejected_task_costs_only_its_own_lead(tmp_path: Path, logs: Logs) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    ghost = 999_999  # a user the account does not have
    good = world.fake.add_lead(
        "Молчит",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=at(5, 10, 0),
        responsible_user_id=anna,
    )
    bad = world.fake.add_lead(
        "Тоже молчит",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=at(5, 10, 0),
        responsible_user_id=anna,
    )
    with world.fake._lock:
        world.fake._entities["leads"][bad].responsible_user_id = ghost
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))

    assert list(tasks_by_lead(world)) == [good]
    rejected = [e for e in logs if e["event"] == "task_rejected"]
    assert [e["lead_id"] for e in rejected] == [bad]
    # The next cycles go on: no new request for the refused task until it is due again.
    world.fake.reset_request_log()
    run_at(cycle, world, at(5, 12, 5))
    assert not [r for r in world.fake.request_log if r.path == "/api/v4/tasks"]
    run_at(cycle, world, at(5, 13, 10))
    # The lookup by marker finds none, asks again (an empty answer is no evidence), creates.
    assert [r.method for r in world.fake.request_log if r.path == "/api/v4/tasks"] == [
        "GET",
        "GET",
        "POST",
    ]


def test_a_stage_added_while_the_worker_runs_is_seen_at_the_next_full_reconcile(
    tmp_path: Path,
) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    review = world.fake.add_status(world.support.id, "На проверке у инженера")
    world.fake.move_lead(lead_id, review, by_user=anna, at=at(5, 12, 10))
    run_at(cycle, world, at(5, 12, 20))
    run_at(cycle, world, at(5, 13, 5))
    run_at(cycle, world, at(5, 19, 10))

    assert cycle.tracked_lead(lead_id) is not None
    assert matches_engine(world, lead_id, world.now())


def test_a_deleted_sla_field_stops_the_worker_naming_it(tmp_path: Path) -> None:
    world = build_world(seed=False)
    lead_id = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    delete_field(world, "SLA: статус")
    world.fake.move_lead(lead_id, WON, by_user=world.agents[0], at=at(5, 12, 10))

    with pytest.raises(SetupError, match="SLA: статус") as raised:
        run_at(cycle, world, at(5, 12, 20))
    assert is_fatal(raised.value)


def test_an_answer_without_embedded_forgets_nothing(tmp_path: Path) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    tracked = {lead_id for lead_id in world.leads.values() if cycle.tracked_lead(lead_id)}
    assert tracked
    world.fake.odd_answer_next("empty_object", 5, path="/api/v4/leads")

    with pytest.raises(UnexpectedAnswer):
        cycle.run(world.advance(timedelta(hours=7)))
    world.fake.clear_faults()
    cycle.run(world.advance(timedelta(minutes=1)))
    assert {i for i in world.leads.values() if cycle.tracked_lead(i)} == tracked


def test_with_api_filtering_off_closed_requests_do_not_come_back_every_cycle(
    tmp_path: Path,
) -> None:
    world = build_world()
    world.fake.api_filter_enabled = False
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    for _ in range(4):  # two days of hourly cycles and the closed requests age out
        cycle.run(world.advance(timedelta(hours=12)))
    world.fake.reset_request_log()
    cycle.run(world.advance(timedelta(minutes=5)))
    cycle.run(world.advance(timedelta(minutes=5)))

    per_lead = [r for r in world.fake.request_log if "filter[entity_id]" in r.query]
    assert per_lead == []


def test_a_lead_that_fails_validation_costs_only_itself(tmp_path: Path, logs: Logs) -> None:
    world = build_world(seed=False)
    good = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    broken = answered_request(world, created=at(5, 10, 30), answered=at(5, 10, 40))
    with world.fake._lock:
        world.fake._entities["leads"][broken].created_at = "вчера"  # type: ignore[assignment]
    cycle = make_cycle(world, tmp_path)

    report = cycle.run(world.now())

    assert matches_engine(world, good, world.now())
    assert report.leads_written == 1
    assert [e["lead_id"] for e in logs if e["event"] == "lead_invalid"] == [broken]


def test_an_agreed_date_beyond_any_calendar_costs_only_its_lead(tmp_path: Path, logs: Logs) -> None:
    world = build_world(seed=False)
    good = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    huge = answered_request(world, created=at(5, 10, 30), answered=at(5, 10, 40))
    plant_raw_value(world, huge, "SLA: срок по согласованию", [{"value": 10**20}])
    cycle = make_cycle(world, tmp_path)

    report = cycle.run(world.now())

    assert matches_engine(world, good, world.now())
    assert report.leads_computed == 2
    problems = [e for e in logs if e["event"] in {"lead_problem", "lead_invalid"}]
    assert [e["lead_id"] for e in problems] == [huge]


def test_a_stop_during_retry_waits_ends_the_cycle_at_once(tmp_path: Path) -> None:
    world = build_world()
    world.fake.fail_next(100, status=503, path="/api/v4/leads")
    cycle = make_cycle(world, tmp_path)
    inner = world.fake.transport
    failures = 0

    class StopAtTheSecondFailure(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal failures
            response = inner.handle_request(request)
            failures += response.status_code == 503
            if failures == 2:
                cycle.request_stop()
            return response

    cycle.client = make_client(world.fake, world.clock, StopAtTheSecondFailure())
    began = world.clock.time()

    report = cycle.run(world.now())

    assert report.stopped_early
    assert failures == 2
    assert world.clock.time() - began < 5  # the backoff after the second 503 never ran out


def test_an_event_indexed_minutes_late_is_reconciled_at_the_next_full_read(
    tmp_path: Path,
) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = world.fake.add_lead(
        "Тишина",
        pipeline_id=world.support.id,
        tags=["По факту"],
        created_at=at(5, 10, 0),
        responsible_user_id=anna,
    )
    other = world.fake.add_lead(
        "Другое", pipeline_id=world.support.id, tags=["По факту"], created_at=at(5, 10, 0)
    )
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.add_event(
        lead_id, "outgoing_call", created_by=anna, at=at(5, 12, 1), visible_after=600
    )
    # A later event, listed at once, moves the feed's cursor past the late one.
    world.fake.add_event(other, "outgoing_call", created_by=anna, at=at(5, 12, 3))
    for minute in (5, 10, 15, 20):
        run_at(cycle, world, at(5, 12, minute))
    assert stored_fields(world, lead_id)["SLA: реакция"] is None  # not indexed in time
    run_at(cycle, world, at(5, 13, 1))

    assert stored_fields(world, lead_id)["SLA: реакция"] == int(at(5, 12, 1))
    assert matches_engine(world, lead_id, world.now())


def test_two_changes_within_one_second_are_both_seen(tmp_path: Path) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = answered_request(world, created=at(5, 10, 10), answered=at(5, 10, 20))
    cycle = make_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    moment = at(5, 12, 5)
    world.clock.advance(moment - world.clock.time())
    world.fake.update_lead(lead_id, by_user=anna, tags=["Приоритет", "Доработка"])
    cycle.run(world.now())
    world.fake.update_lead(lead_id, by_user=anna, tags=["По факту"])  # the same second
    assert world.fake.lead(lead_id)["updated_at"] == int(moment)  # type: ignore[index]
    run_at(cycle, world, at(5, 12, 10))

    assert matches_engine(world, lead_id, world.now())
    assert engine_state(world, lead_id, world.now()).tariff == "По факту"


def accepted_notes(world: World, lead_id: int) -> int:
    return sum(
        1
        for note in world.fake.notes
        if note["entity_id"] == lead_id and ACCEPTANCE_NOTE in str(note.get("params"))
    )


@pytest.mark.parametrize("lost", ["note_refused", "crash_after_note"])
def test_an_accepted_request_gets_its_note_once_whatever_fails_between(
    tmp_path: Path, lost: str
) -> None:
    world = build_world()
    lead_id = world.leads["priority_acceptance"]
    world.advance(timedelta(days=1))  # the acceptance period is over
    if lost == "note_refused":
        world.fake.fail_next(status=503, path="/api/v4/leads/notes", method="POST")
    else:
        world.fake.fail_next(100, status=503, path="/api/v4/leads", method="PATCH")
    with pytest.raises(ServerError):
        make_cycle(world, tmp_path).run(world.now())
    world.fake.clear_faults()
    for _ in range(2):
        make_cycle(world, tmp_path).run(world.advance(timedelta(minutes=5)))

    assert world.fake.lead(lead_id)["status_id"] == WON  # type: ignore[index]
    assert accepted_notes(world, lead_id) == 1


def test_an_acceptance_begun_in_the_second_the_last_one_was_noted_gets_its_own_note() -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    lead_id = world.fake.add_lead(
        "Отчёт", pipeline_id=world.support.id, tags=["Приоритет"], created_at=at(5, 10, 0)
    )
    first, second = at(5, 11, 0), at(6, 12, 0)
    # The first acceptance's note, made in the very second the second acceptance began.
    world.fake.add_note(
        lead_id,
        note_type="service_message",
        params={"service": SERVICE, "text": acceptance_note(utc(first))},
        created_by=anna,
        at=second,
    )

    ensure_acceptance_notes(world.client, {lead_id: utc(second)})

    texts = [str(n["params"]["text"]) for n in world.fake.notes if n["entity_id"] == lead_id]
    assert texts == [acceptance_note(utc(first)), acceptance_note(utc(second))]


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def test_a_lead_closed_between_two_pages_of_the_first_read_costs_no_other_lead(
    tmp_path: Path,
) -> None:
    world = build_world(seed=False)
    anna = world.agents[0]
    ids = many_requests(world, 300)
    turns: list[PageTurn] = []

    def close_one_already_read(turn: PageTurn) -> None:
        if turn.path == "/api/v4/leads":
            turns.append(turn)
            if len(turns) == 2:  # between the first two pages of the read
                world.fake.move_lead(ids[0], WON, by_user=anna)

    world.fake.on_read(close_one_already_read)
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))  # the first start: nothing is tracked yet
    world.fake.on_read(None)

    assert len(turns) >= 2, "the change came between two pages of the read"
    for lead_id in ids[1:]:
        assert cycle.tracked_lead(lead_id) is not None, lead_id
        assert matches_engine(world, lead_id, world.now()), lead_id


def test_an_empty_answer_in_the_middle_of_the_first_read_is_asked_again(tmp_path: Path) -> None:
    world = build_world(seed=False)
    ids = many_requests(world, 300)
    seen: list[PageTurn] = []

    def empty_second_page(turn: PageTurn) -> None:
        if turn.path == "/api/v4/leads":
            seen.append(turn)
            if len(seen) == 1:  # the answer to the second page will be a 204
                world.fake.odd_answer_next("no_content", path="/api/v4/leads")

    world.fake.on_read(empty_second_page)
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.on_read(None)

    assert all(cycle.tracked_lead(lead_id) is not None for lead_id in ids)


def test_a_move_is_not_made_on_a_lead_an_agent_moved_after_it_was_read(
    tmp_path: Path, logs: Logs
) -> None:
    from worker.writes import PlannedWrite, apply_writes

    world = build_world()
    lead_id = world.leads["priority_acceptance"]
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    assert cycle.setup is not None
    acceptance = world.support.status(STAGES[3])
    world.fake.move_lead(lead_id, WON, by_user=world.agents[0])  # the agent closes it first

    import threading

    outcome = apply_writes(
        world.client,
        [PlannedWrite(lead_id, "x", {}, WON, None, acceptance)],
        cycle.setup.fields,
        threading.Event(),
    )

    assert outcome.written == ()
    assert accepted_notes(world, lead_id) == 0
    assert [e["lead_id"] for e in logs if e["event"] == "move_skipped"] == [lead_id]


def test_a_full_read_whose_every_lead_answer_is_empty_forgets_no_request(
    tmp_path: Path, logs: Logs
) -> None:
    world = build_world(seed=False)
    ids = [
        answered_request(world, created=at(5, 9, 0) + n, answered=at(5, 9, 30)) for n in range(5)
    ]
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.odd_answer_next("no_content", 50, path="/api/v4/leads")
    run_at(cycle, world, at(5, 13, 1))  # the hourly full reconcile: every leads call is a 204
    world.fake.clear_faults()

    assert all(cycle.tracked_lead(lead_id) is not None for lead_id in ids)
    (unconfirmed,) = [e for e in logs if e["event"] == "lead_unconfirmed"]
    assert sorted(unconfirmed["lead_ids"]) == sorted(ids)


def test_a_request_deleted_in_amocrm_is_forgotten_on_the_trash_s_word(tmp_path: Path) -> None:
    world = build_world(seed=False)
    kept, deleted = (
        answered_request(world, created=at(5, 9, 0) + n, answered=at(5, 9, 30)) for n in range(2)
    )
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    world.fake.delete_lead(deleted, by=world.agents[0])
    run_at(cycle, world, at(5, 13, 1))

    assert cycle.tracked_lead(kept) is not None
    assert cycle.tracked_lead(deleted) is None


def test_an_empty_answer_to_the_changed_leads_read_loses_no_change(tmp_path: Path) -> None:
    world = build_world(seed=False)
    lead_id = answered_request(world, created=at(5, 9, 0), answered=at(5, 9, 30))
    cycle = hourly_cycle(world, tmp_path)
    run_at(cycle, world, at(5, 12, 0))
    run_at(cycle, world, at(5, 12, 5))
    world.fake.move_lead(lead_id, WON, by_user=world.agents[0], at=at(5, 12, 6))
    world.fake.odd_answer_next("no_content", path="/api/v4/leads", method="GET")
    run_at(cycle, world, at(5, 12, 10))  # the change is hidden by an odd 204
    run_at(cycle, world, at(5, 12, 15))  # the next read covers the same window again

    assert matches_engine(world, lead_id, world.now())
    assert stored_fields(world, lead_id)["SLA: статус"] == "Выполнено в срок"
