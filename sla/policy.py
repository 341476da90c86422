"""SLA policies: tariffs, request classes, targets and calendars, read from TOML.

A policy says, per tariff and request class, on which business calendar the
clocks run and how much business time the reaction and the resolution may take.
The built-in default is the CRMBP regulation (:func:`default_policy`); an admin
can hand the worker any other policy file (``sla/presets/`` holds examples).

The TOML format (every key is checked; an unknown key, a wrong type or a bad
value is a :class:`PolicyError` that names the key)::

    name = "CRMBP"                        # shown in traces
    zone = "Europe/Moscow"                # IANA zone of every calendar unless one says otherwise
    at_risk_fraction = 0.8                # "Под угрозой" once this share of a target is used
    reaction_events = ["outgoing_chat_message", "outgoing_call", "common_note_added"]
    default_tariff = "По факту"           # optional: tariff of leads with no tariff tag
    acceptance_period = "8h"              # business time a result waits in an acceptance stage
    acceptance_calendar = "workdays"      # the calendar that business time is counted on

    [production_calendar]                 # optional
    extra_days_off = [2026-12-31]         # TOML dates or "YYYY-MM-DD" strings
    extra_working_days = []
    shorten_pre_holiday = false           # Labour Code art. 95: one hour less before a holiday

    [calendars.workdays]                  # named calendars, referenced below
    workdays = "10:00-18:00"              # open hours of working days ("09:00-13:00, 14:00-18:00")
    non_working_days = ""                 # open hours of weekends and holidays; "" = closed
    # zone = "Asia/Yekaterinburg"         # optional per-calendar zone
    # shorten_pre_holiday = true          # optional per-calendar override

    [classes]                             # tag spellings of the request classes
    typical = ["Типовое"]
    non_standard = ["Нестандартное", "Доработка"]

    [emergency]                           # optional; CRMBP has none, so none is built in
    tags = ["авария"]
    reaction_calendar = "emergency"       # optional: emergencies react on this calendar

    [tariffs.priority]                    # one table per tariff; file order = precedence
    name = "Приоритет"                    # optional, defaults to the table key
    tags = ["Приоритет"]                  # optional, defaults to [name]

    [tariffs.priority.typical]            # required
    calendar = "priority_typical"
    reaction = "1h"                       # durations: "1h", "90m", "1h30m", "45s"
    resolution = "12h"                    # or "by agreement" (по согласованию сторон)

    [tariffs.priority.non_standard]       # optional: without it non-standard requests
    calendar = "workdays"                 # get the typical targets
    reaction = "3h"
    resolution = "by agreement"

    [quotas.setups]                       # optional: free requests of one kind per company
    name = "Настройки"                    # optional, defaults to the table key
    tag = "Настройка"                     # the request tag that makes a request count
    months = 12                           # optional: the sliding window, in calendar months
    [quotas.setups.limits]                # tariff name = free requests per window; a tariff
    "Приоритет" = 2                       # not listed has no such quota

    [extra_hour_rates]                    # optional: package hours = ₽ per hour over it
    "2" = 3500
    "5" = 3000

    [goals]                               # optional: the met % the report compares with:
    reaction = 95                         # met / (met + breached) clocks, in percent (0-100],
    resolution = 90                       # for every tariff
    [goals.tariffs."Приоритет"]           # optional: a tariff's own goals, by tariff name
    reaction = 98

    [time_entries]                        # optional: how logged time counts (spec §7.1)
    unit = "5m"                           # each entry rounds up to whole units (default 5m,
                                          # seed 004 §5.2); whole minutes, at least one
    unit_clause = "п. 5.2 оферты"         # optional: the contract's clause on the unit, cited
                                          # by the customer statement after its rounding rule
    contract = "Публичная оферта на оказание услуг технической поддержки"
                                          # optional: the contract the statement names

    [next_response]                       # optional (spec §4.1); without it: off
    customer_events = ["incoming_chat_message", "incoming_mail", "incoming_call"]
    [next_response.targets]               # business time a customer waits for the next answer
    "Приоритет" = "2h"                    # one target for both classes, or per class:
    "По факту" = { typical = "8h", non_standard = "16h" }

    [[escalation.reaction]]               # optional: the ladder of one clock (reaction,
    at = "80%"                            # resolution, next_response); "80%" of the target,
    to = "responsible"                    # "breach", "breach + 2h" (business time after it);
    text = "Реакция под угрозой: «{lead_name}» (#{lead_id}), срок {due}"
    [escalation.group_heads]              # who heads each group of users, by name or id
    "Поддержка" = 9100003                 # to: responsible, supervisor, group_head, a user id

The last two are described at the end of this module.

Tags are compared ignoring case, surrounding spaces and repeated inner spaces
(:func:`normalize_tag`). A tag may belong to one tariff, one class or the
emergency list, never to two of them; a quota's tag is no tariff's tag and no
other quota's. Emergency tags matter only with an
emergency ``reaction_calendar``: the policy then runs an emergency's reaction
clock on it (seed 003 §3: on days off only emergencies get a reaction).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sla.calendar import BusinessCalendar, OpenHours, ProductionCalendar

__all__ = [
    "DEFAULT_CUSTOMER_EVENT_TYPES",
    "DEFAULT_REACTION_EVENT_TYPES",
    "Assignee",
    "AssigneeKind",
    "Goals",
    "Ladder",
    "LadderClock",
    "LadderStep",
    "NextResponse",
    "Policy",
    "PolicyError",
    "Quota",
    "RequestClass",
    "Targets",
    "Tariff",
    "TimeTerms",
    "default_policy",
    "load_policy",
    "normalize_tag",
]

MOSCOW = ZoneInfo("Europe/Moscow")

# amoCRM API v4 event types made by a person answering a request: a chat reply, a call,
# an e-mail and a note typed into the lead card.
DEFAULT_REACTION_EVENT_TYPES = frozenset(
    {"outgoing_chat_message", "outgoing_call", "outgoing_mail", "common_note_added"}
)

BY_AGREEMENT_SPELLINGS = frozenset({"by agreement", "по согласованию"})


class RequestClass(StrEnum):
    TYPICAL = "typical"
    NON_STANDARD = "non_standard"


class PolicyError(ValueError):
    """A policy that cannot be used; ``key`` is the offending TOML key path."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def normalize_tag(tag: str) -> str:
    """The form tags are compared in: case-folded, trimmed, inner spaces collapsed."""
    return " ".join(tag.split()).casefold()


