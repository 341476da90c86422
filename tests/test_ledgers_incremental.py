"""The ledgers planned company by company: what a cycle that plans only some companies must
not lose (a refused write, a refused task, a request tracked again), each checked against
the truth on amoCRM's full history and against planning every company afresh."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

import worker.ledgers.plan
from amo_client.models import Company, CustomFieldValues, FieldValue
from tests.cycle_kit import MOSCOW, STAGES, WON, World, make_cycle
from tests.ledger_kit import (
    SPENT,
    ledger_options,
    ledger_world,
    package_task_counts,
    refuse_companies,
    refuse_tasks,
    truth,
)
from tests.oracle import company_fields, lead_fields
from worker.cycle import CycleOptions, SyncCycle
from worker.fields import Ledger
from worker.ledgers.cache import LedgerCache, LedgerRead
from worker.ledgers.plan import touched_by
from worker.packed import PackedModels

PACKAGES = frozenset({Ledger.PACKAGES})


def add_request(world: World, company: int | None) -> int:
    """An open Микробизнес request of ``company``, registered now."""
    return world.fake.add_lead(
        "Обращение",
        pipeline_id=world.support.id,
        tags=["Микробизнес"],
        created_at=world.now().timestamp(),
        responsible_user_id=world.agents[0],
        company_id=company,
    )


def package_world(tmp_path: Path, hours: str) -> tuple[World, CycleOptions, SyncCycle, int, int]:
    """A company with a package paid today and one open request of it, synced once."""
    world = ledger_world()
    options = ledger_options(world.policy, PACKAGES)
    fake = world.fake
    company = fake.add_company("ООО Клиент", responsible_user_id=world.agents[1])
    hours_id = fake.field_id("Пакет: часов", entity="companies")
    paid_id = fake.field_id("Пакет: оплачен", entity="companies")
    assert hours_id is not None
    assert paid_id is not None
    paid = datetime.combine(world.now().astimezone(MOSCOW).date(), time(0), tzinfo=MOSCOW)
    fake.update_company(
        company,
        by_user=world.agents[1],
        custom_fields={hours_id: hours, paid_id: int(paid.timestamp())},
    )
    lead = add_request(world, company)
    cycle = make_cycle(world, tmp_path, options=options)
    cycle.run(world.now())
    return world, options, cycle, company, lead


def test_a_refused_company_write_is_made_at_the_next_cycle(tmp_path: Path) -> None:
    world, options, cycle, company, lead = package_world(tmp_path, "10")
    world.fake.add_note(lead, "Время: 90 мин", created_by=world.agents[0])
    world.advance(timedelta(minutes=5))

    setattr(cycle.client, "update_companies", refuse_companies)  # noqa: B010 - one cycle's refusal
    assert cycle.run(world.now()).companies_written == 0
    del cycle.client.__dict__["update_companies"]

    report = cycle.run(world.advance(timedelta(minutes=10)))
    assert not report.full_sync
    assert report.companies_written == 1
    expected = truth(world, world.now(), options.ledgers).company_expected(company)
    assert {k: company_fields(world, company).get(k) for k in expected} == expected
    assert expected["Пакет: израсходовано, мин"] == 90
    assert cycle.ledger_disagreements(world.now()) == []


def test_a_refused_package_task_is_tried_again_after_its_retry_time(tmp_path: Path) -> None:
    world, _options, cycle, _company, lead = package_world(tmp_path, "1")
    world.fake.add_note(lead, "Время: 90 мин", created_by=world.agents[0])
    world.advance(timedelta(minutes=5))

    setattr(cycle.client, "create_tasks", refuse_tasks)  # noqa: B010 - one cycle's refusal
    cycle.run(world.now())
    del cycle.client.__dict__["create_tasks"]
    assert sum(package_task_counts(world).values()) == 0
    assert cycle.ledger_disagreements(world.now()) == []  # still owed, and open

    for _ in range(8):  # 80 minutes of cycles, no full reconcile among them
        report = cycle.run(world.advance(timedelta(minutes=10)))
        assert not report.full_sync
    assert list(package_task_counts(world).values()) == [1]


def test_a_closed_request_tracked_again_gets_its_ledger_fields(tmp_path: Path) -> None:
    """Closed, dropped from the cache a day later, given a time note while untracked, then
    back (a contact linked): its facts are the ledgers' all along, its fields are written."""
    world = ledger_world()
    fake = world.fake
    company = fake.add_company("ООО Клиент", responsible_user_id=world.agents[1])
    lead = add_request(world, company)
    cycle = make_cycle(world, tmp_path, options=ledger_options(world.policy, PACKAGES))
    cycle.run(world.now())
    fake.move_lead(lead, WON, by_user=world.agents[0])
    cycle.run(world.advance(timedelta(minutes=10)))
    cycle.run(world.advance(timedelta(days=1, hours=7)))  # a full reconcile drops it
    assert cycle.tracked_lead(lead) is None
    fake.add_note(lead, "Время: 30 мин", created_by=world.agents[0])
    cycle.run(world.advance(timedelta(minutes=10)))
    fake.link_contact(lead, fake.add_contact("Иван"), by=world.agents[1])
    cycle.run(world.advance(timedelta(minutes=10)))
    assert cycle.tracked_lead(lead) is not None
    assert lead_fields(world, lead).get(SPENT) == 30
    assert cycle.ledger_disagreements(world.now()) == []


