"""The sync cycle end to end against the fake amoCRM: what it writes, what it leaves alone,
what a quiet cycle costs, and two processes taking turns on one state directory."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import structlog

from tests.cycle_kit import (
    WON,
    World,
    at,
    build_world,
    make_client,
    make_cycle,
    sla_values_of,
    tasks_by_lead,
    writes,
)
from tests.oracle import engine_state, expected_fields, stored_fields


def assert_fields_match_engine(world: World, now: datetime) -> None:
    mismatches = {}
    for role, lead_id in world.leads.items():
        stored = stored_fields(world, lead_id)
        expected = expected_fields(engine_state(world, lead_id, now))
        if stored != expected:
            mismatches[role] = (stored, expected)
    assert not mismatches


def test_after_one_cycle_every_lead_holds_what_the_engine_computes(tmp_path: Path) -> None:
    world = build_world()
    now = world.now()

    report = make_cycle(world, tmp_path).run(now)

    assert report.full_sync
    assert report.leads_failed == 0
    assert report.leads_computed == len(world.leads)
    assert_fields_match_engine(world, now)
    # The scenario is only a test if it reaches the states it was built for.
    statuses = {role: engine_state(world, i, now).status.value for role, i in world.leads.items()}
    assert set(statuses.values()) >= {
        "В срок",
        "Просрочено",
        "На паузе",
        "Выполнено в срок",
        "Выполнено с нарушением",
        "Нет тарифа",
    }
    silent = engine_state(world, world.leads["priority_silent"], now)
    robot = engine_state(world, world.leads["fact_robot_moved"], now)
    assert silent.reaction.finished_at is None  # the bot's greeting did not count
    assert robot.reaction.finished_at is None  # nor did the robot's move
    assert engine_state(world, world.leads["fact_on_hold"], now).remaining_minutes is not None


def test_breach_tasks_go_to_the_leads_whose_reaction_ran_out(tmp_path: Path) -> None:
    world = build_world()
    now = world.now()

    make_cycle(world, tmp_path).run(now)

    due = {
        lead_id
        for lead_id in world.leads.values()
        if engine_state(world, lead_id, now).reaction_task_due
    }
    assert due
    tasks = tasks_by_lead(world)
    assert set(tasks) == due
    for lead_id in due:
        (text,) = tasks[lead_id]
        assert f"#{lead_id}" in text
        assert "Приоритет" in text or "По факту" in text
        assert text.endswith("[SLA: реакция]")


def test_a_second_cycle_writes_nothing_and_a_quiet_one_costs_at_most_three_requests(
    tmp_path: Path,
) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    first = cycle.run(world.now())
    assert first.leads_written > 0

    world.fake.reset_request_log()
    later = world.advance(timedelta(minutes=1))
    assert first.next_change_at is not None
    assert later < first.next_change_at  # nothing may change by itself in between
    second = cycle.run(later)

    assert writes(world.fake.request_log) == []
    assert second.leads_written == 0
    assert second.tasks_created == 0
    assert_fields_match_engine(world, later)

    world.fake.reset_request_log()
    quiet = cycle.run(world.advance(timedelta(minutes=5)))
    assert quiet.requests == world.fake.requests_total <= 3
    assert writes(world.fake.request_log) == []


def test_a_quiet_cycle_stays_cheap_after_the_first_sync_wrote_many_leads(tmp_path: Path) -> None:
    world = build_world()
    for number in range(600):
        world.fake.add_lead(
            f"Обращение {number}",
            pipeline_id=world.support.id,
            tags=["По факту"],
            created_at=at(5, 9, 0),
        )
    cycle = make_cycle(world, tmp_path)
    first = cycle.run(world.now())
    assert first.leads_written >= 600
    # Its own writes read back, as amoCRM sends them (with names, types, option texts and
    # numbers as text): nothing in them is news, so no lead is computed again.
    readback = cycle.run(world.advance(timedelta(minutes=5)))
    assert readback.leads_read >= 600
    assert readback.leads_computed == 0
    assert cycle.disagreements(world.now()) == []

    for minutes in (5, 60):
        world.fake.reset_request_log()
        report = cycle.run(world.advance(timedelta(minutes=minutes)))
        assert report.requests == world.fake.requests_total <= 3
        assert report.leads_read == 0


def test_leads_of_another_pipeline_are_never_written(tmp_path: Path) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    cycle.run(world.advance(timedelta(hours=6, minutes=1)))  # a full reconcile too

    for lead_id in world.other_leads:
        assert sla_values_of(world, lead_id) == []
        assert lead_id not in tasks_by_lead(world)
    patched = {
        item["id"]
        for request in writes(world.fake.request_log)
        if request.method == "PATCH"
        for item in request.body
    }
    assert patched
    assert not patched & set(world.other_leads)


def test_a_lead_moved_by_acceptance_reads_back_unchanged(tmp_path: Path) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    evening = world.advance(timedelta(hours=5, minutes=30))  # 17:30: acceptance is over

    cycle.run(evening)

    accepted = world.leads["priority_acceptance"]
    assert (world.fake.lead(accepted) or {})["status_id"] == WON
    notes = [note for note in world.fake.notes if note["entity_id"] == accepted]
    # A service message under the worker's name: amoCRM shows who wrote it, and it is no
    # person's note, so it cannot count as a reaction.
    assert [(n["note_type"], n["params"]["service"]) for n in notes] == [
        ("service_message", "amo-sla")
    ]
    assert not world.fake.lead_events(accepted, "common_note_added")
    world.fake.reset_request_log()
    cycle.run(world.advance(timedelta(minutes=5)))
    assert writes(world.fake.request_log) == []
    assert stored_fields(world, accepted) == expected_fields(
        engine_state(world, accepted, world.now())
    )


def test_two_processes_taking_turns_on_one_state_directory_see_each_others_events(
    tmp_path: Path,
) -> None:
    """The service's cycle keeps a cache between runs; a `once` next to it moves the cursors."""
    world = build_world()
    service = make_cycle(world, tmp_path)
    service.run(world.now())
    answered = world.leads["priority_change_request"]
    anna = world.agents[0]

    world.advance(timedelta(minutes=10))
    world.fake.add_event(answered, "outgoing_chat_message", created_by=anna, at=world.clock.time())
    once = make_cycle(world, tmp_path, client=world.new_client())
    once.run(world.advance(timedelta(minutes=1)))
    # More happens, so the event cursor moves well past the answer.
    world.advance(timedelta(minutes=10))
    other = world.leads["fact_non_standard"]
    world.fake.add_event(other, "common_note_added", created_by=anna, at=world.clock.time())
    once.run(world.advance(timedelta(minutes=1)))

    after_due = world.advance(timedelta(hours=3))
    assert engine_state(world, answered, after_due).reaction.finished_at is not None
    service.run(after_due)

    assert stored_fields(world, answered) == expected_fields(
        engine_state(world, answered, after_due)
    )
    assert answered not in tasks_by_lead(world)
    assert_fields_match_engine(world, after_due)