@dataclass(frozen=True)
class Targets:
    """Where and how long: the calendar a class's clocks run on and its two targets."""

    calendar: BusinessCalendar
    reaction: timedelta
    resolution: timedelta | None  # None: by agreement (the lead's agreed date, if any)


@dataclass(frozen=True)
class Tariff:
    """A support plan. ``targets`` always holds both classes: a tariff defined for typical
    requests only applies those targets to non-standard requests too."""

    name: str
    tags: tuple[str, ...]
    targets: Mapping[RequestClass, Targets]
    key: str = ""  # the TOML table key (tariffs.KEY), for messages

    @property
    def path(self) -> str:
        return f"tariffs.{_key(self.key or self.name)}"

    def __post_init__(self) -> None:
        targets = dict(self.targets)
        if RequestClass.TYPICAL not in targets:
            raise PolicyError(f"{self.path}.typical", "missing table")
        targets.setdefault(RequestClass.NON_STANDARD, targets[RequestClass.TYPICAL])
        object.__setattr__(self, "targets", MappingProxyType(targets))
        object.__setattr__(self, "tags", tuple(self.tags) or (self.name,))


@dataclass(frozen=True)
class Quota:
    """How many requests of one kind (those carrying ``tag``) a company gets free within
    ``months`` calendar months, by tariff name; a tariff not in ``limits`` has no such quota."""

    name: str
    tag: str
    limits: Mapping[str, int]
    months: int = 12
    key: str = field(default="", compare=False)  # the TOML table key (quotas.KEY), for messages

    @property
    def path(self) -> str:
        return f"quotas.{_key(self.key or self.name)}"

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        if not self.name.strip():
            raise PolicyError(f"{self.path}.name", "cannot be empty")
        if not normalize_tag(self.tag):
            raise PolicyError(f"{self.path}.tag", "a tag cannot be empty")
        if self.months < 1:
            raise PolicyError(f"{self.path}.months", f"must be at least 1, got {self.months}")
        for tariff, limit in self.limits.items():
            if limit < 0:
                raise PolicyError(
                    f"{self.path}.limits.{_key(tariff)}", f"cannot be negative, got {limit}"
                )

    def __hash__(self) -> int:
        return hash((self.name, self.tag, tuple(sorted(self.limits.items())), self.months))


# ---------------------------------------------------------------------------
# Report goals and time terms: what the SLA report compares with, and how logged time
# counts and is cited in the customer statement.

GOAL_CLOCKS = ("reaction", "resolution")


@dataclass(frozen=True)
class Goals:
    """The met % (met / (met + breached) clocks) the report compares with, per clock
    (:data:`GOAL_CLOCKS`): ``every`` for all tariffs, ``tariffs`` a tariff's own by name."""

    every: Mapping[str, Decimal] = field(default_factory=dict)
    tariffs: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", MappingProxyType(dict(self.every)))
        object.__setattr__(
            self,
            "tariffs",
            MappingProxyType({name: MappingProxyType(dict(g)) for name, g in self.tariffs.items()}),
        )
        for path, goals in (
            ("goals", self.every),
            *((f"goals.tariffs.{_key(name)}", g) for name, g in self.tariffs.items()),
        ):
            for clock, percent in goals.items():
                if clock not in GOAL_CLOCKS:
                    raise PolicyError(
                        f"{path}.{clock}", f"no such clock ({', '.join(GOAL_CLOCKS)})"
                    )
                if not 0 < percent <= 100:
                    raise PolicyError(
                        f"{path}.{clock}", f"a goal is more than 0 and at most 100 %, not {percent}"
                    )

    def target(self, clock: str, tariff: str | None = None) -> Decimal | None:
        """The goal of ``clock`` for ``tariff`` (its own, else every tariff's); None: none set.
        Without a tariff: every tariff's goal."""
        own = self.tariffs.get(tariff, {}) if tariff is not None else {}
        return own.get(clock, self.every.get(clock))


@dataclass(frozen=True)
class TimeTerms:
    """How logged time counts (spec §7.1) and what the customer statement cites for it.

    ``unit_minutes``: each time entry is rounded up to whole units of this many minutes
    (seed 004 §5.2: 5). ``unit_clause``: the contract's clause that sets the unit (``п. 5.2
    оферты``); ``contract``: the contract the statement names. Empty: not cited."""

    unit_minutes: int = 5
    unit_clause: str = ""
    contract: str = ""

    def __post_init__(self) -> None:
        if self.unit_minutes < 1:
            raise PolicyError(
                "time_entries.unit", f"must be at least one minute, not {self.unit_minutes}"
            )

    @property
    def unit_seconds(self) -> int:
        return self.unit_minutes * 60


