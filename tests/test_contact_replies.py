"""Replies amoCRM files on the contact (spec §4): they count for the contact's one open
request, for none when several are open, and cost no request of their own."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sla.replies import RequestSpan, attribute
from tests.cycle_kit import World, at, build_world, make_cycle
from tests.oracle import contact_replies, engine_state, expected_fields, stored_fields
from worker.cycle import SyncCycle

Logs = list[MutableMapping[str, Any]]


def moment(hour: int, minute: int = 0) -> datetime:
    return datetime.fromtimestamp(at(5, hour, minute), UTC)


SPANS = {
    "open": RequestSpan(1, moment(9), None),
    "also-open": RequestSpan(2, moment(9, 30), None),
    "closed-before": RequestSpan(3, moment(8), moment(9, 45)),
    "registered-after": RequestSpan(4, moment(11), None),
    "closed-after": RequestSpan(5, moment(8), moment(12)),
}

ATTRIBUTIONS = [
    # (the contact's requests, the reply at 10:00 counts for, the candidates)
    pytest.param(["open"], 1, (1,), id="one-open"),
    pytest.param(["open", "closed-before"], 1, (1,), id="one-open-one-closed-before"),
    pytest.param(["open", "registered-after"], 1, (1,), id="one-open-one-registered-after"),
    pytest.param(["open", "also-open"], None, (1, 2), id="two-open-is-ambiguous"),
    pytest.param(["closed-before", "registered-after"], None, (), id="none-open"),
    pytest.param(["closed-after"], 5, (5,), id="closed-after-the-reply"),
    pytest.param([], None, (), id="no-request"),
]


def reaction_of(cycle: SyncCycle, lead_id: int, now: datetime) -> datetime | None:
    """When the request's reaction came, as the cycle's copy of it says at ``now``."""
    state = cycle.state(lead_id, now)
    assert state is not None, f"lead {lead_id} is not tracked"
    return state.reaction.finished_at


@pytest.mark.parametrize(("names", "lead_id", "candidates"), ATTRIBUTIONS)
def test_a_contact_reply_counts_for_the_one_request_open_then(
    names: list[str], lead_id: int | None, candidates: tuple[int, ...]
) -> None:
    found = attribute(moment(10), [SPANS[name] for name in names])
    assert found.lead_id == lead_id
    assert found.candidates == candidates
    assert found.ambiguous == (len(candidates) > 1)


def contact_world() -> World:
    world = build_world(seed=False)
    world.fake.replies_filed_on = "contact"
    return world


def request_of(world: World, contact_id: int, *, created: float) -> int:
    lead_id = world.fake.add_lead(
        "Не приходят уведомления",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=created,
        responsible_user_id=world.agents[0],
    )
    world.fake.link_contact(lead_id, contact_id, at=created)
    return lead_id


def two_open_requests(tmp_path: Path) -> tuple[World, int, int, int, SyncCycle]:
    """One contact, two open requests of it, and a first cycle over them."""
    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    first = request_of(world, contact, created=at(5, 11, 30))
    second = request_of(world, contact, created=at(5, 11, 40))
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    return world, contact, first, second, cycle


def matches_engine(world: World, lead_id: int) -> bool:
    return stored_fields(world, lead_id) == expected_fields(
        engine_state(world, lead_id, world.now())
    )


def test_a_reply_on_the_contact_of_a_request_deleted_then_is_its_reaction_once_restored(
    tmp_path: Path,
) -> None:
    """The reply comes while the request is open; the request is deleted before the worker
    reads it, so it is given to no request; restored, the request reads its contact's
    replies again (its own events the worker kept)."""
    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    lead_id = request_of(world, contact, created=at(5, 11, 30))
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    replied = world.advance(timedelta(minutes=5))
    world.fake.reply(lead_id, "outgoing_chat_message", created_by=world.agents[0])
    world.fake.delete_lead(lead_id, by=world.agents[1])
    cycle.run(world.advance(timedelta(hours=1)))
    assert cycle.tracked_lead(lead_id) is None

    world.fake.restore_lead(lead_id, by=world.agents[1])
    cycle.run(world.advance(timedelta(minutes=1)))

    assert stored_fields(world, lead_id)["SLA: реакция"] == int(replied.timestamp())
    assert matches_engine(world, lead_id)


def test_a_reply_filed_on_the_contact_is_the_reaction_of_its_one_open_request(
    tmp_path: Path,
) -> None:
    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    lead_id = request_of(world, contact, created=at(5, 11, 30))
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    replied = world.advance(timedelta(minutes=10))
    world.fake.reply(lead_id, "outgoing_chat_message", created_by=world.agents[0])
    assert world.fake.lead_events(lead_id, "outgoing_chat_message") == []  # not on the lead

    world.fake.reset_request_log()
    cycle.run(world.advance(timedelta(minutes=1)))

    assert reaction_of(cycle, lead_id, world.now()) == replied.replace(microsecond=0)
    assert stored_fields(world, lead_id)["SLA: реакция"] == int(replied.timestamp())
    assert matches_engine(world, lead_id)
    events_reads = [r for r in world.fake.request_log if r.path == "/api/v4/events"]
    assert len(events_reads) == 1  # the contacts' events come in the leads' request


def test_a_reply_on_a_contact_with_two_open_requests_counts_for_none(
    tmp_path: Path, logs: Logs
) -> None:
    world, contact, first, second, cycle = two_open_requests(tmp_path)
    world.advance(timedelta(minutes=10))
    world.fake.reply(first, "outgoing_chat_message", created_by=world.agents[0])

    cycle.run(world.advance(timedelta(minutes=1)))

    assert reaction_of(cycle, first, world.now()) is None
    assert reaction_of(cycle, second, world.now()) is None
    (ambiguous,) = [entry for entry in logs if entry["event"] == "reaction_ambiguous"]
    assert ambiguous["contact_id"] == contact
    assert ambiguous["lead_ids"] == [first, second]
    assert matches_engine(world, first)
    assert matches_engine(world, second)


def test_a_robots_message_on_the_contact_does_not_react(tmp_path: Path) -> None:
    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    lead_id = request_of(world, contact, created=at(5, 11, 30))
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    world.advance(timedelta(minutes=10))
    world.fake.reply(lead_id, "outgoing_chat_message", created_by=0)

    cycle.run(world.advance(timedelta(minutes=1)))

    assert reaction_of(cycle, lead_id, world.now()) is None
    assert matches_engine(world, lead_id)


def test_a_request_older_than_the_feed_finds_its_contact_reply_at_the_first_start(
    tmp_path: Path,
) -> None:
    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    created = at(5, 10, 0) - 40 * 86400  # older than the feed's 30-day horizon
    lead_id = request_of(world, contact, created=created)
    world.fake.reply(lead_id, "outgoing_call", created_by=world.agents[1], at=created + 600)

    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())

    assert reaction_of(cycle, lead_id, world.now()) == datetime.fromtimestamp(created + 600, UTC)
    assert matches_engine(world, lead_id)


def test_explain_finds_the_same_contact_replies_as_the_cycle(tmp_path: Path) -> None:
    from worker.replies import replies_for_lead

    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    alone = request_of(world, contact, created=at(5, 11, 30))
    world.advance(timedelta(minutes=5))
    world.fake.reply(alone, "outgoing_chat_message", created_by=world.agents[0])
    world.advance(timedelta(minutes=5))
    shared = request_of(world, contact, created=world.now().timestamp())
    world.advance(timedelta(minutes=5))
    world.fake.reply(shared, "outgoing_call", created_by=world.agents[1])

    for lead_id in (alone, shared):
        lead = world.client.lead(lead_id, with_=("contacts",))
        assert lead is not None
        found = replies_for_lead(
            world.client,
            lead,
            pipeline_id=world.support.id,
            reaction_types=world.policy.reaction_event_types,
        )
        assert [e.id for e in found] == [e.id for e in contact_replies(world, lead_id)]
    assert len(contact_replies(world, alone)) == 1  # the second reply is ambiguous


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "from-the-cycle-s-cache"])
def test_the_report_counts_a_reply_filed_on_the_contact(tmp_path: Path, warm: bool) -> None:
    from tests.report_kit import account_setup
    from worker.sla_report.collect import ReadStats, Sources, lead_histories

    world = contact_world()
    contact = world.fake.add_contact("Ирина Котова")
    lead_id = request_of(world, contact, created=at(5, 11, 30))
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    world.advance(timedelta(minutes=5))
    world.fake.reply(lead_id, "outgoing_chat_message", created_by=world.agents[0])
    if warm:
        cycle.run(world.advance(timedelta(minutes=1)))
    cycle.store.close()
    lead = world.client.lead(lead_id, with_=("contacts",))
    assert lead is not None
    sources = Sources(
        world.client,
        account_setup(world, packages=False),
        world.policy,
        cache=tmp_path / "state.sqlite3" if warm else None,
    )

    histories = lead_histories(sources, [lead], world.now(), ReadStats())

    expected = {e.id for e in contact_replies(world, lead_id)}
    assert expected
    assert expected <= {event.event_id for event in histories[lead_id]}


def test_a_request_closed_then_reopened_takes_no_reply_from_while_it_was_closed() -> None:
    from sla.replies import request_span
    from sla.state import LeadEvent

    pipeline, work, won = 7000001, 60000002, 142

    def moved(at_: datetime, before: int, after: int, n: int) -> LeadEvent:
        return LeadEvent(
            f"e{n}",
            "lead_status_changed",
            at_,
            5000002,
            status_before=(pipeline, before),
            status_after=(pipeline, after),
        )

    reopened = request_span(
        1,
        moment(9),
        None,
        [moved(moment(10), work, won, 1), moved(moment(14), won, work, 2)],
        pipeline_id=pipeline,
        contact_id=45000001,
    )
    other = request_span(2, moment(11), None, [], pipeline_id=pipeline, contact_id=45000001)

    assert attribute(moment(12), [reopened, other]).lead_id == 2
    assert attribute(moment(15), [reopened, other]).ambiguous
    assert attribute(moment(9, 30), [reopened, other]).lead_id == 1


def test_with_several_open_a_chat_message_counts_for_the_request_its_talk_names(
    tmp_path: Path, logs: Logs
) -> None:
    world, _contact, first, second, cycle = two_open_requests(tmp_path)
    replied = world.advance(timedelta(minutes=10))
    world.fake.reply(
        second, "outgoing_chat_message", created_by=world.agents[0], talk_about_lead=True
    )

    cycle.run(world.advance(timedelta(minutes=1)))

    assert reaction_of(cycle, second, world.now()) == replied.replace(microsecond=0)
    assert reaction_of(cycle, first, world.now()) is None
    assert not [entry for entry in logs if entry["event"] == "reaction_ambiguous"]
    assert matches_engine(world, first)
    assert matches_engine(world, second)


def test_a_named_request_that_was_not_open_does_not_take_the_reply() -> None:
    spans = [SPANS["open"], SPANS["also-open"], SPANS["closed-before"]]
    assert attribute(moment(10), spans, named=2).lead_id == 2
    assert attribute(moment(10), spans, named=3).lead_id is None


def test_a_reply_filed_on_the_company_counts_for_its_one_open_request(
    tmp_path: Path, logs: Logs
) -> None:
    from worker.replies import replies_for_lead

    world = build_world(seed=False)
    world.fake.replies_filed_on = "company"
    company = world.fake.add_company("ООО Ромашка")
    lead_id = world.fake.add_lead(
        "Не приходят уведомления",
        pipeline_id=world.support.id,
        tags=["Приоритет"],
        created_at=at(5, 11, 30),
        responsible_user_id=world.agents[0],
        company_id=company,
    )
    cycle = make_cycle(world, tmp_path)
    cycle.run(world.now())
    replied = world.advance(timedelta(minutes=10))
    world.fake.reply(lead_id, "outgoing_call", created_by=world.agents[0])

    cycle.run(world.advance(timedelta(minutes=1)))

    assert reaction_of(cycle, lead_id, world.now()) == replied.replace(microsecond=0)
    assert matches_engine(world, lead_id)
    lead = world.client.lead(lead_id, with_=("contacts",))
    assert lead is not None
    explained = replies_for_lead(
        world.client,
        lead,
        pipeline_id=world.support.id,
        reaction_types=world.policy.reaction_event_types,
    )
    assert [e.id for e in explained] == [e.id for e in contact_replies(world, lead_id)]
