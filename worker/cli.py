"""The command line: ``python -m worker COMMAND``.

Every subcommand is one ``add_<name>`` function that declares its options and
one ``run_<name>`` function that does the work and returns the exit code.
Without a command the bundled sample leads are explained (the offline default
of ``python3 dev.py run``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker import explain

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="amo-sla: support SLAs inside amoCRM. Without a command: the offline samples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_explain(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return run_default(args)
    command: Command = args.run
    return command(args)


def run_default(args: argparse.Namespace) -> int:
    """No command given: explain the bundled samples."""
    try:
        return explain.run_samples(sys.stdout)
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# --- explain -------------------------------------------------------------------------------------


def add_explain(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "explain",
        help="compute one lead's SLA state offline from saved API responses",
        description=(
            "Compute the SLA state the worker would write for one lead, from a saved "
            "GET /api/v4/leads/{id} response and its GET /api/v4/events response. "
            "Prints the state as JSON on stdout and the derivation (trace) on stderr."
        ),
    )
    parser.add_argument(
        "--lead", type=Path, required=True, help="LEAD.json (GET /api/v4/leads/{id})"
    )
    parser.add_argument(
        "--events",
        type=Path,
        required=True,
        help='EVENTS.json ({"_embedded": {"events": [...]}}; an empty file means no events)',
    )
    parser.add_argument(
        "--now",
        required=True,
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
    parser.add_argument("--no-trace", action="store_true", help="print only the JSON")
    parser.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> int:
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
        )
    except explain.ExplainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    explain.print_explanation(explanation, sys.stdout, sys.stderr, with_trace=not args.no_trace)
    return 0
