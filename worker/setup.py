"""Resolving the admin's names into the account's ids: pipeline, stages, fields.

Admins name things the way they see them in amoCRM ("Техподдержка", "Ждём
клиента"); the API speaks in ids. This module turns the names into ids (the cycle asks at
its first run, at every full reconcile and after a refused write) and reports every name
it cannot find, so ``check`` can list them all and a cycle never writes with a
half-resolved setup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from amo_client.models import CustomField, Pipeline, Status
from sla.state import LOST, WON, StageRoles
from worker.errors import FatalError
from worker.fields import (
    COMPANY_FIELD_SPECS,
    FIELD_SPECS,
    CompanyFieldMap,
    FieldMap,
    FieldSpec,
    K,
    Ledger,
    SlaField,
)


@dataclass(frozen=True)
class StageOptions:
    """The stage roles as the admin configured them: ids or names."""

    pipeline: str
    first_stage: str | None = None
    hold_stages: tuple[str, ...] = ()
    done_stages: tuple[str, ...] = ()
    acceptance_stages: tuple[str, ...] = ()
    accepted_stage: str = str(WON)
    class_field: str | None = None
    field_ids: Mapping[SlaField, int] = field(default_factory=dict)
    ledgers: frozenset[Ledger] = frozenset()  # the company ledgers switched on
    next_response: bool = False  # the policy has next-response targets (spec §4.1)


@dataclass(frozen=True)
class AccountSetup:
    pipeline_id: int
    pipeline_name: str
    roles: StageRoles
    open_status_ids: tuple[int, ...]
    status_names: Mapping[int, str]
    fields: FieldMap
    class_field_id: int | None
    company_fields: CompanyFieldMap = field(
        default_factory=lambda: CompanyFieldMap(ids={}, status_enum_ids={})
    )
    ledgers: frozenset[Ledger] = frozenset()
    # Names that matched only once «ё» and «е» were taken as one letter: worth fixing.
    loose_names: tuple[str, ...] = ()
    next_response: bool = False


class SetupError(FatalError, ValueError):
    """The configuration does not match the account; ``problems`` lists every mismatch.

    Only the admin can fix it (a renamed stage, a missing field): the service stops
    instead of retrying, and the commands exit 2 with the message, not a traceback.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _plain(name: str) -> str:
    return " ".join(name.split()).casefold()


def loose_name(name: str) -> str:
    """The name as people type it: case, spaces, and «ё» written as «е» do not matter."""
    return _plain(name).replace("ё", "е")


Named = TypeVar("Named", Pipeline, Status, CustomField)


def _find(
    items: Sequence[Named], wanted: str, variable: str, loose_names: list[str]
) -> Named | None:
    """The item whose id or name is ``wanted`` (case and spaces aside); failing that, the
    one whose name differs only by «ё» and «е», noted in ``loose_names``."""
    wanted = wanted.strip()
    exact = [i for i in items if wanted == str(i.id)] or [
        i for i in items if _plain(wanted) == _plain(i.name)
    ]
    if exact:
        return exact[0]
    loose = [i for i in items if loose_name(wanted) == loose_name(i.name)]
    if len(loose) == 1:
        loose_names.append(
            f"{variable}: {wanted!r} is taken as «{loose[0].name}» ({loose[0].id}): "
            "«ё» and «е» differ between them"
        )
        return loose[0]
    return None


def _listed(items: Iterable[Pipeline | Status | CustomField]) -> str:
    return ", ".join(f"«{i.name}» ({i.id})" for i in items) or "none"


def resolve_setup(
    options: StageOptions,
    pipelines: Sequence[Pipeline],
    lead_fields: Sequence[CustomField],
    company_fields: Sequence[CustomField] = (),
) -> AccountSetup:
    """Turn names into ids. Raises SetupError listing every problem at once.

    ``company_fields`` matter only with a company ledger switched on."""
    problems: list[str] = []
    loose_names: list[str] = []
    pipeline = _find(pipelines, options.pipeline, "SLA_PIPELINE", loose_names)
    if pipeline is None:
        raise SetupError(
            [
                f"SLA_PIPELINE: no pipeline {options.pipeline!r}; "
                f"the account has {_listed(pipelines)}"
            ]
        )
    statuses = sorted(pipeline.statuses, key=lambda s: (s.sort, s.id))

    def stage_ids(variable: str, names: Iterable[str]) -> frozenset[int]:
        found: set[int] = set()
        for name in names:
            match = _find(statuses, name, variable, loose_names)
            if match is None:
                problems.append(
                    f"{variable}: pipeline «{pipeline.name}» has no stage {name!r}; "
                    f"its stages are {_listed(statuses)}"
                )
            else:
                found.add(match.id)
        return frozenset(found)

    open_statuses = [s for s in statuses if s.id not in (WON, LOST)]
    if options.first_stage is not None:
        first = stage_ids("SLA_FIRST_STAGE", [options.first_stage])
        first_id = next(iter(first), None)
    else:
        first_id = open_statuses[0].id if open_statuses else None
    hold = stage_ids("SLA_HOLD_STAGES", options.hold_stages)
    done = stage_ids("SLA_DONE_STAGES", options.done_stages) | {WON, LOST}
    acceptance = stage_ids("SLA_ACCEPTANCE_STAGES", options.acceptance_stages)
    accepted = stage_ids("SLA_ACCEPTED_STAGE", [options.accepted_stage])

    fields, class_field_id = _resolve_fields(options, lead_fields, problems, loose_names)
    company_ids, company_enums = _find_fields(
        COMPANY_FIELD_SPECS,
        company_fields,
        configured_ids={},
        ledgers=options.ledgers,
        entity="company",
        problems=problems,
    )
    if problems:
        raise SetupError(problems)
    roles = StageRoles(
        pipeline_id=pipeline.id,
        first_status_id=first_id,
        hold=hold,
        done=done | acceptance,
        acceptance=acceptance,
        accepted_status_id=next(iter(accepted), WON),
    )
    return AccountSetup(
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        roles=roles,
        open_status_ids=tuple(s.id for s in open_statuses),
        status_names={s.id: s.name for s in statuses},
        fields=fields,
        class_field_id=class_field_id,
        company_fields=CompanyFieldMap(ids=company_ids, status_enum_ids=company_enums),
        ledgers=options.ledgers,
        loose_names=tuple(dict.fromkeys(loose_names)),
        next_response=options.next_response,
    )