@dataclass(frozen=True)
class Policy:
    tariffs: tuple[Tariff, ...]  # order = precedence when a lead carries several tariff tags
    class_tags: Mapping[RequestClass, tuple[str, ...]]
    emergency_tags: tuple[str, ...] = ()
    emergency_reaction_calendar: BusinessCalendar | None = None  # None: no special calendar
    at_risk_fraction: float = 0.8
    default_tariff: str | None = None  # tariff of leads with no tariff tag; None: "Нет тарифа"
    reaction_event_types: frozenset[str] = DEFAULT_REACTION_EVENT_TYPES
    acceptance_period: timedelta = timedelta(hours=8)
    # Business time of the acceptance period is counted on this calendar; None counts it on
    # the lead's resolution calendar (wall-clock time for a lead without a tariff).
    acceptance_calendar: BusinessCalendar | None = None
    zone: ZoneInfo = MOSCOW  # the zone a lead's instants are reported in
    name: str = ""
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)  # by TOML name
    quotas: tuple[Quota, ...] = ()
    # Hour packages: the price of an hour over a package, by the package's hours.
    extra_hour_rates: Mapping[Decimal, Decimal] = field(default_factory=dict)
    # Spec §4: for accounts whose chat integration posts the agents' replies through the API
    # (recorded as a robot's), a robot's outgoing message counts as a reaction; other
    # robot actions still do not.
    robot_replies: bool = False
    # The report's goals, and the time entries' unit and the statement's citations.
    goals: Goals = field(default_factory=Goals)
    time_terms: TimeTerms = field(default_factory=TimeTerms)
    # Spec §4.1 (beyond the seeds): the next-response clock (None: off) and the escalation
    # ladder; see the section at the end of the module.
    next_response: NextResponse | None = None
    ladder: Ladder = field(default_factory=lambda: Ladder())  # noqa: PLW0108 - defined below

    def __post_init__(self) -> None:
        object.__setattr__(self, "tariffs", tuple(self.tariffs))
        object.__setattr__(
            self,
            "class_tags",
            MappingProxyType({kind: tuple(self.class_tags.get(kind, ())) for kind in RequestClass}),
        )
        object.__setattr__(self, "emergency_tags", tuple(self.emergency_tags))
        object.__setattr__(self, "reaction_event_types", frozenset(self.reaction_event_types))
        object.__setattr__(self, "calendars", MappingProxyType(dict(self.calendars)))
        object.__setattr__(self, "quotas", tuple(self.quotas))
        object.__setattr__(self, "extra_hour_rates", MappingProxyType(dict(self.extra_hour_rates)))
        if not 0 < self.at_risk_fraction <= 1:
            raise PolicyError("at_risk_fraction", "must be more than 0 and at most 1")
        if self.acceptance_period <= timedelta(0):
            raise PolicyError("acceptance_period", "must be more than zero")
        names = [tariff.name for tariff in self.tariffs]
        for index, tariff in enumerate(self.tariffs):
            if tariff.name in names[:index]:
                raise PolicyError(tariff.path, f"tariff name {tariff.name!r} is used twice")
        if self.default_tariff is not None and self.default_tariff not in names:
            raise PolicyError(
                "default_tariff", f"no tariff is named {self.default_tariff!r} ({_listing(names)})"
            )
        _check_tag_owners(self)
        _check_quotas(self)
        _check_goals(self)
        _check_next_response(self)
        for hours, rate in self.extra_hour_rates.items():
            if not hours > 0 or not rate > 0:
                raise PolicyError(
                    f"extra_hour_rates.{_key(str(hours))}",
                    f"hours and rate must be more than zero, got {hours} h at {rate}",
                )

    def extra_hour_rate(self, package_hours: Decimal) -> Decimal | None:
        """The price of an hour over a package of ``package_hours``; None: no rate is set."""
        return self.extra_hour_rates.get(package_hours)

    def tariff_named(self, name: str) -> Tariff:
        for tariff in self.tariffs:
            if tariff.name == name:
                return tariff
        raise KeyError(f"no tariff named {name!r} in the policy ({_listing(self.tariff_names)})")

    @property
    def tariff_names(self) -> tuple[str, ...]:
        return tuple(tariff.name for tariff in self.tariffs)

    @property
    def customer_event_types(self) -> frozenset[str]:
        """The customer's messages that start a next-response period (none while it is off)."""
        return self.next_response.customer_events if self.next_response else frozenset()

    @property
    def conversation_event_types(self) -> frozenset[str]:
        """The reaction types and the customer's messages: what the engine reads of the
        conversation, on the lead or filed on its contact."""
        return self.reaction_event_types | self.customer_event_types


def _check_tag_owners(policy: Policy) -> None:
    owners: dict[str, str] = {}

    def claim(tag: str, owner: str, key: str) -> None:
        normal = normalize_tag(tag)
        if not normal:
            raise PolicyError(key, "a tag cannot be empty")
        previous = owners.setdefault(normal, owner)
        if previous != owner:
            raise PolicyError(key, f"tag {tag!r} already belongs to {previous}")

    for tariff in policy.tariffs:
        for index, tag in enumerate(tariff.tags):
            claim(tag, f"tariff {tariff.name!r}", f"{tariff.path}.tags[{index}]")
    for kind, tags in policy.class_tags.items():
        for index, tag in enumerate(tags):
            claim(tag, f"class {kind.value}", f"classes.{kind.value}[{index}]")
    for index, tag in enumerate(policy.emergency_tags):
        claim(tag, "the emergency tags", f"emergency.tags[{index}]")


def _check_goals(policy: Policy) -> None:
    for tariff in policy.goals.tariffs:
        if tariff not in policy.tariff_names:
            raise PolicyError(
                f"goals.tariffs.{_key(tariff)}",
                f"no tariff is named {tariff!r} ({_listing(policy.tariff_names)})",
            )


def _check_quotas(policy: Policy) -> None:
    tariff_tags = {normalize_tag(tag): t.name for t in policy.tariffs for tag in t.tags}
    names: dict[str, str] = {}
    tags: dict[str, str] = {}
    for quota in policy.quotas:
        previous = names.setdefault(quota.name, quota.path)
        if previous != quota.path:
            raise PolicyError(quota.path, f"quota name {quota.name!r} is also used by {previous}")
        tag = normalize_tag(quota.tag)
        if tag in tariff_tags:
            owner = f"tariff {tariff_tags[tag]!r}"
            raise PolicyError(f"{quota.path}.tag", f"tag {quota.tag!r} already belongs to {owner}")
        owner = tags.setdefault(tag, quota.path)
        if owner != quota.path:
            raise PolicyError(f"{quota.path}.tag", f"tag {quota.tag!r} already belongs to {owner}")
        for tariff in quota.limits:
            if tariff not in policy.tariff_names:
                raise PolicyError(
                    f"{quota.path}.limits.{_key(tariff)}",
                    f"no tariff is named {tariff!r} ({_listing(policy.tariff_names)})",
                )


# ---------------------------------------------------------------------------
# Reading TOML

_T = TypeVar("_T")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_HINT = 'expected a duration like "1h" or "90m"'
_MISSING: Any = object()


def _key(part: str) -> str:
    return part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'


def _listing(names: Iterable[str]) -> str:
    listed = ", ".join(repr(name) for name in names)
    return f"defined: {listed}" if listed else "none are defined"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, date):
        return f"{value.isoformat()} (a date)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    kinds = {list: "a list", dict: "a table"}
    return next(
        (text for cls, text in kinds.items() if isinstance(value, cls)), type(value).__name__
    )


