"""Brute-force business time, the yardstick for sla.calendar.

It walks time cell by cell (a minute by default) and asks, for every cell, what
the wall clock reads there and whether that reading is open on that local date.
Nothing is cached except day kinds, nothing is precomputed: it shares only the
calendar's data (zone, open hours, production calendar) with the engine.

A cell's openness holds for the whole cell when the step divides every span
boundary and every UTC offset change happens on a multiple of the step (true
for whole-hour DST changes and a step that divides an hour); ``step_for``
picks the coarsest such step, and ``open_at`` checks the wall clock is on the
grid at every cell it asks about.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from sla.calendar import BusinessCalendar, DayKind

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def step_for(calendar: BusinessCalendar) -> int:
    """The coarsest cell length (seconds) that every boundary of the calendar sits on."""
    step = 3600
    for hours in (calendar.workday_hours, calendar.non_working_hours):
        for start, end in hours.spans:
            step = math.gcd(step, start, end)
    return step


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("aware datetimes only")
    delta = moment - _EPOCH
    if delta.microseconds:
        raise ValueError("the reference works in whole seconds")
    return delta.days * 86_400 + delta.seconds


class ReferenceCalendar:
    def __init__(self, calendar: BusinessCalendar, step: int = 60) -> None:
        if 3600 % step:
            raise ValueError("the step must divide an hour")
        self.calendar = calendar
        self.step = step
        self._kinds: dict[date, DayKind] = {}

    def _kind(self, day: date) -> DayKind:
        kind = self._kinds.get(day)
        if kind is None:
            kind = self.calendar.production.day_kind(day)
            self._kinds[day] = kind
        return kind

    def open_at(self, instant: int) -> bool:
        """Whether the cell starting at ``instant`` (UTC epoch seconds) is open."""
        local = datetime.fromtimestamp(instant, self.calendar.zone)
        of_day = local.hour * 3600 + local.minute * 60 + local.second
        if of_day % self.step:
            raise AssertionError(f"{local} is off the {self.step} s grid")
        kind = self._kind(local.date())
        if kind is DayKind.NON_WORKING:
            spans = self.calendar.non_working_hours.spans
        else:
            spans = self.calendar.workday_hours.spans
        if not any(start <= of_day < end for start, end in spans):
            return False
        if kind is DayKind.PRE_HOLIDAY and self.calendar.shorten_pre_holiday:
            # Open only while at least an hour of the day's open time is still ahead.
            ahead = sum(max(0, end - max(start, of_day)) for start, end in spans)
            return ahead > 3600
        return True

    def add(self, start: datetime, duration: timedelta) -> datetime:
        instant = _seconds(start)
        remaining = round(duration.total_seconds())
        if remaining == 0:
            return start
        while True:
            cell_end = (instant // self.step + 1) * self.step
            if self.open_at(cell_end - self.step):
                piece = cell_end - instant
                if remaining <= piece:
                    return datetime.fromtimestamp(instant + remaining, self.calendar.zone)
                remaining -= piece
            instant = cell_end

    def between(self, a: datetime, b: datetime) -> timedelta:
        instant, end = _seconds(a), _seconds(b)
        total = 0
        while instant < end:
            cell_end = (instant // self.step + 1) * self.step
            if self.open_at(cell_end - self.step):
                total += min(cell_end, end) - instant
            instant = cell_end
        return timedelta(seconds=total)
