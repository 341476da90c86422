"""Explanations for an admin: one lead's SLA state, step by step.

``python -m worker explain --lead LEAD.json --events EVENTS.json --now ISO`` reads
a ``GET /api/v4/leads/{id}`` response and a ``GET /api/v4/events`` response
(``{"_embedded": {"events": [...]}}``; an empty file stands for amoCRM's
empty 204 reply), computes the state the worker would write, and prints:

the trace, one line per step (tags matched, the event counted as the reaction, robot
events skipped, the stretches each clock counted, each next-response waiting period and
each escalation step: fired, due, or skipped as before the worker's first start (given by
``--first-start``; live, the state's or SLA_FIRST_START); problems; stages and users by
name when the live account is read), then the state as JSON
(``sla.state.state_as_dict``). ``--json`` prints the JSON alone, to pipe it.

``python -m worker explain --company ID`` prints a company's statement
(:mod:`worker.ledgers.statement`).

Nothing here touches the worker's state directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from amo_client.models import Event, Lead
from sla.policy import Policy, PolicyError, default_policy, load_policy
from sla.state import SlaState, StageRoles, compute_sla, state_as_dict
from worker.mapping import AGREED_DUE_FIELD_NAME, lead_events, lead_facts

SAMPLES = Path(__file__).resolve().parent / "samples"


class ExplainError(Exception):
    """An input file or option that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Names:
    """What people call the ids a trace mentions: stages by status id, users by id."""

    stages: Mapping[int, str] = field(default_factory=dict)
    users: Mapping[int, str] = field(default_factory=dict)

    def named(self, line: str) -> str:
        """``line`` with each stage and user id it names followed by its name."""

        def stage(match: re.Match[str]) -> str:
            name = self.stages.get(int(match["status"]))
            return match[0] if name is None else f"«{name}» ({match['status']})"

        def user(match: re.Match[str]) -> str:
            name = self.users.get(int(match["user"]))
            return match[0] if name is None else f"by «{name}» ({match['user']})"

        line = STAGE_IN_TRACE.sub(stage, line)
        return USER_IN_TRACE.sub(user, line)


# How the engine's trace names a stage of the pipeline and a user (sla.state).
STAGE_IN_TRACE = re.compile(r"status (?P<status>\d+) of pipeline \d+")
USER_IN_TRACE = re.compile(r"by user (?P<user>\d+)")


@dataclass(frozen=True)
class Explanation:
    state: SlaState
    notes: tuple[str, ...]  # how the inputs were read (before the engine's own trace)
    names: Names = field(default_factory=Names)
    first_start: datetime | None = None  # the worker's first start on the account, if known

    def as_json(self) -> str:
        return json.dumps(state_as_dict(self.state), ensure_ascii=False, indent=2)

    @property
    def trace(self) -> tuple[str, ...]:
        lines = (*self.notes, *self.state.trace, *self.first_start_lines())
        return tuple(self.names.named(line) for line in lines)

    def first_start_lines(self) -> list[str]:
        """Each fired step that came before the worker's first start: it gets no task."""
        first = self.first_start
        if first is None:
            return []
        zone = self.state.registered_at.tzinfo
        shown = first.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        skipped = [
            f"ladder {step.step.clock.value.replace('_', ' ')}"
            + (
                f" of the period from {step.period:%Y-%m-%d %H:%M}"
                if step.period is not None
                else ""
            )
            + f": step «{step.step.label}» at {step.at:%Y-%m-%d %H:%M}, before the worker's "
            f"first start ({shown}): skipped, no task"
            for step in self.state.ladder
            if step.fired and step.at is not None and step.at < first
        ]
        return skipped or [f"the worker's first start {shown}: no step came before it"]


def read_lead(path: Path) -> Lead:
    data = _read_json(path)
    if data is None:
        raise ExplainError(f"{path}: empty file, expected a GET /api/v4/leads/{{id}} response")
    try:
        return Lead.model_validate(data)
    except ValidationError as error:
        raise ExplainError(f"{path}: not an amoCRM lead: {_first_error(error)}") from None


def read_events(path: Path) -> list[Event]:
    data = _read_json(path)
    if data is None:  # amoCRM answers an empty list with 204 and no body
        return []
    raw = data.get("_embedded", {}).get("events") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ExplainError(f'{path}: expected {{"_embedded": {{"events": [...]}}}}')
    try:
        return [Event.model_validate(item) for item in raw]
    except ValidationError as error:
        raise ExplainError(f"{path}: not an amoCRM event: {_first_error(error)}") from None


def read_policy(path: Path | None) -> Policy:
    if path is None:
        return default_policy()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ExplainError(f"{path}: {error.strerror or error}") from None
    try:
        return load_policy(text)
    except PolicyError as error:
        raise ExplainError(f"{path}: {error}") from None


