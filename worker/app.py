"""Wiring: from the admin's :class:`config.Settings` to a client, a policy and a cycle.

Everything the commands share is built here, once, from plain values; nothing
below reads the environment again.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from amo_client.auth import FileTokenStore, LongLivedToken, OAuthApp, OAuthTokens
from amo_client.client import AmoClient, Credentials, WriteObserver
from config.settings import ConfigError, Settings, parse_listen, parse_past_breach_tasks
from sla.policy import Policy, PolicyError, RequestClass, default_policy, load_policy
from worker.cycle import CycleOptions, SyncCycle
from worker.echoes import OwnWrites
from worker.errors import FatalError
from worker.fields import Ledger, SlaField
from worker.ledgers.options import LedgerOptions
from worker.logs import register_secret, secrets
from worker.metrics import Metrics
from worker.setup import StageOptions
from worker.store import StateStore
from worker.tasks import TaskOptions
from worker.webhooks import Health, HttpServer, build_app

STORE_FILE = "state.sqlite3"
LOCK_FILE = "cycle.lock"


def credentials(settings: Settings) -> Credentials:
    if settings.amo_long_lived_token is not None and not settings.uses_oauth:
        token = settings.amo_long_lived_token.get_secret_value()
        register_secret(token)
        return LongLivedToken(token)
    secret = settings.amo_client_secret.get_secret_value() if settings.amo_client_secret else ""
    register_secret(secret)
    app = OAuthApp(
        client_id=settings.amo_client_id or "",
        client_secret=secret,
        redirect_uri=settings.amo_redirect_uri or "",
    )
    return OAuthTokens(app, FileTokenStore(settings.token_file), secrets=secrets())


def build_client(
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    metrics: Metrics | None = None,
    on_write: WriteObserver | None = None,
) -> AmoClient:
    if settings.base_url is None:
        raise ValueError("no amoCRM account is configured")
    return AmoClient(
        settings.base_url,
        credentials(settings),
        transport=transport,
        sleep=sleep,
        monotonic=monotonic,
        max_requests_per_second=settings.amo_max_requests_per_second,
        on_request=metrics.api_request if metrics is not None else None,
        on_retry=metrics.api_retry if metrics is not None else None,
        on_write=on_write,
    )


def http_server(
    settings: Settings,
    *,
    trigger: Callable[[], object],
    metrics: Metrics | None,
    subdomain: str | None,
    echoes: OwnWrites | None = None,
) -> HttpServer:
    """The server of webhooks, metrics and /healthz, as the settings switch them on."""
    secret = None
    if settings.sla_webhook_secret is not None:
        secret = settings.sla_webhook_secret.get_secret_value()
        register_secret(secret)
    host, port = parse_listen(settings.sla_http_listen)
    health = Health(
        state_dir=settings.sla_state_dir,
        max_age_s=settings.health_max_age,
        grace_s=settings.health_max_age,
        started=time.monotonic(),
    )
    web = build_app(
        trigger=trigger,
        secret=secret,
        subdomain=subdomain,
        metrics=metrics,
        serve_metrics=settings.sla_metrics,
        health=health,
        echoes=echoes,
    )
    return HttpServer(web, host, port)


def build_policy(settings: Settings) -> Policy:
    """The policy file (or the built-in CRMBP one) with the admin's tag overrides applied."""
    policy = _policy_file(settings.sla_policy_file)
    changes: dict[str, object] = {}
    if settings.sla_tariff_tags:
        known = set(policy.tariff_names)
        unknown = sorted(set(settings.sla_tariff_tags) - known)
        if unknown:
            raise ConfigError(
                [
                    f"SLA_TARIFF_TAGS: no tariff {', '.join(unknown)} in the policy; "
                    f"it has {', '.join(sorted(known))}"
                ]
            )
        changes["tariffs"] = tuple(
            dataclasses.replace(tariff, tags=tuple(settings.sla_tariff_tags[tariff.name]))
            if tariff.name in settings.sla_tariff_tags
            else tariff
            for tariff in policy.tariffs
        )
    class_tags = dict(policy.class_tags)
    if settings.sla_typical_tags is not None:
        class_tags[RequestClass.TYPICAL] = settings.sla_typical_tags
    if settings.sla_non_standard_tags is not None:
        class_tags[RequestClass.NON_STANDARD] = settings.sla_non_standard_tags
    if class_tags != dict(policy.class_tags):
        changes["class_tags"] = class_tags
    if settings.sla_emergency_tags is not None:
        changes["emergency_tags"] = settings.sla_emergency_tags
    if settings.sla_robot_replies:
        changes["robot_replies"] = True
    try:
        return dataclasses.replace(policy, **changes) if changes else policy  # type: ignore[arg-type]
    except PolicyError as error:
        raise ConfigError([f"SLA_*_TAGS: {error}"]) from None


