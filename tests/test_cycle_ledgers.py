"""The company ledgers end to end against the fake amoCRM: time notes, hour packages and
quotas written into the company's and the leads' fields, their tasks once, and what the
ledgers cost in requests.

Expected values are computed by hand from spec §7, not by the worker."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amo_client.errors import ServerError
from sla.policy import load_policy
from tests.cycle_kit import (
    LOST,
    MOSCOW,
    STAGES,
    WON,
    World,
    at,
    build_world,
    make_cycle,
    task_options,
)
from tests.oracle import company_fields, lead_fields
from worker.admin import provision
from worker.cycle import CycleOptions, SyncCycle
from worker.fields import Ledger
from worker.ledgers.options import LedgerOptions
from worker.setup import StageOptions

Logs = list[MutableMapping[str, Any]]
PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"


def ledger_world(*ledgers: Ledger) -> World:
    world = build_world(seed=False)
    if Ledger.QUOTAS in ledgers:
        world.policy = load_policy((PRESETS / "prime_gate.toml").read_text(encoding="utf-8"))
    provision(world.client, dry_run=False, say=lambda line: None, ledgers=frozenset(ledgers))
    return world


def ledger_cycle(
    world: World, state_dir: Path, *ledgers: Ledger, unit_minutes: int = 5
) -> SyncCycle:
    stages = StageOptions(
        pipeline="Техподдержка",
        hold_stages=(STAGES[2],),
        acceptance_stages=(STAGES[3],),
        ledgers=frozenset(ledgers),
    )
    options = CycleOptions(
        stages=stages,
        tasks=task_options(),
        ledgers=LedgerOptions(
            packages=Ledger.PACKAGES in ledgers,
            quotas=world.policy.quotas if Ledger.QUOTAS in ledgers else (),
            zone=MOSCOW,
            unit=unit_minutes * 60,
        ),
    )
    return make_cycle(world, state_dir, options=options)


def package_company(world: World, hours: float, paid: datetime) -> int:
    fake = world.fake
    hours_id = fake.field_id("Пакет: часов", entity="companies")
    paid_id = fake.field_id("Пакет: оплачен", entity="companies")
    assert hours_id is not None
    assert paid_id is not None
    return fake.add_company(
        "ООО Ромашка",
        responsible_user_id=world.agents[1],
        custom_fields={hours_id: hours, paid_id: int(paid.timestamp())},
    )


def request(world: World, company_id: int | None, *tags: str, created: float) -> int:
    return world.fake.add_lead(
        "Настроить воронку",
        pipeline_id=world.support.id,
        tags=list(tags),
        created_at=created,
        responsible_user_id=world.agents[0],
        company_id=company_id,
    )


def log_time(world: World, lead_id: int, text: str, moment: float) -> int:
    return world.fake.add_note(lead_id, text, created_by=world.agents[0], at=moment)


def run_at(cycle: SyncCycle, world: World, moment: float) -> None:
    world.clock.advance(moment - world.clock.time())
    cycle.run(world.now())


def package_tasks(world: World, company_id: int) -> list[str]:
    return [
        str(task["text"])
        for task in world.fake.tasks
        if task.get("entity_type") == "companies" and task["entity_id"] == company_id
    ]


PAID = datetime(2025, 11, 3, 15, 0, tzinfo=MOSCOW)


def test_time_notes_fill_the_package_until_it_runs_out(tmp_path: Path) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 1 ч 30 мин — настройка воронки", at(5, 10, 30))
    log_time(world, lead_id, "Время: 21", at(5, 11, 0))  # 25 after rounding
    log_time(world, lead_id, "Обсудили задачу", at(5, 11, 5))  # no entry
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))

    fields = company_fields(world, company)
    valid_to = int(datetime(2025, 12, 3, tzinfo=MOSCOW).timestamp())
    assert fields["Пакет: действует до"] == valid_to
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (115, 5)
    assert fields["Пакет: статус"] == "Под угрозой"
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 115
    assert not lead_fields(world, lead_id)["Пакет: исчерпан"]
    assert package_tasks(world, company) == []

    log_time(world, lead_id, "Время: 10 мин — проверка", at(5, 13, 0))
    run_at(cycle, world, at(5, 13, 5))
    run_at(cycle, world, at(5, 13, 10))

    fields = company_fields(world, company)
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (125, -5)
    assert lead_fields(world, lead_id)["Пакет: исчерпан"] is True
    tasks = package_tasks(world, company)
    assert len(tasks) == 1
    assert "израсходовано 2 ч 5 мин из 2 ч" in tasks[0]


def test_the_policys_unit_rounds_every_entry_and_a_restart_counts_in_the_unit_of_now(
    tmp_path: Path,
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 1 ч 30 мин", at(5, 10, 30))  # 90: whole units of 15
    log_time(world, lead_id, "Время: 21", at(5, 11, 0))  # 30 in 15-minute units
    log_time(world, lead_id, "Время: 1", at(5, 11, 5))  # 15
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES, unit_minutes=15)
    run_at(cycle, world, at(5, 12, 0))

    fields = company_fields(world, company)
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (135, -15)
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 135
    cycle.store.close()

    # The policy changes to 1-minute units: the entries the state kept count in the new unit.
    again = ledger_cycle(world, tmp_path, Ledger.PACKAGES, unit_minutes=1)
    run_at(again, world, at(5, 12, 5))
    fields = company_fields(world, company)
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (112, 8)
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 112


def test_an_edited_note_changes_its_entry_and_a_deleted_one_removes_it(tmp_path: Path) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    first = log_time(world, lead_id, "Время: 30", at(5, 10, 30))
    second = log_time(world, lead_id, "Время: 1 ч", at(5, 11, 0))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 90

    world.fake.edit_note(first, "Время: 45 мин", by=world.agents[0], at=at(5, 12, 10))
    world.fake.delete_note(second, by=world.agents[0], at=at(5, 12, 20))
    run_at(cycle, world, at(5, 12, 30))
    run_at(cycle, world, at(5, 12, 35))

    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 45
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 45


def test_an_unreadable_time_note_is_a_problem_naming_the_lead_and_the_note(
    tmp_path: Path, logs: Logs
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    note = log_time(world, lead_id, "Время: полчаса", at(5, 10, 30))
    run_at(ledger_cycle(world, tmp_path, Ledger.PACKAGES), world, at(5, 12, 0))

    problems = [e for e in logs if e["event"] == "lead_problem" and e.get("note_id") == note]
    assert [e["lead_id"] for e in problems] == [lead_id]
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 0


def test_a_new_payment_date_starts_a_new_package(tmp_path: Path) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 2 ч 30 мин", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert company_fields(world, company)["Пакет: остаток, мин"] == -30

    paid_id = world.fake.field_id("Пакет: оплачен", entity="companies") or 0
    renewed = datetime(2025, 11, 5, 14, 0, tzinfo=MOSCOW)
    world.fake.update_company(
        company, by_user=world.agents[1], custom_fields={paid_id: int(renewed.timestamp())}
    )
    log_time(world, lead_id, "Время: 15", at(5, 14, 30))
    run_at(cycle, world, at(5, 15, 0))

    fields = company_fields(world, company)
    # Paid on the 5th: the day's earlier work belongs to it too; the 3rd's does not.
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (165, -45)
    assert fields["Пакет: действует до"] == int(datetime(2025, 12, 5, tzinfo=MOSCOW).timestamp())
    assert len(package_tasks(world, company)) == 2  # one per package


def test_the_package_task_is_created_once_across_a_crash_and_a_lost_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 2 ч 10 мин", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path / "a", Ledger.PACKAGES)

    class Crash(BaseException):
        pass

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(cycle.store, "record_task", crash)
    with pytest.raises(Crash):
        run_at(cycle, world, at(5, 12, 0))
    assert len(package_tasks(world, company)) == 1  # created; the record never written

    for state_dir in ("a", "b"):  # the same directory after the crash, then a lost one
        run_at(ledger_cycle(world, tmp_path / state_dir, Ledger.PACKAGES), world, at(5, 12, 30))
        world.clock.advance(60)

    assert len(package_tasks(world, company)) == 1


def prime_gate_request(world: World, company: int | None, created: datetime, *tags: str) -> int:
    return request(world, company, "Микробизнес", "Настройка", *tags, created=created.timestamp())


def test_the_third_setup_of_a_two_setup_plan_goes_over_its_quota(tmp_path: Path) -> None:
    world = ledger_world(Ledger.QUOTAS)
    company = world.fake.add_company("ИП Сидоров", responsible_user_id=world.agents[1])
    day = datetime(2025, 11, 5, 10, 0, tzinfo=MOSCOW)
    old = prime_gate_request(world, company, day - timedelta(days=400))  # 13 months ago
    lost = prime_gate_request(world, company, day - timedelta(days=30))
    world.fake.move_lead(
        lost, LOST, by_user=world.agents[0], at=(day - timedelta(days=29)).timestamp()
    )
    first = prime_gate_request(world, company, day - timedelta(days=20))
    second = prime_gate_request(world, company, day - timedelta(days=10))
    third = prime_gate_request(world, company, day)
    cycle = ledger_cycle(world, tmp_path, Ledger.QUOTAS)
    run_at(cycle, world, at(5, 12, 0))

    over = {i: bool(lead_fields(world, i)["Квота: сверх лимита"]) for i in (first, second, third)}
    assert over == {first: False, second: False, third: True}
    quota_tasks = [t for t in world.fake.tasks if "[Квота: Настройки]" in str(t["text"])]
    assert [t["entity_id"] for t in quota_tasks] == [third]
    assert "3-е по квоте «Настройки»" in str(quota_tasks[0]["text"])
    summary = company_fields(world, company)["Квоты"]
    assert str(summary).startswith("Настройки: 3 из 2")
    assert not lead_fields(world, old)["Квота: сверх лимита"]


def test_a_request_without_a_company_is_a_problem_and_counts_toward_nothing(
    tmp_path: Path, logs: Logs
) -> None:
    world = ledger_world(Ledger.QUOTAS)
    orphan = prime_gate_request(world, None, datetime(2025, 11, 5, 10, 0, tzinfo=MOSCOW))
    run_at(ledger_cycle(world, tmp_path, Ledger.QUOTAS), world, at(5, 12, 0))

    problems = [e for e in logs if e["event"] == "lead_problem" and e["lead_id"] == orphan]
    assert any("no company" in str(e["problem"]) for e in problems)
    assert not lead_fields(world, orphan)["Квота: сверх лимита"]


def test_ledgers_off_spend_nothing_on_notes_or_companies(tmp_path: Path) -> None:
    world = ledger_world()
    company = world.fake.add_company("ООО Ромашка", responsible_user_id=world.agents[1])
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 30", at(5, 10, 30))
    cycle = make_cycle(world, tmp_path)
    world.fake.reset_request_log()
    run_at(cycle, world, at(5, 12, 0))
    run_at(cycle, world, at(5, 12, 5))

    paths = {r.path for r in world.fake.request_log}
    assert not {p for p in paths if "notes" in p or "companies" in p}


def test_a_steady_cycle_with_both_ledgers_costs_four_requests(tmp_path: Path) -> None:
    world = ledger_world(Ledger.PACKAGES, Ledger.QUOTAS)
    company = package_company(world, 5, PAID)
    lead_id = request(world, company, "Микробизнес", "Настройка", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 30", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES, Ledger.QUOTAS)
    for minute in (0, 5, 10):
        run_at(cycle, world, at(5, 12, minute))
    world.fake.reset_request_log()
    run_at(cycle, world, at(5, 12, 15))

    paths = sorted(r.path for r in world.fake.request_log)
    assert paths == ["/api/v4/companies", "/api/v4/events", "/api/v4/leads", "/api/v4/leads/notes"]
    assert {r.method for r in world.fake.request_log} == {"GET"}


def test_the_ledgers_rebuild_from_amocrm_when_the_state_directory_is_lost(
    tmp_path: Path,
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 40", at(5, 10, 30))
    run_at(ledger_cycle(world, tmp_path / "a", Ledger.PACKAGES), world, at(5, 12, 0))
    world.fake.move_lead(lead_id, 142, by_user=world.agents[0], at=at(5, 12, 10))
    second = request(world, company, "Приоритет", created=at(5, 12, 20))
    log_time(world, second, "Время: 20", at(5, 12, 30))

    run_at(ledger_cycle(world, tmp_path / "b", Ledger.PACKAGES), world, at(5, 13, 0))

    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 60


def test_the_exhausted_flag_leaves_a_request_once_it_is_closed_or_in_acceptance(
    tmp_path: Path,
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    working = request(world, company, "Приоритет", created=at(5, 10, 0))
    checked = request(world, company, "Приоритет", created=at(5, 10, 5))
    log_time(world, working, "Время: 2 ч 30 мин", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert lead_fields(world, checked)["Пакет: исчерпан"] is True

    acceptance = world.support.status(STAGES[3])
    world.fake.move_lead(checked, acceptance, by_user=world.agents[0], at=at(5, 12, 10))
    run_at(cycle, world, at(5, 12, 20))

    assert not lead_fields(world, checked)["Пакет: исчерпан"]
    assert lead_fields(world, working)["Пакет: исчерпан"] is True


def test_ledgers_switched_on_later_count_every_open_request_and_the_closed_ones(
    tmp_path: Path,
) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    quiet = request(world, company, "Приоритет", created=at(5, 9, 0))
    closed = request(world, company, "Приоритет", created=at(5, 9, 10))
    log_time(world, quiet, "Время: 40 мин", at(5, 9, 30))
    log_time(world, closed, "Время: 20 мин", at(5, 9, 40))
    world.fake.move_lead(closed, LOST, by_user=world.agents[0], at=at(5, 9, 50))
    without = ledger_cycle(world, tmp_path)
    run_at(without, world, at(5, 10, 0))  # a full sync without the ledgers
    run_at(without, world, at(5, 10, 5))
    without.store.close()

    # Switched on five minutes later: the quiet request changed in no way the next read sees.
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 10, 10))

    fields = company_fields(world, company)
    assert (fields["Пакет: израсходовано, мин"], fields["Пакет: остаток, мин"]) == (60, 60)
    assert lead_fields(world, quiet)["SLA: затрачено, мин"] == 40


def test_old_request_closed_keeps_its_entries_in_the_package(tmp_path: Path) -> None:
    """A request registered more than the 62-day horizon ago, worked on and closed inside the
    current package: its entries are inside the validity and must keep counting (§7.2)."""
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    created = datetime(2025, 8, 20, 10, 0, tzinfo=MOSCOW).timestamp()  # 77 days before
    old = request(world, company, "Приоритет", created=created)
    log_time(world, old, "Время: 1 ч", at(5, 10, 0))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 60

    world.fake.move_lead(old, 142, by_user=world.agents[0], at=at(5, 12, 10))
    run_at(cycle, world, at(5, 12, 20))
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 60
    # Two days later the closed request is no longer tracked (closed_retention = 1 day).
    for day in (7, 8):
        run_at(cycle, world, at(day, 12, 0))
        run_at(cycle, world, at(day, 12, 5))
    fresh = request(world, company, "Приоритет", created=at(8, 13, 0))
    log_time(world, fresh, "Время: 30", at(8, 13, 10))
    run_at(cycle, world, at(8, 13, 20))
    run_at(cycle, world, at(8, 13, 25))
    # 60 (old request, logged on Nov 5 inside the package) + 30 (new request)
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 90


def test_spent_minutes_of_a_long_open_request_do_not_shrink(tmp_path: Path) -> None:
    """§7.1: «SLA: затрачено, мин» holds the sum of the lead's rounded entries."""
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 1 ч", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 60

    later = datetime(2026, 1, 20, 12, 0, tzinfo=MOSCOW)  # 76 days later, still open
    log_time(world, lead_id, "Время: 10 мин", later.timestamp() - 600)
    run_at(cycle, world, later.timestamp())
    run_at(cycle, world, later.timestamp() + 300)
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 70