def test_a_company_left_and_rejoined_is_compared_with_what_was_written_to_it(
    tmp_path: Path,
) -> None:
    """The request leaves its company (the worker writes the company's use down to 0),
    the company is read no more, and the request comes back: its 90 minutes are written
    again, not taken as already there from the copy read before the first write."""
    world, options, cycle, company, lead = package_world(tmp_path, "10")
    fake, agent = world.fake, world.agents[0]
    fake.add_note(lead, "Время: 90 мин", created_by=agent)
    cycle.run(world.advance(timedelta(minutes=5)))
    assert company_fields(world, company).get("Пакет: израсходовано, мин") == 90

    fake.unlink_company(lead, by=agent)
    cycle.run(world.advance(timedelta(minutes=5)))
    assert company_fields(world, company).get("Пакет: израсходовано, мин") in (0, None)
    cycle.run(world.advance(timedelta(minutes=5)))  # the company's update is read past

    fake.link_company(lead, company, by=agent)
    report = cycle.run(world.advance(timedelta(minutes=5)))
    assert not report.full_sync
    expected = truth(world, world.now(), options.ledgers).company_expected(company)
    assert expected["Пакет: израсходовано, мин"] == 90
    assert {k: company_fields(world, company).get(k) for k in expected} == expected
    assert cycle.ledger_disagreements(world.now()) == []


def test_a_request_closed_before_the_first_start_and_reopened_counts_its_old_time(
    tmp_path: Path,
) -> None:
    """Opened 100 days and closed 30 days before the worker came, with time logged when it
    was opened: the ledgers hold it (closed within their 62-day horizon), but the first
    notes read starts at that horizon, past its note. Reopened, its notes are read by id
    and its minutes counted."""
    world = ledger_world()
    fake, agent = world.fake, world.agents[0]
    opened = world.now() - timedelta(days=100)
    lead = fake.add_lead(
        "Старое обращение",
        pipeline_id=world.support.id,
        tags=["Микробизнес"],
        created_at=opened.timestamp(),
        responsible_user_id=agent,
    )
    fake.add_note(
        lead, "Время: 40 мин", created_by=agent, at=(opened + timedelta(hours=2)).timestamp()
    )
    closed = world.now() - timedelta(days=30)
    fake.move_lead(lead, WON, by_user=agent, at=closed.timestamp())
    add_request(world, company=fake.add_company("ООО Клиент"))  # an open request of today
    cycle = make_cycle(world, tmp_path, options=ledger_options(world.policy, PACKAGES))
    cycle.run(world.now())

    fake.move_lead(lead, world.support.status(STAGES[1]), by_user=agent)
    cycle.run(world.advance(timedelta(minutes=5)))
    assert lead_fields(world, lead).get(SPENT) == 40
    assert cycle.ledger_disagreements(world.now()) == []


