"""One logging pipeline for the worker and the libraries it uses, with secrets masked.

:func:`configure_logging` routes structlog and the standard library's ``logging`` (httpx,
httpcore, APScheduler) through one :class:`structlog.stdlib.ProcessorFormatter` on the root
handler. Every line is either one JSON object (``event``, ``level``, ``timestamp`` in ISO 8601
UTC, ``logger`` and the event's own keys) or, on a terminal, a readable console line.

Library noise: httpx logs one INFO line per HTTP request and APScheduler two INFO lines per
job run. Both stay at WARNING unless the worker's level is DEBUG, so a cycle produces one
summary line rather than hundreds; at DEBUG the request lines appear, redacted like all others.
httpcore's connection traces stay at WARNING even then.

Redaction happens twice. A processor masks values under secret-looking keys
(``authorization``, ``access_token``, ``client_secret``, a long ``code``, ...) and secret-looking
fragments of any string (``Bearer ...``, ``access_token=...``, JSON ``"refresh_token": "..."``,
JWTs) together with every value given to :func:`register_secret`; objects are turned into
their ``repr`` and tracebacks into text first, so those are masked too. The rendered line is
then scrubbed once more for the same values and patterns (a JSON line is parsed and written
again for that, so the scrub can never produce invalid JSON).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from amo_client.redaction import SecretRegistry

MASK: Final = "***"

_SECRET_KEYS: Final = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "token",
        "password",
        "secret",
        "api_key",
        "apikey",
    }
)
_SECRET_KEY_SUFFIXES: Final = ("_token", "_secret", "_password")

# An OAuth authorization code is a long opaque string, while amoCRM's validation errors carry
# short codes such as "NotSupportedChoice" that must stay readable: ``code`` counts as a secret
# from this length on.
MIN_SECRET_CODE_LENGTH: Final = 40

# Names whose value is a secret when they appear inside a string: query strings and form bodies
# (``name=value``), JSON and Python reprs (``"name": "value"``). ``code`` only with a long value.
_NAMES: Final = (
    r"(?:access_token|refresh_token|id_token|client_secret|token|password|secret|api_key|apikey"
    rf"|code(?=\W{{1,6}}[^&\s\"'<>,]{{{MIN_SECRET_CODE_LENGTH}}}))"
)
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Header lines and header mappings: everything up to the end of the value.
    (
        re.compile(
            r"""(?i)\b((?:proxy-)?authorization|cookie|set-cookie)(["']?\s*[:=]\s*["']?)"""
            r"""(?!\*\*\*)[^\s"'\\,}\]][^"'\\,\r\n}\]]*"""
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]+"), rf"\1\2{MASK}"),
    (
        re.compile(rf"""(?i)(?<![\w-])({_NAMES})=(?!\*\*\*)[^&\s"'<>\\(),;\[\]{{}}]+"""),
        rf"\1={MASK}",
    ),
    (
        re.compile(
            rf"""(?i)(?<![\w-])(\\?["'])({_NAMES})\1(\s*:\s*)(\\?["'])(?!\*\*\*)(?:(?!\4).)*\4"""
        ),
        rf"\1\2\1\3\4{MASK}\4",
    ),
    # JSON Web Tokens (amoCRM access tokens are JWTs) wherever they appear.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
)

# Values shorter than this are not registered: masking every "abc" in every line would destroy
# the logs and real tokens and secrets are far longer.
MIN_SECRET_LENGTH: Final = 6

_secrets = SecretRegistry(min_length=MIN_SECRET_LENGTH)
_renders_json = False
_HANDLER_MARK: Final = "_amo_sla_handler"

_QUIET_LIBRARIES: Final = ("httpx", "apscheduler")
_ALWAYS_QUIET_LIBRARIES: Final = ("httpcore", "hpack", "h11")