_ROOT_KEYS = (
    "name",
    "zone",
    "at_risk_fraction",
    "reaction_events",
    "default_tariff",
    "acceptance_period",
    "acceptance_calendar",
    "production_calendar",
    "calendars",
    "classes",
    "emergency",
    "tariffs",
    "quotas",
    "extra_hour_rates",
    "goals",
    "time_entries",
    "next_response",
    "escalation",
)
_PRODUCTION_KEYS = ("extra_days_off", "extra_working_days", "shorten_pre_holiday")
_CALENDAR_KEYS = ("workdays", "non_working_days", "zone", "shorten_pre_holiday")
_CLASS_KEYS = tuple(kind.value for kind in RequestClass)
_EMERGENCY_KEYS = ("tags", "reaction_calendar")
_TARIFF_KEYS = ("name", "tags", *_CLASS_KEYS)
_TARGET_KEYS = ("calendar", "reaction", "resolution")
_QUOTA_KEYS = ("name", "tag", "months", "limits")


class _Table:
    """One TOML table being read: knows its key path and refuses keys it does not expect.

    ``keys`` None: a table of named entries (calendars, tariffs), any key allowed."""

    def __init__(self, data: object, path: str, keys: tuple[str, ...] | None) -> None:
        if not isinstance(data, dict):
            raise PolicyError(path, f"expected a table, got {_describe(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        for key in data:
            if keys is not None and key not in keys:
                raise PolicyError(self.at(key), f"unknown key (expected one of: {', '.join(keys)})")

    def at(self, key: str) -> str:
        return f"{self.path}.{_key(key)}" if self.path else _key(key)

    def get(self, key: str, read: Callable[[object, str], _T], default: _T) -> _T:
        value = self.data.get(key, _MISSING)
        return default if value is _MISSING else read(value, self.at(key))

    def need(self, key: str, read: Callable[[object, str], _T]) -> _T:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            raise PolicyError(self.at(key), "missing")
        return read(value, self.at(key))

    def table(self, key: str, keys: tuple[str, ...] | None) -> _Table | None:
        value = self.data.get(key, _MISSING)
        return None if value is _MISSING else _Table(value, self.at(key), keys)

    def sub(self, key: str, keys: tuple[str, ...] | None) -> _Table:
        """A table that must be there."""
        table = self.table(key, keys)
        if table is None:
            raise PolicyError(self.at(key), "missing table")
        return table


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(path, f"expected a text, got {_describe(value)}")
    return value


def _name(value: object, path: str) -> str:
    text = _text(value, path).strip()
    if not text:
        raise PolicyError(path, "cannot be empty")
    return text


def _flag(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(path, f"expected true or false, got {_describe(value)}")
    return value


def _fraction(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(path, f"expected a number like 0.8, got {_describe(value)}")
    if not 0 < value <= 1:
        raise PolicyError(path, f"must be more than 0 and at most 1, got {value}")
    return float(value)


def _texts(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise PolicyError(path, f"expected a list of texts, got {_describe(value)}")
    return tuple(_name(item, f"{path}[{index}]") for index, item in enumerate(value))


def _duration(value: object, path: str) -> timedelta:
    if not isinstance(value, str):
        raise PolicyError(path, f"{_DURATION_HINT}, got {_describe(value)}")
    compact = "".join(value.split()).lower()
    if compact.startswith("-"):
        raise PolicyError(path, f"a duration cannot be negative, got {value!r}")
    match = _DURATION.match(compact)
    if not compact or match is None:
        raise PolicyError(path, f"{_DURATION_HINT}, got {value!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise PolicyError(path, f"must be more than zero, got {value!r}")
    return duration


def _count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(path, f"expected a whole number, got {_describe(value)}")
    if value < 0:
        raise PolicyError(path, f"cannot be negative, got {value}")
    return value


def _months(value: object, path: str) -> int:
    months = _count(value, path)
    if months < 1:
        raise PolicyError(path, f"must be at least 1, got {months}")
    return months


def _amount(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PolicyError(path, f"expected a number like 3500, got {_describe(value)}")
    try:
        amount = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise PolicyError(path, f"expected a number like 3500, got {_describe(value)}") from None
    if not amount.is_finite() or amount <= 0:
        raise PolicyError(path, f"must be more than zero, got {_describe(value)}")
    return amount


def _resolution(value: object, path: str) -> timedelta | None:
    if isinstance(value, str) and normalize_tag(value) in BY_AGREEMENT_SPELLINGS:
        return None
    try:
        return _duration(value, path)
    except PolicyError as error:
        raise PolicyError(path, f'{error.problem}, or "by agreement"') from None


def _zone(value: object, path: str) -> ZoneInfo:
    name = _name(value, path)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(
            path, f'unknown time zone {name!r}: expected an IANA name like "Europe/Moscow"'
        ) from None


def _open_hours(value: object, path: str) -> OpenHours:
    text = _text(value, path)
    try:
        return OpenHours.parse(text)
    except ValueError as error:
        raise PolicyError(path, str(error)) from None


def _dates(value: object, path: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise PolicyError(path, f"expected a list of dates, got {_describe(value)}")
    days: set[date] = set()
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if isinstance(item, date) and type(item) is date:
            days.add(item)
        elif isinstance(item, str):
            try:
                days.add(date.fromisoformat(item.strip()))
            except ValueError:
                raise PolicyError(
                    item_path, f'expected a date like 2026-12-31 or "2026-12-31", got {item!r}'
                ) from None
        else:
            raise PolicyError(item_path, f"expected a date like 2026-12-31, got {_describe(item)}")
    return frozenset(days)


def _calendar_ref(calendars: Mapping[str, BusinessCalendar]) -> Callable[[object, str], str]:
    def read(value: object, path: str) -> str:
        name = _name(value, path)
        if name not in calendars:
            raise PolicyError(path, f"unknown calendar {name!r} ({_listing(calendars)})")
        return name

    return read


def load_policy(text: str) -> Policy:
    """Read a policy from TOML text; the caller reads the file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError("", f"not valid TOML: {error}") from None
    root = _Table(data, "", _ROOT_KEYS)
    name = root.get("name", _text, "")
    zone = root.need("zone", _zone)
    at_risk = root.get("at_risk_fraction", _fraction, 0.8)
    reaction_events = root.get("reaction_events", _texts, tuple(DEFAULT_REACTION_EVENT_TYPES))
    for index, event_type in enumerate(reaction_events):
        if not re.fullmatch(r"[a-z0-9_]+", event_type):
            raise PolicyError(
                f"reaction_events[{index}]",
                f'expected an amoCRM event type like "outgoing_chat_message", got {event_type!r}',
            )
    if not reaction_events:
        raise PolicyError("reaction_events", "name at least one event type")

    production, shorten = _read_production(root.table("production_calendar", _PRODUCTION_KEYS))
    calendars = _read_calendars(root.sub("calendars", None), zone, production, shorten)
    calendar_ref = _calendar_ref(calendars)

    acceptance_period = root.get("acceptance_period", _duration, timedelta(hours=8))
    acceptance_calendar = calendars[root.need("acceptance_calendar", calendar_ref)]

    class_tags = _read_classes(root.table("classes", _CLASS_KEYS))
    emergency_tags: tuple[str, ...] = ()
    emergency_calendar: BusinessCalendar | None = None
    emergency = root.table("emergency", _EMERGENCY_KEYS)
    if emergency is not None:
        emergency_tags = emergency.get("tags", _texts, emergency_tags)
        calendar_name = emergency.get("reaction_calendar", calendar_ref, "")
        emergency_calendar = calendars[calendar_name] if calendar_name else None

    tariffs = _read_tariffs(root.sub("tariffs", None), calendars)
    default_tariff = root.get("default_tariff", _name, "") or None
    quotas = _read_quotas(root.table("quotas", None))
    extra_hour_rates = _read_rates(root.table("extra_hour_rates", None))
    goals = _read_goals(root.table("goals", _GOALS_KEYS))
    time_terms = _read_time_terms(root.table("time_entries", _TIME_TERMS_KEYS))
    next_response = _read_next_response(root.table("next_response", _NEXT_RESPONSE_KEYS))
    ladder = _read_ladder(root.table("escalation", _ESCALATION_KEYS))
    return Policy(
        tariffs=tariffs,
        class_tags=class_tags,
        emergency_tags=emergency_tags,
        emergency_reaction_calendar=emergency_calendar,
        at_risk_fraction=at_risk,
        default_tariff=default_tariff,
        reaction_event_types=frozenset(reaction_events),
        acceptance_period=acceptance_period,
        acceptance_calendar=acceptance_calendar,
        zone=zone,
        name=name,
        calendars=calendars,
        quotas=quotas,
        extra_hour_rates=extra_hour_rates,
        goals=goals,
        time_terms=time_terms,
        next_response=next_response,
        ladder=ladder,
    )


def _read_production(table: _Table | None) -> tuple[ProductionCalendar, bool]:
    if table is None:
        return ProductionCalendar(), False
    nothing: frozenset[date] = frozenset()
    days_off = table.get("extra_days_off", _dates, nothing)
    working = table.get("extra_working_days", _dates, nothing)
    shorten = table.get("shorten_pre_holiday", _flag, False)
    both = sorted(days_off & working)
    if both:
        raise PolicyError(
            table.at("extra_working_days"),
            f"{both[0].isoformat()} is listed in extra_days_off too",
        )
    return ProductionCalendar(extra_days_off=days_off, extra_working_days=working), shorten


def _read_calendars(
    table: _Table, zone: ZoneInfo, production: ProductionCalendar, shorten: bool
) -> dict[str, BusinessCalendar]:
    calendars: dict[str, BusinessCalendar] = {}
    for calendar_name in table.data:
        entry = table.sub(calendar_name, _CALENDAR_KEYS)
        workdays = entry.need("workdays", _open_hours)
        non_working = entry.get("non_working_days", _open_hours, OpenHours.CLOSED)
        calendar_zone = entry.get("zone", _zone, zone)
        calendar_shorten = entry.get("shorten_pre_holiday", _flag, shorten)
        if not workdays.spans and not non_working.spans:
            raise PolicyError(entry.path, "a calendar must be open on some days")
        calendars[calendar_name] = BusinessCalendar(
            zone=calendar_zone,
            workday_hours=workdays,
            non_working_hours=non_working,
            production=production,
            shorten_pre_holiday=calendar_shorten,
        )
    if not calendars:
        raise PolicyError(table.path, "define at least one calendar")
    return calendars


def _read_classes(table: _Table | None) -> dict[RequestClass, tuple[str, ...]]:
    if table is None:
        return dict.fromkeys(RequestClass, ())
    none: tuple[str, ...] = ()
    tags = {kind: table.get(kind.value, _texts, none) for kind in RequestClass}
    return tags


def _read_tariffs(table: _Table, calendars: Mapping[str, BusinessCalendar]) -> tuple[Tariff, ...]:
    calendar_ref = _calendar_ref(calendars)
    tariffs: list[Tariff] = []
    seen: dict[str, str] = {}
    for tariff_key in table.data:
        entry = table.sub(tariff_key, _TARIFF_KEYS)
        tariff_name = entry.get("name", _name, tariff_key.strip())
        if tariff_name in seen:
            raise PolicyError(
                entry.at("name"), f"tariff name {tariff_name!r} is also used by {seen[tariff_name]}"
            )
        seen[tariff_name] = entry.path
        own_name: tuple[str, ...] = (tariff_name,)
        tags = entry.get("tags", _texts, own_name)
        if not tags:
            raise PolicyError(entry.at("tags"), "list at least one tag")
        targets: dict[RequestClass, Targets] = {}
        for kind in RequestClass:
            class_table = (
                entry.sub(kind.value, _TARGET_KEYS)
                if kind is RequestClass.TYPICAL
                else entry.table(kind.value, _TARGET_KEYS)
            )
            if class_table is None:
                continue
            calendar_name = class_table.need("calendar", calendar_ref)
            reaction = class_table.need("reaction", _duration)
            resolution = class_table.need("resolution", _resolution)
            targets[kind] = Targets(calendars[calendar_name], reaction, resolution)
        tariffs.append(Tariff(name=tariff_name, tags=tags, targets=targets, key=tariff_key))
    if not tariffs:
        raise PolicyError(table.path, "define at least one tariff")
    return tuple(tariffs)


def _read_quotas(table: _Table | None) -> tuple[Quota, ...]:
    if table is None:
        return ()
    quotas: list[Quota] = []
    for quota_key in table.data:
        entry = table.sub(quota_key, _QUOTA_KEYS)
        limits_table = entry.sub("limits", None)
        limits = {
            _name(tariff, limits_table.at(tariff)): _count(limit, limits_table.at(tariff))
            for tariff, limit in limits_table.data.items()
        }
        if not limits:
            raise PolicyError(limits_table.path, "give at least one tariff its limit")
        quotas.append(
            Quota(
                name=entry.get("name", _name, quota_key.strip()),
                tag=entry.need("tag", _name),
                limits=limits,
                months=entry.get("months", _months, 12),
                key=quota_key,
            )
        )
    return tuple(quotas)


def _read_rates(table: _Table | None) -> dict[Decimal, Decimal]:
    rates: dict[Decimal, Decimal] = {}
    if table is None:
        return rates
    for hours_text, rate in table.data.items():
        path = table.at(hours_text)
        hours = _amount(hours_text, path)
        if hours in rates:
            raise PolicyError(path, f"a package of {hours} h already has a rate")
        rates[hours] = _amount(rate, path)
    return rates


# --- report goals and time terms ------------------------------------------------------------

_GOALS_KEYS = (*GOAL_CLOCKS, "tariffs")
_TIME_TERMS_KEYS = ("unit", "unit_clause", "contract")


def _percent(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(path, f"expected a percentage like 95, got {_describe(value)}")
    if not 0 < value <= 100:
        raise PolicyError(path, f"a goal is more than 0 and at most 100 %, got {value}")
    return Decimal(str(value))


def _clock_goals(table: _Table) -> dict[str, Decimal]:
    return {clock: table.need(clock, _percent) for clock in GOAL_CLOCKS if clock in table.data}


def _read_goals(table: _Table | None) -> Goals:
    if table is None:
        return Goals()
    tariffs: dict[str, dict[str, Decimal]] = {}
    by_tariff = table.table("tariffs", None)
    if by_tariff is not None:
        for name in by_tariff.data:
            own = by_tariff.sub(name, GOAL_CLOCKS)
            tariffs[_name(name, own.path)] = _clock_goals(own)
    return Goals(every=_clock_goals(table), tariffs=tariffs)


def _read_time_terms(table: _Table | None) -> TimeTerms:
    if table is None:
        return TimeTerms()
    unit = table.get("unit", _duration, timedelta(minutes=5))
    if unit.total_seconds() % 60:
        raise PolicyError(table.at("unit"), f'expected whole minutes like "5m", got {unit}')
    return TimeTerms(
        unit_minutes=int(unit.total_seconds() // 60),
        unit_clause=table.get("unit_clause", _text, "").strip(),
        contract=table.get("contract", _text, "").strip(),
    )


# ---------------------------------------------------------------------------
# Beyond the seeds (spec §4.1): next response and the escalation ladder
#
# Next response: after the reaction, a customer's message (an event of
# ``customer_events``) that waits for a person opens a waiting period; more of them
# while it waits open no other; a person's reply of a reaction type (a robot's only with
# ``robot_replies``) ends it, and so does a done stage. A period is judged against its
# tariff's ``next_response`` target, in business time on the reaction's calendar, paused
# on hold. A tariff (or class) without a target has no periods.
#
# The escalation ladder: steps per clock (``reaction``, ``resolution``, ``next_response``),
# each at a share of the target used (``at = "80%"``) or at business time after the
# deadline (``at = "breach"``, ``at = "breach + 2h"``), each giving a task to someone
# (``to``: ``"responsible"``, ``"supervisor"`` (SLA_SUPERVISOR_USER_ID), ``"group_head"``
# (the head of the responsible user's group, from ``group_heads``), or a user id) with a
# ``text``. A step fires at most once per lead, clock and waiting period. A clock the
# ``[escalation]`` table does not list keeps its default step: the task at its breach, to
# the responsible user (reaction, next response) or to the supervisor (resolution);
# ``reaction = []`` gives a clock no step at all.

DEFAULT_CUSTOMER_EVENT_TYPES = frozenset(
    {"incoming_chat_message", "incoming_mail", "incoming_call"}
)
# A step's text may use these placeholders (``since``: when the clock or period began).
LADDER_TEXT_SAMPLE: Mapping[str, object] = {
    "lead_id": 1,
    "lead_name": "x",
    "tariff": "x",
    "request_class": "x",
    "due": "x",
    "since": "x",
}


class LadderClock(StrEnum):
    REACTION = "reaction"
    RESOLUTION = "resolution"
    NEXT_RESPONSE = "next_response"


class AssigneeKind(StrEnum):
    RESPONSIBLE = "responsible"  # the lead's responsible user
    SUPERVISOR = "supervisor"  # SLA_SUPERVISOR_USER_ID (no task while it is not set)
    GROUP_HEAD = "group_head"  # the head of the responsible user's group (group_heads)
    USER = "user"  # a fixed user


@dataclass(frozen=True)
class Assignee:
    kind: AssigneeKind
    user_id: int | None = None  # the fixed user's id (kind USER)

    @property
    def key(self) -> str:
        return f"user{self.user_id}" if self.kind is AssigneeKind.USER else self.kind.value

    @property
    def label(self) -> str:
        if self.kind is AssigneeKind.USER:
            return f"пользователь {self.user_id}"
        return _ASSIGNEE_LABELS[self.kind]


_ASSIGNEE_LABELS = {
    AssigneeKind.RESPONSIBLE: "ответственный",
    AssigneeKind.SUPERVISOR: "руководитель",
    AssigneeKind.GROUP_HEAD: "руководитель группы",
}
RESPONSIBLE = Assignee(AssigneeKind.RESPONSIBLE)
SUPERVISOR = Assignee(AssigneeKind.SUPERVISOR)


@dataclass(frozen=True)
class LadderStep:
    """One step of a clock's ladder: when (``share`` of the target used, or ``after`` this
    much business time past the deadline; zero: at the breach), who, and what."""

    clock: LadderClock
    share: float | None = None
    after: timedelta | None = None
    to: Assignee = RESPONSIBLE
    text: str | None = None  # None: the worker's text for the clock's breach

    def __post_init__(self) -> None:
        if (self.share is None) == (self.after is None):
            raise PolicyError(self.path, "a step needs either a share or a time after the breach")
        if self.share is not None and not 0 < self.share <= 1:
            raise PolicyError(
                f"{self.path}.at", f"a share must be over 0 and at most 100%, got {self.share}"
            )
        if self.after is not None and self.after < timedelta(0):
            raise PolicyError(f"{self.path}.at", "a step cannot come before the breach")
        if self.to.kind is AssigneeKind.USER and (self.to.user_id or 0) <= 0:
            raise PolicyError(f"{self.path}.to", "a user id must be a positive number")

    @property
    def path(self) -> str:
        return f"escalation.{self.clock.value}"

    @property
    def at_breach(self) -> bool:
        return self.after is not None and self.after == timedelta(0)

    @property
    def trigger(self) -> str:
        """The step's ``at`` as the policy file spells it: ``80%``, ``breach``, ``breach+2h``."""
        if self.share is not None:
            return f"{_share_text(self.share)}%"
        return "breach" if self.at_breach else f"breach+{_duration_text(self.after)}"

    @property
    def key(self) -> str:
        """Names the step among its clock's: ``80%>responsible``, ``breach+2h>user9100003``."""
        return f"{self.trigger}>{self.to.key}"

    @property
    def label(self) -> str:
        """The step for people: «80 % срока → ответственный», «срок + 2 ч → руководитель»."""
        if self.share is not None:
            when = f"{_share_text(self.share)} % срока"
        elif self.at_breach or self.after is None:
            when = "срок"
        else:
            when = f"срок + {_hours_text(self.after)}"
        return f"{when} → {self.to.label}"


def _share_text(share: float) -> str:
    return f"{round(share * 100, 2):g}"


def _duration_text(span: timedelta | None) -> str:
    seconds = int(span.total_seconds()) if span is not None else 0
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds else "")
    return "".join(parts) or "0m"


def _hours_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} ч" if hours else "", f"{minutes} мин" if minutes else ""]
    parts.append(f"{seconds} с" if seconds else "")
    return " ".join(part for part in parts if part)


DEFAULT_STEPS: Mapping[LadderClock, tuple[LadderStep, ...]] = MappingProxyType(
    {
        LadderClock.REACTION: (LadderStep(LadderClock.REACTION, after=timedelta(0)),),
        LadderClock.RESOLUTION: (
            LadderStep(LadderClock.RESOLUTION, after=timedelta(0), to=SUPERVISOR),
        ),
        LadderClock.NEXT_RESPONSE: (LadderStep(LadderClock.NEXT_RESPONSE, after=timedelta(0)),),
    }
)


@dataclass(frozen=True)
class Ladder:
    """The escalation steps of every clock; a clock not given keeps its default step."""

    steps: Mapping[LadderClock, tuple[LadderStep, ...]] = field(default_factory=dict)
    group_heads: Mapping[str, int] = field(default_factory=dict)  # group name or id: user id

    def __post_init__(self) -> None:
        steps = {clock: tuple(self.steps.get(clock, DEFAULT_STEPS[clock])) for clock in LadderClock}
        object.__setattr__(self, "steps", MappingProxyType(steps))
        object.__setattr__(self, "group_heads", MappingProxyType(dict(self.group_heads)))
        for clock, found in steps.items():
            keys: set[str] = set()
            for index, step in enumerate(found):
                if step.clock is not clock:
                    raise PolicyError(
                        f"escalation.{clock.value}[{index}]", f"a step of {step.clock.value}"
                    )
                if step.key in keys:
                    raise PolicyError(
                        f"escalation.{clock.value}[{index}]",
                        f"a second step at {step.trigger!r} for {step.to.label}",
                    )
                keys.add(step.key)
        for group, user_id in self.group_heads.items():
            if user_id <= 0:
                raise PolicyError(f"escalation.group_heads.{_key(group)}", "expected a user id")

    def of(self, clock: LadderClock) -> tuple[LadderStep, ...]:
        return self.steps[clock]

    def __hash__(self) -> int:
        return hash((tuple(self.steps.items()), tuple(sorted(self.group_heads.items()))))


@dataclass(frozen=True)
class NextResponse:
    """The next-response targets by tariff name and class (a pair not listed: none)."""

    targets: Mapping[tuple[str, RequestClass], timedelta]
    customer_events: frozenset[str] = DEFAULT_CUSTOMER_EVENT_TYPES

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))
        object.__setattr__(self, "customer_events", frozenset(self.customer_events))
        if not self.customer_events:
            raise PolicyError("next_response.customer_events", "name at least one event type")

    def target(self, tariff: str, kind: RequestClass) -> timedelta | None:
        return self.targets.get((tariff, kind))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.targets.items())), self.customer_events))