def thirty_minutes_logged(tmp_path: Path) -> tuple[World, int, int, SyncCycle]:
    """A company with a 2-hour package and a request of it with 30 minutes logged, after
    a first cycle at 12:00."""
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 2, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 30 мин", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    return world, company, lead_id, cycle


def test_a_company_deleted_in_amocrm_is_dropped_at_the_next_full_reconcile(
    tmp_path: Path, logs: Logs
) -> None:
    world, company, lead_id, cycle = thirty_minutes_logged(tmp_path)
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 30

    world.fake.delete_company(company)
    log_time(world, lead_id, "Время: 20 мин", at(5, 12, 10))
    run_at(cycle, world, at(5, 12, 15))  # not a full reconcile: the write is refused once
    run_at(cycle, world, at(5, 18, 0))  # a full reconcile finds the company gone
    logs.clear()
    log_time(world, lead_id, "Время: 20 мин", at(5, 18, 10))
    run_at(cycle, world, at(5, 18, 15))
    run_at(cycle, world, at(5, 18, 20))

    assert not [line for line in logs if line["event"] == "company_invalid"]
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 70
    assert cycle.store.load_rows("companies") == {}


@dataclass
class Relinked:
    """A request with 30 minutes logged, counted against its first company's package, then
    linked to a second company at 12:10."""

    world: World
    cycle: SyncCycle
    first: int
    second: int