def parse_now(text: str, policy: Policy) -> datetime:
    """An ISO instant; without an offset it is read in the policy's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExplainError(
            f"--now: expected an ISO date and time like 2025-10-14T12:00:00+03:00, got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=policy.zone)


@dataclass(frozen=True)
class RoleOptions:
    """Stage roles as given on the command line; the pipeline defaults to the lead's."""

    pipeline_id: int | None = None
    first_status: int | None = None
    hold: tuple[int, ...] = ()
    done: tuple[int, ...] = ()
    acceptance: tuple[int, ...] = ()
    accepted_status: int = 142

    def for_lead(self, lead: Lead) -> StageRoles:
        return StageRoles(
            pipeline_id=self.pipeline_id if self.pipeline_id is not None else lead.pipeline_id,
            first_status_id=self.first_status,
            hold=frozenset(self.hold),
            done=frozenset(self.done) | frozenset(self.acceptance),
            acceptance=frozenset(self.acceptance),
            accepted_status_id=self.accepted_status,
        )


def explain(
    lead: Lead,
    events: Sequence[Event],
    *,
    policy: Policy,
    roles: StageRoles,
    now: datetime,
    agreed_due_field_id: int | None = None,
    class_field_id: int | None = None,
    first_start: datetime | None = None,
) -> Explanation:
    """The state the worker would compute for ``lead``. Without an agreed-date field id the
    field named «SLA: срок по согласованию» is used when the lead has one; with the worker's
    ``first_start``, the escalation steps it skips as older are named."""
    notes: list[str] = []
    if agreed_due_field_id is None:
        named = next(
            (f for f in lead.custom_fields_values or () if f.field_name == AGREED_DUE_FIELD_NAME),
            None,
        )
        if named is not None:
            agreed_due_field_id = named.field_id
            notes.append(f"agreed date read from field {named.field_id} «{named.field_name}»")
    own = [e for e in events if e.entity_type == "lead" and e.entity_id == lead.id]
    if len(own) < len(events):
        notes.append(f"{len(events) - len(own)} events of other entities ignored")
    facts = lead_facts(lead, agreed_due_field_id=agreed_due_field_id, class_field_id=class_field_id)
    state = compute_sla(facts, lead_events(own), policy, roles, now, explain=True)
    return Explanation(state, tuple(notes), first_start=first_start)


def explain_files(
    lead_path: Path,
    events_path: Path,
    *,
    now: str,
    policy_path: Path | None = None,
    roles: RoleOptions | None = None,
    agreed_due_field_id: int | None = None,
    class_field_id: int | None = None,
    first_start: str | None = None,
) -> Explanation:
    policy = read_policy(policy_path)
    lead = read_lead(lead_path)
    events = read_events(events_path)
    stage_roles = (roles or RoleOptions()).for_lead(lead)
    return explain(
        lead,
        events,
        policy=policy,
        roles=stage_roles,
        now=parse_now(now, policy),
        agreed_due_field_id=agreed_due_field_id,
        class_field_id=class_field_id,
        first_start=parse_now(first_start, policy) if first_start else None,
    )


def print_explanation(explanation: Explanation, out: TextIO, *, json_only: bool = False) -> None:
    """The derivation, then the state as JSON; with ``json_only``, the JSON alone (to pipe)."""
    if not json_only:
        for line in explanation.trace:
            print(f"  · {line}", file=out)
        print("state:", file=out)
    print(explanation.as_json(), file=out)


# ---------------------------------------------------------------------------
# The bundled samples


@dataclass(frozen=True)
class SampleCase:
    name: str
    about: str
    now: str
    lead_path: Path
    events_path: Path
    roles: RoleOptions


def sample_cases(directory: Path = SAMPLES) -> list[SampleCase]:
    index = _read_json(directory / "cases.json")
    if not isinstance(index, dict):
        raise ExplainError(f"{directory / 'cases.json'}: expected a JSON object")
    stages: dict[str, Any] = index["stages"]
    roles = RoleOptions(
        pipeline_id=int(stages["pipeline_id"]),
        first_status=int(stages["first_status"]),
        hold=tuple(int(s) for s in stages.get("hold_statuses", ())),
        done=tuple(int(s) for s in stages.get("done_statuses", ())),
        acceptance=tuple(int(s) for s in stages.get("acceptance_statuses", ())),
    )
    return [
        SampleCase(
            name=case["name"],
            about=case["about"],
            now=case["now"],
            lead_path=directory / f"{case['name']}.lead.json",
            events_path=directory / f"{case['name']}.events.json",
            roles=roles,
        )
        for case in index["cases"]
    ]


def run_samples(out: TextIO, directory: Path = SAMPLES) -> int:
    """Explain every bundled sample, JSON and trace together, readable in a terminal."""
    cases = sample_cases(directory)
    first = cases[0] if cases else None
    if first is not None:
        print(
            "amo-sla: the SLA engine, offline, on the bundled sample leads\n"
            f"({directory}), with the built-in CRMBP policy.\n"
            "Each is the same as:\n"
            f"  python -m worker explain --lead {first.lead_path.name} "
            f"--events {first.events_path.name} --now {first.now} --pipeline-id "
            f"{first.roles.pipeline_id} --first-status {first.roles.first_status} ...\n",
            file=out,
        )
    for case in cases:
        explanation = explain_files(
            case.lead_path, case.events_path, now=case.now, roles=case.roles
        )
        print(f"=== {case.name}: {case.about}", file=out)
        print(f"    now {case.now}", file=out)
        print_explanation(explanation, out)
        print(file=out)
    return 0


# ---------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ExplainError(f"{path}: {error.strerror or error}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ExplainError(f"{path}: not JSON ({error})") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