def secrets() -> SecretRegistry:
    """The process's registry of values to mask: give it to whatever holds rotating tokens."""
    return _secrets


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in any later log line (also JSON- and URL-encoded).

    Empty values and values shorter than :data:`MIN_SECRET_LENGTH` are ignored.
    """
    _secrets.add(value)


def forget_secrets() -> None:
    """Empty the registry (tests and re-configuration)."""
    global _secrets  # noqa: PLW0603 - one process-wide registry, replaced whole
    _secrets = SecretRegistry(min_length=MIN_SECRET_LENGTH)


def redact_text(text: str) -> str:
    """``text`` with registered secrets and secret-looking fragments replaced by ``***``."""
    for form in _secrets.forms():
        if form in text:
            text = text.replace(form, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_item(key: object, value: object) -> bool:
    if not isinstance(key, str):
        return False
    normalized = key.strip().lower().replace("-", "_")
    if normalized == "code":
        return isinstance(value, str | bytes) and len(value) >= MIN_SECRET_CODE_LENGTH
    return normalized in _SECRET_KEYS or normalized.endswith(_SECRET_KEY_SUFFIXES)


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK if _is_secret_item(key, item) else _redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return redact_text(_as_text(value))


def _as_text(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, PurePath):
        return str(value)
    # Anything else would be rendered through its repr; turning it into text here lets the
    # redaction see (and mask) whatever that repr contains.
    return repr(value)


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret keys and secret fragments of every value."""
    for key in list(event_dict):
        if key.startswith("_"):  # structlog's own bookkeeping (_record, _from_structlog)
            continue
        if _is_secret_item(key, event_dict[key]):
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _scrub_json(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text(str(key)): _scrub_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_json(item) for item in value]
    return value


_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")


def _render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    # Every value is text or a JSON scalar after redact_event; the round trip scrubs the line
    # as written (keys included) without ever producing invalid JSON.
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    rendered = json.dumps(ordered, ensure_ascii=False, default=repr)
    return json.dumps(_scrub_json(json.loads(rendered)), ensure_ascii=False)


class _ScrubbedConsoleRenderer:
    """The console renderer, its output scrubbed once more."""

    def __init__(self, colors: bool) -> None:
        self._renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        return redact_text(self._renderer(logger, method, event_dict))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _renderer(format: str, stream: TextIO) -> Processor:
    if format == "json" or (format == "auto" and not _is_terminal(stream)):
        return _render_json
    return _ScrubbedConsoleRenderer(colors=_is_terminal(stream))


def renders_json() -> bool:
    """Whether the last :func:`configure_logging` chose JSON lines.

    Then nothing but log lines may go to the log stream: a command tells the admin about an
    error through its log line alone, not through an extra line of prose beside it.
    """
    return _renders_json


def _shared_processors(clock: Callable[[], datetime] | None = None) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        (
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
            if clock is None
            else _stamped_by(clock)
        ),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become plain text here, before redaction, so no renderer prints frame
        # locals or an exception message that still carries a secret.
        structlog.processors.format_exc_info,
    ]


def _stamped_by(clock: Callable[[], datetime]) -> Processor:
    def stamp(_logger: object, _method: str, event: EventDict) -> EventDict:
        event["timestamp"] = clock().astimezone(UTC).isoformat().replace("+00:00", "Z")
        return event

    return stamp


def configure_logging(
    format: str = "auto",
    level: str = "INFO",
    stream: TextIO | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default: standard error).

    ``format`` is ``auto`` (JSON unless ``stream`` is a terminal), ``json`` or ``console``;
    ``level`` a stdlib level name; ``clock`` stamps the lines instead of the wall clock (the
    demo's simulated time). Calling it again replaces the previous configuration.
    """
    if format not in {"auto", "json", "console"}:
        raise ValueError(f"unknown log format {format!r}: expected auto, json or console")
    numeric_level = logging.getLevelName(level.strip().upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    target = stream if stream is not None else sys.stderr
    global _renders_json  # noqa: PLW0603 - one process-wide logging configuration
    renderer = _renderer(format, target)
    _renders_json = renderer is _render_json

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(clock),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)

    library_level = logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING
    _set_levels(_QUIET_LIBRARIES, max(library_level, numeric_level))
    _set_levels(_ALWAYS_QUIET_LIBRARIES, max(logging.WARNING, numeric_level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(clock),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers bound at import time follow a later configure_logging() call.
        cache_logger_on_first_use=False,
    )


def _set_levels(names: Iterable[str], level: int) -> None:
    for name in names:
        logging.getLogger(name).setLevel(level)
