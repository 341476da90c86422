"""The SQLite cache: durable across reopen, atomic under failure, ledger is idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from worker.errors import is_fatal
from worker.store import (
    SCHEMA_VERSION,
    MailMark,
    StateStore,
    StateVersionError,
    StoredEvent,
    StoredLead,
    TaskMark,
)


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


def test_forgetting_a_lead_keeps_its_events_until_they_age_out(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    store.save_leads([StoredLead(1, 5, "{}"), StoredLead(2, 5, "{}")])
    store.save_events([StoredEvent("a", 1, 100, "{}"), StoredEvent("b", 2, 100, "{}")])
    store.forget_leads([1])
    assert set(store.load_leads()) == {2}
    assert set(store.load_events()) == {1, 2}
    assert store.load_events([1]) == {1: ["{}"]}
    assert store.prune_events(keep_leads=[2], older_than=50) == 0
    assert store.prune_events(keep_leads=[2], older_than=200) == 1
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


def test_a_rejected_task_can_be_claimed_again_but_a_created_one_stays(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    store.claim_task(5, "reaction", at=1)
    store.reject_task(5, "reaction", at=2)
    entry = store.ledger_entry(5, "reaction")
    assert entry is not None
    assert (entry.mark, entry.at) == (TaskMark.REJECTED, 2)
    store.claim_task(5, "reaction", at=3)
    entry = store.ledger_entry(5, "reaction")
    assert entry is not None
    assert entry.mark is TaskMark.CLAIMED
    store.record_task(5, "reaction", task_id=7, at=4)
    store.reject_task(5, "reaction", at=5)
    entry = store.ledger_entry(5, "reaction")
    assert entry is not None
    assert (entry.mark, entry.task_id) == (TaskMark.CREATED, 7)


def test_a_mail_is_claimed_once_until_it_fails_and_never_after_it_went(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3")
    key = "report:2025-10-01:2025-10-31"
    assert store.mail_entry(key, "boss@example.com") is None
    assert store.claim_mail(key, "boss@example.com", "<1@x>", 100)
    assert not store.claim_mail(key, "boss@example.com", "<2@x>", 101)  # being sent
    store.mark_mail(key, "boss@example.com", MailMark.FAILED, 102, "550 No such mailbox")
    failed = store.mail_entry(key, "boss@example.com")
    assert failed is not None
    assert (failed.mark, failed.message_id, failed.problem) == (
        MailMark.FAILED,
        "<1@x>",
        "550 No such mailbox",
    )
    assert store.claim_mail(key, "boss@example.com", "<3@x>", 103)  # tried again
    store.mark_mail(key, "boss@example.com", MailMark.SENT, 104)
    assert not store.claim_mail(key, "boss@example.com", "<4@x>", 105)
    store.close()
    reopened = StateStore(tmp_path / "s.sqlite3")  # the record outlives the process
    (entry,) = reopened.mail_records("report:")
    assert (entry.mark, entry.message_id, entry.problem) == (MailMark.SENT, "<3@x>", "")
    assert reopened.mail_records("statement:") == []
    reopened.close()


def test_a_state_file_of_a_newer_version_is_refused_and_that_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    StateStore(path).set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StateVersionError, match="newer amo-sla") as raised:
        StateStore(path)
    assert is_fatal(raised.value)


def test_an_older_state_file_rebuilds_its_cache_and_keeps_the_task_ledger(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE leads (id INTEGER PRIMARY KEY, updated_at INTEGER NOT NULL, data TEXT);
        CREATE TABLE events (id TEXT PRIMARY KEY, lead_id INTEGER, created_at INTEGER, data TEXT);
        CREATE TABLE task_ledger (lead_id INTEGER NOT NULL, clock TEXT NOT NULL,
            state TEXT NOT NULL, task_id INTEGER, claimed_at INTEGER NOT NULL,
            PRIMARY KEY (lead_id, clock));
        INSERT INTO meta VALUES ('schema_version', '1'), ('leads_cursor', '1700000000');
        INSERT INTO leads VALUES (7, 1, '{"id": 7}');
        INSERT INTO task_ledger VALUES (7, 'reaction', 'created', 900, 1);
        """
    )
    old.commit()
    old.close()
    store = StateStore(path)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert store.get_int("leads_cursor") is None
    assert store.load_leads() == {}
    entry = store.ledger_entry(7, "reaction")
    assert entry is not None
    assert (entry.mark, entry.task_id) == (TaskMark.CREATED, 900)


