"""Business time on the Russian production calendar.

Definitions the rest of the engine relies on:

* A **day** is a workday, a shortened pre-holiday workday or a non-working day
  (:class:`ProductionCalendar`).
* **Open time**: an instant is open when its wall-clock reading in the
  calendar's zone falls inside the open hours of the local date it belongs to.
  This one rule settles daylight-saving days: on a spring-forward day the wall
  clock skips an hour, so a span that covers the gap is an hour shorter and a
  span that starts inside the gap opens at the first instant after it; on a
  fall-back day the repeated wall-clock hour is lived twice, so a span that
  covers it is an hour longer (both passes count). Nothing is guessed from
  ``fold``: no wall time is ever resolved to a single instant.
* Precision: open hours are whole seconds, so whole-second inputs give
  whole-second answers. Inputs with microseconds are computed exactly, not
  rounded (``between`` may then return a fraction of a second).

``add`` and ``between`` answer from one sorted list of open intervals (UTC
microseconds) with running totals, built per calendar for whole years on first
use and extended when a query leaves them, so each call is two binary searches.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import ClassVar
from zoneinfo import ZoneInfo

import holidays

__all__ = ["BusinessCalendar", "DayKind", "OpenHours", "ProductionCalendar"]

_DAY = 86_400
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SHORTENING = 3_600  # Labour Code art. 95: one hour less before a public holiday


class DayKind(StrEnum):
    WORKDAY = "workday"
    PRE_HOLIDAY = "pre_holiday"
    NON_WORKING = "non_working"


# ---------------------------------------------------------------------------
# Open hours of one day


_SPAN = re.compile(
    r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*[-–—]\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$"
)


def _clock(hours: str, minutes: str, seconds: str | None, text: str) -> int:
    h, m, s = int(hours), int(minutes), int(seconds or 0)
    if m > 59 or s > 59 or h > 24 or (h == 24 and (m or s)):
        raise ValueError(f"bad time of day in open hours {text!r}")
    return h * 3600 + m * 60 + s


def _format_clock(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


@dataclass(frozen=True)
class OpenHours:
    """Wall-clock open intervals of one day, in seconds since local midnight.

    ``spans`` are sorted, non-overlapping, and each lies in ``0 <= start < end <= 86400``.
    """

    spans: tuple[tuple[int, int], ...]

    CLOSED: ClassVar[OpenHours]
    ALL_DAY: ClassVar[OpenHours]

    def __post_init__(self) -> None:
        previous_end = 0
        for start, end in self.spans:
            if not 0 <= start < end <= _DAY:
                raise ValueError(f"open span ({start}, {end}) is not inside one day")
            if start < previous_end:
                raise ValueError("open spans must be sorted and must not overlap")
            previous_end = end

    @classmethod
    def parse(cls, text: str) -> OpenHours:
        """Read ``"10:00-18:00"``, ``"09:00-13:00, 14:00-18:00"``, ``"00:00-24:00"``;
        an empty text means closed. Spans that touch are merged."""
        spans: list[tuple[int, int]] = []
        for part in re.split(r"[,;]", text):
            if not part.strip():
                continue
            match = _SPAN.match(part)
            if match is None:
                raise ValueError(f"open hours {text!r}: expected HH:MM-HH:MM, got {part.strip()!r}")
            start = _clock(match[1], match[2], match[3], text)
            end = _clock(match[4], match[5], match[6], text)
            if start >= end:
                raise ValueError(
                    f"open hours {text!r}: span {part.strip()!r} must end after it starts "
                    "(a span cannot run past midnight)"
                )
            spans.append((start, end))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start < merged[-1][1]:
                raise ValueError(f"open hours {text!r}: spans overlap")
            if merged and start == merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    @property
    def seconds(self) -> int:
        return sum(end - start for start, end in self.spans)

    def without_last(self, seconds: int) -> OpenHours:
        """The same day with its last ``seconds`` of open time taken away."""
        remaining = seconds
        spans = list(self.spans)
        while spans and remaining > 0:
            start, end = spans.pop()
            if end - start > remaining:
                spans.append((start, end - remaining))
            remaining -= end - start
        return OpenHours(tuple(spans))

    def __str__(self) -> str:
        return ", ".join(f"{_format_clock(s)}-{_format_clock(e)}" for s, e in self.spans)


OpenHours.CLOSED = OpenHours(())
OpenHours.ALL_DAY = OpenHours(((0, _DAY),))


# ---------------------------------------------------------------------------
# Russian production calendar

# Transferred days off are named "Выходной (перенесено с DD.MM.YYYY)" by `holidays`;
# the date is the weekend day whose rest moved here.
_SUBSTITUTED_FROM = re.compile(r"(\d{2})\.(\d{2})\.(\d{4})")


@dataclass(frozen=True)
class _RuYear:
    days_off: frozenset[date]
    weekend_workdays: frozenset[date]
    public_holidays: frozenset[date]
    stands_in_for: Mapping[date, date]


@lru_cache(maxsize=64)
def _ru_holidays(year: int) -> tuple[dict[date, str], dict[date, str], frozenset[date]]:
    """Days off with names, public holidays with names (no observed days), and the
    working weekend days that the year's transfers create."""
    observed = holidays.country_holidays("RU", years=year, language="ru")
    plain = holidays.country_holidays("RU", years=year, language="ru", observed=False)
    weekend_workdays = frozenset(getattr(observed, "weekend_workdays", ()))
    return (
        {day: str(name) for day, name in observed.items()},
        {day: str(name) for day, name in plain.items()},
        weekend_workdays,
    )


