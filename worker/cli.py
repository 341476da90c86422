"""The command line: ``python -m worker COMMAND``.

Every subcommand is one ``add_<name>`` function that declares its options and
one ``run_<name>`` function that does the work and returns the exit code.
Without a command the worker runs (``run``) when an account is configured, and
the demo on the built-in amoCRM emulator when none is.

Every account command opens the account one way (:func:`_account`) and reports its
errors one way (:func:`_fail`), with the exit codes of :data:`worker.errors.EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from dotenv import dotenv_values

from amo_client.client import AmoClient
from amo_client.errors import AmoError, NotFound
from amo_client.models import Pipeline
from config.settings import ConfigError, Settings, load_settings, unknown_variables
from sla.policy import Policy
from worker import admin, app, explain
from worker.errors import FatalError, is_fatal
from worker.ledgers import statement
from worker.logs import configure_logging, register_secret, renders_json
from worker.setup import AccountSetup, resolve_setup
from worker.store import StateStore

if TYPE_CHECKING:
    from worker.delivery import ReportSchedule
    from worker.sla_report import Figures, Written

Command = Callable[[argparse.Namespace], int]
EXIT_CONFIG = 2

log = structlog.get_logger("worker.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="amo-sla: support SLAs inside amoCRM. Without a command: `run` when an "
        "account is configured, otherwise `demo` on the built-in amoCRM emulator.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_run(commands)
    add_once(commands)
    add_check(commands)
    add_provision(commands)
    add_auth(commands)
    add_explain(commands)
    add_health(commands)
    add_webhook(commands)
    add_demo(commands)
    add_samples(commands)
    add_report(commands)
    add_backfill(commands)
    add_sandbox(commands)
    add_init(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return run_default(args)
    command: Command = args.run
    return command(args)


def run_default(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return EXIT_CONFIG
    if settings.account_configured:
        return _run_service_from_env()
    from worker import demo  # noqa: PLC0415 - the emulator is loaded only for the demo

    return demo.run_demo(sys.stdout, log=_demo_logging(settings, verbose=False))


# --- shared ---------------------------------------------------------------------------------------


def _settings() -> Settings | None:
    """The settings, or None after one ``config_invalid`` line naming each bad variable;
    logging set up as they say, and a warning for each variable the worker does not read."""
    try:
        settings = load_settings()
    except ConfigError as error:
        configure_logging("auto", "INFO")
        log.error("config_invalid", problems=error.problems)
        _tell(f"error: {error}")
        return None
    configure_logging(settings.sla_log_format.value, settings.sla_log_level)
    for problem in unknown_variables(os.environ):
        log.warning("config_unknown_variable", problem=problem)
    return settings


def _live_settings() -> Settings | None:
    settings = _settings()
    if settings is None:
        return None
    configure_logging(settings.sla_log_format.value, settings.sla_log_level)
    if not settings.account_configured or settings.base_url is None:
        log.error(
            "config_invalid",
            problems=["AMO_BASE_URL or AMO_SUBDOMAIN: no amoCRM account is configured"],
        )
        _tell(
            "error: no amoCRM account is configured (set AMO_SUBDOMAIN or AMO_BASE_URL and a "
            "token; see the README). `python -m worker demo` runs without one."
        )
        return None
    return settings


def _tell(message: str) -> None:
    """One line of prose for a person at a terminal.

    Piped output (JSON logs) carries the same facts in the log line just written, and a
    line that is not JSON would break whatever collects the logs.
    """
    if not renders_json():
        print(message, file=sys.stderr)


# What a command reports and exits on (:func:`_fail`); any other error is a bug and keeps
# its traceback.
COMMAND_ERRORS = (AmoError, ConfigError, OSError, ValueError, LookupError)


def _fail(error: Exception) -> int:
    """The one exit policy: a configuration that cannot be used is ``config_invalid`` and
    exit 2; an error only the admin can fix is ``command_failed`` and exit 2; any other
    error ``command_failed`` and exit 1."""
    if isinstance(error, ConfigError):
        log.error("config_invalid", problems=error.problems)
        _tell(f"error: {error}")
        return EXIT_CONFIG
    log.error("command_failed", error_type=type(error).__name__, error=str(error))
    _tell(f"error: {error}")
    return EXIT_CONFIG if is_fatal(error) else 1


@dataclass(frozen=True)
class Account:
    """The configured account as every command opens it: its policy and one client."""

    settings: Settings
    policy: Policy
    client: AmoClient

    def setup(self) -> AccountSetup:
        """The pipeline, stages and fields by id, the company fields too when a ledger is
        on (the setup needs them then, whatever the command reads)."""
        stages = app.stage_options(self.settings, self.policy)
        return resolve_setup(
            stages,
            self.client.pipelines(),
            list(self.client.iter_lead_custom_fields()),
            list(self.client.iter_company_custom_fields()) if stages.ledgers else [],
        )


@contextmanager
def _account(settings: Settings, *, probe: bool = True, **client_options: Any) -> Iterator[Account]:
    """The policy and a client for the configured account, which has answered (unless
    ``probe`` is off); the client is closed after."""
    policy = app.build_policy(settings)
    with app.build_client(settings, **client_options) as client:
        if probe:
            client.probe()
        yield Account(settings, policy, client)


def _refuse_a_newer_state(settings: Settings) -> None:
    """Raise :class:`worker.store.StateVersionError` before any request when a newer worker
    wrote the state file. The read-only commands (``check``, ``once --dry-run``, ``report``,
    ``backfill``) open it with ``mode=ro`` and never migrate it; what else they make of it
    (none, an older one, one SQLite cannot read) is their own."""
    with suppress(OSError, sqlite3.Error):
        StateStore.read_only(settings.sla_state_dir / app.STORE_FILE).close()


# --- run ------------------------------------------------------------------------------------------


def add_run(commands: Any) -> None:
    parser = commands.add_parser("run", help="run the worker: a sync cycle every poll interval")
    parser.set_defaults(run=lambda args: _run_service_from_env())


def _run_service_from_env() -> int:
    settings = _live_settings()
    return EXIT_CONFIG if settings is None else _run_service(settings)


def _run_service(settings: Settings) -> int:
    from worker.echoes import OwnWrites  # noqa: PLC0415 - the server's pieces only when it runs
    from worker.metrics import Metrics  # noqa: PLC0415
    from worker.service import SyncService  # noqa: PLC0415 - the scheduler only when it runs

    configure_logging(settings.sla_log_format.value, settings.sla_log_level)
    if settings.sla_webhook_secret is not None:
        register_secret(settings.sla_webhook_secret.get_secret_value())
    metrics = Metrics() if settings.http_server_on else None
    echoes = OwnWrites() if settings.webhooks_on else None
    try:
        with _account(
            settings,
            probe=False,
            metrics=metrics,
            on_write=echoes.record if echoes is not None else None,
        ) as account:
            schedule = _report_schedule(settings, account)
            cycle = app.build_cycle(settings, account.client, account.policy)
            service = SyncService(
                cycle,
                poll_interval=settings.sla_poll_interval,
                state_dir=settings.sla_state_dir,
                debounce=settings.sla_webhook_debounce,
                min_interval=settings.sla_webhook_min_interval,
                observer=metrics,
            )
            if settings.http_server_on:
                subdomain = None
                if settings.webhooks_on:
                    # The hooks name the account by subdomain: the settings', or amoCRM's own.
                    subdomain = settings.account_subdomain or account.client.account().subdomain
                service.add_companion(
                    app.http_server(
                        settings,
                        trigger=service.trigger,
                        metrics=metrics,
                        subdomain=subdomain,
                        echoes=echoes,
                    )
                )
            if schedule is not None:
                service.add_companion(schedule)
            app.raise_open_file_limit()
            try:
                return service.run()
            finally:
                if schedule is not None:
                    schedule.close()
    except (*COMMAND_ERRORS, FatalError) as error:
        return _fail(error)


def _report_schedule(settings: Settings, account: Account) -> ReportSchedule | None:
    """The scheduled report mail (SLA_REPORT_SCHEDULE), a companion of the service; None
    when no schedule is set. ConfigError when the schedule comes more than once a day."""
    if settings.sla_report_schedule is None or settings.sla_smtp_url is None:
        return None
    from worker import delivery, sla_report  # noqa: PLC0415 - the report's libraries on demand
    from worker.mail import SmtpServer  # noqa: PLC0415

    policy, client = account.policy, account.client
    schedule = delivery.Schedule(settings.sla_report_schedule, policy.zone)
    try:
        schedule.check(datetime.now(UTC))
    except ValueError as error:
        raise ConfigError([str(error)]) from None
    store = StateStore(settings.sla_state_dir / app.STORE_FILE)
    postman = delivery.Postman(
        store,
        SmtpServer.from_url(settings.sla_smtp_url.get_secret_value()),
        settings.sla_smtp_from or "",
    )
    field = settings.sla_statement_email_field if settings.sla_packages else None
    options = app.ledger_options(settings, policy)

    def make(period: sla_report.Period, out: Path) -> tuple[sla_report.Figures, sla_report.Written]:
        sources = sla_report.Sources(
            client,
            account.setup(),
            policy,
            options,
            cache=settings.sla_state_dir / app.STORE_FILE,
            lead_url=sla_report.lead_url(settings.base_url),
        )
        figures, _ = sla_report.collect(sources, period, datetime.now(UTC))
        written = sla_report.write_report(
            figures,
            out,
            with_statements=field is not None,
            provider=settings.sla_provider_name or "",
            pdf=True,
            chromium=settings.sla_chromium,
        )
        return figures, written

    def first_start() -> datetime | None:
        if settings.sla_first_start is not None:
            return settings.sla_first_start
        recorded = store.first_start()
        return None if recorded is None else datetime.fromtimestamp(recorded, UTC)

    job = delivery.ScheduledReport(
        schedule=schedule,
        postman=postman,
        make=make,
        folder=settings.sla_state_dir / "reports",
        report_to=settings.sla_report_to,
        first_start=first_start,
        addresses=(
            (lambda ids: delivery.company_addresses(client, field, ids))
            if field is not None
            else None
        ),
        provider=settings.sla_provider_name or "",
    )
    return delivery.ReportSchedule(
        schedule,
        job.tick,
        retry=timedelta(minutes=settings.sla_report_retry_minutes),
        on_close=store.close,
    )


# --- once -----------------------------------------------------------------------------------------


def add_once(commands: Any) -> None:
    parser = commands.add_parser("once", help="run one sync cycle and exit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the planned field writes and tasks as a table; write nothing",
    )
    parser.set_defaults(run=run_once)


def run_once(args: argparse.Namespace) -> int:
    from worker.report import print_plan  # noqa: PLC0415

    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        if args.dry_run:
            _refuse_a_newer_state(settings)
        with _account(settings) as account:
            cycle = app.build_cycle(settings, account.client, account.policy, dry_run=args.dry_run)
            report = cycle.run(datetime.now(UTC))
            if cycle.setup is not None:
                print_plan(report, cycle.setup, account.policy, sys.stdout, dry_run=args.dry_run)
    except (*COMMAND_ERRORS, FatalError) as error:
        return _fail(error)
    log.info("cycle_done", **report.summary())
    if not args.dry_run and not report.skipped:
        # `once` from cron is as much a deployment as `run`: `health` watches either.
        from worker.health import write_heartbeat  # noqa: PLC0415

        try:
            write_heartbeat(settings.sla_state_dir, report.summary(), datetime.now(UTC))
        except OSError as error:
            log.error("heartbeat_failed", state_dir=str(settings.sla_state_dir), error=str(error))
    return 0


# --- check and provision ------------------------------------------------------------------------


def add_check(commands: Any) -> None:
    parser = commands.add_parser(
        "check", help="validate the configuration and the account; exit 1 on any problem"
    )
    parser.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        _refuse_a_newer_state(settings)
        with _account(settings) as account:
            print("configuration: ok")
            result = admin.check_account(
                account.client,
                app.stage_options(settings, account.policy),
                task_type_id=settings.sla_task_type_id,
                supervisor_user_id=settings.sla_supervisor_user_id,
            )
            if settings.webhooks_on:
                hook = admin.check_webhook(
                    account.client, settings.webhook_destination, settings.sla_webhook_url
                )
                result = admin.CheckResult(
                    (*result.problems, *hook.problems),
                    (*result.notes, *hook.notes),
                    result.warnings,
                )
            first_cycle, warnings = _first_cycle_notes(account) if result.ok else ([], [])
    except ConfigError as error:  # a check lists what it found (exit 1)
        for problem in error.problems:
            print(f"problem: {problem}")
        return 1
    except (*COMMAND_ERRORS, FatalError) as error:
        return _fail(error)
    for note in (*result.notes, *first_cycle):
        print(f"ok: {note}")
    for warning in (*result.warnings, *warnings):
        print(f"warning: {warning}")
    for problem in result.problems:
        print(f"problem: {problem}")
    print("everything is in place" if result.ok else f"{len(result.problems)} problem(s)")
    return 0 if result.ok else 1


def _first_cycle_notes(account: Account) -> tuple[list[str], list[str]]:
    """What the next cycle would do, from a dry run: the policy's view of the open
    requests, breaches, tasks, past breaches, the ledgers; and what looks wrong."""
    cycle = app.build_cycle(account.settings, account.client, account.policy, dry_run=True)
    try:
        report = cycle.run(datetime.now(UTC))
    finally:
        cycle.store.close()
    source = account.settings.sla_policy_file or "the built-in CRMBP policy"
    notes, warnings = admin.policy_lines(account.policy, str(source), cycle.open_leads())
    ladder_notes, ladder_warnings = admin.ladder_lines(
        account.policy, account.settings.sla_supervisor_user_id
    )
    notes += ladder_notes
    warnings += ladder_warnings
    notes += [
        f"the next cycle computes {report.leads_computed} request(s), "
        f"{report.breached} breached in all, "
        f"{len(report.writes)} to write, {len(report.tasks)} task(s) to create"
    ]
    if report.past_breaches and report.first_start is not None:
        since = report.first_start.astimezone(account.policy.zone).strftime("%d.%m.%Y %H:%M")
        notes.append(
            f"{len(report.past_breaches)} request(s) breached before the worker's first start "
            f"({since}): their fields show it, they get no task (SLA_PAST_BREACH_TASKS)"
        )
    ledgers = cycle.ledgers_summary()
    if ledgers is not None:
        notes.append(ledgers)
    return notes, warnings


def add_provision(commands: Any) -> None:
    parser = commands.add_parser(
        "provision",
        help="create the SLA lead fields and status options the account lacks (idempotent)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would change")
    parser.set_defaults(run=run_provision)


def run_provision(args: argparse.Namespace) -> int:
    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        with _account(settings) as account:
            stages = app.stage_options(settings, account.policy)
            admin.provision(
                account.client,
                dry_run=args.dry_run,
                say=print,
                field_ids=stages.field_ids,
                ledgers=stages.ledgers,
                next_response=stages.next_response,
            )
    except COMMAND_ERRORS as error:
        return _fail(error)
    return 0


# --- auth -----------------------------------------------------------------------------------------


def add_auth(commands: Any) -> None:
    parser = commands.add_parser(
        "auth", help="exchange an OAuth authorization code for tokens and store them"
    )
    parser.add_argument(
        "--code", required=True, help="the authorization code (single-use, valid 20 minutes)"
    )
    parser.set_defaults(run=run_auth)


def run_auth(args: argparse.Namespace) -> int:
    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    if not settings.uses_oauth:
        log.error("config_invalid", problems=["AMO_CLIENT_ID: not set; `auth` is for OAuth"])
        _tell("error: AMO_CLIENT_ID is not set: `auth` is for OAuth integrations")
        return EXIT_CONFIG
    register_secret(args.code)
    try:
        with app.build_client(settings) as client:  # before any policy: the token comes first
            pair = client.exchange_code(args.code)
    except COMMAND_ERRORS as error:
        return _fail(error)
    expires = datetime.fromtimestamp(pair.expires_at, UTC).isoformat()
    print(f"tokens stored in {settings.token_file} (access token valid until {expires})")
    return 0


# --- health ---------------------------------------------------------------------------------------


def add_health(commands: Any) -> None:
    parser = commands.add_parser(
        "health", help="exit 0 when the last good cycle is recent enough, 1 otherwise"
    )
    parser.set_defaults(run=run_health)


def run_health(args: argparse.Namespace) -> int:
    from worker.health import health_main  # noqa: PLC0415

    settings = _settings()
    if settings is None:
        return EXIT_CONFIG
    return health_main(settings.sla_state_dir, settings.health_max_age)


# --- webhook -------------------------------------------------------------------------------------


def add_webhook(commands: Any) -> None:
    parser = commands.add_parser(
        "webhook",
        help="register, unregister or show the account webhook that triggers cycles",
        description="amoCRM sends its webhooks to SLA_WEBHOOK_URL/amocrm/webhook/"
        "SLA_WEBHOOK_SECRET. `register` subscribes that address to the events that change a "
        "request (the same address again updates it), `unregister` removes it, `status` "
        "shows whether it is registered and whether amoCRM has disabled it (exit 1 if so).",
    )
    parser.add_argument("action", choices=("register", "unregister", "status"))
    parser.set_defaults(run=run_webhook)


def run_webhook(args: argparse.Namespace) -> int:
    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    destination = settings.webhook_destination
    if destination is None:
        missing = [
            name
            for name, value in (
                ("SLA_WEBHOOK_SECRET", settings.sla_webhook_secret),
                ("SLA_WEBHOOK_URL", settings.sla_webhook_url),
            )
            if value is None
        ]
        problem = f"{', '.join(missing)}: not set; `webhook {args.action}` needs both"
        log.error("config_invalid", problems=[problem])
        _tell(f"error: {problem}")
        return EXIT_CONFIG
    register_secret(
        settings.sla_webhook_secret.get_secret_value() if settings.sla_webhook_secret else None
    )
    try:
        with _account(settings) as account:
            if args.action == "register":
                return _register_webhook(account.client, destination)
            if args.action == "unregister":
                return _unregister_webhook(account.client, destination)
            result = admin.check_webhook(account.client, destination, settings.sla_webhook_url)
    except COMMAND_ERRORS as error:
        return _fail(error)
    for note in result.notes:
        print(f"ok: {note}")
    for problem in result.problems:
        print(f"problem: {problem}")
    return 0 if result.ok else 1


def _register_webhook(client: AmoClient, destination: str) -> int:
    from worker.webhooks import WEBHOOK_EVENTS  # noqa: PLC0415

    hook = client.subscribe_webhook(destination, WEBHOOK_EVENTS)
    print(f"registered: {admin.shown_destination(destination)}")
    print(f"events: {', '.join(hook.settings)}")
    if hook.disabled:
        print(
            "problem: amoCRM keeps this webhook disabled; switch it back on in amoCRM's "
            "webhook settings"
        )
        return 1
    return 0


def _unregister_webhook(client: AmoClient, destination: str) -> int:
    shown = admin.shown_destination(destination)
    try:
        client.unsubscribe_webhook(destination)
    except NotFound:
        print(f"not registered: {shown}")
        return 0
    print(f"unregistered: {shown}")
    return 0


# --- demo and samples -----------------------------------------------------------------------------


def add_demo(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="run the worker for a few cycles on the built-in amoCRM emulator"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="the worker's info log lines too"
    )
    parser.add_argument(
        "--wide", action="store_true", help="every field in one table, however wide"
    )
    parser.set_defaults(run=run_demo)


def _demo_logging(settings: Settings, *, verbose: bool) -> Callable[[Callable[[], datetime]], None]:
    """Logging for the demo: stamped with the story's time; its warnings only, unless
    ``verbose`` (or SLA_LOG_LEVEL asks for less)."""
    level = (
        settings.sla_log_level
        if verbose
        else max(settings.sla_log_level, "WARNING", key=logging.getLevelName)
    )

    def configure(clock: Callable[[], datetime]) -> None:
        configure_logging(settings.sla_log_format.value, level, clock=clock)

    return configure


def run_demo(args: argparse.Namespace) -> int:
    from worker import demo  # noqa: PLC0415

    settings = _settings()
    if settings is None:
        return EXIT_CONFIG
    return demo.run_demo(
        sys.stdout, log=_demo_logging(settings, verbose=args.verbose), wide=args.wide
    )


def add_samples(commands: Any) -> None:
    parser = commands.add_parser(
        "samples", help="explain the bundled sample leads offline (no account, no emulator)"
    )
    parser.set_defaults(run=run_samples)


def run_samples(args: argparse.Namespace) -> int:
    try:
        return explain.run_samples(sys.stdout)
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# --- explain -------------------------------------------------------------------------------------


def add_explain(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "explain",
        help="show how one lead's SLA state or one company's ledger is derived",
        description=(
            "Compute the SLA state the worker would write for one lead: live, by LEAD_ID, "
            "from the configured account; or offline, from a saved GET /api/v4/leads/{id} "
            "response (--lead) and its GET /api/v4/events response (--events). Prints the "
            "derivation (trace), then the state as JSON; --json prints the JSON alone. "
            "With --company, "
            "lay out a company's ledger from the live account instead: its time entries and "
            "the package each counted against, the balance, each quota's requests, and the "
            "values the worker writes next to those amoCRM holds."
        ),
    )
    parser.add_argument(
        "lead_id", type=int, nargs="?", metavar="LEAD_ID", help="a lead of the live account"
    )
    parser.add_argument(
        "--company", type=int, metavar="ID", help="a company of the live account: its ledger"
    )
    parser.add_argument("--lead", type=Path, help="LEAD.json (GET /api/v4/leads/{id})")
    parser.add_argument(
        "--events",
        type=Path,
        help='EVENTS.json ({"_embedded": {"events": [...]}}; an empty file means no events)',
    )
    parser.add_argument(
        "--now",
        help="the instant to compute for, ISO 8601 (e.g. 2025-10-14T12:00:00+03:00); "
        "without an offset it is read in the policy's zone",
    )
    parser.add_argument("--policy", type=Path, help="policy TOML (default: built-in CRMBP)")
    parser.add_argument(
        "--pipeline-id", type=int, help="the support pipeline (default: the lead's pipeline)"
    )
    parser.add_argument(
        "--first-status",
        type=int,
        help="the first stage: a person moving the lead out of it counts as the reaction",
    )
    for option, role in (
        ("--hold-status", "a hold stage (clocks stop)"),
        ("--done-status", "an extra done stage (142 and 143 always are)"),
        ("--acceptance-status", "a done stage that waits for the customer's acceptance"),
    ):
        parser.add_argument(
            option, type=int, action="append", default=[], metavar="N", help=f"{role}; repeatable"
        )
    parser.add_argument(
        "--accepted-status", type=int, default=142, help="where accepted leads go (default 142)"
    )
    parser.add_argument(
        "--agreed-due-field",
        type=int,
        help="id of the agreed-date field (default: the lead's field «SLA: срок по согласованию»)",
    )
    parser.add_argument("--class-field", type=int, help="id of the request-class select field")
    parser.add_argument(
        "--first-start",
        help="the worker's first start on the account, ISO 8601: escalation steps before it "
        "are shown as skipped (live, default: SLA_FIRST_START, else the state's)",
    )
    parser.add_argument(
        "--json",
        "--no-trace",
        dest="json",
        action="store_true",
        help="print only the state as JSON (to pipe it)",
    )
    parser.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    if args.company is not None:
        if args.lead_id is not None or args.lead is not None:
            print("error: give LEAD_ID, --lead or --company, not several", file=sys.stderr)
            return 2
        return run_company_explain(args)
    if args.lead_id is not None:
        return run_live_explain(args)
    if args.lead is None or args.events is None or args.now is None:
        print("error: give LEAD_ID, or --lead, --events and --now", file=sys.stderr)
        return 2
    roles = explain.RoleOptions(
        pipeline_id=args.pipeline_id,
        first_status=args.first_status,
        hold=tuple(args.hold_status),
        done=tuple(args.done_status),
        acceptance=tuple(args.acceptance_status),
        accepted_status=args.accepted_status,
    )
    try:
        explanation = explain.explain_files(
            args.lead,
            args.events,
            now=args.now,
            policy_path=args.policy,
            roles=roles,
            agreed_due_field_id=args.agreed_due_field,
            class_field_id=args.class_field,
            first_start=args.first_start,
        )
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    explain.print_explanation(explanation, sys.stdout, json_only=args.json)
    return 0


def run_live_explain(args: argparse.Namespace) -> int:
    from worker.fields import SlaField  # noqa: PLC0415
    from worker.replies import replies_for_lead  # noqa: PLC0415

    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        with _account(settings) as account:
            policy, client = account.policy, account.client
            setup = account.setup()
            lead = client.lead(args.lead_id, with_=("contacts",))
            if lead is None:
                raise LookupError(f"lead {args.lead_id} does not exist")
            events = list(client.iter_events(entity="lead", entity_ids=[lead.id]))
            users = {user.id: user.name for user in client.iter_users()}
            events += replies_for_lead(
                client,
                lead,
                pipeline_id=setup.pipeline_id,
                reaction_types=policy.conversation_event_types,
            )
        now = explain.parse_now(args.now, policy) if args.now else datetime.now(UTC)
        first_start = (
            explain.parse_now(args.first_start, policy)
            if args.first_start
            else settings.sla_first_start or _recorded_first_start(settings)
        )
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except COMMAND_ERRORS as error:
        return _fail(error)
    explanation = explain.explain(
        lead,
        events,
        policy=policy,
        roles=setup.roles,
        now=now,
        agreed_due_field_id=setup.fields.id_of(SlaField.AGREED_DUE),
        class_field_id=setup.class_field_id,
        first_start=first_start,
    )
    explanation = replace(explanation, names=explain.Names(setup.status_names, users))
    explain.print_explanation(explanation, sys.stdout, json_only=args.json)
    return 0


def _recorded_first_start(settings: Settings) -> datetime | None:
    """The first start the state directory records, read without writing anything."""
    store = app.read_store(settings.sla_state_dir)
    try:
        recorded = store.first_start()
    finally:
        store.close()
    return None if recorded is None else datetime.fromtimestamp(recorded, UTC)


def run_company_explain(args: argparse.Namespace) -> int:
    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        if not app.stage_options(settings, app.build_policy(settings)).ledgers:
            raise ConfigError(
                [
                    "SLA_PACKAGES, SLA_POLICY_FILE: no company ledger is on: set "
                    "SLA_PACKAGES=true for hour packages, or SLA_POLICY_FILE to a policy "
                    "with quotas (sla/presets/prime_gate.toml)"
                ]
            )
        with _account(settings) as account:
            now = explain.parse_now(args.now, account.policy) if args.now else datetime.now(UTC)
            ledger = statement.read_company_ledger(
                account.client,
                args.company,
                setup=account.setup(),
                policy=account.policy,
                options=app.ledger_options(settings, account.policy),
                now=now,
            )
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except COMMAND_ERRORS as error:
        return _fail(error)
    if ledger is None:
        return _fail(LookupError(f"company {args.company} does not exist"))
    for line in statement.company_ledger_lines(ledger):
        print(line)
    return 0


# --- report and backfill ---------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-10-31, got {text!r}") from None


def add_report(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "report",
        help="write the SLA report of a period: report.html and one CSV per table",
        description=(
            "Recompute every support request registered in the period from its history in "
            "amoCRM and write report.html (one self-contained page) and one CSV per table "
            "into --out, with the previous period of the same length for the trend and the "
            "open requests at risk or breached now. Without dates: the last full calendar "
            "month. With --company: that company's statement for the customer alone (HTML, "
            "PDF when Chromium is there, CSV); --statements: every company's. --mail-to sends "
            "what was written over SLA_SMTP_URL, by hand (the schedule's record is not "
            "consulted: what it left unknown can be sent again this way)."
        ),
    )
    parser.add_argument("--from", dest="first", type=_day, metavar="DATE", help="first day")
    parser.add_argument("--to", dest="last", type=_day, metavar="DATE", help="last day")
    parser.add_argument(
        "--out", type=Path, help="the directory (default: sla-report-FROM-TO in the current one)"
    )
    parser.add_argument(
        "--company",
        type=int,
        metavar="ID",
        help="write this company's statement for the customer alone (HTML, PDF, CSV)",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="also write the statement of every company with time in the period into "
        "OUT/statements",
    )
    parser.add_argument(
        "--mail-to",
        nargs="+",
        default=[],
        metavar="ADDR",
        help="mail the report (report.html, the CSV tables zipped) to these addresses over "
        "SLA_SMTP_URL; with --company, the statement",
    )
    parser.add_argument(
        "--mail-statements",
        action="store_true",
        help="mail each statement to its company's address (SLA_STATEMENT_EMAIL_FIELD)",
    )
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from worker import sla_report  # noqa: PLC0415 - Jinja2 and pygal only for the report

    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    mailing = bool(args.mail_to) or args.mail_statements
    problems = _mail_problems(settings, args) if mailing else []
    if problems:
        return _fail(ConfigError(problems))
    now = datetime.now(UTC)
    try:
        _refuse_a_newer_state(settings)
        with _account(settings) as account:
            policy = account.policy
            today = now.astimezone(policy.zone).date()
            default_first, default_last = sla_report.last_full_month(today)
            first, last = args.first or default_first, args.last or default_last
            if args.first is not None and args.last is None:
                last = max(first, today)
            if last < first:
                print(f"error: --to {last} is before --from {first}", file=sys.stderr)
                return EXIT_CONFIG
            out = args.out or Path(f"sla-report-{first}-{last}")
            sources = sla_report.Sources(
                account.client,
                account.setup(),
                policy,
                app.ledger_options(settings, policy),
                cache=settings.sla_state_dir / app.STORE_FILE,
                lead_url=sla_report.lead_url(settings.base_url),
                progress=_progress,
            )
            period = sla_report.Period(first, last, policy.zone)
            figures, stats = sla_report.collect(sources, period, now)
            written = sla_report.write_report(
                figures,
                out,
                company_id=args.company,
                with_statements=args.statements or args.mail_statements,
                provider=settings.sla_provider_name or "",
                pdf=True,
                chromium=settings.sla_chromium,
            )
            failed = 0
            if mailing and settings.sla_smtp_url is not None:
                url = settings.sla_smtp_url.get_secret_value()
                failed = _mail_report(
                    settings, url, args, client=account.client, figures=figures, written=written
                )
    except (*COMMAND_ERRORS, FatalError) as error:
        return _fail(error)
    log.info(
        "report_written",
        path=str(written.page),
        requests=len(figures.requests),
        statements=len(written.statements),
        amo_requests=stats.requests,
        histories_cached=stats.from_cache,
        histories_read=stats.read_by_id,
    )
    print(written.page)
    for files in written.statements if args.company is None else ():
        print(files.pdf or files.page)
    if written.pdf_problem:
        _tell(f"warning: no PDF: {written.pdf_problem}")
    return 1 if failed else 0


def _mail_problems(settings: Settings, args: argparse.Namespace) -> list[str]:
    problems = []
    if settings.sla_smtp_url is None:
        problems.append("SLA_SMTP_URL: not set; --mail-to and --mail-statements send through it")
    if args.mail_statements:
        if settings.sla_statement_email_field is None:
            problems.append(
                "SLA_STATEMENT_EMAIL_FIELD: not set; --mail-statements takes each company's "
                "address from it"
            )
        if not settings.sla_packages:
            problems.append("SLA_PACKAGES: statements are of hour packages; set it to true")
    return problems


def _mail_report(
    settings: Settings,
    url: str,
    args: argparse.Namespace,
    *,
    client: AmoClient,
    figures: Figures,
    written: Written,
) -> int:
    """Mail what ``report`` wrote, by hand: no record, so a mail the schedule left unknown
    can be sent again. Returns how many mails the server did not take."""
    from worker import delivery  # noqa: PLC0415
    from worker.mail import MailError, SmtpServer, message, new_message_id, send  # noqa: PLC0415

    server = SmtpServer.from_url(url)
    sender = settings.sla_smtp_from or ""
    provider = settings.sla_provider_name or ""
    outgoing: list[delivery.Outgoing] = []
    for address in args.mail_to:
        if args.company is not None:
            outgoing.append(
                delivery.statement_mail(figures, written.statements[0], address, provider=provider)
            )
        else:
            outgoing.append(delivery.report_mail(figures, written, address))
    if args.mail_statements and settings.sla_statement_email_field is not None:
        addresses = delivery.company_addresses(
            client,
            settings.sla_statement_email_field,
            [files.company_id for files in written.statements],
        )
        for files in written.statements:
            found = addresses.get(files.company_id, ())
            if not found:
                log.warning("statement_without_address", company_id=files.company_id,
                            company=files.customer)  # fmt: skip
            outgoing += [
                delivery.statement_mail(figures, files, address, provider=provider)
                for address in found
            ]
    failed = 0
    for item in outgoing:
        message_id = new_message_id(sender)
        mail = message(
            sender=sender,
            recipient=item.recipient,
            subject=item.subject,
            text=item.text,
            attachments=item.attachments,
            message_id=message_id,
            date=datetime.now(UTC),
        )
        try:
            send(server, mail)
        except MailError as error:
            failed += 1
            log.error("report_mail_failed", recipient=item.recipient, server=server.shown(),
                      problem=error.problem)  # fmt: skip
            _tell(f"error: {item.recipient}: {error.problem}")
            continue
        log.info("report_mail_sent", recipient=item.recipient, message_id=message_id)
        print(f"mailed to {item.recipient}")
    return failed


def add_backfill(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "backfill",
        help="write the final SLA fields of the requests closed since DATE (idempotent)",
        description=(
            "Recompute the support requests closed since DATE from their history and write "
            "the SLA fields that differ (50 leads a request, at the account's pace), so "
            "amoCRM's own filters by «SLA: статус» are right for the history too. A second "
            "run writes nothing."
        ),
    )
    parser.add_argument("--since", type=_day, required=True, metavar="DATE")
    parser.add_argument("--dry-run", action="store_true", help="list what would change")
    parser.set_defaults(run=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    from worker.backfill import backfill  # noqa: PLC0415

    settings = _live_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        _refuse_a_newer_state(settings)
        with _account(settings) as account:
            policy = account.policy
            result = backfill(
                account.client,
                account.setup(),
                policy,
                since=datetime.combine(args.since, datetime.min.time(), tzinfo=policy.zone),
                now=datetime.now(UTC),
                dry_run=args.dry_run,
                ledgers=app.ledger_options(settings, policy),
                cache=settings.sla_state_dir / app.STORE_FILE,
                progress=_progress,
            )
    except (*COMMAND_ERRORS, FatalError) as error:
        return _fail(error)
    for lead_id, problem in result.skipped.items():
        log.warning("lead_invalid", lead_id=lead_id, problem=problem)
    verb = "would write" if args.dry_run else "wrote"
    count = len(result.planned) if args.dry_run else result.written
    if args.dry_run:
        for write in result.planned:
            print(f"lead {write.lead_id} «{write.lead_name}»: {len(write.values)} field(s)")
    print(
        f"{result.closed} request(s) closed since {args.since}: {verb} {count}, "
        f"failed {len(result.failed)}; {result.requests} API requests"
    )
    log.info(
        "backfill_done",
        closed=result.closed,
        written=result.written,
        planned=len(result.planned),
        failed=len(result.failed),
        dry_run=args.dry_run,
    )
    return 1 if result.failed else 0


def _progress(line: str) -> None:
    """Progress for a person at a terminal; nothing when stderr is piped."""
    if sys.stderr.isatty() and not renders_json():
        print(f"  {line}", file=sys.stderr, flush=True)


# --- sandbox and init -----------------------------------------------------------------------------


def add_sandbox(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "sandbox",
        help="serve the built-in amoCRM emulator with today's requests, to try every command",
        description=(
            "Serve the built-in amoCRM emulator on 127.0.0.1, seeded with support requests of "
            "the last days (breached, answered, on hold, waiting for acceptance, closed; a "
            "company with an hour package and time notes) and the SLA fields in place. Write "
            "the variables that point the worker at it to --env-file and print them as "
            "`export` lines; run until SIGTERM or Ctrl-C (exit 0), then remove the file. Its "
            "token is made up at start and opens nothing but the sandbox."
        ),
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="the port on 127.0.0.1 (default: any free one)"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path("sandbox.env"),
        metavar="PATH",
        help="where to write the variables (default: sandbox.env here); load it with "
        "`set -a; . ./sandbox.env; set +a`",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="PATH",
        help="SLA_STATE_DIR for the sandbox (default: a new temporary directory, removed at "
        "the end)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --env-file even if the sandbox did not write it",
    )
    parser.set_defaults(run=run_sandbox)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def run_sandbox(args: argparse.Namespace) -> int:
    from worker import sandbox  # noqa: PLC0415 - the emulator is loaded only for the sandbox

    configure_logging("auto", "WARNING")
    return sandbox.run_until_signalled(
        sys.stdout,
        port=args.port,
        env_file=args.env_file,
        state_dir=args.state_dir,
        force=args.force,
    )


def add_init(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "init",
        help="pick the support pipeline, its stages, the policy and the ledgers; write a .env",
        description=(
            "List the account's pipelines and stages with their ids, take the support "
            "pipeline, its hold, acceptance and extra done stages, the accepted stage, the "
            "policy and the ledger switches from the flags or by asking, and write them to "
            "--out, a .env the worker reads. The account and its token come from the "
            "environment (or ./.env) as for every command; the token goes into the file only "
            "with --write-token and is never shown. Names that a .env cannot hold as they "
            "are, or that another pipeline or stage shares, are written as ids."
        ),
    )
    parser.add_argument("--pipeline", metavar="NAME|ID", help="the support pipeline")
    for option, role in (
        ("--hold", "a hold stage: the clocks stop"),
        ("--acceptance", "an acceptance stage: done, waiting for the customer's acceptance"),
        ("--done", "an extra done stage (142 and 143 always are)"),
    ):
        parser.add_argument(option, action="append", metavar="STAGE", help=f"{role}; repeatable")
    parser.add_argument(
        "--accepted", metavar="STAGE", help="where accepted requests move (default: 142)"
    )
    parser.add_argument(
        "--policy",
        metavar="PRESET|FILE",
        help="crmbp (the built-in policy, the default), another preset of sla/presets "
        "(prime_gate, hour_packages) or a policy file",
    )
    parser.add_argument(
        "--packages",
        action=argparse.BooleanOptionalAction,
        help="track prepaid hour packages (SLA_PACKAGES; default: no)",
    )
    parser.add_argument(
        "--call-time",
        action=argparse.BooleanOptionalAction,
        help="with packages, count calls' duration as time spent (SLA_CALL_TIME; default: no)",
    )
    parser.add_argument(
        "--write-token",
        action=argparse.BooleanOptionalAction,
        help="write the environment's token (or OAuth secret) into the file (default: no)",
    )
    parser.add_argument(
        "--state-dir", type=Path, metavar="PATH", help="SLA_STATE_DIR (default: the current one)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(".env"), metavar="PATH", help="the file (default: .env)"
    )
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--non-interactive",
        action="store_true",
        help="ask nothing: what the flags leave out takes its default (--pipeline is required)",
    )
    parser.set_defaults(run=run_init)


# The variables init writes only when asked to (--write-token).
SECRET_VARIABLES = ("AMO_LONG_LIVED_TOKEN", "AMO_CLIENT_SECRET", "SLA_WEBHOOK_SECRET")


def run_init(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        return _refuse(f"{args.out} exists; pass --force to replace it, or --out another path")
    if args.out.is_file() and args.write_token is not True:
        held = [name for name in SECRET_VARIABLES if dotenv_values(args.out).get(name)]
        if held:
            return _refuse(
                f"{args.out} holds {', '.join(held)}, which the new file would not: pass "
                "--write-token to keep it there, or move it to the environment first"
            )
    try:
        # Any pipeline for now: choosing it is what init is for.
        settings = load_settings(sla_pipeline="-")
    except ConfigError as error:
        return _refuse(str(error))
    configure_logging(settings.sla_log_format.value, settings.sla_log_level)
    if not settings.account_configured or settings.base_url is None:
        return _refuse(
            "no amoCRM account is configured: set AMO_SUBDOMAIN or AMO_BASE_URL and a token "
            "(see the README); `python -m worker sandbox` serves one to try"
        )
    try:
        with app.build_client(settings) as client:
            client.probe()
            account = client.account()
            pipelines = client.pipelines()
    except COMMAND_ERRORS as error:
        return _fail(error)
    print(f"account «{account.name}» ({account.id}) at {settings.base_url}")
    return _write_init(args, settings, pipelines)


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _write_init(args: argparse.Namespace, settings: Settings, pipelines: list[Pipeline]) -> int:
    """``init`` once the account's pipelines are read: list, choose, write."""
    from worker import init  # noqa: PLC0415
    from worker.envfile import write_private  # noqa: PLC0415

    for line in init.listing(pipelines):
        print(line)
    answers = init.Answers(
        pipeline=args.pipeline,
        hold=_given(args.hold),
        acceptance=_given(args.acceptance),
        accepted=args.accepted,
        done=_given(args.done),
        policy=args.policy,
        packages=args.packages,
        call_time=args.call_time,
        write_token=args.write_token,
    )
    explicit_state = "sla_state_dir" in settings.model_fields_set
    state_dir = args.state_dir or (settings.sla_state_dir if explicit_state else None)
    try:
        choice = init.choose(
            pipelines, answers, ask=None if args.non_interactive else input, say=print
        )
        text = init.render(
            choice,
            settings,
            pipelines,
            state_dir=state_dir.absolute() if state_dir is not None else None,
            today=date.today(),
        )
        write_private(args.out, text, replace=args.force)
    except KeyboardInterrupt:
        print("\ncancelled: nothing written", file=sys.stderr)
        return 130
    except FileExistsError:
        return _refuse(f"{args.out} exists; pass --force to replace it, or --out another path")
    except (init.InitError, ValueError, OSError) as error:
        return _refuse(str(error))
    print(f"wrote {args.out}: {init.summary(choice)}")
    if not choice.write_token:
        print("the token is not in it: keep it in the environment, or run init with --write-token")
    print(
        "next: python -m worker provision --dry-run; python -m worker provision; "
        "python -m worker check"
    )
    return 0


def _given(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None
