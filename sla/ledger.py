"""Company ledgers: time entries, hour packages and quotas (spec §7).

* A **time entry** is a note whose first line starts with a marker (``Время:``) and a
  duration: ``Время: 1 ч 30 мин — настройка воронки`` (:func:`parse_time_note`). Each
  entry counts rounded up on its own to whole units of account: 5 minutes by default
  (seed 004 §5.2), the policy's ``[time_entries] unit`` otherwise.
* An **hour package** is valid from the start of its payment day to the end of the same
  date of the next month, or of that month's last day when it has no such date (one
  calendar month, seed 004 §3.3). Entries inside the validity count against it
  (:func:`package_balance`).
* A **quota** limits how many requests of one tag a company gets free within a number
  of calendar months, by the request's tariff (seed 003 §1, §2, §5; :func:`quota_uses`).

Everything here is a pure function of its arguments: instants are aware datetimes and
the current time is passed in as ``now``.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from sla.policy import Quota, normalize_tag

__all__ = [
    "DEFAULT_MARKER",
    "UNIT_SECONDS",
    "Duration",
    "Package",
    "PackageBalance",
    "PackageStatus",
    "Quota",
    "QuotaRequest",
    "QuotaSummary",
    "QuotaUse",
    "TimeEntry",
    "Unreadable",
    "months_before",
    "package_balance",
    "parse_time_note",
    "quota_summary",
    "quota_text",
    "quota_uses",
    "rounded_minutes",
]

DEFAULT_MARKER = "Время:"
UNIT_SECONDS = 300  # seed 004 §5.2: the smallest unit of account is 5 minutes (the default)
MAX_ENTRY_SECONDS = 24 * 3600
# A package holds at least one unit of account and at most this many hours (about sixty
# people's working month): more is a typing slip, not a package.
MAX_PACKAGE_HOURS = 10_000


def _utc(moment: datetime) -> datetime:
    """The instant in UTC: datetimes of one zone compare by wall time, which misorders the
    two passes of a repeated (fall-back) hour; UTC ones compare as instants."""
    return moment.astimezone(UTC)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {moment!r}")


def rounded_minutes(seconds: int, unit: int = UNIT_SECONDS) -> int:
    """Whole minutes of ``seconds`` rounded up to whole units of ``unit`` seconds (whole
    minutes): with 5-minute units 1 s -> 5, 301 s -> 10."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds} s")
    _check_unit(unit)
    return -(-seconds // unit) * unit // 60


def _check_unit(unit: int) -> None:
    if unit < 60 or unit % 60:
        raise ValueError(f"a unit of account is whole minutes, at least one, not {unit} s")


# ---------------------------------------------------------------------------
# Time entries


@dataclass(frozen=True)
class Unreadable:
    """A note that carries the marker but no usable duration."""

    problem: str


@dataclass(frozen=True)
class Duration:
    """A time entry's duration as written, and what was done (``""`` if not said)."""

    seconds: int
    what: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.seconds <= MAX_ENTRY_SECONDS:
            raise ValueError(
                f"a time entry lasts more than 0 s and at most 24 h, not {self.seconds} s"
            )

    @property
    def minutes(self) -> int:
        return rounded_minutes(self.seconds)


_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"  # ASCII digits only: "２５" or "١٢" is no number here
_NOT_LETTER = r"(?![^\W\d_])"  # a unit is a whole word: "мин" but not "минутка"
_HOURS = r"(?:часов|часа|час|ч|hours|hour|hrs|hr|h)\.?" + _NOT_LETTER
_MINUTES = r"(?:минуты|минута|минут|мин|м|minutes|minute|mins|min|m)\.?" + _NOT_LETTER
_CLOCK = re.compile(r"([0-9]+):([0-5][0-9])(?![0-9:])")
_UNITS = re.compile(
    rf"(?:(?P<hours>{_NUMBER})\s*{_HOURS})?\s*(?:(?P<minutes>{_NUMBER})\s*(?:{_MINUTES})?)?",
    re.IGNORECASE,
)
_DASHES = "—–-"
_NEGATIVE = re.compile(r"[-−–—]\s*[0-9]")


def _seconds(number: str, unit_seconds: int) -> Decimal:
    return Decimal(number.replace(",", ".")) * unit_seconds


def _amount(rest: str) -> tuple[Decimal, str] | None:
    """The duration at the start of ``rest`` in seconds, and the text after it."""
    clock = _CLOCK.match(rest)
    if clock is not None:
        amount = _seconds(clock[1], 3600) + _seconds(clock[2], 60)
        return amount, rest[clock.end() :].strip()
    units = _UNITS.match(rest)
    if units is None or (units["hours"] is None and units["minutes"] is None):
        return None
    amount = _seconds(units["hours"] or "0", 3600) + _seconds(units["minutes"] or "0", 60)
    return amount, rest[units.end() :].strip()


def _read_entry(rest: str) -> tuple[int, str] | str:
    """Seconds and what was done, or the problem."""
    if _NEGATIVE.match(rest):
        return "a duration cannot be negative"
    found = _amount(rest)
    if found is None:
        return "no duration such as «25 мин», «1 ч 30 мин» or «1:30»"
    amount, tail = found
    if tail and tail[0] not in _DASHES:
        return f"cannot read «{tail}»; write «Время: 1 ч 30 мин — what was done»"
    seconds = int(amount.to_integral_value(rounding=ROUND_CEILING))
    if amount < 1 or seconds > MAX_ENTRY_SECONDS:  # under a second is a zero in effect
        return "a duration must be more than zero and at most 24 hours"
    return seconds, tail[1:].strip()


_QUOTED_MAX = 80  # characters of an unreadable line that a problem quotes


def _shortened(line: str) -> str:
    return line if len(line) <= _QUOTED_MAX else line[: _QUOTED_MAX - 1] + "…"


def parse_time_note(text: str, *, marker: str = DEFAULT_MARKER) -> Duration | Unreadable | None:
    """Read a time entry from a note's text.

    None: not a time entry (the first line does not start with ``marker``; case and
    surrounding spaces are ignored). The first line holds the entry: ``Время: 25 мин``,
    ``Время: 1 ч 30 мин — настройка воронки``, ``Время: 1:30``, ``Время: 1,5 ч``,
    ``Время: 40`` (a bare number is minutes). A dash (``—``, ``–``, ``-``) separates what
    was done. A duration that cannot be read, is zero or is over 24 hours is
    :class:`Unreadable`; a fraction of a second is counted as a whole one.
    """
    lines = text.strip().splitlines()
    want = marker.strip()
    whole = re.escape(want) + (_NOT_LETTER if want[-1:].isalnum() else "")
    start = re.match(whole, lines[0], re.IGNORECASE) if lines and want else None
    if start is None:
        return _marker_misspelled(lines[0] if lines else "", want)
    first = _shortened(lines[0].strip())
    read = _read_entry(lines[0][start.end() :].strip())
    if isinstance(read, str):
        return Unreadable(f"«{first}»: {read}")
    again = [line for line in lines[1:] if re.match(whole, line.strip(), re.IGNORECASE)]
    if again:
        return Unreadable(
            f"«{first}» and «{_shortened(again[0].strip())}»: one «{want}» line per note; "
            "log each amount in a note of its own"
        )
    seconds, what = read
    return Duration(seconds=seconds, what=what)


def _marker_misspelled(line: str, marker: str) -> Unreadable | None:
    """A first line that is the marker's word without its punctuation right after it, and
    then a duration (``Время : 25 мин``, ``Время 25 мин``): a time entry mistyped."""
    word = marker.rstrip(":：-—–. ")
    if not word or word == marker:
        return None
    shape = re.match(
        re.escape(word) + _NOT_LETTER + r"\s*[:：.,;=\-—–]?\s*", line.strip(), re.IGNORECASE
    )
    if shape is None or _amount(line.strip()[shape.end() :]) is None:
        return None
    return Unreadable(
        f"«{_shortened(line.strip())}»: the marker is «{marker}», the word and "
        f"«{marker[len(word) :]}» together, e.g. «{marker} 25 мин»"
    )


@dataclass(frozen=True, slots=True)
class TimeEntry:
    """One time entry: a note on a request (``lead_id``) of a company, made at ``at``,
    counted in units of ``unit`` seconds (the policy's)."""

    note_id: int
    lead_id: int
    company_id: int | None
    at: datetime
    author_id: int
    seconds: int
    what: str = ""
    unit: int = UNIT_SECONDS

    def __post_init__(self) -> None:
        _require_aware(self.at, "TimeEntry.at")
        if self.seconds < 0:
            raise ValueError(f"a time entry cannot be negative, got {self.seconds} s")
        _check_unit(self.unit)

    @property
    def minutes(self) -> int:
        """Rounded up to whole units."""
        return rounded_minutes(self.seconds, self.unit)


# ---------------------------------------------------------------------------
# Hour packages


def _add_months(day: date, months: int) -> date:
    """The same date ``months`` calendar months later (earlier when negative), or that
    month's last day when it has no such date."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


@dataclass(frozen=True)
class Package:
    """A prepaid package of ``hours`` paid on ``paid_on`` (account time zone); it holds at
    least one unit of account (``unit`` seconds)."""

    hours: Decimal
    paid_on: date
    unit: int = field(default=UNIT_SECONDS, compare=False)

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if not self.hours.is_finite() or self.hours * 3600 < self.unit:
            raise ValueError(
                f"a package holds at least one {self.unit // 60}-minute unit, not {self.hours} h"
            )
        if self.hours > MAX_PACKAGE_HOURS:
            raise ValueError(
                f"a package holds at most {MAX_PACKAGE_HOURS:,} hours, not {self.hours} h"
            )
        if isinstance(self.paid_on, datetime):
            raise ValueError(f"paid_on is a date, not a datetime: {self.paid_on!r}")

    def valid_to(self) -> date:
        """The last day of validity: the same date next month, or that month's last day
        (Jan 31 -> Feb 28 or 29; Dec 31 -> Jan 31)."""
        return _add_months(self.paid_on, 1)

    def window(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The validity as instants: from the start of ``paid_on`` to the start of the day
        after :meth:`valid_to`, in ``zone``; the end is not inside."""
        start = datetime.combine(self.paid_on, time(), tzinfo=zone)
        end = datetime.combine(self.valid_to() + timedelta(days=1), time(), tzinfo=zone)
        return start, end

    @property
    def minutes(self) -> int:
        """The package's hours in whole minutes (a fraction of a minute to the nearest)."""
        return int((self.hours * 60).to_integral_value(rounding=ROUND_HALF_UP))


class PackageStatus(StrEnum):
    ACTIVE = "Активен"
    AT_RISK = "Под угрозой"
    EXHAUSTED = "Исчерпан"
    EXPIRED = "Истёк"


@dataclass(frozen=True)
class PackageBalance:
    """What a package has left at ``now``. ``counted``: the entries inside the validity, by
    instant; ``outside``: the other entries given (work outside this package)."""

    package: Package
    valid_to: date
    used_minutes: int
    remaining_minutes: int  # negative when work went over the package
    status: PackageStatus
    counted: tuple[TimeEntry, ...]
    outside: tuple[TimeEntry, ...]

    @property
    def exhausted(self) -> bool:
        """Work waits for the customer's consent (seed 004 §3.6): used up or expired."""
        return self.status in (PackageStatus.EXHAUSTED, PackageStatus.EXPIRED)

    @property
    def used_up(self) -> bool:
        """Nothing is left, whether or not the validity is over."""
        return self.remaining_minutes <= 0


def minutes_over(balance: PackageBalance) -> dict[int, int]:
    """The minutes of each counted entry (by note id) beyond the package's limit, in the
    order the entries used it up; the values add up to the overage."""
    over: dict[int, int] = {}
    used = 0
    for entry in balance.counted:
        before, used = used, used + entry.minutes
        excess = max(used - balance.package.minutes, 0) - max(before - balance.package.minutes, 0)
        if excess:
            over[entry.note_id] = excess
    return over


def _in_order(entries: Iterable[TimeEntry]) -> tuple[TimeEntry, ...]:
    return tuple(sorted(entries, key=lambda entry: (_utc(entry.at), entry.note_id)))


def package_balance(
    package: Package,
    entries: Sequence[TimeEntry],
    *,
    zone: ZoneInfo,
    now: datetime,
    at_risk: float = 0.8,
) -> PackageBalance:
    """The balance of ``package`` over a company's ``entries`` at ``now``.

    Status: ``Истёк`` once ``now`` reaches the end of the validity; else ``Исчерпан`` when
    nothing is left; else ``Под угрозой`` when at least ``at_risk`` of the package is used;
    else ``Активен``.
    """
    _require_aware(now, "now")
    if not 0 < at_risk <= 1:
        raise ValueError(f"at_risk must be more than 0 and at most 1, got {at_risk}")
    start, end = (_utc(bound) for bound in package.window(zone))
    counted = _in_order(entry for entry in entries if start <= _utc(entry.at) < end)
    outside = _in_order(entry for entry in entries if not start <= _utc(entry.at) < end)
    used = sum(entry.minutes for entry in counted)
    remaining = package.minutes - used
    if _utc(now) >= end:
        status = PackageStatus.EXPIRED
    elif remaining <= 0:
        status = PackageStatus.EXHAUSTED
    elif used >= Decimal(repr(at_risk)) * package.minutes:
        status = PackageStatus.AT_RISK
    else:
        status = PackageStatus.ACTIVE
    return PackageBalance(
        package=package,
        valid_to=package.valid_to(),
        used_minutes=used,
        remaining_minutes=remaining,
        status=status,
        counted=counted,
        outside=outside,
    )


# ---------------------------------------------------------------------------
# Quotas


def months_before(moment: datetime, months: int) -> datetime:
    """The same wall time ``months`` calendar months earlier in ``moment``'s zone; when
    that month has no such date, the next month's first midnight (Mar 31 -> Mar 1 00:00).

    So the start of a window that ends at ``moment`` never moves back as ``moment`` moves
    on: clamped to the month's last day instead (Mar 31 -> Feb 28 at the same time), the
    start would jump back a day at each such midnight, and a request that had left a quota's
    window would count again for a day."""
    _require_aware(moment, "moment")
    if months < 0:
        raise ValueError(f"months cannot be negative, got {months}")
    day = _add_months(moment.date(), -months)
    if day.day == moment.day:
        return moment.replace(year=day.year, month=day.month, day=day.day)
    following = day + timedelta(days=1)
    return datetime.combine(following, time(), moment.tzinfo)


@dataclass(frozen=True, slots=True)
class QuotaRequest:
    """A request as the quotas see it. ``tags`` are normalized (:func:`normalize_tag`);
    ``tariff`` is the tariff's name; ``lost``: closed as lost, so it counts toward nothing."""

    lead_id: int
    company_id: int | None
    tariff: str | None
    tags: frozenset[str]
    registered_at: datetime
    lost: bool = False

    def __post_init__(self) -> None:
        _require_aware(self.registered_at, "QuotaRequest.registered_at")

    def counts_toward(self, quota: Quota) -> bool:
        """Carries the quota's tag, has a company and a tariff, and was not lost."""
        return (
            self.company_id is not None
            and self.tariff is not None
            and not self.lost
            and normalize_tag(quota.tag) in self.tags
        )


@dataclass(frozen=True)
class QuotaUse:
    """A request's place in a quota: the ``ordinal``-th counted request of the company in
    the window that ends at its registration (``3``: the third set-up in 12 months)."""

    quota: Quota
    lead_id: int
    ordinal: int
    limit: int | None  # None: the request's tariff has no such quota
    over: bool


@dataclass(frozen=True)
class QuotaSummary:
    """A company's use of a quota in the window up to now, and its plan's limit."""

    quota: Quota
    used: int
    limit: int | None  # None: the plan has no such quota


def _order(request: QuotaRequest) -> tuple[datetime, int]:
    return _utc(request.registered_at), request.lead_id


def quota_uses(
    quotas: Sequence[Quota], requests: Sequence[QuotaRequest]
) -> dict[int, tuple[QuotaUse, ...]]:
    """Each counted request's uses, by lead id (a lead that counts toward no quota is absent).

    Requests are ordered by registration, then lead id. A request's window is
    ``(months_before(registered_at, quota.months), registered_at]``: a request registered
    exactly ``months`` months earlier is outside it. The request is over quota when its
    ordinal in the window exceeds its tariff's limit.
    """
    lead_ids = [request.lead_id for request in requests]
    if len(set(lead_ids)) != len(lead_ids):
        raise ValueError("a lead is given twice")
    ordered = sorted(requests, key=_order)
    uses: dict[int, list[QuotaUse]] = defaultdict(list)
    for quota in quotas:
        by_company: dict[int | None, list[QuotaRequest]] = defaultdict(list)
        for request in ordered:
            if request.counts_toward(quota):
                by_company[request.company_id].append(request)
        for counted in by_company.values():
            instants = [_utc(request.registered_at) for request in counted]
            for index, request in enumerate(counted):
                opens = _utc(months_before(request.registered_at, quota.months))
                ordinal = index + 1 - bisect_right(instants, opens)
                limit = quota.limits.get(request.tariff or "")
                over = limit is not None and ordinal > limit
                uses[request.lead_id].append(QuotaUse(quota, request.lead_id, ordinal, limit, over))
    return {lead_id: tuple(found) for lead_id, found in uses.items()}


def quota_summary(
    quotas: Sequence[Quota],
    requests: Sequence[QuotaRequest],
    *,
    company_id: int,
    plan: str | None,
    now: datetime,
) -> tuple[QuotaSummary, ...]:
    """Per quota, the company's counted requests registered in ``(months_before(now), now]``
    and the limit of its ``plan`` (a tariff name; None: no plan, so no limits)."""
    _require_aware(now, "now")
    summaries = []
    for quota in quotas:
        opens, ends = _utc(months_before(now, quota.months)), _utc(now)
        used = sum(
            1
            for request in requests
            if request.company_id == company_id
            and request.counts_toward(quota)
            and opens < _utc(request.registered_at) <= ends
        )
        limit = quota.limits.get(plan) if plan is not None else None
        summaries.append(QuotaSummary(quota, used, limit))
    return tuple(summaries)


def quota_text(summary: Sequence[QuotaSummary]) -> str:
    """The company's «Квоты» field: ``Настройки: 1 из 2; Удалённые подключения: 0 из 1``;
    a quota the plan has no limit for shows its count alone (``Настройки: 3``)."""
    parts = (
        f"{item.quota.name}: {item.used}" + ("" if item.limit is None else f" из {item.limit}")
        for item in summary
    )
    return "; ".join(parts)


def leaves_window(registered_at: datetime, months: int) -> datetime:
    """The first instant at which a request registered at ``registered_at`` is no longer
    inside a ``months``-month window ending then (:func:`quota_summary`'s
    ``(months_before(now), now]``), in ``registered_at``'s zone.

    The window's start moves on at the same wall time, or jumps to a month's first midnight
    (:func:`months_before`), so the instant is one of those on the days ``months`` months
    later: the registration's wall time, or a midnight."""
    _require_aware(registered_at, "registered_at")
    zone = registered_at.tzinfo
    first = registered_at.date() + timedelta(days=28 * months)
    candidates = []
    for offset in range(3 * months + 2):
        day = first + timedelta(days=offset)
        candidates += [
            registered_at.replace(year=day.year, month=day.month, day=day.day),
            datetime.combine(day, time(), zone),
        ]
    return min(
        (
            moment
            for moment in candidates
            if _utc(moment) > _utc(registered_at)
            and _utc(months_before(moment, months)) >= _utc(registered_at)
        ),
        key=_utc,
    )


def ledger_change_at(
    package: Package | None,
    quotas: Sequence[Quota],
    requests: Sequence[QuotaRequest],
    *,
    zone: ZoneInfo,
    now: datetime,
) -> datetime | None:
    """The earliest instant after ``now`` at which a company's ledger changes with no new
    input: its package's validity ends, or a counted request enters or leaves a quota's
    window. None when nothing is pending."""
    _require_aware(now, "now")
    moment = _utc(now)
    candidates: list[datetime] = []
    if package is not None:
        candidates.append(_utc(package.window(zone)[1]))
    for quota in quotas:
        for request in requests:
            if not request.counts_toward(quota):
                continue
            registered = request.registered_at.astimezone(zone)
            candidates += (_utc(registered), _utc(leaves_window(registered, quota.months)))
    return min((c for c in candidates if c > moment), default=None)
