"""Reading the support pipeline's leads: what changed since the cursor, or all of them.

amoCRM pages lists by offset over the result as it is at each page's request, so a
lead that leaves the filter between two pages (closed, moved) shifts the next page
and the lead after it is never returned. Every read here therefore pages by
``updated_at`` itself (``AmoClient.iter_leads(by_update=True)``), and a full read never
takes absence for an answer: every tracked lead it did not see is asked for by id, and
one that is still missing is gone only when amoCRM's trash holds it (or a
``lead_deleted`` event names it, see ``worker/events.py``).

Every filter is applied again on the answer: an account whose API filtering is off
ignores them and sends every lead it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from amo_client.client import AmoClient
from amo_client.errors import InvalidItem
from amo_client.models import Lead
from sla.state import LOST, WON
from worker.cache import TrackedLead, slim
from worker.setup import AccountSetup

log = structlog.get_logger("worker.leads")

IDS_PER_READ = 50


@dataclass(frozen=True)
class LeadReadOptions:
    # The cursor steps back this far (leads are compared by content), so a lead amoCRM
    # stamps with a slightly older updated_at than the last one seen is still read.
    overlap: timedelta = timedelta(minutes=1)
    # How far back the first start reads closed requests, to give them their final fields.
    history_horizon: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class LeadRead:
    """What one read found."""

    # the pipeline's leads read, slimmed, newest copy (the cached one when it is the same)
    leads: Mapping[int, TrackedLead]
    gone: frozenset[int]  # tracked leads amoCRM no longer has in the pipeline
    unreadable: frozenset[int]  # leads whose item could not be parsed: keep what is cached
    cursor: int  # unix seconds: the next read starts here (less the overlap)
    received: int  # leads amoCRM sent, before the filters were applied again


def read_leads(
    client: AmoClient,
    setup: AccountSetup,
    tracked: Mapping[int, TrackedLead],
    *,
    cursor: int | None,
    now: datetime,
    full: bool,
    options: LeadReadOptions,
    check_stop: Callable[[], None],
) -> LeadRead:
    """Read the pipeline's leads changed since ``cursor`` (all open ones when ``full``)."""
    reader = _Reader(client, setup, check_stop, tracked)
    if full:
        reader.take(
            client.iter_leads(
                pipeline_id=setup.pipeline_id,
                status_ids=setup.open_status_ids,
                on_invalid=reader.invalid,
                with_=("contacts",),
                by_update=True,
                # At the first start no lead is tracked, so none would be asked for by id:
                # an empty first answer is asked again instead.
                confirm_empty=cursor is None,
                recheck_crowded=True,
            ),
            lambda lead: lead.status_id in setup.open_status_ids,
        )
    if cursor is None:
        # First start: requests closed shortly before it get their final status too.
        horizon = now - options.history_horizon
        reader.take(
            client.iter_leads(
                pipeline_id=setup.pipeline_id,
                status_ids=(WON, LOST),
                updated_from=horizon,
                on_invalid=reader.invalid,
                with_=("contacts",),
                by_update=True,
                recheck_crowded=True,
            ),
            lambda lead: lead.status_id in (WON, LOST) and lead.updated_at >= horizon,
        )
    else:
        since = datetime.fromtimestamp(cursor, UTC) - options.overlap
        reader.take(
            client.iter_leads(
                pipeline_id=setup.pipeline_id,
                updated_from=since,
                on_invalid=reader.invalid,
                with_=("contacts",),
                by_update=True,
                # A crowded second (a mass write read back) is read twice: a lead leaving it
                # mid-read shifts its offset pages.
                recheck_crowded=True,
            ),
            lambda lead: lead.updated_at >= since,
        )
    # The cursor follows amoCRM's clock, not only the newest lead: left at the newest
    # lead's updated_at, a quiet account would re-read every lead of that last minute in
    # each cycle. amoCRM stamps updated_at at the change, so a change the read missed
    # carries an updated_at at or after the read's first answer.
    started = reader.started or client.server_time or now
    next_cursor = max(cursor or 0, int((started - options.overlap).timestamp()))
    if cursor is not None and reader.received == 0:
        # An empty answer moves nothing: were it an odd one, the next read covers the
        # same window again (absence is not evidence), at no extra request.
        next_cursor = cursor
    missing = reader.confirm_unseen(tracked) if full else frozenset()
    gone = missing | (reader.elsewhere & tracked.keys())
    return LeadRead(
        leads=reader.leads,
        gone=gone,
        unreadable=frozenset(reader.unreadable),
        cursor=next_cursor,
        received=reader.received,
    )


