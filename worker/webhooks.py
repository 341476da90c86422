"""The worker's HTTP side: amoCRM's webhooks, Prometheus metrics and a health probe.

A small Starlette application served by uvicorn in a thread of the worker's process, beside
the scheduler (:class:`HttpServer` is a companion of :class:`worker.service.SyncService`),
with its connections capped and their requests held to deadlines (:mod:`worker.connections`),
so that no client can take the descriptors the sync cycle needs:

* ``POST /amocrm/webhook/{secret}`` (when a secret is set) takes amoCRM's account webhooks:
  form-encoded, in API v2's shape (``leads[status][0][id]=…&account[subdomain]=…``). A hook
  is only a hint that something changed: the cycle it triggers reads amoCRM as usual, and
  nothing in it is read as data. A good one triggers the sync cycle (debounced and
  rate-capped by the service), unless it only echoes the worker's own writes
  (:mod:`worker.echoes`), and is answered ``200`` at once; amoCRM waits two seconds and
  disables a hook that fails too often, so no amoCRM work is ever done while it waits.

  - a wrong secret (compared in constant time), or another account's ``account[subdomain]``:
    ``404``, and nothing runs;
  - a body over 1 MB: ``413``;
  - not ``application/x-www-form-urlencoded``, not UTF-8, a form that does not parse or that
    names no account: ``400``;
  - each refusal is one ``webhook_rejected`` warning line with the reason, never the path
    (it holds the secret); uvicorn's access log is off for the same reason.

* ``GET /metrics`` (when metrics are on): :mod:`worker.metrics` in the Prometheus format.
* ``GET /healthz``: ``200`` while the last good cycle is recent (or the worker has only just
  started), ``503`` otherwise; a JSON body says why.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from worker.connections import (
    Gate,
    GuardedServer,
    Limits,
    connection_limit,
    descriptors_in_use,
    listen,
    open_file_limit,
)
from worker.echoes import OwnWrites
from worker.health import check_health, heartbeat_path
from worker.metrics import CONTENT_TYPE, Metrics

log = structlog.stdlib.get_logger("worker.webhooks")

WEBHOOK_ROUTE: Final = "/amocrm/webhook/{secret}"
# Matched for every method and any tail, so that nothing under the prefix (a trailing
# slash, another method) answers other than 404 without the secret.
_WEBHOOK_PATTERN: Final = "/amocrm/webhook/{secret:path}"
# The account events `webhook register` subscribes to: everything that can change a lead's
# SLA (a new request, a move, a reply in a note or a call, tags and fields, deletion) and
# the talks, whose messages are replies too. A hook is only a hint to run the cycle.
WEBHOOK_EVENTS: Final = (
    "add_lead",
    "update_lead",
    "status_lead",
    "note_lead",
    "responsible_lead",
    "delete_lead",
    "restore_lead",
    "add_talk",
    "update_talk",
)
MAX_BODY_BYTES: Final = 1024 * 1024
# amoCRM sends a hook's small body at once and gives up on the answer after 2 s; a body
# still arriving after this long is refused, which also keeps a stalled sender from holding
# up a shutdown.
BODY_TIMEOUT_S: Final = 1.8
MAX_FIELDS: Final = 10_000
FORM_TYPE: Final = "application/x-www-form-urlencoded"
# amoCRM's keys: a name, then any number of bracketed parts (``leads[note][0][note][text]``).
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\[[A-Za-z0-9_]*\])*")
_SERVER_START_TIMEOUT: Final = 10.0
_SERVER_STOP_TIMEOUT: Final = 10.0


class _Refused(Exception):
    def __init__(self, status: int, reason: str, size: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.size = status, reason, size


class BadForm(ValueError):
    """A webhook body that is not a well-formed amoCRM form."""


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """The pairs of a form-encoded body; :class:`BadForm` unless it is strict UTF-8 throughout
    (raw and percent-decoded) and every key has amoCRM's shape."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadForm("not_utf8") from None
    except ValueError:
        raise BadForm("malformed") from None
    if not pairs:
        raise BadForm("empty")
    for key, _ in pairs:
        if not _KEY.fullmatch(key):
            raise BadForm("malformed")
    return pairs


def hook_summary(pairs: list[tuple[str, str]]) -> list[str]:
    """What a hook says happened, as ``entity.action`` names (``leads.status``), for the log."""
    seen: dict[str, None] = {}
    for key, _ in pairs:
        parts = key.replace("]", "").split("[")
        if len(parts) >= 2 and parts[0] != "account":
            seen[f"{parts[0]}.{parts[1]}"] = None
    return list(seen)


async def _read_hook(
    request: Request, expected: bytes | None, account: str, max_body: int
) -> tuple[list[tuple[str, str]], int]:
    """The hook's form and size; :class:`_Refused` when it is not one to act on."""
    given = str(request.path_params.get("secret", "")).encode("utf-8", "replace")
    if expected is None or not hmac.compare_digest(given, expected):
        raise _Refused(404, "wrong_secret")
    if request.method != "POST":
        raise _Refused(405, "method")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise _Refused(400, "bad_length")
    if declared is not None and int(declared) > max_body:
        raise _Refused(413, "too_large", int(declared))
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    raise _Refused(413, "too_large", len(body))
    except TimeoutError:
        raise _Refused(408, "slow_body", len(body)) from None
    except ClientDisconnect:
        raise _Refused(400, "disconnected", len(body)) from None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise _Refused(400, "not_form", len(body))
    try:
        pairs = parse_form(bytes(body))
    except BadForm as error:
        raise _Refused(400, str(error), len(body)) from None
    named = [value for key, value in pairs if key == "account[subdomain]"]
    if not named:
        raise _Refused(400, "no_account", len(body))
    if any(value.strip().lower() != account for value in named):
        raise _Refused(404, "other_account", len(body))
    return pairs, len(body)


