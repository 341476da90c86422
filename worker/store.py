"""The worker's local state: one SQLite file in the state directory, two kinds of data.

**The cache** (cursors, the support pipeline's leads as last read, the lead events
seen, and for the company ledgers the requests' companies and tags, the time notes and
the companies) only saves requests: amoCRM holds all of it. Losing it costs one full read of
the pipeline and a per-lead history call for leads older than the event feed's
horizon, nothing else. Forgetting a lead drops only its copy: its events stay until
they age out of the buffer, so a lead that comes back (reopened, restored) finds
its whole history, and one whose history the buffer no longer covers is read again
from amoCRM.

**The record** (the task ledger, the mail record, and the instant of the worker's first
start on the account) says which breach tasks the worker created and which report mail it
sent. amoCRM
holds the tasks, so the worker can find its own again by their marker when the record
is lost, with one exception it cannot see: a task an agent *deleted* in amoCRM leaves
no trace, and without the record it is created once more. Mail leaves no trace the worker
can read back: without the record the latest scheduled report is sent once more.

Every write is a transaction, so a crash leaves either the old or the new state,
never half of one. A file written by another schema version is refused (newer) or has
its cache rebuilt (older); the record is kept whenever its table is readable.

The commands that change nothing (``check``, ``once --dry-run``, ``report``, ``backfill``)
open the file with :meth:`StateStore.read_only`: never created, migrated or written, read
as one snapshot while a cycle writes (WAL mode), a newer version's refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from worker.errors import FatalError

SCHEMA_VERSION = 2

# Each table's columns, by table: the schema as created, and what a read-only opening
# stands in (empty) for a table a file lacks.
_CACHE_TABLES = {
    "meta": "key TEXT PRIMARY KEY, value TEXT NOT NULL",
    "leads": "id INTEGER PRIMARY KEY, updated_at INTEGER NOT NULL, data TEXT NOT NULL",
    "events": (
        "id TEXT PRIMARY KEY, lead_id INTEGER NOT NULL, created_at INTEGER NOT NULL, "
        "data TEXT NOT NULL"
    ),
    "requests": "lead_id INTEGER PRIMARY KEY, data TEXT NOT NULL",
    "time_notes": "id INTEGER PRIMARY KEY, data TEXT NOT NULL",
    "companies": "id INTEGER PRIMARY KEY, data TEXT NOT NULL",
}
_RECORD_TABLES = {
    "record_meta": "key TEXT PRIMARY KEY, value TEXT NOT NULL",
    "task_record": (
        "entity TEXT NOT NULL, entity_id INTEGER NOT NULL, clock TEXT NOT NULL, "
        "state TEXT NOT NULL, task_id INTEGER, claimed_at INTEGER NOT NULL, "
        "PRIMARY KEY (entity, entity_id, clock)"
    ),
    # One row per mail (a report or a statement of a period) and recipient; a file of an
    # earlier worker gains it when opened (CREATE TABLE IF NOT EXISTS), no migration.
    "mail_record": (
        "key TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL, "
        "message_id TEXT NOT NULL, at INTEGER NOT NULL, problem TEXT NOT NULL DEFAULT '', "
        "PRIMARY KEY (key, recipient)"
    ),
}


def _create(tables: dict[str, str], *, temp: bool = False) -> str:
    kind = "TEMP TABLE" if temp else "TABLE IF NOT EXISTS"
    return "".join(f"CREATE {kind} {name} ({columns});\n" for name, columns in tables.items())


_CACHE_SCHEMA = (
    _create(_CACHE_TABLES)
    + "CREATE INDEX IF NOT EXISTS events_by_lead ON events (lead_id, created_at);\n"
)
_RECORD_SCHEMA = _create(_RECORD_TABLES)
# Schema 1 kept the record of lead tasks only.
_RECORD_FROM_SCHEMA_1 = """
INSERT OR IGNORE INTO task_record (entity, entity_id, clock, state, task_id, claimed_at)
    SELECT 'leads', lead_id, clock, state, task_id, claimed_at FROM task_ledger;
