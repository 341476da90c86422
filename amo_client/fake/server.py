"""The fake over real HTTP on localhost: for curl during a demo, worker processes and soak runs.

Answers are the fake's own, byte for byte, except that ``_links`` point at the host the
client called rather than at the fake's ``base_url``, so ``_links.next`` can be followed.
An answer whose client has gone (a worker killed mid-request) is dropped quietly.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from amo_client.fake.core import FakeAmoCRM


class FakeServer:
    """A background HTTP server in front of one :class:`FakeAmoCRM`; close it when done."""

    def __init__(self, fake: FakeAmoCRM, host: str, port: int) -> None:
        handler = _handler_for(fake)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{bound_host!s}:{bound_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _handler_for(fake: FakeAmoCRM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            content = self.rfile.read(length) if length else b""
            request = httpx.Request(
                self.command,
                fake.base_url + self.path,
                headers=[(key.lower(), value) for key, value in self.headers.items()],
                content=content,
            )
            try:
                response = fake.handle(request)
            except httpx.TransportError:
                self.close_connection = True
                return
            content = response.content
            host = self.headers.get("host")
            if host and "json" in response.headers.get("content-type", ""):
                # Like amoCRM, links point at the address the client called.
                content = content.replace(fake.base_url.encode(), f"http://{host}".encode())
            try:
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except ConnectionError:
                self.close_connection = True

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def send_response(self, code: int, message: str | None = None) -> None:
            """The status line and the server name, but no ``Date`` of the machine's own:
            the fake's answer carries its clock's, as amoCRM's carries amoCRM's."""
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Server", self.version_string())

        def log_message(self, format: str, *args: object) -> None:
            """Requests are already in the fake's own log."""

    return Handler