def _resolve_fields(
    options: StageOptions,
    lead_fields: Sequence[CustomField],
    problems: list[str],
    loose_names: list[str],
) -> tuple[FieldMap, int | None]:
    ids, status_enum_ids = _find_fields(
        FIELD_SPECS,
        lead_fields,
        configured_ids=options.field_ids,
        ledgers=options.ledgers,
        entity="lead",
        problems=problems,
        next_response=options.next_response,
    )
    class_field_id = None
    if options.class_field is not None:
        match = _find(lead_fields, options.class_field, "SLA_CLASS_FIELD", loose_names)
        if match is None:
            selects = [f for f in lead_fields if f.type in ("select", "multiselect")]
            problems.append(
                f"SLA_CLASS_FIELD: no lead field {options.class_field!r}; "
                f"the select fields are {_listed(selects)}"
            )
        else:
            class_field_id = match.id
    return FieldMap(ids=ids, status_enum_ids=status_enum_ids), class_field_id


def _find_fields(
    specs: Sequence[FieldSpec[K]],
    fields: Sequence[CustomField],
    *,
    configured_ids: Mapping[K, int],
    ledgers: frozenset[Ledger],
    entity: str,
    problems: list[str],
    next_response: bool = False,
) -> tuple[dict[K, int], dict[str, int]]:
    by_id = {f.id: f for f in fields}
    ids: dict[K, int] = {}
    status_enum_ids: dict[str, int] = {}
    for spec in specs:
        if not spec.needed(ledgers, next_response):
            if spec.next_response:
                # Kept when the account has it: written empty, it shows next response is off.
                kept = _present(spec, fields, by_id, configured_ids.get(spec.key))
                if kept is not None:
                    ids[spec.key] = kept
            continue
        variable = f"SLA_FIELD_{spec.key.value.upper()}"
        configured = configured_ids.get(spec.key)
        if configured is not None:
            found = by_id.get(configured)
            if found is None:
                problems.append(f"{variable}: the account has no {entity} field {configured}")
                continue
        else:
            found = next((f for f in fields if f.name.strip() == spec.name), None)
            if found is None:
                mappable = entity == "lead" and spec.ledger is None and not spec.next_response
                how = f" or set {variable}" if mappable else ""
                problems.append(
                    f"{entity} field «{spec.name}» is missing: run `python -m worker provision`"
                    + how
                )
                continue
        if found.type != spec.type.value:
            problems.append(
                f"{entity} field «{found.name}» ({found.id}) is {found.type}, "
                f"expected {spec.type.value}"
            )
            continue
        ids[spec.key] = found.id
        if spec.options:
            status_enum_ids = _status_enums(found, spec.options, problems)
    return ids, status_enum_ids


def _present(
    spec: FieldSpec[K],
    fields: Sequence[CustomField],
    by_id: Mapping[int, CustomField],
    configured: int | None,
) -> int | None:
    """The id of a field the worker does not need, when the account has it as it should be."""
    if configured is not None:
        found = by_id.get(configured)
    else:
        found = next((f for f in fields if f.name.strip() == spec.name), None)
    return found.id if found is not None and found.type == spec.type.value else None


def _status_enums(
    found: CustomField, options: Sequence[str], problems: list[str]
) -> dict[str, int]:
    enums = {enum.value: enum.id for enum in found.enums or ()}
    missing = [option for option in options if option not in enums]
    if missing:
        problems.append(
            f"field «{found.name}» lacks the options {', '.join(missing)}: "
            "run `python -m worker provision`"
        )
    return enums


def missing_fields(
    fields: Sequence[CustomField],
    specs: Sequence[FieldSpec[K]],
    ledgers: frozenset[Ledger] = frozenset(),
    next_response: bool = False,
) -> list[FieldSpec[K]]:
    """The fields of ``specs`` needed with ``ledgers`` (and next response) that the account
    lacks, by name."""
    names = {f.name.strip() for f in fields}
    return [
        spec for spec in specs if spec.needed(ledgers, next_response) and spec.name not in names
    ]