@lru_cache(maxsize=64)
def _ru_year(year: int) -> _RuYear:
    # Neighbouring years too: a transfer may cross the new year.
    observed: dict[date, str] = {}
    plain: dict[date, str] = {}
    weekend_workdays: frozenset[date] = frozenset()
    for neighbour in range(year - 1, year + 2):
        year_observed, year_plain, year_weekend_workdays = _ru_holidays(neighbour)
        observed.update(year_observed)
        plain.update(year_plain)
        weekend_workdays |= year_weekend_workdays
    public_holidays = frozenset(
        day
        for day, name in plain.items()
        if any(not _SUBSTITUTED_FROM.search(part) for part in name.split(";"))
    )
    stands_in_for: dict[date, date] = {}
    for day_off, name in observed.items():
        for found in _SUBSTITUTED_FROM.finditer(name):
            working = date(int(found[3]), int(found[2]), int(found[1]))
            if working in weekend_workdays:
                stands_in_for[working] = day_off
    return _RuYear(
        days_off=frozenset(day for day in observed if day.year == year),
        weekend_workdays=frozenset(day for day in weekend_workdays if day.year == year),
        public_holidays=frozenset(day for day in public_holidays if day.year == year),
        stands_in_for={k: v for k, v in stands_in_for.items() if k.year == year},
    )


@dataclass(frozen=True)
class ProductionCalendar:
    """The Russian production calendar (``holidays`` RU: public holidays, transferred
    days off and transferred working Saturdays) plus an admin's own days.

    Pre-holiday days (Labour Code art. 95): a workday is shortened when the day
    right after it is a public holiday (art. 112, not a transferred day off) that
    is not worked. A transferred working weekend day takes the place of the
    weekday its rest moved to and is shortened when that weekday would have
    been (2024-11-02 stands in for 2024-04-30, the eve of May 1; 2025-11-01 for
    2025-11-03, the eve of November 4; 2024-04-27 and 2024-12-28 stand in for
    days that are not eves and stay full). A workday followed by a weekend
    and then a holiday is not shortened (2025-02-21 before Sunday 2025-02-23).
    This reproduces every shortened day of the published 2024–2026 calendars.
    """

    extra_days_off: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_days_off", frozenset(self.extra_days_off))
        object.__setattr__(self, "extra_working_days", frozenset(self.extra_working_days))
        both = self.extra_days_off & self.extra_working_days
        if both:
            listed = ", ".join(day.isoformat() for day in sorted(both))
            raise ValueError(f"days cannot be both extra days off and extra working days: {listed}")

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_days_off:
            return False
        if day in self.extra_working_days:
            return True
        year = _ru_year(day.year)
        if day in year.weekend_workdays:
            return True
        if day in year.days_off:
            return False
        return day.weekday() < 5

    def day_kind(self, day: date) -> DayKind:
        if not self.is_working_day(day):
            return DayKind.NON_WORKING
        regime_day = _ru_year(day.year).stands_in_for.get(day, day)
        following = regime_day + timedelta(days=1)
        if following in _ru_year(following.year).public_holidays and not self.is_working_day(
            following
        ):
            return DayKind.PRE_HOLIDAY
        return DayKind.WORKDAY