def _check_next_response(policy: Policy) -> None:
    found = policy.next_response
    if found is None:
        if (
            policy.ladder.steps[LadderClock.NEXT_RESPONSE]
            != DEFAULT_STEPS[LadderClock.NEXT_RESPONSE]
        ):
            raise PolicyError(
                "escalation.next_response",
                "next response is off: give [next_response.targets] first",
            )
        return
    for tariff, _kind in found.targets:
        if tariff not in policy.tariff_names:
            raise PolicyError(
                f"next_response.targets.{_key(tariff)}",
                f"no tariff is named {tariff!r} ({_listing(policy.tariff_names)})",
            )
    overlap = found.customer_events & policy.reaction_event_types
    if overlap:
        raise PolicyError(
            "next_response.customer_events",
            f"{sorted(overlap)[0]!r} is a reaction event type too",
        )


_NEXT_RESPONSE_KEYS = ("customer_events", "targets")
_ESCALATION_KEYS = (*(clock.value for clock in LadderClock), "group_heads")
_STEP_KEYS = ("at", "to", "text")
_AT_SHARE = re.compile(r"^(\d+(?:[.,]\d+)?)%$")
_AT_BREACH = re.compile(r"^breach(?:\+(.+))?$")


def _read_next_response(table: _Table | None) -> NextResponse | None:
    if table is None:
        return None
    events = table.get("customer_events", _texts, tuple(sorted(DEFAULT_CUSTOMER_EVENT_TYPES)))
    for index, event_type in enumerate(events):
        if not re.fullmatch(r"[a-z0-9_]+", event_type):
            raise PolicyError(
                f"{table.at('customer_events')}[{index}]",
                f'expected an amoCRM event type like "incoming_chat_message", got {event_type!r}',
            )
    targets_table = table.sub("targets", None)
    targets: dict[tuple[str, RequestClass], timedelta] = {}
    for tariff in targets_table.data:
        name = _name(tariff, targets_table.at(tariff))
        value = targets_table.data[tariff]
        if isinstance(value, dict):
            per_class = targets_table.sub(tariff, _CLASS_KEYS)
            for kind in RequestClass:
                target = per_class.get(kind.value, _duration, None)
                if target is not None:
                    targets[(name, kind)] = target
        else:
            target = _duration(value, targets_table.at(tariff))
            for kind in RequestClass:
                targets[(name, kind)] = target
    if not targets:
        raise PolicyError(targets_table.path, "give at least one tariff its target")
    return NextResponse(targets=targets, customer_events=frozenset(events))