def relinked_request(tmp_path: Path) -> Relinked:
    world = ledger_world(Ledger.PACKAGES)
    first = package_company(world, 2, PAID)
    second = package_company(world, 2, PAID)
    lead_id = request(world, first, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 30 мин", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    assert company_fields(world, first)["Пакет: израсходовано, мин"] == 30
    world.fake.link_company(lead_id, second, by=world.agents[0], at=at(5, 12, 10))
    return Relinked(world, cycle, first, second)


def test_a_request_moved_to_another_company_leaves_the_first_ones_package(
    tmp_path: Path,
) -> None:
    moved = relinked_request(tmp_path)
    world, cycle = moved.world, moved.cycle
    run_at(cycle, world, at(5, 12, 15))
    run_at(cycle, world, at(5, 12, 20))
    run_at(cycle, world, at(5, 18, 0))  # a full reconcile too

    assert company_fields(world, moved.second)["Пакет: израсходовано, мин"] == 30
    assert company_fields(world, moved.first)["Пакет: израсходовано, мин"] == 0


def test_a_reopened_old_request_counts_its_earlier_entries(tmp_path: Path) -> None:
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    created = datetime(2025, 8, 1, 10, 0, tzinfo=MOSCOW).timestamp()
    old = request(world, company, "Приоритет", created=created)
    log_time(world, old, "Время: 40 мин", datetime(2025, 8, 1, 11, 0, tzinfo=MOSCOW).timestamp())
    world.fake.move_lead(
        old, 142, by_user=world.agents[0], at=datetime(2025, 8, 2, tzinfo=MOSCOW).timestamp()
    )
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    run_at(cycle, world, at(5, 12, 5))

    world.fake.move_lead(
        old, world.support.status(STAGES[1]), by_user=world.agents[0], at=at(5, 12, 10)
    )
    log_time(world, old, "Время: 10 мин", at(5, 12, 20))
    run_at(cycle, world, at(5, 12, 30))
    run_at(cycle, world, at(5, 12, 35))
    assert lead_fields(world, old)["SLA: затрачено, мин"] == 50
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 10


def test_spent_minutes_of_a_request_closed_today_agree_after_a_lost_state(
    tmp_path: Path,
) -> None:
    """An open request registered 76 days ago, closed today: the running worker wrote 70;
    rebuilt from amoCRM in the closed-retention day the worker must not write 10."""
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    lead_id = request(world, company, "Приоритет", created=at(5, 10, 0))
    log_time(world, lead_id, "Время: 1 ч", at(5, 10, 30))
    cycle = ledger_cycle(world, tmp_path / "a", Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    later = datetime(2026, 1, 20, 12, 0, tzinfo=MOSCOW).timestamp()
    log_time(world, lead_id, "Время: 10 мин", later - 600)
    run_at(cycle, world, later)
    world.fake.move_lead(lead_id, 142, by_user=world.agents[0], at=later + 60)
    run_at(cycle, world, later + 300)
    run_at(cycle, world, later + 600)
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 70

    lost = ledger_cycle(world, tmp_path / "b", Ledger.PACKAGES)
    run_at(lost, world, later + 900)
    run_at(lost, world, later + 1200)
    assert lead_fields(world, lead_id)["SLA: затрачено, мин"] == 70


def test_time_notes_of_leads_outside_the_ledgers_do_not_stay_forever(tmp_path: Path) -> None:
    """A «Время:» note on a sales lead is read account-wide and stored; nothing ever drops it
    (entries now leave only with a dropped request), so the state grows without bound."""
    world = ledger_world(Ledger.PACKAGES)
    company = package_company(world, 5, PAID)
    sales = world.fake.add_lead(
        "Продажа", pipeline_id=world.other.id, created_at=at(5, 9, 0), company_id=company
    )
    log_time(world, sales, "Время: 30 мин", at(5, 9, 30))
    cycle = ledger_cycle(world, tmp_path, Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 0))
    later = datetime(2026, 3, 1, 12, 0, tzinfo=MOSCOW).timestamp()  # ~4 months later
    run_at(cycle, world, later)
    run_at(cycle, world, later + 300)
    run_at(cycle, world, later + 6 * 3600)  # a full reconcile
    assert cycle.store.load_rows("time_notes") == {}


def test_the_company_a_request_left_is_written_even_when_its_first_write_fails(
    tmp_path: Path,
) -> None:
    moved = relinked_request(tmp_path)
    world, cycle = moved.world, moved.cycle
    world.fake.fail_next(20, status=503, path="/api/v4/companies", method="PATCH")
    with pytest.raises(ServerError):
        run_at(cycle, world, at(5, 12, 15))
    world.fake.clear_faults()
    run_at(cycle, world, at(5, 12, 20))

    assert company_fields(world, moved.first)["Пакет: израсходовано, мин"] == 0
    assert company_fields(world, moved.second)["Пакет: израсходовано, мин"] == 30


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ("0,001", "at least one 5-minute unit"),
        ("100000000000000000000", "at most 10,000 hours"),
        ("десять", "not a number of hours and a date"),
    ],
)
def test_a_package_too_small_or_too_large_to_be_real_is_named_not_tracked(
    hours: str, problem: str
) -> None:
    from amo_client.models import Company
    from worker.fields import CompanyField, CompanyFieldMap
    from worker.ledgers.company import package_of

    fields = CompanyFieldMap(
        ids={CompanyField.PACKAGE_HOURS: 1, CompanyField.PACKAGE_PAID: 2}, status_enum_ids={}
    )
    company = Company.model_validate(
        {
            "id": 40000001,
            "name": "ООО Ромашка",
            "custom_fields_values": [
                {"field_id": 1, "values": [{"value": hours}]},
                {"field_id": 2, "values": [{"value": 1761944400}]},
            ],
        }
    )

    found = package_of(company, fields, MOSCOW)

    assert isinstance(found, str)
    assert problem in found
    assert "the package is not tracked" in found


