"""An ASGI application called in process, without a socket: requests one by one, or many at
once on one event loop (a burst)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping, Sequence
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

    def __exit__(self, *_exc: object) -> None:
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
    """POST every body to ``path`` by plain ASGI calls, ``at_once`` concurrently; the status
    codes in order. No HTTP client in between, so ten thousand take a second or two."""

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def post(body: bytes) -> int:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*raw_headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await app(scope, receive, send)
        return status

    async def run() -> list[int]:
        statuses: list[int] = []
        for start in range(0, len(bodies), at_once):
            chunk = bodies[start : start + at_once]
            statuses.extend(await asyncio.gather(*(post(body) for body in chunk)))
        return statuses

    return asyncio.run(run())