# ---------------------------------------------------------------------------
# Zone offsets

# Offsets are sampled this often and every change is then located to the second;
# a change undone within the sampling step would go unseen (tzdata has none).
_OFFSET_SAMPLE = 12 * 3600


def _offset_at(zone: ZoneInfo, instant: int) -> int:
    offset = datetime.fromtimestamp(instant, zone).utcoffset()
    if offset is None:
        raise ValueError(f"time zone {zone} gives no UTC offset")
    return offset.days * _DAY + offset.seconds


@lru_cache(maxsize=512)
def _offset_changes(zone: ZoneInfo, year: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Offset at the start of the window around ``year`` (two days either side)
    and the (instant, new offset) changes inside it, UTC epoch seconds."""
    low = (date(year, 1, 1).toordinal() - _EPOCH_ORDINAL - 2) * _DAY
    high = (date(year + 1, 1, 1).toordinal() - _EPOCH_ORDINAL + 2) * _DAY
    first = _offset_at(zone, low)
    changes: list[tuple[int, int]] = []
    previous_instant, previous_offset = low, first
    instant = low
    while instant < high:
        instant = min(instant + _OFFSET_SAMPLE, high)
        offset = _offset_at(zone, instant)
        if offset != previous_offset:
            before, after = previous_instant, instant  # offset changes in (before, after]
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_at(zone, middle) == previous_offset:
                    before = middle
                else:
                    after = middle
            changes.append((after, offset))
        previous_instant, previous_offset = instant, offset
    return first, tuple(changes)


def _open_intervals(zone: ZoneInfo, day: date, hours: OpenHours) -> list[tuple[int, int]]:
    """UTC epoch-second intervals of the instants whose wall clock reads ``day``
    inside ``hours``."""
    if not hours.spans:
        return []
    midnight = (day.toordinal() - _EPOCH_ORDINAL) * _DAY  # the wall clock's midnight
    low, high = midnight - _DAY, midnight + 2 * _DAY  # every instant of the day lies inside
    offset, changes = _offset_changes(zone, day.year)
    segments: list[tuple[int, int, int]] = []
    segment_start = low
    for instant, new_offset in changes:
        if instant <= low:
            offset = new_offset
        elif instant < high:
            segments.append((segment_start, instant, offset))
            segment_start, offset = instant, new_offset
    segments.append((segment_start, high, offset))
    intervals: list[tuple[int, int]] = []
    for segment_low, segment_high, segment_offset in segments:
        for start, end in hours.spans:
            lo = max(segment_low, midnight + start - segment_offset)
            hi = min(segment_high, midnight + end - segment_offset)
            if lo < hi:
                if intervals and intervals[-1][1] == lo:
                    intervals[-1] = (intervals[-1][0], hi)
                else:
                    intervals.append((lo, hi))
    return intervals


# ---------------------------------------------------------------------------
# The open-time line


class _Timeline:
    """Open intervals of the local days ``first_day..last_day`` (ordinals), UTC
    microseconds, with the open time before and through each interval.

    Answers are exact for instants in ``[low, high]``."""

    __slots__ = ("before", "ends", "first_day", "high", "last_day", "low", "starts", "through")

    def __init__(self, first_day: int, last_day: int, intervals: Iterable[tuple[int, int]]) -> None:
        self.first_day = first_day
        self.last_day = last_day
        # Two days of margin: no zone is a day or more away from UTC.
        self.low = ((first_day - _EPOCH_ORDINAL) * _DAY + 2 * _DAY) * _US
        self.high = ((last_day + 1 - _EPOCH_ORDINAL) * _DAY - 2 * _DAY) * _US
        starts: list[int] = []
        ends: list[int] = []
        for start_second, end_second in sorted(intervals):
            start, end = start_second * _US, end_second * _US
            if ends and start <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        before: list[int] = []
        through: list[int] = []
        total = 0
        for start, end in zip(starts, ends, strict=True):
            before.append(total)
            total += end - start
            through.append(total)
        self.starts, self.ends, self.before, self.through = starts, ends, before, through

    def open_before(self, instant: int) -> int:
        """Open time from the start of the line up to ``instant``."""
        index = bisect_right(self.starts, instant) - 1
        if index < 0:
            return 0
        return self.before[index] + min(instant, self.ends[index]) - self.starts[index]


class _Engine:
    """Per-calendar cache of day intervals and the current timeline."""

    def __init__(
        self,
        zone: ZoneInfo,
        workday_hours: OpenHours,
        non_working_hours: OpenHours,
        production: ProductionCalendar,
        shorten_pre_holiday: bool,
    ) -> None:
        self._spec = (zone, workday_hours, non_working_hours, production, shorten_pre_holiday)
        pre_holiday = workday_hours.without_last(_SHORTENING) if shorten_pre_holiday else None
        self._hours = {
            DayKind.WORKDAY: workday_hours,
            DayKind.PRE_HOLIDAY: pre_holiday or workday_hours,
            DayKind.NON_WORKING: non_working_hours,
        }
        self._days: dict[int, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.timeline: _Timeline | None = None

    def __reduce__(self) -> tuple[type[_Engine], tuple[object, ...]]:
        return (_Engine, self._spec)

    def hours_of(self, kind: DayKind) -> OpenHours:
        return self._hours[kind]

    def _day(self, ordinal: int) -> list[tuple[int, int]]:
        intervals = self._days.get(ordinal)
        if intervals is None:
            zone, production = self._spec[0], self._spec[3]
            day = date.fromordinal(ordinal)
            intervals = _open_intervals(zone, day, self._hours[production.day_kind(day)])
            self._days[ordinal] = intervals
        return intervals

    def covering(self, low: int, high: int) -> _Timeline:
        """A timeline that answers exactly for instants in ``[low, high]`` (UTC µs)."""
        timeline = self.timeline
        if timeline is not None and timeline.low <= low and high <= timeline.high:
            return timeline
        with self._lock:
            timeline = self.timeline
            if timeline is not None and timeline.low <= low and high <= timeline.high:
                return timeline
            low_year = _year_of(low) - 1
            high_year = _year_of(high) + 1
            if timeline is not None:
                low_year = min(low_year, date.fromordinal(timeline.first_day).year)
                high_year = max(high_year, date.fromordinal(timeline.last_day).year)
            return self._build(low_year, high_year)

    def extended_forward(self, timeline: _Timeline) -> _Timeline:
        """A timeline reaching further into the future than ``timeline``."""
        with self._lock:
            current = self.timeline if self.timeline is not None else timeline
            first_year = date.fromordinal(current.first_day).year
            last_year = date.fromordinal(current.last_day).year
            span = last_year - first_year + 1
            if last_year >= 9_000:
                raise ValueError("no deadline before the year 9000: the calendar is never open")
            return self._build(first_year, last_year + span)

    def _build(self, first_year: int, last_year: int) -> _Timeline:
        first_day = date(max(first_year, 2), 1, 1).toordinal()
        last_day = date(min(last_year, 9_998), 12, 31).toordinal()
        intervals: list[tuple[int, int]] = []
        for ordinal in range(first_day, last_day + 1):
            intervals.extend(self._day(ordinal))
        timeline = _Timeline(first_day, last_day, intervals)
        self.timeline = timeline
        return timeline


def _year_of(instant: int) -> int:
    return date.fromordinal(_EPOCH_ORDINAL + instant // (_DAY * _US)).year


def _microseconds(moment: datetime) -> int:
    try:
        delta = moment - _EPOCH
    except TypeError:  # a naive datetime cannot be placed on the UTC line
        raise ValueError(
            f"business time needs an aware datetime, got naive {moment.isoformat()}"
        ) from None
    return (delta.days * _DAY + delta.seconds) * _US + delta.microseconds


# ---------------------------------------------------------------------------
# The calendar


@dataclass(frozen=True)
class BusinessCalendar:
    """Open hours for workdays and for non-working days in one IANA zone, over a
    production calendar. See the module docstring for what counts as open.

    Instants come back in the calendar's zone. Python compares two datetimes of
    one zone by their wall clocks and never finds an instant inside a repeated
    (fall-back) hour equal to the same instant in another zone (PEP 495), so
    compare results in UTC wherever a zone with DST is involved.
    """

    zone: ZoneInfo
    workday_hours: OpenHours
    non_working_hours: OpenHours = OpenHours.CLOSED
    production: ProductionCalendar = ProductionCalendar()
    shorten_pre_holiday: bool = False
    _engine: _Engine = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        engine = _Engine(
            self.zone,
            self.workday_hours,
            self.non_working_hours,
            self.production,
            self.shorten_pre_holiday,
        )
        object.__setattr__(self, "_engine", engine)

    @classmethod
    def always_open(cls, zone: ZoneInfo) -> BusinessCalendar:
        return cls(zone=zone, workday_hours=OpenHours.ALL_DAY, non_working_hours=OpenHours.ALL_DAY)

    def hours_for(self, day: date) -> OpenHours:
        """The wall-clock open hours of a local date."""
        return self._engine.hours_of(self.production.day_kind(day))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant ``t >= start`` with ``between(start, t) == duration``.

        A start outside open hours begins at the next opening; a deadline that
        falls exactly on a closing time stays there. ``add(s, 0) == s``. The
        result is expressed in the calendar's zone.
        """
        origin = _microseconds(start)
        length = (duration.days * _DAY + duration.seconds) * _US + duration.microseconds
        if length < 0:
            raise ValueError(f"business time cannot be added backwards: {duration}")
        if length == 0:
            return start.astimezone(self.zone)
        if not self.workday_hours.spans and not self.non_working_hours.spans:
            raise ValueError("the calendar is never open, so no business time can pass")
        engine = self._engine
        timeline = engine.timeline
        if timeline is None or not timeline.low <= origin <= timeline.high:
            timeline = engine.covering(origin, origin)
        while True:
            target = timeline.open_before(origin) + length
            index = bisect_left(timeline.through, target)
            if index < len(timeline.through):
                moment = timeline.starts[index] + target - timeline.before[index]
                if moment <= timeline.high:
                    break
            timeline = engine.extended_forward(timeline)
        return (_EPOCH + timedelta(microseconds=moment)).astimezone(self.zone)

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Open time in ``[a, b)``; zero when ``b <= a``."""
        low, high = _microseconds(a), _microseconds(b)
        if high <= low:
            return timedelta(0)
        timeline = self._engine.covering(low, high)
        return timedelta(microseconds=timeline.open_before(high) - timeline.open_before(low))

    def open_spans(self, a: datetime, b: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open stretches inside ``[a, b)``, in order, in the calendar's zone.

        A stretch can cross a DST change (a calendar open round the clock), and
        Python subtracts two datetimes of one zone by their wall clocks, so
        measure a stretch after ``astimezone(UTC)``, or with :meth:`between`.
        """
        low, high = _microseconds(a), _microseconds(b)
        spans: list[tuple[datetime, datetime]] = []
        if high <= low:
            return iter(spans)
        timeline = self._engine.covering(low, high)
        index = bisect_right(timeline.ends, low)
        while index < len(timeline.starts) and timeline.starts[index] < high:
            start = max(low, timeline.starts[index])
            end = min(high, timeline.ends[index])
            spans.append(
                (
                    (_EPOCH + timedelta(microseconds=start)).astimezone(self.zone),
                    (_EPOCH + timedelta(microseconds=end)).astimezone(self.zone),
                )
            )
            index += 1
        return iter(spans)