def _policy_file(path: Path | None) -> Policy:
    if path is None:
        return default_policy()
    try:
        return load_policy(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"SLA_POLICY_FILE: {path}: {error.strerror or error}"]) from None
    except PolicyError as error:
        raise ConfigError([f"SLA_POLICY_FILE: {path}: {error}"]) from None


def ledgers(settings: Settings, policy: Policy) -> frozenset[Ledger]:
    """The company ledgers switched on: packages by a setting, quotas by the policy."""
    switched = {Ledger.PACKAGES} if settings.sla_packages else set()
    if policy.quotas:
        switched.add(Ledger.QUOTAS)
    return frozenset(switched)


def stage_options(settings: Settings, policy: Policy) -> StageOptions:
    # Every field but the next response's can be mapped by id (SLA_FIELD_*); those two are
    # found by name.
    field_ids = {
        key: value
        for key in SlaField
        if (value := getattr(settings, f"sla_field_{key.value}", None)) is not None
    }
    return StageOptions(
        pipeline=settings.sla_pipeline or "",
        first_stage=settings.sla_first_stage,
        hold_stages=settings.sla_hold_stages,
        done_stages=settings.sla_done_stages,
        acceptance_stages=settings.sla_acceptance_stages,
        accepted_stage=settings.sla_accepted_stage,
        class_field=settings.sla_class_field,
        field_ids=field_ids,
        ledgers=ledgers(settings, policy),
        next_response=policy.next_response is not None,
    )


def task_options(settings: Settings, policy: Policy) -> TaskOptions:
    return TaskOptions(
        reaction_text=settings.sla_task_text,
        resolution_text=settings.sla_resolution_task_text,
        task_type_id=settings.sla_task_type_id,
        due_after=timedelta(minutes=settings.sla_task_due_minutes),
        supervisor_user_id=settings.sla_supervisor_user_id,
        past_breach_age=parse_past_breach_tasks(settings.sla_past_breach_tasks),
        display_zone=policy.zone,
    )


def ledger_options(settings: Settings, policy: Policy) -> LedgerOptions:
    return LedgerOptions(
        packages=settings.sla_packages,
        quotas=policy.quotas,
        marker=settings.sla_time_marker,
        call_time=settings.sla_call_time,
        zone=policy.zone,
        at_risk=policy.at_risk_fraction,
        unit=policy.time_terms.unit_seconds,
        package_text=settings.sla_package_task_text,
        quota_text=settings.sla_quota_task_text,
    )


def cycle_options(settings: Settings, policy: Policy) -> CycleOptions:
    return CycleOptions(
        stages=stage_options(settings, policy),
        tasks=task_options(settings, policy),
        full_reconcile_interval=timedelta(seconds=settings.sla_full_reconcile_interval),
        ledgers=ledger_options(settings, policy),
        first_start=settings.sla_first_start,
    )


def raise_open_file_limit() -> int | None:
    """Raise the process's soft limit on open files to its hard limit: the HTTP side's
    sockets and the cycle's state file and lock draw on the same descriptors. Returns the
    soft limit in force (None where the platform has no such limit)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # a hard limit the kernel caps lower (macOS)
            return soft
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def open_store(state_dir: Path) -> StateStore:
    """The state file; one the worker cannot create, open or read (permissions, a file or
    a directory in the way, a file that is not SQLite's) is for the admin to fix."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        return StateStore(state_dir / STORE_FILE)
    except (OSError, sqlite3.Error) as error:
        raise FatalError(f"SLA_STATE_DIR: {state_dir / STORE_FILE}: {error}") from error


def read_store(state_dir: Path) -> StateStore:
    """The state file for a dry run, read-only (:meth:`StateStore.read_only`): nothing in
    the state directory is created, migrated or written. No file yet reads as an empty
    one; a file of a newer worker is refused; an unreadable one is for the admin to fix."""
    path = state_dir / STORE_FILE
    try:
        if state_dir.exists() and not state_dir.is_dir():
            raise NotADirectoryError(f"{state_dir} is not a directory")
        return StateStore.read_only(path)
    except FileNotFoundError:
        return StateStore(":memory:")
    except (OSError, sqlite3.Error) as error:
        raise FatalError(f"SLA_STATE_DIR: {path}: {error}") from error


def build_cycle(
    settings: Settings,
    client: AmoClient,
    policy: Policy,
    *,
    dry_run: bool = False,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncCycle:
    """The cycle on the state directory; a dry run reads the state file and writes nothing
    there, and needs no lock: it reads one snapshot, whatever a running cycle writes."""
    state_dir = settings.sla_state_dir
    return SyncCycle(
        client,
        read_store(state_dir) if dry_run else open_store(state_dir),
        policy,
        cycle_options(settings, policy),
        lock_path=None if dry_run else state_dir / LOCK_FILE,
        dry_run=dry_run,
        wall_clock=wall_clock,
    )
