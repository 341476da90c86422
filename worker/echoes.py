"""The worker's own recent writes, so that a webhook which only echoes them starts no cycle.

amoCRM sends ``update_lead`` (and ``status_lead``, ``note_lead``) for the worker's own
PATCHes and notes like for anyone's. A hook is an echo when every change it reports is one
of those writes: a lead the worker wrote, stamped (``last_modified``) within the span
amoCRM took to accept the write, or a note the worker created. Anything else in the same
hook (another lead, another moment, a stage change the write did not make, an action the
worker never takes) starts a cycle as before. The span is the last attempt of the write,
from its request to its answer, a second wider for the answer's whole-second Date; a
person's change to the same lead's fields within it is taken for an echo, and the next
poll reads it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from amo_client.client import Written

# leads[update][0][id], leads[note][0][note][id]: the entity, its action, its index, the rest.
HOOK_KEY = re.compile(r"^(?P<entity>\w+)\[(?P<action>\w+)\]\[(?P<index>\d+)\](?P<rest>.*)$")
# Actions on leads the worker's writes cause; every other one is someone else's.
ECHOED_ACTIONS = frozenset({"update", "status"})


@dataclass(frozen=True)
class _Kept:
    written: Written
    at: float  # monotonic, when it was recorded


class OwnWrites:
    """Writes recorded as amoCRM accepts them (from the client's ``on_write``), kept
    ``keep`` long; thread-safe (the cycle records, the HTTP server asks)."""

    def __init__(
        self,
        keep: timedelta = timedelta(minutes=10),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep = keep.total_seconds()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._kept: deque[_Kept] = deque()

    def record(self, written: Written) -> None:
        with self._lock:
            self._kept.append(_Kept(written, self._monotonic()))

    def only_echoes(self, pairs: Sequence[tuple[str, str]]) -> bool:
        """Whether every change the hook's form reports is one of the recorded writes."""
        changes: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
        for key, value in pairs:
            found = HOOK_KEY.match(key)
            if found is None or found["entity"] == "account":
                continue
            changes[(found["entity"], found["action"], found["index"])][found["rest"]] = value
        if not changes:
            return False
        with self._lock:
            horizon = self._monotonic() - self._keep
            while self._kept and self._kept[0].at < horizon:
                self._kept.popleft()
            kept = [item.written for item in self._kept]
        return all(
            _echoes(entity, action, fields, kept) for (entity, action, _), fields in changes.items()
        )


def _echoes(entity: str, action: str, fields: dict[str, str], kept: Sequence[Written]) -> bool:
    if entity != "leads":
        return False
    if action == "note":
        note_id = _number(fields.get("[note][id]"))
        return note_id is not None and any(
            note_id in w.ids for w in kept if w.kind.endswith("notes")
        )
    if action not in ECHOED_ACTIONS:
        return False
    lead_id = _number(fields.get("[id]"))
    stamp = _number(fields.get("[last_modified]") or fields.get("[updated_at]"))
    if lead_id is None or stamp is None or stamp > LATEST_STAMP:
        return False
    moment = datetime.fromtimestamp(stamp, UTC)
    return any(
        w.kind == "leads"
        # A stage change echoes only a write that moved the lead.
        and lead_id in (w.moved if action == "status" else w.ids)
        and w.since <= moment <= w.until
        for w in kept
    )


# A hook's numbers as amoCRM writes them; anything else is no echo.
NUMBER = re.compile(r"[0-9]{1,12}")
LATEST_STAMP = 253_402_300_799  # 9999-12-31 23:59:59 UTC


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and NUMBER.fullmatch(text) else None
