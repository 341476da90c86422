"""Churn a reader has to survive: leads deleted, restored and merged and companies deleted in the
interface, and the account changed between the requests of one read."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from amo_client.fake.events import AccountEvents
from amo_client.fake.records import PageTurn


class AccountChurn(AccountEvents):
    """Deletes, restores and merges as people do, and runs the hooks set between reads."""

    def delete_lead(self, lead_id: int, *, by: int, at: float | None = None) -> None:
        """Delete a lead as a person does in the interface (amoCRM's API cannot delete leads).

        The lead goes to the trash: ``GET /api/v4/leads`` no longer lists it (only
        ``with=only_deleted`` does), ``GET /api/v4/leads/{id}`` answers 204 as for any id it
        does not find, a PATCH of it fails as for an unknown id, and a ``lead_deleted``
        event by ``by`` is recorded. Its events, tasks and notes stay on its id.
        """
        with self._lock:
            entity = self._entities["leads"].pop(lead_id, None)
            if entity is None:
                raise KeyError(lead_id)
            when = self._when(at)
            entity.deleted_at, entity.deleted_by = when, by
            self._trash[lead_id] = entity
            self._record_event("lead_deleted", "leads", lead_id, by, when)
            self._touch()

    def restore_lead(self, lead_id: int, *, by: int, at: float | None = None) -> None:
        """Take a lead back out of the trash: same id, same events, a ``lead_restored`` event.

        Its ``updated_at`` becomes the time of the restore, so a poller by ``updated_at``
        sees it again.
        """
        with self._lock:
            entity = self._trash.pop(lead_id, None)
            if entity is None:
                raise KeyError(lead_id)
            when = self._when(at)
            entity.deleted_at = entity.deleted_by = None
            entity.updated_at = max(entity.updated_at, when)
            entity.updated_by = by
            self._entities["leads"][lead_id] = entity
            self._record_event("lead_restored", "leads", lead_id, by, when)
            self._touch()

    def merge_leads(self, keep: int, lose: int, *, by: int, at: float | None = None) -> None:
        """Merge two leads as the interface's «Объединить» does: ``keep`` survives.

        ``lose`` is deleted (a ``lead_deleted`` event on its id; its own events stay there).
        ``keep`` keeps its id and values, takes over the tasks, notes and companies of
        ``lose``, gets ``updated_at`` bumped and an ``entity_merged`` event whose
        ``value_after`` names the merged lead (``[{"entity": {"id": lose, "type": "lead"}}]``;
        the shape is not documented, this one is a guess).
        """
        if keep == lose:
            raise ValueError("a lead cannot be merged into itself")
        with self._lock:
            winner = self._entities["leads"].get(keep)
            if winner is None:
                raise KeyError(keep)
            if lose not in self._entities["leads"]:
                raise KeyError(lose)
            when = self._when(at)
            loser = self._entities["leads"][lose]
            self.delete_lead(lose, by=by, at=when)
            moved = self._tasks_by_entity.pop(("leads", lose), [])
            for task_id in moved:
                self._tasks[task_id]["entity_id"] = keep
            self._tasks_by_entity.setdefault(("leads", keep), []).extend(moved)
            for note in self._notes.values():
                if note["entity_type"] == "leads" and note["entity_id"] == lose:
                    note["entity_id"] = keep
            for company_id in loser.company_ids:
                if company_id not in winner.company_ids:
                    winner.company_ids.append(company_id)
            winner.updated_at = max(winner.updated_at, when)
            winner.updated_by = by
            self._record_event(
                "entity_merged",
                "leads",
                keep,
                by,
                when,
                after=[{"entity": {"id": lose, "type": "lead"}}],
            )
            self._touch()

    @property
    def deleted_lead_ids(self) -> list[int]:
        """Leads in the trash, by id."""
        with self._lock:
            return sorted(self._trash)

    def delete_company(self, company_id: int) -> None:
        """Delete a company as a person does in the interface: it leaves every list and read
        by id. What amoCRM does to the links leads hold to it is not documented; here they
        stay, as the worst case for a reader that follows them."""
        with self._lock:
            if self._entities["companies"].pop(company_id, None) is None:
                raise KeyError(company_id)
            self._touch()

    def on_page(self, callback: Callable[[PageTurn], None] | None) -> None:
        """Call ``callback`` before serving page 2 or later of any list (None: stop calling).

        It runs inside the request, under the fake's lock, so it may change the account
        (close a lead already read, add one) between the pages of one read; the page is then
        cut from the list as it stands after the change, as amoCRM does.
        """
        with self._lock:
            self._page_hook = callback

    def on_read(self, callback: Callable[[PageTurn], None] | None) -> None:
        """Call ``callback`` before serving every GET (None: stop calling), numbered from 1.

        Like :meth:`on_page`, but between any two requests of a read, however the client
        pages (by offset, or page after page by ``updated_at``, where every page is page 1).
        """
        with self._lock:
            self._read_hook = callback
            self._reads_since_hook = 0

    def _before_read(self, path: str, page: int, pairs: list[tuple[str, str]]) -> None:
        """Run the hooks of :meth:`on_read` and :meth:`on_page` before serving a GET."""
        reads = self._read_hook
        if reads is not None:
            self._reads_since_hook += 1
            seq = self._reads_since_hook
            reads(PageTurn(path, page, urlencode(pairs), seq))
        hook = self._page_hook
        if hook is not None and page > 1:
            hook(PageTurn(path, page, urlencode(pairs)))
