"""The worker's local state: one SQLite file in the state directory.

It is a cache of what amoCRM already holds: the sync cursors, the support
pipeline's leads as last read, the lead events the worker has seen, and the
ledger of breach tasks. Deleting it loses nothing: the next cycle reads the
pipeline in full again, and the task guard asks amoCRM for an existing task
before it creates one.

Every write is a transaction, so a crash leaves either the old or the new
state, never half of one. WAL mode lets ``health`` and ``explain`` read while a
cycle writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY,
    updated_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    lead_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_lead ON events (lead_id, created_at);
CREATE TABLE IF NOT EXISTS task_ledger (
    lead_id INTEGER NOT NULL,
    clock TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id INTEGER,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (lead_id, clock)
);
"""


class TaskMark(StrEnum):
    """Where a lead's breach task stands in the ledger."""

    CLAIMED = "claimed"  # about to be created; a crash here means "ask amoCRM first"
    CREATED = "created"  # amoCRM answered with the task's id


@dataclass(frozen=True)
class StoredLead:
    lead_id: int
    updated_at: int  # unix seconds
    data: str  # JSON text


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    lead_id: int
    created_at: int  # unix seconds
    data: str  # JSON text


@dataclass(frozen=True)
class LedgerEntry:
    lead_id: int
    clock: str
    mark: TaskMark
    task_id: int | None


class StateStore:
    """The SQLite cache. One instance per process; not shared across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- cursors and other small values --------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_int(self, key: str) -> int | None:
        value = self.get_meta(key)
        return None if value is None else int(value)

    def set_int(self, key: str, value: int) -> None:
        self.set_meta(key, str(value))

    # --- leads -------------------------------------------------------------------------------
    def save_leads(self, leads: Iterable[StoredLead]) -> None:
        """Store leads as JSON text, replacing earlier copies."""
        self._db.executemany(
            "INSERT INTO leads (id, updated_at, data) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, data = excluded.data",
            ((lead.lead_id, lead.updated_at, lead.data) for lead in leads),
        )

    def forget_leads(self, lead_ids: Iterable[int]) -> None:
        ids = [(lead_id,) for lead_id in lead_ids]
        self._db.executemany("DELETE FROM leads WHERE id = ?", ids)
        self._db.executemany("DELETE FROM events WHERE lead_id = ?", ids)

    def load_leads(self) -> dict[int, str]:
        return {int(row[0]): str(row[1]) for row in self._db.execute("SELECT id, data FROM leads")}

    # --- events ------------------------------------------------------------------------------
    def save_events(self, events: Iterable[StoredEvent]) -> int:
        """Store events as JSON text, ignoring ones already seen; returns how many were new."""
        before = self._db.total_changes
        self._db.executemany(
            "INSERT OR IGNORE INTO events (id, lead_id, created_at, data) VALUES (?, ?, ?, ?)",
            ((event.event_id, event.lead_id, event.created_at, event.data) for event in events),
        )
        return self._db.total_changes - before

    def load_events(self) -> dict[int, list[str]]:
        by_lead: dict[int, list[str]] = {}
        for lead_id, data in self._db.execute(
            "SELECT lead_id, data FROM events ORDER BY lead_id, created_at, id"
        ):
            by_lead.setdefault(int(lead_id), []).append(str(data))
        return by_lead

    def prune_events(self, *, keep_leads: Iterable[int], older_than: int) -> int:
        """Drop events of leads the worker does not track once they are older than the buffer."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS kept (id INTEGER PRIMARY KEY)")
        self._db.execute("DELETE FROM kept")
        self._db.executemany(
            "INSERT OR IGNORE INTO kept (id) VALUES (?)", ((i,) for i in keep_leads)
        )
        cursor = self._db.execute(
            "DELETE FROM events WHERE created_at < ? AND lead_id NOT IN (SELECT id FROM kept)",
            (older_than,),
        )
        return cursor.rowcount

    # --- the task ledger --------------------------------------------------------------------
    def ledger_entry(self, lead_id: int, clock: str) -> LedgerEntry | None:
        row = self._db.execute(
            "SELECT state, task_id FROM task_ledger WHERE lead_id = ? AND clock = ?",
            (lead_id, clock),
        ).fetchone()
        if row is None:
            return None
        return LedgerEntry(lead_id, clock, TaskMark(row[0]), row[1])

    def claim_task(self, lead_id: int, clock: str, at: int) -> None:
        """Record the intent to create a task, durably, before the request goes out."""
        self._db.execute(
            "INSERT INTO task_ledger (lead_id, clock, state, task_id, claimed_at) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (lead_id, clock) DO NOTHING",
            (lead_id, clock, TaskMark.CLAIMED.value, at),
        )

    def record_task(self, lead_id: int, clock: str, task_id: int, at: int) -> None:
        self._db.execute(
            "INSERT INTO task_ledger (lead_id, clock, state, task_id, claimed_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (lead_id, clock) "
            "DO UPDATE SET state = excluded.state, task_id = excluded.task_id",
            (lead_id, clock, TaskMark.CREATED.value, task_id, at),
        )

    def ledger(self) -> list[LedgerEntry]:
        return [
            LedgerEntry(int(row[0]), str(row[1]), TaskMark(row[2]), row[3])
            for row in self._db.execute(
                "SELECT lead_id, clock, state, task_id FROM task_ledger ORDER BY lead_id, clock"
            )
        ]