def _read_ladder(table: _Table | None) -> Ladder:
    if table is None:
        return Ladder()
    steps: dict[LadderClock, tuple[LadderStep, ...]] = {}
    for clock in LadderClock:
        raw = table.data.get(clock.value, _MISSING)
        if raw is _MISSING:
            continue
        path = table.at(clock.value)
        if not isinstance(raw, list):
            raise PolicyError(path, f"expected a list of steps ([[{path}]]), got {_describe(raw)}")
        steps[clock] = tuple(
            _read_step(clock, _Table(item, f"{path}[{index}]", _STEP_KEYS))
            for index, item in enumerate(raw)
        )
    heads: dict[str, int] = {}
    heads_table = table.table("group_heads", None)
    if heads_table is not None:
        for group, user_id in heads_table.data.items():
            path = heads_table.at(group)
            heads[_name(group, path)] = _user_id(user_id, path)
    try:
        return Ladder(steps=steps, group_heads=heads)
    except PolicyError as error:
        raise PolicyError(error.key, error.problem) from None


def _read_step(clock: LadderClock, table: _Table) -> LadderStep:
    share, after = table.need("at", _step_at)
    to = table.need("to", _assignee)
    text = table.need("text", _step_text)
    try:
        return LadderStep(clock, share=share, after=after, to=to, text=text)
    except PolicyError as error:
        raise PolicyError(table.path, error.problem) from None


