"""sla.calendar against the brute-force reference, on random instants over 2024–2027.

Cases checked against the reference: 6 calendars x (1200 add + 600 between)
= 10,800, in cells of the coarsest grid that every boundary of the calendar sits
on (an hour, half an hour, a quarter); 6 x (100 add + 100 between) = 1,200 more in
one-minute cells, which also shows the coarse cells change nothing. The algebraic
properties below add 6 x 4 x 150 = 3,600 more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla.calendar import BusinessCalendar, OpenHours, ProductionCalendar
from tests.reference_business_time import ReferenceCalendar, step_for

MOSCOW = ZoneInfo("Europe/Moscow")

CALENDARS = {
    "priority_with_weekend_hours": BusinessCalendar(
        zone=MOSCOW,
        workday_hours=OpenHours.parse("10:00-18:00"),
        non_working_hours=OpenHours.parse("12:00-18:00"),
    ),
    "weekdays_09_18": BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.parse("09:00-18:00")),
    "split_day_with_admin_days": BusinessCalendar(
        zone=MOSCOW,
        workday_hours=OpenHours.parse("09:00-13:30, 14:15-18:00"),
        production=ProductionCalendar(
            extra_days_off=frozenset({date(2025, 3, 3), date(2026, 12, 30)}),
            extra_working_days=frozenset({date(2025, 3, 1), date(2027, 1, 9)}),
        ),
    ),
    "shortened_pre_holiday": BusinessCalendar(
        zone=MOSCOW,
        workday_hours=OpenHours.parse("09:00-13:00, 14:00-18:00"),
        shorten_pre_holiday=True,
    ),
    "berlin_long_days_open_round_the_clock_on_days_off": BusinessCalendar(
        zone=ZoneInfo("Europe/Berlin"),
        workday_hours=OpenHours.parse("08:00-20:00"),
        non_working_hours=OpenHours.parse("00:00-24:00"),
    ),
    "new_york_open_across_the_dst_hour_on_days_off": BusinessCalendar(
        zone=ZoneInfo("America/New_York"),
        workday_hours=OpenHours.parse("08:00-20:00"),
        non_working_hours=OpenHours.parse("01:30-02:30, 22:00-24:00"),
    ),
}
REFERENCES = {name: ReferenceCalendar(cal, step=step_for(cal)) for name, cal in CALENDARS.items()}
MINUTE_REFERENCES = {name: ReferenceCalendar(cal, step=60) for name, cal in CALENDARS.items()}
NAMES = sorted(CALENDARS)

FIRST = int(datetime(2024, 1, 1, tzinfo=MOSCOW).timestamp())
LAST = int(datetime(2028, 1, 1, tzinfo=MOSCOW).timestamp()) - 1
INPUT_ZONES = (MOSCOW, UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"))

any_second = st.integers(min_value=FIRST, max_value=LAST)
# A quarter of an hour divides every boundary of every calendar above, so these
# hit openings, closings and DST changes exactly.
on_boundaries = any_second.map(lambda instant: instant - instant % 900)
instants = st.builds(
    datetime.fromtimestamp,
    st.one_of(any_second, on_boundaries),
    st.sampled_from(INPUT_ZONES),
)
# Up to 80 business hours: two to three weeks of an eight-hour calendar.
durations = st.one_of(
    st.integers(min_value=0, max_value=80 * 3600),
    st.integers(min_value=0, max_value=320).map(lambda quarters: quarters * 900),
).map(lambda seconds: timedelta(seconds=seconds))


# Minute cells cost a few microseconds each, so these stay within a day or two of open time.
short_durations = st.integers(min_value=0, max_value=16 * 3600).map(
    lambda seconds: timedelta(seconds=seconds)
)


def utc(moment: datetime) -> datetime:
    """Python compares datetimes of one zone by wall clock, and never finds an
    instant in a repeated hour equal to its twin in another zone (PEP 495), so
    instants are compared in UTC."""
    return moment.astimezone(UTC)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=1200, deadline=None)
@given(start=instants, duration=durations)
def test_add_agrees_with_the_reference(name: str, start: datetime, duration: timedelta) -> None:
    deadline = CALENDARS[name].add(start, duration)
    assert utc(deadline) == utc(REFERENCES[name].add(start, duration))
    assert deadline.tzinfo is CALENDARS[name].zone


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=600, deadline=None)
@given(a=instants, length=st.integers(min_value=-3600, max_value=21 * 86400))
def test_between_agrees_with_the_reference(name: str, a: datetime, length: int) -> None:
    b = a + timedelta(seconds=length)
    assert CALENDARS[name].between(a, b) == REFERENCES[name].between(a, b)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None)
@given(start=instants, duration=short_durations)
def test_add_agrees_with_the_minute_by_minute_reference(
    name: str, start: datetime, duration: timedelta
) -> None:
    deadline = CALENDARS[name].add(start, duration)
    assert utc(deadline) == utc(MINUTE_REFERENCES[name].add(start, duration))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None)
@given(a=instants, length=st.integers(min_value=-3600, max_value=2 * 86400))
def test_between_agrees_with_the_minute_by_minute_reference(
    name: str, a: datetime, length: int
) -> None:
    b = a + timedelta(seconds=length)
    assert CALENDARS[name].between(a, b) == MINUTE_REFERENCES[name].between(a, b)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(first=instants, second=instants, duration=durations)
def test_a_later_start_never_gives_an_earlier_deadline(
    name: str, first: datetime, second: datetime, duration: timedelta
) -> None:
    early, late = sorted((first, second), key=utc)
    calendar = CALENDARS[name]
    assert utc(calendar.add(early, duration)) <= utc(calendar.add(late, duration))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(start=instants, first=durations, second=durations)
def test_a_longer_duration_never_gives_an_earlier_deadline(
    name: str, start: datetime, first: timedelta, second: timedelta
) -> None:
    short, long = sorted((first, second))
    calendar = CALENDARS[name]
    assert utc(start) <= utc(calendar.add(start, short)) <= utc(calendar.add(start, long))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(start=instants, first=durations, second=durations)
def test_adding_in_two_steps_equals_adding_once(
    name: str, start: datetime, first: timedelta, second: timedelta
) -> None:
    calendar = CALENDARS[name]
    in_two_steps = calendar.add(calendar.add(start, first), second)
    assert utc(in_two_steps) == utc(calendar.add(start, first + second))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(start=instants, duration=durations)
def test_between_measures_back_what_add_added(
    name: str, start: datetime, duration: timedelta
) -> None:
    calendar = CALENDARS[name]
    deadline = calendar.add(start, duration)
    assert calendar.between(start, deadline) == duration
    spans = list(calendar.open_spans(start, deadline))
    # Through UTC: Python subtracts two datetimes of one zone by their wall clocks.
    lengths = (end.astimezone(UTC) - begin.astimezone(UTC) for begin, end in spans)
    assert sum(lengths, timedelta()) == duration
    if spans and duration:
        assert utc(spans[-1][1]) == utc(deadline)
