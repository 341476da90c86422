"""The fake amoCRM account, :class:`AccountState`: the data of ``store.AccountStore`` and one
mixin for each part of what people, robots and the API do to it."""

from __future__ import annotations

from amo_client.fake.changes import Change
from amo_client.fake.churn import AccountChurn
from amo_client.fake.leads import AccountLeads
from amo_client.fake.notes import TEXT_NOTE_TYPES, AccountNotes, note_content_errors
from amo_client.fake.store import NOTE_EVENT_TYPES, NOTE_EVENTS, PLURAL, SINGULAR
from amo_client.fake.tasks import AccountTasks

# The names this module has always offered, wherever they are defined now.
__all__ = [
    "NOTE_EVENTS",
    "NOTE_EVENT_TYPES",
    "PLURAL",
    "SINGULAR",
    "TEXT_NOTE_TYPES",
    "AccountState",
    "Change",
    "note_content_errors",
]


class AccountState(AccountLeads, AccountNotes, AccountTasks, AccountChurn):
    """An amoCRM account: its data and everything people, robots and the API do to it."""