def test_a_dry_run_cycle_plans_the_writes_and_sends_none(tmp_path: Path) -> None:
    world = build_world()
    now = world.now()
    world.fake.reset_request_log()

    report = make_cycle(world, tmp_path, dry_run=True).run(now)

    assert world.fake.request_log
    assert all(request.method == "GET" for request in world.fake.request_log)
    assert {write.lead_id for write in report.writes} == set(world.leads.values())
    assert report.tasks
    assert world.fake.tasks == []
    for lead_id in world.leads.values():
        assert sla_values_of(world, lead_id) == []
    # Nothing was kept either: a real cycle afterwards starts from scratch.
    assert make_cycle(world, tmp_path).run(now).full_sync


def test_a_request_closed_days_ago_costs_no_per_lead_event_calls_after_it_is_written(
    tmp_path: Path,
) -> None:
    world = build_world()
    anna = world.agents[0]
    closed = world.fake.add_lead(
        "closed last week",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=at(28, 10, 0, month=10),
        responsible_user_id=anna,
    )
    world.fake.add_event(closed, "outgoing_call", created_by=anna, at=at(28, 10, 20, month=10))
    world.fake.move_lead(closed, WON, by_user=anna, at=at(1, 12, 0))
    cycle = make_cycle(world, tmp_path)
    first = cycle.run(world.now())
    assert closed in {write.lead_id for write in first.writes}

    world.fake.reset_request_log()
    later = world.advance(timedelta(minutes=5))
    cycle.run(later)

    per_lead = [
        r
        for r in world.fake.request_log
        if r.path == "/api/v4/events" and "filter[entity_id]" in r.query
    ]
    assert per_lead == []
    assert writes(world.fake.request_log) == []
    assert stored_fields(world, closed) == expected_fields(engine_state(world, closed, later))