class _Reader:
    """The leads of one read, as they arrive."""

    def __init__(
        self,
        client: AmoClient,
        setup: AccountSetup,
        check_stop: Callable[[], None],
        tracked: Mapping[int, TrackedLead],
    ) -> None:
        self.client = client
        self.tracked = tracked
        self.setup = setup
        self.check_stop = check_stop
        self.keep_fields = {*setup.fields.ids.values(), setup.class_field_id}
        self.leads: dict[int, TrackedLead] = {}
        self.elsewhere: set[int] = set()  # seen in another pipeline
        self.unreadable: set[int] = set()
        self.received = 0
        self.started: datetime | None = None

    def invalid(self, item: InvalidItem) -> None:
        if isinstance(item.item_id, int):
            self.unreadable.add(item.item_id)
        log.warning("lead_invalid", lead_id=item.item_id, problem=item.problem)

    def take(self, leads: Iterable[Lead], asked: Callable[[Lead], bool]) -> None:
        for lead in leads:
            self.check_stop()
            if self.started is None:
                # amoCRM's clock at the read's first answer, whatever the worker's says.
                self.started = self.client.server_time
            self.received += 1
            if lead.pipeline_id != self.setup.pipeline_id:
                self.elsewhere.add(lead.id)
                continue
            if not asked(lead):
                continue  # amoCRM ignored a filter (the account's API filtering is off)
            known = self.leads.get(lead.id)
            if known is None or lead.updated_at >= known.updated_at:
                # Kept as JSON at once: 10,000 parsed leads would cost over 100 MB. A copy
                # equal to the cached one is the cached one: a full read holds one of each.
                fresh = TrackedLead.of(slim(lead, self.keep_fields))
                cached = self.tracked.get(lead.id)
                same = cached is not None and cached.packed == fresh.packed
                self.leads[lead.id] = cached if same and cached is not None else fresh
                self.elsewhere.discard(lead.id)
        if self.started is None:
            self.started = self.client.server_time

    def confirm_unseen(self, tracked: Mapping[int, TrackedLead]) -> frozenset[int]:
        """Ask for the tracked open leads the full read did not return by id; the ones amoCRM
        does not return either are gone (deleted)."""
        closed = self.setup.roles.done - set(self.setup.open_status_ids)
        unseen = sorted(
            lead_id
            for lead_id, item in tracked.items()
            if lead_id not in self.leads
            and lead_id not in self.unreadable
            and item.status_id not in closed
        )
        for start in range(0, len(unseen), IDS_PER_READ):
            wanted = frozenset(unseen[start : start + IDS_PER_READ])
            self.take(
                self.client.iter_leads(
                    ids=sorted(wanted), with_=("contacts",), on_invalid=self.invalid
                ),
                _among(wanted),
            )
        answered = set(self.leads) | self.elsewhere | self.unreadable
        return self._deleted(sorted(set(unseen) - answered))

    def _deleted(self, silent: Sequence[int]) -> frozenset[int]:
        """Of the leads no read returned, those amoCRM's trash holds; the others are kept:
        absence is not evidence (an odd empty answer, a lead hidden from the token's user)."""
        deleted = self.client.deleted_lead_ids(silent) if silent else set()
        kept = [lead_id for lead_id in silent if lead_id not in deleted]
        if kept:
            log.warning(
                "lead_unconfirmed",
                lead_ids=kept,
                problem="a full read and a read by id left these out, and the trash does not "
                "hold them: kept as they were, asked again at the next full read",
            )
        return frozenset(deleted)


def _among(ids: frozenset[int]) -> Callable[[Lead], bool]:
    return lambda lead: lead.id in ids