def test_a_plan_made_one_company_at_a_time_equals_planning_them_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner plans a batch of companies at a time (memory holds one batch's figures):
    with batches of one, five companies with packages and quotas, and requests of no company,
    every field equals the truth and planning everything at once finds nothing else."""
    monkeypatch.setattr(worker.ledgers.plan, "PLAN_BATCH", 1)
    world = ledger_world()
    options = ledger_options(world.policy, frozenset({Ledger.PACKAGES, Ledger.QUOTAS}))
    fake = world.fake
    hours_id = fake.field_id("Пакет: часов", entity="companies")
    paid_id = fake.field_id("Пакет: оплачен", entity="companies")
    assert hours_id is not None
    assert paid_id is not None
    paid = datetime.combine(world.now().astimezone(MOSCOW).date(), time(0), tzinfo=MOSCOW)
    companies = [fake.add_company(f"ООО Клиент {n}") for n in range(5)]
    leads: list[int] = []
    for n, company in enumerate(companies):
        fake.update_company(
            company,
            by_user=world.agents[1],
            custom_fields={hours_id: str(n + 1), paid_id: int(paid.timestamp())},
        )
        for _ in range(n + 1):
            leads.append(add_request(world, company))
            fake.add_note(leads[-1], f"Время: {30 * (n + 1)} мин", created_by=world.agents[0])
    leads.append(add_request(world, company=None))
    cycle = make_cycle(world, tmp_path, options=options)
    cycle.run(world.now())
    cycle.run(world.advance(timedelta(minutes=5)))

    expected = truth(world, world.now(), options.ledgers)
    for company in companies:
        wanted = expected.company_expected(company)
        assert {k: company_fields(world, company).get(k) for k in wanted} == wanted
    for lead in leads:
        wanted = expected.lead_expected(lead)
        assert {k: lead_fields(world, lead)[k] for k in wanted} == wanted
    assert company_fields(world, companies[0]).get("Пакет: израсходовано, мин") == 30
    assert cycle.ledger_disagreements(world.now()) == []


def _company(values: dict[int, object], *, text: bool, enum: int | None = None) -> Company:
    """A company with package fields: as the worker cached its own write (``text`` False),
    or as amoCRM sends it back (numbers as text, names and types, the option's text)."""
    fields = [
        CustomFieldValues(
            field_id=field_id,
            field_name=f"Поле {field_id}" if text else None,
            field_type="numeric" if text else None,
            values=[FieldValue(value=str(value) if text else value)],
        )
        for field_id, value in values.items()
    ]
    if enum is not None:
        fields.append(
            CustomFieldValues(
                field_id=7,
                values=[FieldValue(enum_id=enum, value="Действует" if text else None)],
            )
        )
    return Company(
        id=40000001,
        name="ООО Клиент",
        responsible_user_id=5000001,
        updated_at=datetime(2025, 11, 5, 10, 0, 5 if text else 0, tzinfo=UTC),
        custom_fields_values=fields,
    )


def _read_of(company: Company) -> LedgerRead:
    return LedgerRead(
        requests={},
        dropped_requests=frozenset(),
        entries={},
        dropped_entries=frozenset(),
        companies=PackedModels(Company, {company.id: company}),
        dropped_companies=frozenset(),
        left_companies=frozenset(),
        notes_cursor=0,
        companies_cursor=0,
    )


@pytest.mark.parametrize(
    ("read_back", "planned"),
    [
        pytest.param(_company({5: 90, 6: 510}, text=True, enum=3), False, id="own-write-read-back"),
        pytest.param(_company({5: 90, 6: 500}, text=True, enum=3), True, id="a-value-changed"),
        pytest.param(_company({5: 90, 6: 510}, text=True, enum=4), True, id="another-option"),
        pytest.param(_company({5: 90}, text=True, enum=3), True, id="a-value-cleared"),
    ],
)
def test_a_company_read_back_as_the_worker_wrote_it_is_not_planned_again(
    read_back: Company, planned: bool
) -> None:
    cached = _company({5: 90, 6: 510}, text=False, enum=3)
    cache = LedgerCache(requests={}, entries={}, companies=PackedModels(Company))
    cache.companies[read_back.id] = cached
    touched = touched_by(cache, _read_of(read_back))
    assert (read_back.id in touched.companies) is planned


def test_the_ledgers_summary_counts_packages_and_the_time_notes_that_count_nothing(
    tmp_path: Path,
) -> None:
    world, _options, cycle, _company, lead = package_world(tmp_path, "10")
    other = world.fake.add_company("ООО Другой", responsible_user_id=world.agents[1])
    add_request(world, other)
    hours_id = world.fake.field_id("Пакет: часов", entity="companies")
    third = world.fake.add_company("ООО Третий", responsible_user_id=world.agents[1])
    assert hours_id is not None
    # Hours without the date they were paid: no package can be told from it.
    world.fake.update_company(third, by_user=world.agents[1], custom_fields={hours_id: "10"})
    add_request(world, third)
    world.fake.add_note(lead, "Время: 90 мин", created_by=world.agents[0])
    world.fake.add_note(lead, "Время: полтора часа", created_by=world.agents[0])

    cycle.run(world.advance(timedelta(minutes=5)))

    assert cycle.ledgers_summary() == (
        "ledgers: 3 companies linked to support requests, 1 with an hour package (1 whose "
        "package fields cannot be read); 1 time entries, 1 time notes that cannot be read "
        "(each logged as lead_problem)"
    )
