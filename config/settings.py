"""The worker's settings: one frozen object, read once at start-up.

Values come from environment variables and, when present, a ``.env`` file in the
working directory; the environment wins. Every field below is one variable: the
field ``sla_poll_interval`` is the variable ``SLA_POLL_INTERVAL``. A bad value
raises :class:`ConfigError`, whose message names each offending variable, so the
worker can stop before it sends a single request.
"""

from __future__ import annotations

import difflib
import re
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NameOrIdList = Annotated[tuple[str, ...], NoDecode]
TagList = Annotated[tuple[str, ...], NoDecode]
AddressList = Annotated[tuple[str, ...], NoDecode]

_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{24,256}")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SMTP_SCHEMES = {"smtp": 587, "smtps": 465, "smtp+plain": 25}
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
WEBHOOK_PATH = "/amocrm/webhook/"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    return host, int(port)


_AGE = re.compile(r"(\d+)\s*([mhd])")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_past_breach_tasks(value: str) -> timedelta | None:
    """``none`` (zero), ``all`` (None) or an age such as ``90m``, ``24h``, ``7d``."""
    text = value.strip().lower()
    if text == "none":
        return timedelta(0)
    if text == "all":
        return None
    if match := _AGE.fullmatch(text):
        return timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
    raise ValueError("expected `none`, `all`, or an age such as `90m`, `24h` or `7d`")


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def cron_fields(expression: str) -> dict[str, str]:
    """A five-field cron expression (minute hour day month weekday) as APScheduler's
    ``CronTrigger`` fields, the weekday read as cron reads it (0 and 7 Sunday, 1 Monday;
    APScheduler alone would take 0 for Monday). ValueError when it is no such expression."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"expected five fields (minute hour day month weekday), got {len(parts)}")
    fields = dict(zip(_CRON_FIELDS, parts, strict=True))
    if fields["day_of_week"] != "*":
        days = sorted(_cron_weekdays(fields["day_of_week"]))
        fields["day_of_week"] = ",".join(_WEEKDAYS[day] for day in days)
    return fields


def _cron_weekday(text: str) -> int:
    word = text.strip().lower()
    if word[:3] in _WEEKDAYS and len(word) >= 3:
        return _WEEKDAYS.index(word[:3])
    if word.isdigit() and 0 <= int(word) <= 7:
        return int(word) % 7
    raise ValueError(f"{text!r} is not a weekday (0-7 or sun-sat)")


def _cron_weekdays(field: str) -> set[int]:
    days: set[int] = set()
    for item in field.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 0
        if step_text and not step:
            raise ValueError(f"{item!r}: a step is a whole number above 0")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _cron_weekday(low), _cron_weekday(high)
            last = 7 if high.strip() == "7" else last
        else:
            first = last = _cron_weekday(span)
            if step:
                last = 6
        if last < first:
            raise ValueError(f"{item!r}: a range runs from the first day to the last")
        days |= {day % 7 for day in range(first, last + 1, step or 1)}
    return days


class AmoDomain(StrEnum):
    AMOCRM_RU = "amocrm.ru"
    AMOCRM_COM = "amocrm.com"
    KOMMO_COM = "kommo.com"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Settings(BaseSettings):
    """Every variable the worker reads. The README's reference table is generated from it."""

    model_config = SettingsConfigDict(
        frozen=True,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- the account -------------------------------------------------------------------
    amo_base_url: str | None = Field(
        None,
        description="Account address, e.g. `https://example.amocrm.ru`. "
        "Alternative to AMO_SUBDOMAIN + AMO_DOMAIN.",
    )
    amo_subdomain: str | None = Field(
        None, description="Account subdomain: `example` in example.amocrm.ru."
    )
    amo_domain: AmoDomain = Field(
        AmoDomain.AMOCRM_RU, description="Account domain, used with AMO_SUBDOMAIN."
    )

    # --- authorisation -----------------------------------------------------------------
    amo_long_lived_token: SecretStr | None = Field(
        None, description="A long-lived token of a private integration. Alternative to OAuth."
    )
    amo_client_id: str | None = Field(None, description="OAuth integration ID.")
    amo_client_secret: SecretStr | None = Field(None, description="OAuth integration secret key.")
    amo_redirect_uri: str | None = Field(
        None, description="OAuth redirect URI, exactly as set in the integration."
    )
    amo_token_file: Path | None = Field(
        None,
        description="Where OAuth tokens are kept (mode 0600). "
        "Default: `tokens.json` in SLA_STATE_DIR.",
    )
    amo_max_requests_per_second: float = Field(
        7.0, gt=0, le=7.0, description="Client-side cap on API calls; amoCRM allows 7/s."
    )

    # --- the support pipeline and its stages -------------------------------------------
    sla_pipeline: str | None = Field(
        None, description="The support pipeline, by ID or by name. Required for a real account."
    )
    sla_first_stage: str | None = Field(
        None,
        description="Stage a new request lands in (ID or name); a person moving a lead out of "
        "it counts as the reaction. Default: the pipeline's first stage.",
    )
    sla_hold_stages: NameOrIdList = Field(
        (), description="Comma-separated stages where the clocks stop (waiting for the customer)."
    )
    sla_done_stages: NameOrIdList = Field(
        (), description="Comma-separated extra done stages; 142 and 143 are always done."
    )
    sla_acceptance_stages: NameOrIdList = Field(
        (),
        description="Comma-separated done stages where the result waits for the customer's "
        "remarks; after the policy's acceptance period the lead moves to SLA_ACCEPTED_STAGE.",
    )
    sla_accepted_stage: str = Field(
        "142", description="Where an accepted lead is moved (ID or name)."
    )

    # --- the policy ----------------------------------------------------------------------
    sla_policy_file: Path | None = Field(
        None,
        description="A policy TOML file (see `sla/presets/`). Default: the built-in CRMBP policy.",
    )
    sla_tariff_tags: Mapping[str, tuple[str, ...]] | None = Field(
        None,
        description="JSON: tag spellings per tariff, overriding the policy's, e.g. "
        '`{"Приоритет": ["Приоритет", "VIP"]}`.',
    )
    sla_typical_tags: TagList | None = Field(
        None, description="Comma-separated tags that mark a typical request (overrides policy)."
    )
    sla_non_standard_tags: TagList | None = Field(
        None,
        description="Comma-separated tags that mark a non-standard request (overrides policy).",
    )
    sla_emergency_tags: TagList | None = Field(
        None,
        description="Comma-separated tags that mark an emergency (overrides policy). They act "
        "only under a policy with an emergency reaction calendar, such as `prime_gate.toml`; "
        "the built-in CRMBP policy has none.",
    )
    sla_class_field: str | None = Field(
        None,
        description="Optional select field (ID or name) whose value gives the request class.",
    )

    # --- the lead fields the worker writes --------------------------------------------
    sla_field_reaction_due: int | None = Field(
        None, description="ID of the «SLA: реакция до» field. Default: found by name."
    )
    sla_field_resolution_due: int | None = Field(
        None, description="ID of the «SLA: решение до» field. Default: found by name."
    )
    sla_field_reacted_at: int | None = Field(
        None, description="ID of the «SLA: реакция» field. Default: found by name."
    )
    sla_field_reaction_breached: int | None = Field(
        None, description="ID of the «SLA: реакция просрочена» field. Default: found by name."
    )
    sla_field_resolution_breached: int | None = Field(
        None, description="ID of the «SLA: решение просрочено» field. Default: found by name."
    )
    sla_field_status: int | None = Field(
        None, description="ID of the «SLA: статус» field. Default: found by name."
    )
    sla_field_remaining_minutes: int | None = Field(
        None, description="ID of the «SLA: осталось, мин» field. Default: found by name."
    )
    sla_field_agreed_due: int | None = Field(
        None, description="ID of the «SLA: срок по согласованию» field. Default: found by name."
    )
    sla_field_spent_minutes: int | None = Field(
        None,
        description="ID of the «SLA: затрачено, мин» field (packages on). Default: found by name.",
    )
    sla_field_package_exhausted: int | None = Field(
        None,
        description="ID of the «Пакет: исчерпан» field (packages on). Default: found by name.",
    )
    sla_field_quota_over: int | None = Field(
        None,
        description="ID of the «Квота: сверх лимита» field (quotas on). Default: found by name.",
    )

    # --- company ledgers -------------------------------------------------------------------
    sla_packages: bool = Field(
        False,
        description="Track prepaid hour packages per company: time entries from notes, the "
        "balance in the company's «Пакет: …» fields, a flag and a task at the limit. Quotas "
        "are switched on by the policy file instead.",
    )
    sla_time_marker: str = Field(
        "Время:",
        min_length=1,
        description="The first words of a note that logs time on a request "
        "(`Время: 1 ч 30 мин — настройка воронки`); case and spaces around it are ignored.",
    )
    sla_robot_replies: bool = Field(
        False,
        description="Count a robot's outgoing chat message or e-mail (`created_by` 0) as a "
        "reaction, for accounts whose chat integration posts the agents' replies through the "
        "API; other robot actions never react (spec §4).",
    )
    sla_call_time: bool = Field(
        False,
        description="Count the duration of call notes (`call_in`, `call_out`) on a request as "
        "time entries too.",
    )
    sla_package_task_text: str = Field(
        "Пакет часов компании «{company_name}» исчерпан: израсходовано {used} из {limit}. "
        "Работы приостановлены до согласования с клиентом.",
        description="The task for the company's responsible user when its package is used up. "
        "Placeholders: {company_id} (a number), {company_name}, {used}, {limit}, {valid_to} "
        "(texts).",
    )
    sla_quota_task_text: str = Field(
        "Обращение «{lead_name}» — {ordinal}-е по квоте «{quota}» за {months} мес. по тарифу "
        "«{tariff}» (бесплатно {limit}): согласуйте оплату с клиентом.",
        description="The task for a request over a quota. Placeholders: {lead_id}, {ordinal}, "
        "{limit}, {months} (numbers), {lead_name}, {quota}, {tariff} (texts).",
    )

    # --- tasks -----------------------------------------------------------------------------
    sla_task_type_id: int = Field(
        1,
        ge=1,
        description="Task type for breach tasks (1 = «Связаться» in every account); "
        "`check` confirms the account has it.",
    )
    sla_task_text: str = Field(
        "Просрочена реакция по обращению «{lead_name}» (#{lead_id}), тариф «{tariff}»: "
        "срок реакции истёк {due}.",
        description="Reaction-breach task text. Placeholders: {lead_id} (a number), "
        "{lead_name}, {tariff}, {request_class}, {due} (texts); a template they cannot fill "
        "in stops the worker at start.",
    )
    sla_task_due_minutes: int = Field(
        60, ge=0, description="The task is due this many minutes after it is created."
    )
    sla_past_breach_tasks: str = Field(
        "none",
        description="Tasks for breaches from before the worker's first start on the account: "
        "`none` (their fields only, spec §5), `all`, or those younger than an age at the "
        "first start (`90m`, `24h`, `7d`).",
    )
    sla_first_start: datetime | None = Field(
        None,
        description="When the worker first started on the account (ISO 8601 with an offset, "
        "e.g. `2026-03-02T09:00:00+03:00`): breaches before it get no task. Unset, the state "
        "keeps the first cycle's instant and a lost state finds it again in amoCRM; set, it "
        "wins.",
    )
    sla_supervisor_user_id: int | None = Field(
        None,
        description="When set, a resolution breach creates one task for this user; `check` "
        "confirms it is an active user of the account.",
    )
    sla_resolution_task_text: str = Field(
        "Просрочено решение по обращению «{lead_name}» (#{lead_id}), тариф «{tariff}»: "
        "срок решения истёк {due}.",
        description="Resolution-breach task text; same placeholders as SLA_TASK_TEXT.",
    )

    # --- running -----------------------------------------------------------------------------
    sla_poll_interval: int = Field(300, ge=10, le=86400, description="Seconds between sync cycles.")
    sla_full_reconcile_interval: int = Field(
        21600,
        ge=60,
        description="Seconds between full re-reads of the pipeline (catches missed updates).",
    )
    sla_state_dir: Path = Field(
        Path("state"), description="Directory for the local cache, task ledger and tokens."
    )
    sla_log_format: LogFormat = Field(
        LogFormat.AUTO, description="`json`, `console`, or `auto` (JSON unless a terminal)."
    )
    sla_log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    sla_health_max_age: int = Field(
        0,
        ge=0,
        description="`health` fails when the last good cycle is older than this many seconds. "
        "Default (0): three poll intervals.",
    )

    # --- webhooks and metrics ------------------------------------------------------------------
    sla_http_listen: str = Field(
        "127.0.0.1:8080",
        description="`HOST:PORT` the worker's HTTP server listens on when webhooks or metrics "
        "are on (`0.0.0.0:8080` in a container). Put a reverse proxy with HTTPS in front.",
    )
    sla_webhook_secret: SecretStr | None = Field(
        None,
        description="Switches the amoCRM webhook endpoint on: `POST /amocrm/webhook/SECRET`. "
        "At least 24 characters of letters, digits, `-` and `_` (e.g. `openssl rand -hex 24`).",
    )
    sla_webhook_url: str | None = Field(
        None,
        description="The public HTTPS address amoCRM reaches the worker at, e.g. "
        "`https://sla.example.com`; `webhook register` subscribes "
        "`SLA_WEBHOOK_URL/amocrm/webhook/SLA_WEBHOOK_SECRET`.",
    )
    sla_webhook_debounce: float = Field(
        1.0,
        ge=0,
        le=2.0,
        description="Seconds a webhook waits for the rest of its burst before the cycle starts.",
    )
    sla_webhook_min_interval: float = Field(
        1.5,
        ge=1.0,
        le=3600.0,
        description="Rate cap: a webhook starts a cycle no sooner than this many seconds after "
        "the previous cycle started.",
    )
    sla_metrics: bool = Field(
        False,
        description="Serve `GET /metrics` (Prometheus) and `GET /healthz` on SLA_HTTP_LISTEN, "
        "with or without webhooks.",
    )

    # --- the report, the customer statements and their delivery by mail ------------------------
    sla_provider_name: str | None = Field(
        None,
        description="The provider's name on the customer statements (the party that signs "
        "them), e.g. `ИП Иванов Иван Иванович`.",
    )
    sla_chromium: str | None = Field(
        None,
        description="Chromium that prints the statements to PDF: a path or a command. "
        "Default: `chromium`, `chromium-browser` or `google-chrome` on the PATH; without one "
        "the statements are written (and mailed) as HTML.",
    )
    sla_smtp_url: SecretStr | None = Field(
        None,
        description="The mail server for `report --mail-to` and the scheduled report: "
        "`smtp://USER:PASSWORD@HOST:587` (STARTTLS, required), `smtps://USER:PASSWORD@HOST:465` "
        "(TLS from the start) or `smtp+plain://HOST:25` (no TLS, for a relay on the same "
        "network); user and password percent-encoded. Never logged: the log names the host.",
    )
    sla_smtp_from: str | None = Field(
        None,
        description="The sender of the report mail, e.g. `sla@example.com`; required with "
        "SLA_SMTP_URL.",
    )
    sla_report_schedule: str | None = Field(
        None,
        description="When `run` mails the report: a cron expression (minute hour day month "
        "weekday) in the policy's time zone, at most once a day, e.g. `0 9 1 * *` (the 1st at "
        "09:00: the previous month). Each report covers the whole days since the previous "
        "time; each is sent once per recipient, across restarts.",
    )
    sla_report_to: AddressList = Field(
        (),
        description="Comma-separated addresses the scheduled report goes to (report.html "
        "attached and the CSV tables zipped).",
    )
    sla_statement_email_field: str | None = Field(
        None,
        description="A company field (ID, name or code, e.g. `EMAIL`) with the address each "
        "customer's statement of hours goes to with the scheduled report (packages on); "
        "unset, statements are not mailed.",
    )
    sla_report_retry_minutes: int = Field(
        60,
        ge=1,
        le=1440,
        description="A scheduled mail the server did not take (unreachable, a recipient "
        "refused, too large) is tried again this many minutes later, until the next report "
        "is due.",
    )

    # --- validation ----------------------------------------------------------------------------
    @field_validator(
        "sla_hold_stages",
        "sla_done_stages",
        "sla_acceptance_stages",
        "sla_typical_tags",
        "sla_non_standard_tags",
        "sla_emergency_tags",
        "sla_report_to",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("amo_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ValueError("expected an address like https://example.amocrm.ru")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("amo_subdomain")
    @classmethod
    def _check_subdomain(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip().lower()
        if not _SUBDOMAIN.match(value):
            raise ValueError("expected the subdomain alone, e.g. `example` for example.amocrm.ru")
        return value

    @field_validator("sla_http_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, port = parse_listen(value)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise ValueError(f"the host {host!r} does not resolve here ({error})") from None
        return value.strip()

    @field_validator("sla_time_marker")
    @classmethod
    def _check_marker(cls, value: str) -> str:
        marker = value.strip()
        if not marker:
            raise ValueError("expected the words a time note starts with, e.g. `Время:`")
        return marker

    @field_validator("sla_past_breach_tasks")
    @classmethod
    def _check_past_breach_tasks(cls, value: str) -> str:
        parse_past_breach_tasks(value)
        return value.strip().lower()

    @field_validator("sla_first_start")
    @classmethod
    def _check_first_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("expected an offset too, e.g. `2026-03-02T09:00:00+03:00`")
        return value

    @field_validator("sla_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "expected at least 24 characters of letters, digits, `-` and `_` "
                "(e.g. the output of `openssl rand -hex 24`)"
            )
        return value

    @field_validator("sla_webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        parts = urlsplit(value.strip())
        local = parts.hostname in _LOOPBACK_HOSTS
        if not parts.hostname or not (
            parts.scheme == "https" or (local and parts.scheme == "http")
        ):
            raise ValueError(
                "expected the public HTTPS address, e.g. https://sla.example.com "
                "(amoCRM sends webhooks to HTTPS addresses only)"
            )
        if parts.query or parts.fragment:
            raise ValueError("expected an address without a query or a fragment")
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @field_validator("sla_smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        parts = urlsplit(value.get_secret_value().strip())
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in SMTP_SCHEMES or not parts.hostname or port == -1:
            # The value holds a password: it is never echoed, only its shape is described.
            raise ValueError(
                "expected smtp://USER:PASSWORD@HOST:587, smtps://USER:PASSWORD@HOST:465 or "
                "smtp+plain://HOST:25"
            )
        return value

    @field_validator("sla_smtp_from")
    @classmethod
    def _check_smtp_from(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not _ADDRESS.match(value.strip()):
            raise ValueError("expected an address like sla@example.com")
        return value.strip()

    @field_validator("sla_report_to")
    @classmethod
    def _check_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not an address like boss@example.com")
        return value

    @field_validator("sla_report_schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - only when set

        try:
            CronTrigger(**cron_fields(value), timezone="UTC")
        except ValueError as error:
            raise ValueError(
                f"expected a cron expression such as `0 9 1 * *` (minute hour day month "
                f"weekday): {error}"
            ) from None
        return " ".join(value.split())

    @field_validator("sla_log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("sla_task_text", "sla_resolution_task_text")
    @classmethod
    def _check_template(cls, value: str) -> str:
        return _rendering(value, TASK_SAMPLE)

    @field_validator("sla_package_task_text")
    @classmethod
    def _check_package_template(cls, value: str) -> str:
        return _rendering(value, PACKAGE_TASK_SAMPLE)

    @field_validator("sla_quota_task_text")
    @classmethod
    def _check_quota_template(cls, value: str) -> str:
        return _rendering(value, QUOTA_TASK_SAMPLE)

    @model_validator(mode="after")
    def _check_account(self) -> Self:
        if self.amo_base_url and self.amo_subdomain:
            raise ValueError("AMO_BASE_URL and AMO_SUBDOMAIN: set one of them, not both")
        oauth = (self.amo_client_id, self.amo_client_secret, self.amo_redirect_uri)
        if any(oauth) and not all(oauth):
            raise ValueError(
                "AMO_CLIENT_ID, AMO_CLIENT_SECRET, AMO_REDIRECT_URI: OAuth needs all three"
            )
        if self.amo_long_lived_token and any(oauth):
            raise ValueError(
                "AMO_LONG_LIVED_TOKEN and AMO_CLIENT_ID: choose a long-lived token or OAuth"
            )
        if self.account_configured and not self.sla_pipeline:
            raise ValueError("SLA_PIPELINE: required when an account is configured")
        if self.sla_smtp_url is not None and self.sla_smtp_from is None:
            raise ValueError("SLA_SMTP_FROM: required with SLA_SMTP_URL (the sender's address)")
        if self.sla_report_schedule is not None:
            if self.sla_smtp_url is None:
                raise ValueError("SLA_SMTP_URL: required with SLA_REPORT_SCHEDULE")
            if not self.sla_report_to and self.sla_statement_email_field is None:
                raise ValueError(
                    "SLA_REPORT_TO: SLA_REPORT_SCHEDULE sends the report to these addresses "
                    "(or statements to SLA_STATEMENT_EMAIL_FIELD's); set one"
                )
        return self

    # --- derived values --------------------------------------------------------------------------
    @property
    def base_url(self) -> str | None:
        if self.amo_base_url:
            return self.amo_base_url
        if self.amo_subdomain:
            return f"https://{self.amo_subdomain}.{self.amo_domain.value}"
        return None

    @property
    def uses_oauth(self) -> bool:
        return self.amo_client_id is not None

    @property
    def account_configured(self) -> bool:
        """False when no account is set at all: the worker then runs its offline demo."""
        return (
            self.base_url is not None
            or self.amo_long_lived_token is not None
            or (self.amo_client_id is not None)
        )

    @property
    def account_subdomain(self) -> str | None:
        """The account's subdomain when the settings tell it: AMO_SUBDOMAIN, or the first label
        of an amoCRM or Kommo AMO_BASE_URL. None for any other address."""
        if self.amo_subdomain:
            return self.amo_subdomain
        host = urlsplit(self.amo_base_url or "").hostname or ""
        label, _, domain = host.partition(".")
        return label if domain in {d.value for d in AmoDomain} and label else None

    @property
    def webhooks_on(self) -> bool:
        return self.sla_webhook_secret is not None

    @property
    def http_server_on(self) -> bool:
        return self.webhooks_on or self.sla_metrics

    @property
    def webhook_destination(self) -> str | None:
        """The address amoCRM posts to (it holds the secret), when both settings are set."""
        if self.sla_webhook_url is None or self.sla_webhook_secret is None:
            return None
        return f"{self.sla_webhook_url}{WEBHOOK_PATH}{self.sla_webhook_secret.get_secret_value()}"

    @property
    def token_file(self) -> Path:
        return self.amo_token_file or self.sla_state_dir / "tokens.json"

    @property
    def health_max_age(self) -> int:
        return self.sla_health_max_age or 3 * self.sla_poll_interval


# Values of the types a task text is rendered with (worker.tasks.render_text): the lead id
# is a number, the rest are texts. One character each, so an index that a short real value
# would lack is refused too.
TASK_SAMPLE: Mapping[str, object] = {
    "lead_id": 1,
    "lead_name": "x",
    "tariff": "x",
    "request_class": "x",
    "due": "x",
}
PACKAGE_TASK_SAMPLE: Mapping[str, object] = {
    "company_id": 1,
    "company_name": "x",
    "used": "x",
    "limit": "x",
    "valid_to": "x",
}
QUOTA_TASK_SAMPLE: Mapping[str, object] = {
    "lead_id": 1,
    "ordinal": 1,
    "limit": 1,
    "months": 1,
    "lead_name": "x",
    "quota": "x",
    "tariff": "x",
}
_FORMAT_ERRORS = (KeyError, IndexError, AttributeError, ValueError, TypeError)


def _rendering(template: str, sample: Mapping[str, object]) -> str:
    problem = task_template_problem(template, sample)
    if problem is not None:
        raise ValueError(problem)
    return template


def task_template_problem(template: str, sample: Mapping[str, object] = TASK_SAMPLE) -> str | None:
    """What keeps ``template`` from rendering as a task text, or None when it renders.

    Each placeholder is rendered with ``sample`` (:data:`TASK_SAMPLE` by default), so a
    placeholder that only fails on the value's type (``{lead_id[0]}``, ``{due.year}``,
    ``{lead_name:d}``) is refused at start-up rather than at the first breach."""
    allowed = "allowed: " + ", ".join("{" + name + "}" for name in sample)
    try:
        parts = list(Formatter().parse(template))
    except ValueError as error:
        return f"malformed template: {error}; {allowed}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        placeholder = "{" + name + (f"!{conversion}" if conversion else "")
        placeholder += (f":{spec}" if spec else "") + "}"
        if spec and "{" in spec:
            return f"placeholder {placeholder}: a placeholder inside a format spec; {allowed}"
        try:
            placeholder.format(**sample)
        except KeyError:
            return f"unknown placeholder {placeholder}; {allowed}"
        except _FORMAT_ERRORS as error:
            root = re.split(r"[.\[]", name, maxsplit=1)[0]
            why = str(error)
            if root in sample:
                kind = "a number" if isinstance(sample[root], int) else "a text"
                why = f"{{{root}}} is {kind}: {error}"
            return f"placeholder {placeholder} cannot be rendered ({why}); {allowed}"
    try:
        template.format(**sample)
    except _FORMAT_ERRORS as error:
        return f"malformed template: {error}; {allowed}"
    return None


def env_name(field: str) -> str:
    return field.upper()


def load_settings(env_file: Path | None = Path(".env"), **overrides: Any) -> Settings:
    """Read the settings from the environment (and ``env_file`` when it exists);
    ``overrides`` (by field name) win over both.

    Raises :class:`ConfigError` naming every bad variable. Input values are never
    echoed, so a mistyped secret does not end up in a log.
    """
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


# What pydantic takes for a boolean, as an admin would type it.
BOOLEAN_WORDS = "true or false (also yes/no, on/off, 1/0)"
PREFIXES = ("AMO_", "SLA_")
VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def unknown_variables(
    environ: Mapping[str, str], env_file: Path | None = Path(".env")
) -> list[str]:
    """A warning for each ``AMO_``/``SLA_`` variable (in the environment or ``env_file``)
    that the worker does not read, naming the nearest one it does."""
    names = {name.upper() for name in environ}
    if env_file is not None and env_file.is_file():
        names |= {name.upper() for name in dotenv_values(env_file)}
    known = sorted(env_name(field) for field in Settings.model_fields)
    warnings = []
    for name in sorted(names):
        if not name.startswith(PREFIXES) or name in known:
            continue
        if not VARIABLE_NAME.fullmatch(name):
            # Not a name a shell would take (`NAME:value`, a stray space): what follows the
            # prefix may be a value, a token even, so none of it is shown.
            warnings.append(
                f"a variable starting {name[:4]} is not written NAME=value (the rest of the "
                "line is not shown: it may hold a secret)"
            )
            continue
        nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {nearest[0]}?" if nearest else "; the README lists every variable"
        warnings.append(f"{name} is not a variable the worker reads{hint}")
    return warnings


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "bool_parsing":
            message = f"expected {BOOLEAN_WORDS}"
        if field in Settings.model_fields:
            problems.append(f"{env_name(field)}: {message}")
        else:
            problems.append(message)
    return problems