def _step_at(value: object, path: str) -> tuple[float | None, timedelta | None]:
    hint = 'expected "80%", "breach" or "breach + 2h"'
    if not isinstance(value, str):
        raise PolicyError(path, f"{hint}, got {_describe(value)}")
    compact = "".join(value.split()).lower()
    share = _AT_SHARE.match(compact)
    if share is not None:
        percent = float(share.group(1).replace(",", "."))
        if not 0 < percent <= 100:
            raise PolicyError(path, f"a share must be over 0% and at most 100%, got {value!r}")
        return percent / 100, None
    breach = _AT_BREACH.match(compact)
    if breach is None:
        raise PolicyError(path, f"{hint}, got {value!r}")
    if breach.group(1) is None:
        return None, timedelta(0)
    try:
        return None, _duration(breach.group(1), path)
    except PolicyError as error:
        raise PolicyError(path, f"{hint}: {error.problem}") from None


def _assignee(value: object, path: str) -> Assignee:
    if isinstance(value, int) and not isinstance(value, bool):
        return Assignee(AssigneeKind.USER, _user_id(value, path))
    kinds = [kind.value for kind in AssigneeKind if kind is not AssigneeKind.USER]
    if isinstance(value, str) and value.strip() in kinds:
        return Assignee(AssigneeKind(value.strip()))
    raise PolicyError(path, f"expected {', '.join(kinds)} or a user id, got {_describe(value)}")


