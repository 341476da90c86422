"""The HTTP surface of the fake: the route table, and dispatch to the handlers of ``api_account``,
``api_leads`` and ``api_tasks_notes`` (404 for an unknown path, 405 for a wrong method)."""

from __future__ import annotations

import re
from collections.abc import Callable

from amo_client.fake.api_account import AccountHandlers
from amo_client.fake.api_leads import LeadHandlers
from amo_client.fake.api_tasks_notes import TaskNoteHandlers
from amo_client.fake.paging import Call
from amo_client.fake.query import BadQuery, parse_query
from amo_client.fake.replies import Reply, problem
from amo_client.fake.state import AccountState

Handler = Callable[[Call, "re.Match[str]"], Reply]


class Api(AccountHandlers, LeadHandlers, TaskNoteHandlers):
    """Routes API requests to handlers over an :class:`AccountState` (its lock already held)."""

    def __init__(self, state: AccountState) -> None:
        super().__init__(state)
        self._routes = self._build_routes()

    def dispatch(self, call: Call) -> Reply:
        path_known = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(call.path)
            if match is None:
                continue
            path_known = True
            if method != call.method:
                continue
            try:
                call.query = parse_query(call.pairs)
                self._turn_page(call)
                return handler(call, match)
            except BadQuery as error:
                return problem(400, error.detail, **{"validation-errors": []})
        if path_known:
            return problem(405, f"Method {call.method} is not allowed")
        return problem(404, f"Cannot {call.method} {call.path}")

    def _turn_page(self, call: Call) -> None:
        if call.method != "GET":
            return
        self.state._before_read(call.path, self._page_number(call), call.pairs)

    # ------------------------------------------------------------------ routes

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/api/v4/account", self._get_account),
            ("GET", r"/api/v4/users", self._list_users),
            ("GET", r"/api/v4/users/(\d+)", self._get_user),
            ("GET", r"/api/v4/leads/pipelines", self._list_pipelines),
            ("GET", r"/api/v4/leads/pipelines/(\d+)", self._get_pipeline),
            ("GET", r"/api/v4/leads/pipelines/(\d+)/statuses", self._list_statuses),
            ("POST", r"/api/v4/leads/pipelines/(\d+)/statuses", self._create_statuses),
            ("GET", r"/api/v4/leads/pipelines/(\d+)/statuses/(\d+)", self._get_status),
            ("PATCH", r"/api/v4/leads/pipelines/(\d+)/statuses/(\d+)", self._patch_status),
            ("DELETE", r"/api/v4/leads/pipelines/(\d+)/statuses/(\d+)", self._delete_status),
            ("GET", r"/api/v4/(leads|companies)/custom_fields", self._list_fields),
            ("POST", r"/api/v4/(leads|companies)/custom_fields", self._create_fields),
            ("PATCH", r"/api/v4/(leads|companies)/custom_fields", self._patch_fields),
            ("GET", r"/api/v4/(leads|companies)/custom_fields/(\d+)", self._get_field),
            ("GET", r"/api/v4/(leads|companies)/notes", self._list_notes),
            ("POST", r"/api/v4/(leads|companies)/notes", self._create_notes),
            ("PATCH", r"/api/v4/(leads|companies)/notes", self._patch_notes),
            ("GET", r"/api/v4/(leads|companies)/notes/(\d+)", self._get_note),
            ("GET", r"/api/v4/(leads|companies)/(\d+)/notes", self._list_notes),
            ("POST", r"/api/v4/(leads|companies)/(\d+)/notes", self._create_notes),
            ("GET", r"/api/v4/(leads|companies)", self._list_entities),
            ("PATCH", r"/api/v4/(leads|companies)", self._patch_entities),
            ("GET", r"/api/v4/(leads|companies)/(\d+)", self._get_entity),
            ("PATCH", r"/api/v4/(leads|companies)/(\d+)", self._patch_entity),
            ("GET", r"/api/v4/contacts/(\d+)", self._get_contact),
            ("GET", r"/api/v4/talks/(\d+)", self._get_talk),
            ("GET", r"/api/v4/events", self._list_events),
            ("GET", r"/api/v4/events/([0-9a-z]+)", self._get_event),
            ("GET", r"/api/v4/tasks", self._list_tasks),
            ("POST", r"/api/v4/tasks", self._create_tasks),
            ("PATCH", r"/api/v4/tasks", self._patch_tasks),
            ("GET", r"/api/v4/tasks/(\d+)", self._get_task),
            ("GET", r"/api/v4/webhooks", self._list_webhooks),
            ("POST", r"/api/v4/webhooks", self._subscribe_webhook),
            ("DELETE", r"/api/v4/webhooks", self._unsubscribe_webhook),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]
