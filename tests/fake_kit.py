"""Shared pieces of the fake amoCRM's own tests: the two ways in, and reading list answers.

Every behaviour of the fake must be the same through the in-process ``httpx`` transport and
through the loopback HTTP server that soak runs and worker processes use; tests that take
the ``api`` fixture (``tests/conftest.py``) run once per way in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from amo_client.fake import FakeAmoCRM

CHANNELS = ("transport", "server")


@contextmanager
def open_channel(fake: FakeAmoCRM, channel: str) -> Iterator[Callable[[str | None], httpx.Client]]:
    """A factory of clients (one bearer token each, or none) reaching ``fake`` by ``channel``."""
    if channel == "transport":
        yield lambda token: _client(fake.base_url, fake.transport, token)
        return
    with fake.serve() as server:
        yield lambda token: _client(server.url, None, token)


def _client(
    base_url: str, transport: httpx.BaseTransport | None, token: str | None
) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, transport=transport, headers=headers)


def embedded(response: httpx.Response, key: str) -> list[dict[str, Any]]:
    assert response.status_code == 200, (response.status_code, response.text)
    items: list[dict[str, Any]] = response.json()["_embedded"][key]
    return items


def ids_of(response: httpx.Response, key: str = "leads") -> list[Any]:
    """The ids in a list answer; an empty list (204) gives []."""
    if response.status_code == 204:
        return []
    return [item["id"] for item in embedded(response, key)]