def test_a_company_a_request_left_while_the_state_was_lost_holds_its_uses_no_more(
    tmp_path: Path,
) -> None:
    moved = relinked_request(tmp_path / "state")
    world = moved.world
    # The state directory is lost; a new worker starts on the account after the relink.
    cycle = ledger_cycle(world, tmp_path / "new-state", Ledger.PACKAGES)
    run_at(cycle, world, at(5, 12, 15))

    assert company_fields(world, moved.first)["Пакет: израсходовано, мин"] == 0
    assert company_fields(world, moved.second)["Пакет: израсходовано, мин"] == 30


def test_a_closed_request_moved_into_the_pipeline_counts_from_its_move_at_the_first_start(
    tmp_path: Path,
) -> None:
    """Spec §1: registration is the move into the support pipeline. A set-up created 13
    months ago in the sales pipeline, moved into support two months ago and done since,
    is within the quota's twelve months; its creation is not."""
    world = ledger_world(Ledger.QUOTAS)
    company = world.fake.add_company("ИП Сидоров", responsible_user_id=world.agents[1])
    day = datetime(2025, 11, 5, 10, 0, tzinfo=MOSCOW)
    moved = world.fake.add_lead(
        "Настроить воронку",
        pipeline_id=world.other.id,
        tags=["Микробизнес", "Настройка"],
        created_at=(day - timedelta(days=400)).timestamp(),
        responsible_user_id=world.agents[0],
        company_id=company,
    )
    world.fake.move_lead(
        moved,
        world.support.status(STAGES[1]),
        pipeline_id=world.support.id,
        by_user=world.agents[0],
        at=(day - timedelta(days=60)).timestamp(),
    )
    world.fake.move_lead(
        moved, WON, by_user=world.agents[0], at=(day - timedelta(days=50)).timestamp()
    )
    first = prime_gate_request(world, company, day - timedelta(days=20))
    second = prime_gate_request(world, company, day)
    cycle = ledger_cycle(world, tmp_path, Ledger.QUOTAS)
    run_at(cycle, world, at(5, 12, 0))

    assert not lead_fields(world, first)["Квота: сверх лимита"]
    assert lead_fields(world, second)["Квота: сверх лимита"]
    assert str(company_fields(world, company)["Квоты"]).startswith("Настройки: 3 из 2")


def test_a_company_a_full_reconcile_s_read_leaves_out_is_kept_without_amocrm_s_word(
    tmp_path: Path, logs: Logs
) -> None:
    world, company, lead_id, cycle = thirty_minutes_logged(tmp_path)
    world.fake.odd_answer_next("no_content", 2, path="/api/v4/companies", method="GET")

    run_at(cycle, world, at(5, 18, 0))  # a full reconcile whose companies read is a 204

    assert not [line for line in logs if "no longer has this company" in str(line)]
    assert company in cycle.store.load_rows("companies")
    log_time(world, lead_id, "Время: 20 мин", at(5, 18, 10))
    run_at(cycle, world, at(5, 18, 15))
    assert company_fields(world, company)["Пакет: израсходовано, мин"] == 50