def _user_id(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(path, f"expected a user id, got {_describe(value)}")
    return value


def _step_text(value: object, path: str) -> str:
    """A step's task text: placeholders written bare (``{due}``), so it fills in for any lead
    (a format such as ``{lead_id:c}`` would fail or run away on a real one)."""
    text = _name(value, path)
    allowed = "allowed: " + ", ".join("{" + name + "}" for name in LADDER_TEXT_SAMPLE)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as error:
        raise PolicyError(path, f"the text cannot be filled in ({error}); {allowed}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in LADDER_TEXT_SAMPLE:
            raise PolicyError(path, f"unknown placeholder {{{name}}}; {allowed}")
        if spec or conversion:
            raise PolicyError(
                path, f"placeholders are written bare, like {{{name}}}, without a format; {allowed}"
            )
    return text


# ---------------------------------------------------------------------------
# The built-in policy: seed 000 (CRMBP), §3. The documented copy of this text is
# sla/presets/crmbp.toml; a test keeps the two equal.

_CRMBP = """
name = "CRMBP"
zone = "Europe/Moscow"
at_risk_fraction = 0.8
reaction_events = ["outgoing_chat_message", "outgoing_call", "outgoing_mail", "common_note_added"]
acceptance_period = "8h"
acceptance_calendar = "workdays"

[production_calendar]
extra_days_off = []
extra_working_days = []
shorten_pre_holiday = false

[calendars.workdays]
workdays = "10:00-18:00"
non_working_days = ""

[calendars.priority_typical]
workdays = "10:00-18:00"
non_working_days = "12:00-18:00"

[classes]
typical = ["Типовое"]
non_standard = ["Нестандартное", "Доработка"]

[tariffs.priority]
name = "Приоритет"
tags = ["Приоритет"]

[tariffs.priority.typical]
calendar = "priority_typical"
reaction = "1h"
resolution = "12h"

[tariffs.priority.non_standard]
calendar = "workdays"
reaction = "3h"
resolution = "by agreement"

[tariffs.po_faktu]
name = "По факту"
tags = ["По факту"]

[tariffs.po_faktu.typical]
calendar = "workdays"
reaction = "24h"
resolution = "72h"

[tariffs.po_faktu.non_standard]
calendar = "workdays"
reaction = "24h"
resolution = "by agreement"
"""


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The CRMBP regulation (spec §2), the same policy as ``sla/presets/crmbp.toml``.

    One shared instance, so its calendars' caches are warmed once per process."""
    return load_policy(_CRMBP)