@dataclass(frozen=True)
class Health:
    """``/healthz``: the heartbeat's age against ``max_age_s``; fine for ``grace_s`` after start."""

    state_dir: Path
    max_age_s: float
    grace_s: float
    started: float  # time.monotonic() at start

    def verdict(self) -> tuple[bool, str]:
        result = check_health(self.state_dir, self.max_age_s, datetime.now(UTC))
        if result.healthy:
            return True, result.reason
        starting = time.monotonic() - self.started < self.grace_s
        if starting and not heartbeat_path(self.state_dir).exists():
            return True, "starting: no sync cycle has finished yet"
        return False, result.reason


def build_app(
    *,
    trigger: Callable[[], object],
    secret: str | None = None,
    subdomain: str | None = None,
    metrics: Metrics | None = None,
    serve_metrics: bool = False,
    health: Health | None = None,
    max_body: int = MAX_BODY_BYTES,
    echoes: OwnWrites | None = None,
) -> Starlette:
    """The ASGI application; the webhook route exists only with ``secret`` (and ``subdomain``)."""
    expected = secret.encode() if secret else None
    account = (subdomain or "").strip().lower()
    if expected is not None and not account:
        raise ValueError("webhooks need the account's subdomain")

    def rejected(status: int, reason: str, request: Request, size: int | None = None) -> Response:
        if metrics is not None:
            metrics.webhook_rejected(reason)
        log.warning(
            "webhook_rejected",
            status=status,
            reason=reason,
            client=request.client.host if request.client else None,
            content_type=request.headers.get("content-type"),
            bytes=size,
        )
        allow = {"Allow": "POST"} if status == 405 else None
        return PlainTextResponse("", status_code=status, headers=allow)

    async def webhook(request: Request) -> Response:
        try:
            pairs, size = await _read_hook(request, expected, account, max_body)
        except _Refused as refusal:
            return rejected(refusal.status, refusal.reason, request, refusal.size)
        if metrics is not None:
            metrics.webhook_received()
        if echoes is not None and echoes.only_echoes(pairs):
            # amoCRM telling of the worker's own write: nothing to read again.
            log.debug("webhook_echo", events=hook_summary(pairs), bytes=size)
            return PlainTextResponse("ok")
        log.debug("webhook_received", events=hook_summary(pairs), bytes=size)
        trigger()
        return PlainTextResponse("ok")

    async def metrics_page(request: Request) -> Response:
        body = metrics.exposition() if metrics is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        if health is None:
            return JSONResponse({"status": "ok"})
        healthy, reason = health.verdict()
        return JSONResponse(
            {"status": "ok" if healthy else "unhealthy", "reason": reason},
            status_code=200 if healthy else 503,
        )

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if expected is not None:
        hook_route = Route(_WEBHOOK_PATTERN, webhook)
        hook_route.methods = None  # every method: the secret is checked before the method
        routes.append(hook_route)
    if serve_metrics and metrics is not None:
        routes.append(Route("/metrics", metrics_page, methods=["GET"]))
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False  # a redirect would answer a wrong path with 307
    return app


class HttpServer:
    """uvicorn serving ``app`` on ``host:port`` in a thread of its own, its connections capped
    and their requests held to deadlines (:mod:`worker.connections`). start() binds the socket
    and raises OSError when it cannot listen. Port 0 takes any free port."""

    def __init__(self, app: Starlette, host: str, port: int, limits: Limits | None = None) -> None:
        self.host = host
        self._requested_port = self._port = port
        self.limits = limits if limits is not None else Limits()
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="asyncio",
            http="h11",
            ws="none",
            # The request line holds the webhook's secret: no access log at all.
            access_log=False,
            # Logging is the worker's (JSON, redacted): uvicorn's loggers reach its root handler.
            log_config=None,
            log_level="warning",
            lifespan="off",
            server_header=False,
            timeout_keep_alive=self.limits.keep_alive_s,
            timeout_graceful_shutdown=5,
        )
        self._server: GuardedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for, once started)."""
        return self._port

    @property
    def max_connections(self) -> int | None:
        """The cap on connections in force (None before start)."""
        return self._server.gate.limit if self._server is not None else None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        try:
            listeners = listen(self.host, self._requested_port, self._config.backlog)
        except OSError as error:
            raise OSError(
                f"the HTTP server could not listen on {self.host}:{self._requested_port}: "
                f"{error.strerror or error}"
            ) from error
        # Counted now, after the worker raised its open-file limit and opened its state.
        limits = open_file_limit()
        limit = self.limits.max_connections or connection_limit(
            limits[0] if limits is not None else None, descriptors_in_use()
        )
        server = GuardedServer(self._config, Gate(self.limits, limit), listeners)
        self._server = server
        self._port = int(listeners[0].getsockname()[1])
        thread = threading.Thread(target=server.run, name="http-server", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + _SERVER_START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                for listener in listeners:
                    listener.close()
                raise OSError(f"the HTTP server could not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info(
            "http_server_started",
            host=self.host,
            port=self.port,
            max_connections=limit,
            open_files=limits[0] if limits is not None else None,
        )

    def stop(self) -> None:
        thread, server = self._thread, self._server
        if thread is None or server is None:
            return
        server.should_exit = True
        thread.join(_SERVER_STOP_TIMEOUT)
        self._thread = None
        log.info("http_server_stopped", host=self.host, port=self.port)
