"""The SQLite cache: durable across reopen, atomic under failure, ledger is idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.store import StateStore, StoredEvent, StoredLead, TaskMark


def test_cursors_leads_and_events_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.sqlite3"
    store = StateStore(path)
    with store.transaction():
        store.set_int("leads_cursor", 1_700_000_000)
        store.save_leads([StoredLead(7, 1_700_000_000, '{"id": 7}')])
        assert store.save_events([StoredEvent("e1", 7, 1_700_000_100, '{"id": "e1"}')]) == 1
    store.close()

    reopened = StateStore(path)
    assert reopened.get_int("leads_cursor") == 1_700_000_000
    assert reopened.load_leads() == {7: '{"id": 7}'}
    assert reopened.load_events() == {7: ['{"id": "e1"}']}


def test_an_event_seen_twice_is_stored_once(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    event = StoredEvent("e1", 7, 100, "{}")
    assert store.save_events([event, event]) == 1
    assert store.save_events([event]) == 0
    assert store.load_events() == {7: ["{}"]}


def test_a_failure_inside_a_transaction_leaves_the_old_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    store.set_int("events_cursor", 10)

    class Crash(Exception):
        pass

    def half_written_cycle() -> None:
        with store.transaction():
            store.set_int("events_cursor", 20)
            store.save_leads([StoredLead(1, 5, "{}")])
            raise Crash

    with pytest.raises(Crash):
        half_written_cycle()

    assert store.get_int("events_cursor") == 10
    assert store.load_leads() == {}


def test_forgetting_a_lead_drops_its_events(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    store.save_leads([StoredLead(1, 5, "{}"), StoredLead(2, 5, "{}")])
    store.save_events([StoredEvent("a", 1, 1, "{}"), StoredEvent("b", 2, 1, "{}")])
    store.forget_leads([1])
    assert set(store.load_leads()) == {2}
    assert set(store.load_events()) == {2}


def test_prune_keeps_tracked_leads_and_recent_events(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    store.save_events(
        [
            StoredEvent("old-tracked", 1, 100, "{}"),
            StoredEvent("old-untracked", 2, 100, "{}"),
            StoredEvent("new-untracked", 2, 900, "{}"),
        ]
    )
    assert store.prune_events(keep_leads=[1], older_than=500) == 1
    assert {lead: len(events) for lead, events in store.load_events().items()} == {1: 1, 2: 1}


def test_task_ledger_claim_then_record_and_claim_is_idempotent(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    assert store.ledger_entry(5, "reaction") is None
    store.claim_task(5, "reaction", at=1)
    store.claim_task(5, "reaction", at=2)
    entry = store.ledger_entry(5, "reaction")
    assert entry is not None
    assert entry.mark is TaskMark.CLAIMED
    assert entry.task_id is None
    store.record_task(5, "reaction", task_id=900, at=3)
    entry = store.ledger_entry(5, "reaction")
    assert entry is not None
    assert (entry.mark, entry.task_id) == (TaskMark.CREATED, 900)
    assert [e.clock for e in store.ledger()] == ["reaction"]