def test_a_worker_clock_running_ahead_of_amocrm_misses_no_change(tmp_path: Path) -> None:
    """The lead cursor is kept on amoCRM's clock (its Date header), not the worker's."""
    world = build_world()
    ahead = timedelta(minutes=10)
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now() + ahead)
    cycle.run(world.advance(timedelta(minutes=5)) + ahead)

    world.advance(timedelta(minutes=1))
    lead_id = world.leads["no_tariff"]
    world.fake.update_lead(lead_id, by_user=0, add_tags=["Приоритет"])
    later = world.advance(timedelta(minutes=5)) + ahead
    report = cycle.run(later)

    assert report.leads_read >= 1
    assert stored_fields(world, lead_id) == expected_fields(engine_state(world, lead_id, later))
    assert stored_fields(world, lead_id)["SLA: статус"] != "Нет тарифа"


def test_a_breach_is_logged_once_when_its_flag_is_written(tmp_path: Path) -> None:
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    with structlog.testing.capture_logs() as first:
        cycle.run(world.now())
    breached = {
        (entry["lead_id"], entry["clock"]) for entry in first if entry["event"] == "lead_breached"
    }
    flagged = {
        (lead_id, clock)
        for lead_id in world.leads.values()
        for clock, name in (
            ("reaction", "SLA: реакция просрочена"),
            ("resolution", "SLA: решение просрочено"),
        )
        if stored_fields(world, lead_id).get(name) is True
    }
    assert breached
    assert breached == flagged
    with structlog.testing.capture_logs() as second:
        cycle.run(world.advance(timedelta(minutes=1)))
    assert not [entry for entry in second if entry["event"] == "lead_breached"]


def test_a_stop_while_reading_leaves_nothing_half_done(tmp_path: Path) -> None:
    world = build_world()
    for number in range(600):
        world.fake.add_lead(f"Обращение {number}", pipeline_id=world.support.id, tags=["По факту"])
    cycle = make_cycle(world, tmp_path)
    inner = world.fake.transport

    class StopAfterFirstLeadPage(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.url.path == "/api/v4/leads" and request.method == "GET":
                cycle.request_stop()
            return response

    cycle.client = make_client(world.fake, world.clock, StopAfterFirstLeadPage())
    world.fake.reset_request_log()
    report = cycle.run(world.now())

    assert report.stopped_early
    log = world.fake.request_log
    assert not writes(log)
    assert sum(1 for r in log if r.path == "/api/v4/leads") == 1
    # A fresh start on the same state directory does the whole cycle, nothing lost.
    again = make_cycle(world, tmp_path)
    again.run(world.advance(timedelta(minutes=1)))
    assert_fields_match_engine(world, world.now())


def test_a_quiet_account_reads_its_newest_events_once_not_in_every_cycle(
    tmp_path: Path,
) -> None:
    """The feed's cursor follows amoCRM's clock: the minute of the newest event is read
    again by the next cycle (the cursor steps back a minute) and then never."""
    world = build_world()
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    lead_id = world.leads["priority_silent"]
    world.fake.add_event(
        lead_id, "outgoing_chat_message", created_by=world.agents[0], at=world.clock.wall
    )
    cycle.run(world.advance(timedelta(seconds=30)))
    answered = []
    for _ in range(3):
        world.fake.reset_request_log()
        cycle.run(world.advance(timedelta(minutes=5)))
        answered.append([r.status for r in world.fake.request_log if r.path == "/api/v4/events"])
    assert answered == [[200], [204], [204]]