DROP TABLE task_ledger;
"""


_ROW_TABLES = {"requests": "lead_id", "time_notes": "id", "companies": "id"}


class StateVersionError(FatalError):
    """The state file was written by a newer version of the worker."""


def _newer(path: Path | None, version: int, hint: str) -> str:
    return (
        f"{path} was written by a newer amo-sla (state schema {version}; this one reads "
        f"schema {SCHEMA_VERSION}): {hint}"
    )


class TaskMark(StrEnum):
    """Where a lead's breach task stands in the ledger."""

    CLAIMED = "claimed"  # about to be created; a crash here means "ask amoCRM first"
    CREATED = "created"  # amoCRM answered with the task's id
    REJECTED = "rejected"  # amoCRM refused it (a bad user or task type); tried again later


class MailMark(StrEnum):
    """Where one mail to one recipient stands in the record."""

    SENDING = "sending"  # claimed, its Message-ID kept, before the server was asked
    SENT = "sent"  # the server took it
    FAILED = "failed"  # the server did not take it (unreachable, refused): sent again later
    UNKNOWN = "unknown"  # the worker stopped during the send: never sent again (at most once)


@dataclass(frozen=True)
class MailEntry:
    key: str
    recipient: str
    mark: MailMark
    message_id: str
    at: int  # unix seconds of the last mark
    problem: str = ""


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
    entity_id: int
    clock: str
    mark: TaskMark
    task_id: int | None
    at: int  # unix seconds of the last mark
    entity: str = "leads"


