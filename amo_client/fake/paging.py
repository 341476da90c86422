"""How the fake answers lists as amoCRM does: HAL pages capped by ``limit`` (a larger one falls
back to 50), 204 for an empty page, and the ordering, ranges and item ids that handlers share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from amo_client.fake.query import QueryNode, as_strings
from amo_client.fake.replies import Reply, hal, no_content
from amo_client.fake.state import AccountState

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
LEADS_MAX_LIMIT = 250
EVENTS_MAX_LIMIT = 100
NOTES_MAX_LIMIT = 250
CUSTOM_FIELDS_MAX_LIMIT = 50


@dataclass
class Call:
    """One authenticated API request, its query already nested by brackets."""

    method: str
    path: str
    pairs: list[tuple[str, str]]
    body: Any
    user_id: int
    query: dict[str, QueryNode] = field(default_factory=dict)


class Handlers:
    """What every group of API handlers shares: the account and the paging of its lists."""

    def __init__(self, state: AccountState) -> None:
        self.state = state
        self._selection_cache: dict[tuple[Any, ...], list[Any]] = {}
        self._selection_version = -1

    def _limit(self, call: Call, cap: int) -> int:
        raw = call.query.get("limit")
        if not isinstance(raw, str):
            return DEFAULT_PAGE_SIZE
        try:
            value = int(raw)
        except ValueError:
            return DEFAULT_PAGE_SIZE
        return value if 1 <= value <= cap else DEFAULT_PAGE_SIZE

    def _page_number(self, call: Call) -> int:
        raw = call.query.get("page")
        if not isinstance(raw, str):
            return 1
        try:
            return max(1, int(raw))
        except ValueError:
            return 1

    def _page_href(self, call: Call, page: int) -> str:
        pairs = [(key, value) for key, value in call.pairs if key != "page"]
        pairs.append(("page", str(page)))
        return f"{self.state.base_url}{call.path}?{urlencode(pairs)}"

    def _paged(
        self,
        call: Call,
        key: str,
        items: Sequence[T],
        render: Callable[[T], dict[str, Any]],
        *,
        cap: int,
        with_totals: bool = False,
    ) -> Reply:
        limit = self._limit(call, cap)
        page = self._page_number(call)
        start = (page - 1) * limit
        chunk = items[start : start + limit]
        if not chunk:
            return no_content()
        links: dict[str, Any] = {"self": {"href": self._page_href(call, page)}}
        if start + limit < len(items):
            links["next"] = {"href": self._page_href(call, page + 1)}
        payload: dict[str, Any] = {}
        if with_totals:
            payload["_total_items"] = len(items)
        payload["_page"] = page
        if with_totals:
            payload["_page_count"] = (len(items) + limit - 1) // limit
        payload["_links"] = links
        payload["_embedded"] = {key: [render(item) for item in chunk]}
        return hal(payload)

    def _selection(self, call: Call, build: Callable[[], list[T]], *, variant: str = "") -> list[T]:
        """Filtered, ordered ids of a list request, reused while the data stays unchanged."""
        if self._selection_version != self.state._version:
            self._selection_cache.clear()
            self._selection_version = self.state._version
        key = (
            call.path,
            variant,
            tuple(sorted((k, v) for k, v in call.pairs if k not in ("page", "limit", "with"))),
        )
        cached = self._selection_cache.get(key)
        if cached is None:
            cached = build()
            self._selection_cache[key] = cached
        return cached

    @staticmethod
    def _with(call: Call) -> set[str]:
        return set(as_strings(call.query.get("with")))


def order_by(query: dict[str, QueryNode], allowed: Sequence[str]) -> tuple[str, bool]:
    """``order[field]=asc|desc``; the first allowed field wins, ``id`` ascending by default."""
    order = query.get("order")
    if isinstance(order, dict):
        for key, direction in order.items():
            if key in allowed and isinstance(direction, str):
                return key, direction.strip().lower() == "desc"
    return "id", False


def in_range(value: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def request_id(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("request_id"), str):
        return str(item["request_id"])
    return str(index)