def _older_state_file(path: Path) -> None:
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE leads (id INTEGER PRIMARY KEY, updated_at INTEGER NOT NULL, data TEXT);
        CREATE TABLE task_ledger (lead_id INTEGER NOT NULL, clock TEXT NOT NULL,
            state TEXT NOT NULL, task_id INTEGER, claimed_at INTEGER NOT NULL,
            PRIMARY KEY (lead_id, clock));
        INSERT INTO meta VALUES ('schema_version', '1'), ('events_cursor', '1700000000');
        INSERT INTO leads VALUES (7, 1, '{"id": 7}');
        INSERT INTO task_ledger VALUES (7, 'reaction', 'created', 900, 1);
        """
    )
    old.commit()
    old.close()


def _without_a_log(path: Path) -> bool:
    """A reader of a WAL database may leave SQLite's index of the log (-shm), never a log."""
    wal = path.with_name(path.name + "-wal")
    return not wal.exists() or wal.stat().st_size == 0


def test_a_read_only_opening_writes_nothing_to_a_current_state_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = StateStore(path)
    with store.transaction():
        store.set_int("events_cursor", 1_700_000_000)
        store.save_leads([StoredLead(7, 1_700_000_000, '{"id": 7}')])
    store.close()
    before = path.read_bytes()

    reader = StateStore.read_only(path)
    assert reader.get_int("events_cursor") == 1_700_000_000
    assert reader.load_leads() == {7: '{"id": 7}'}
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.set_int("events_cursor", 1)
    reader.close()
    assert path.read_bytes() == before
    assert _without_a_log(path)


def test_a_read_only_opening_reads_an_older_state_file_as_migrated_and_leaves_it_as_it_was(
    tmp_path: Path,
) -> None:
    """A command next to an older worker's state: the cache reads empty and the record as
    the worker carries it over, as after its migration; the file is neither migrated nor
    stamped (the worker that owns it does that in its own time)."""
    path = tmp_path / "s.sqlite3"
    _older_state_file(path)
    before = path.read_bytes()

    reader = StateStore.read_only(path)
    assert reader.get_meta("schema_version") is None
    assert reader.get_int("events_cursor") is None
    assert reader.load_leads() == {}
    assert reader.load_rows("companies") == {}
    assert reader.first_start() is None
    assert [(e.entity, e.entity_id, e.mark, e.task_id) for e in reader.ledger()] == [
        ("leads", 7, TaskMark.CREATED, 900)
    ]
    reader.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite3"]


def test_a_read_only_opening_refuses_a_newer_state_file_naming_it_and_both_versions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    newer = StateStore(path)
    newer.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    newer.close()
    before = path.read_bytes()

    with pytest.raises(StateVersionError) as raised:
        StateStore.read_only(path)

    message = str(raised.value)
    assert str(path) in message
    assert f"state schema {SCHEMA_VERSION + 1}" in message
    assert f"reads schema {SCHEMA_VERSION}" in message
    assert is_fatal(raised.value)
    assert path.read_bytes() == before
    assert _without_a_log(path)


def test_a_read_only_opening_of_no_file_creates_none(tmp_path: Path) -> None:
    path = tmp_path / "state" / "s.sqlite3"
    with pytest.raises(FileNotFoundError):
        StateStore.read_only(path)
    assert list(tmp_path.iterdir()) == []


def test_a_table_the_file_predates_reads_as_empty(tmp_path: Path) -> None:
    """A file of this version written before the company ledgers and the first start were
    kept: their tables read as empty, and the file does not get them."""
    path = tmp_path / "s.sqlite3"
    early = sqlite3.connect(path)
    early.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2'), ('leads_cursor', '1700000000');
        """
    )
    early.commit()
    early.close()
    before = path.read_bytes()

    reader = StateStore.read_only(path)
    assert reader.get_int("leads_cursor") == 1_700_000_000
    assert reader.load_events() == {}
    assert reader.load_rows("time_notes") == {}
    assert reader.first_start() is None
    assert reader.ledger() == []
    assert reader.mail_records() == []
    reader.close()
    assert path.read_bytes() == before


def test_a_read_only_opening_reads_one_snapshot_while_a_cycle_writes(tmp_path: Path) -> None:
    """``check`` next to the running service: its dry run sees the cursors and the cache of
    one whole cycle, never the cursors of one and the leads of the next."""
    path = tmp_path / "s.sqlite3"
    writer = StateStore(path)
    with writer.transaction():
        writer.set_int("leads_cursor", 1)
        writer.save_leads([StoredLead(7, 1, '{"id": 7}')])
    reader = StateStore.read_only(path)
    assert reader.get_int("leads_cursor") == 1

    with writer.transaction():
        writer.set_int("leads_cursor", 2)
        writer.save_leads([StoredLead(8, 2, '{"id": 8}')])

    assert reader.get_int("leads_cursor") == 1
    assert reader.load_leads() == {7: '{"id": 7}'}
    reader.close()
    writer.close()
