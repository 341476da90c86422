"""An ASGI application called in process, without a socket: requests one by one, or many at
once on one event loop (a burst)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from starlette.types import ASGIApp

BASE = "http://worker.test"


class AsgiClient:
    """A synchronous face over ``httpx.ASGITransport``; usable as a context manager."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        content: str | bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                response = await client.request(method, path, content=content, headers=headers)
                await response.aread()
                return response

        return asyncio.run(send())

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)


def burst(
    app: ASGIApp, path: str, bodies: Sequence[bytes], headers: dict[str, str], at_once: int = 100
) -> list[int]:
    """POST every body to ``path``, ``at_once`` concurrently; the status codes in order."""

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        statuses: list[int] = []
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            for start in range(0, len(bodies), at_once):
                answers = await asyncio.gather(
                    *(
                        client.post(path, content=body, headers=headers)
                        for body in bodies[start : start + at_once]
                    )
                )
                statuses.extend(answer.status_code for answer in answers)
        return statuses

    return asyncio.run(run())