class StateStore:
    """The SQLite file. One instance per process; not shared across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._open_schema()

    @classmethod
    def read_only(cls, path: Path) -> StateStore:
        """The state file opened for reading alone (SQLite's ``mode=ro``): nothing in it is
        created, migrated or written, and every read sees one snapshot, whatever a cycle
        writes meanwhile.

        A file of this version reads as it is; an older one as the worker reads it after
        migrating: an empty cache, the record carried over. A table the file lacks reads
        as empty (a stand-in in SQLite's temporary database, which is not the file).
        Raises :class:`FileNotFoundError` when there is no file, :class:`StateVersionError`
        when a newer worker wrote it, and :class:`sqlite3.Error` when SQLite cannot read it.
        """
        if not path.exists():
            raise FileNotFoundError(f"{path}: no state file")
        store = cls.__new__(cls)
        store.path = path
        store._db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            store._db.execute("BEGIN")  # one read transaction: one snapshot until closed
            store._stand_in_for_missing_tables()
        except BaseException:
            store.close()
            raise
        return store

    def _stand_in_for_missing_tables(self) -> None:
        tables = {
            str(row[0])
            for row in self._db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")
        }
        version = None
        if "meta" in tables:
            row = self._db.execute(
                "SELECT value FROM main.meta WHERE key = 'schema_version'"
            ).fetchone()
            version = None if row is None else int(row[0])
        if version is not None and version > SCHEMA_VERSION:
            raise StateVersionError(
                _newer(self.path, version, "it is left as it is; use the amo-sla that wrote it")
            )
        older = version is not None and version < SCHEMA_VERSION
        # Schema 1's record (task_ledger) is read as the worker carries it over.
        carried = "task_ledger" in tables
        stand_ins = {
            **{n: c for n, c in _CACHE_TABLES.items() if older or n not in tables},
            **{
                n: c
                for n, c in _RECORD_TABLES.items()
                if n not in tables or (carried and n == "task_record")
            },
        }
        # One statement at a time: executescript would commit, ending the snapshot.
        for statement in _create(stand_ins, temp=True).splitlines():
            self._db.execute(statement)
        if carried:
            if "task_record" in tables:
                self._db.execute("INSERT INTO temp.task_record SELECT * FROM main.task_record")
            self._db.execute(
                "INSERT OR IGNORE INTO temp.task_record "
                "SELECT 'leads', lead_id, clock, state, task_id, claimed_at FROM main.task_ledger"
            )

    def _open_schema(self) -> None:
        self._db.executescript(_CACHE_SCHEMA)
        version = self.get_meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StateVersionError(
                _newer(
                    self.path,
                    int(version),
                    "run the newer version, or move the state directory away to start from "
                    "amoCRM again",
                )
            )
        if version is not None and int(version) < SCHEMA_VERSION:
            # The cache rebuilds itself from amoCRM; the record's table has kept its shape.
            with self.transaction():
                for table in _CACHE_TABLES:
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
            self._db.executescript(_CACHE_SCHEMA)
        self._db.executescript(_RECORD_SCHEMA)
        if self._has_table("task_ledger"):
            self._db.executescript(f"BEGIN IMMEDIATE; {_RECORD_FROM_SCHEMA_1} COMMIT;")
        self.set_meta("schema_version", str(SCHEMA_VERSION))

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

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

    # --- the cache: cursors and other small values -------------------------------------------
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

    # --- the record: the first start ---------------------------------------------------------
    def first_start(self) -> int | None:
        """When the worker first ran a cycle on this state (Unix seconds), kept with the
        record so that a rebuilt cache does not move it."""
        row = self._db.execute("SELECT value FROM record_meta WHERE key = 'first_start'").fetchone()
        return None if row is None else int(row[0])

    def keep_first_start(self, at: int) -> int:
        """Record ``at`` as the first start unless one is recorded; return the one kept."""
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO record_meta (key, value) VALUES ('first_start', ?)",
                (str(at),),
            )
        kept = self.first_start()
        return at if kept is None else kept

    # --- the cache: leads ------------------------------------------------------------------
    def save_leads(self, leads: Iterable[StoredLead]) -> None:
        """Store leads as JSON text, replacing earlier copies."""
        self._db.executemany(
            "INSERT INTO leads (id, updated_at, data) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, data = excluded.data",
            ((lead.lead_id, lead.updated_at, lead.data) for lead in leads),
        )

    def forget_leads(self, lead_ids: Iterable[int]) -> None:
        """Drop the leads' copies; their events stay until :meth:`prune_events` ages them out."""
        self._db.executemany("DELETE FROM leads WHERE id = ?", ((i,) for i in lead_ids))

    def load_leads(self) -> dict[int, str]:
        return {int(row[0]): str(row[1]) for row in self._db.execute("SELECT id, data FROM leads")}

    # --- the cache: events -----------------------------------------------------------------
    def save_events(self, events: Iterable[StoredEvent]) -> int:
        """Store events as JSON text, ignoring ones already seen; returns how many were new."""
        before = self._db.total_changes
        self._db.executemany(
            "INSERT OR IGNORE INTO events (id, lead_id, created_at, data) VALUES (?, ?, ?, ?)",
            ((event.event_id, event.lead_id, event.created_at, event.data) for event in events),
        )
        return self._db.total_changes - before

    def load_events(self, lead_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        """Stored events by lead, in time order: of every lead, or of ``lead_ids`` only."""
        by_lead: dict[int, list[str]] = {}
        if lead_ids is None:
            rows: Iterable[tuple[int, str]] = self._db.execute(
                "SELECT lead_id, data FROM events ORDER BY lead_id, created_at, id"
            )
        else:
            rows = (
                row
                for lead_id in sorted(set(lead_ids))
                for row in self._db.execute(
                    "SELECT lead_id, data FROM events WHERE lead_id = ? ORDER BY created_at, id",
                    (lead_id,),
                )
            )
        for lead_id, data in rows:
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

    # --- the cache: the company ledgers' inputs, as JSON by id ------------------------------
    def save_rows(self, table: str, rows: Iterable[tuple[int, str]]) -> None:
        """Store ``(id, JSON)`` rows of ``requests``, ``time_notes`` or ``companies``."""
        column = _ROW_TABLES[table]
        self._db.executemany(
            f"INSERT INTO {table} ({column}, data) VALUES (?, ?) "  # noqa: S608 - fixed names
            f"ON CONFLICT ({column}) DO UPDATE SET data = excluded.data",
            rows,
        )

    def drop_rows(self, table: str, ids: Iterable[int]) -> None:
        column = _ROW_TABLES[table]
        self._db.executemany(
            f"DELETE FROM {table} WHERE {column} = ?",  # noqa: S608 - fixed names
            ((i,) for i in ids),
        )

    def load_rows(self, table: str) -> dict[int, str]:
        column = _ROW_TABLES[table]
        return {
            int(row[0]): str(row[1])
            for row in self._db.execute(f"SELECT {column}, data FROM {table}")  # noqa: S608
        }

    # --- the record: the task ledger -------------------------------------------------------
    # A task is known by the entity it is set on (``leads`` or ``companies``), that entity's id
    # and its clock: ``reaction``, ``resolution``, or a ledger's own key.
    def ledger_entry(
        self, entity_id: int, clock: str, *, entity: str = "leads"
    ) -> LedgerEntry | None:
        row = self._db.execute(
            "SELECT state, task_id, claimed_at FROM task_record "
            "WHERE entity = ? AND entity_id = ? AND clock = ?",
            (entity, entity_id, clock),
        ).fetchone()
        if row is None:
            return None
        return LedgerEntry(entity_id, clock, TaskMark(row[0]), row[1], int(row[2]), entity)

    def claim_task(self, entity_id: int, clock: str, at: int, *, entity: str = "leads") -> None:
        """Record the intent to create a task, durably, before the request goes out."""
        self._db.execute(
            "INSERT INTO task_record (entity, entity_id, clock, state, task_id, claimed_at) "
            "VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (entity, entity_id, clock) "
            "DO UPDATE SET state = excluded.state, claimed_at = excluded.claimed_at "
            "WHERE task_record.state = ?",
            (entity, entity_id, clock, TaskMark.CLAIMED.value, at, TaskMark.REJECTED.value),
        )

    def record_task(
        self, entity_id: int, clock: str, task_id: int, at: int, *, entity: str = "leads"
    ) -> None:
        self._db.execute(
            "INSERT INTO task_record (entity, entity_id, clock, state, task_id, claimed_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity, entity_id, clock) "
            "DO UPDATE SET state = excluded.state, task_id = excluded.task_id",
            (entity, entity_id, clock, TaskMark.CREATED.value, task_id, at),
        )

    def reject_task(self, entity_id: int, clock: str, at: int, *, entity: str = "leads") -> None:
        """amoCRM refused the task: nothing was created; it may be tried again later."""
        self._db.execute(
            "INSERT INTO task_record (entity, entity_id, clock, state, task_id, claimed_at) "
            "VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (entity, entity_id, clock) "
            "DO UPDATE SET state = excluded.state, claimed_at = excluded.claimed_at "
            "WHERE task_record.state != ?",
            (entity, entity_id, clock, TaskMark.REJECTED.value, at, TaskMark.CREATED.value),
        )

    def ledger(self) -> list[LedgerEntry]:
        return [
            LedgerEntry(int(row[1]), str(row[2]), TaskMark(row[3]), row[4], int(row[5]), row[0])
            for row in self._db.execute(
                "SELECT entity, entity_id, clock, state, task_id, claimed_at FROM task_record "
                "ORDER BY entity, entity_id, clock"
            )
        ]

    # --- the record: report mail -------------------------------------------------------------
    # A mail is known by its key (``report:2025-10-01:2025-10-31``, a statement's with the
    # company) and its recipient. It is claimed durably before it goes out, with the
    # Message-ID it will carry, and marked when the server has answered.
    def mail_entry(self, key: str, recipient: str) -> MailEntry | None:
        row = self._db.execute(
            "SELECT state, message_id, at, problem FROM mail_record "
            "WHERE key = ? AND recipient = ?",
            (key, recipient),
        ).fetchone()
        if row is None:
            return None
        return MailEntry(key, recipient, MailMark(row[0]), str(row[1]), int(row[2]), str(row[3]))

    def claim_mail(self, key: str, recipient: str, message_id: str, at: int) -> bool:
        """Record, durably, that this mail is about to go out; False when it may not (it was
        sent, is being sent, or its outcome is unknown): only a new or failed mail is claimed."""
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO mail_record (key, recipient, state, message_id, at, problem) "
                "VALUES (?, ?, ?, ?, ?, '') ON CONFLICT (key, recipient) DO UPDATE SET "
                "state = excluded.state, message_id = excluded.message_id, at = excluded.at, "
                "problem = '' WHERE mail_record.state = ?",
                (key, recipient, MailMark.SENDING.value, message_id, at, MailMark.FAILED.value),
            )
        return cursor.rowcount == 1

    def mark_mail(
        self, key: str, recipient: str, mark: MailMark, at: int, problem: str = ""
    ) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE mail_record SET state = ?, at = ?, problem = ? "
                "WHERE key = ? AND recipient = ?",
                (mark.value, at, problem, key, recipient),
            )

    def mail_records(self, prefix: str = "") -> list[MailEntry]:
        return [
            MailEntry(str(r[0]), str(r[1]), MailMark(r[2]), str(r[3]), int(r[4]), str(r[5]))
            for r in self._db.execute(
                "SELECT key, recipient, state, message_id, at, problem FROM mail_record "
                "WHERE substr(key, 1, ?) = ? ORDER BY key, recipient",
                (len(prefix), prefix),
            )
        ]
