"""Business-time arithmetic on worked cases: CRMBP calendars, DST days, edge inputs."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla.calendar import BusinessCalendar, DayKind, OpenHours, ProductionCalendar
from tests.reference_business_time import ReferenceCalendar

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)

# CRMBP (spec §2): Приоритет/typical is open on days off too; По факту only on workdays.
PRIORITY_TYPICAL = BusinessCalendar(
    zone=MOSCOW,
    workday_hours=OpenHours.parse("10:00-18:00"),
    non_working_hours=OpenHours.parse("12:00-18:00"),
)
PO_FAKTU = BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.parse("10:00-18:00"))


def moscow(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    *,
    second: int = 0,
    micro: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=MOSCOW)


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def in_utc(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Spans as UTC instants: same-zone datetimes compare by wall clock, blind to fold."""
    return [(start.astimezone(UTC), end.astimezone(UTC)) for start, end in spans]


# ---------------------------------------------------------------------------
# Worked cases


def test_priority_hour_from_friday_evening_lands_on_the_transferred_working_saturday() -> None:
    # 1 November 2025 is a working Saturday (its rest moved to 3 November), so it
    # has workday hours 10–18, not the 12–18 of days off.
    assert ProductionCalendar().day_kind(date(2025, 11, 1)) != DayKind.NON_WORKING
    assert PRIORITY_TYPICAL.add(moscow(2025, 10, 31, 17, 30), HOUR) == moscow(2025, 11, 1, 10, 30)


def test_po_faktu_day_over_the_november_holidays() -> None:
    # Thu 3 h + Fri 8 h + working Sat 8 h; Sun 2, Mon 3 and Tue 4 November off; Wed 5 h.
    assert PO_FAKTU.add(moscow(2025, 10, 30, 15), 24 * HOUR) == moscow(2025, 11, 5, 15)


def test_po_faktu_day_over_the_new_year_holidays() -> None:
    # 19:00 is after closing; 31 December to 11 January are all off; 12–14 January give 24 h.
    assert PO_FAKTU.add(moscow(2025, 12, 30, 19), 24 * HOUR) == moscow(2026, 1, 14, 18)


def test_priority_hour_on_a_holiday_runs_in_holiday_hours() -> None:
    assert ProductionCalendar().day_kind(date(2026, 1, 4)) == DayKind.NON_WORKING
    assert PRIORITY_TYPICAL.add(moscow(2026, 1, 4, 11), HOUR) == moscow(2026, 1, 4, 13)


def test_a_deadline_on_closing_time_stays_at_closing_time() -> None:
    assert PO_FAKTU.add(moscow(2025, 10, 29, 17), HOUR) == moscow(2025, 10, 29, 18)
    assert PO_FAKTU.add(moscow(2025, 10, 29, 10), 8 * HOUR) == moscow(2025, 10, 29, 18)


def test_one_second_more_carries_over_to_the_next_opening() -> None:
    deadline = PO_FAKTU.add(moscow(2025, 10, 29, 17), HOUR + timedelta(seconds=1))
    assert deadline == moscow(2025, 10, 30, 10, 0, second=1)


def test_a_start_outside_open_hours_begins_at_the_next_opening() -> None:
    assert PO_FAKTU.add(moscow(2025, 10, 29, 7, 15), HOUR) == moscow(2025, 10, 29, 11)
    assert PO_FAKTU.add(moscow(2025, 10, 25, 13), HOUR) == moscow(2025, 10, 27, 11)  # Saturday


def test_adding_nothing_returns_the_start_even_when_closed() -> None:
    start = moscow(2025, 10, 25, 3, 4, second=5)
    assert PO_FAKTU.add(start, timedelta(0)) == start


def test_the_result_is_in_the_calendar_zone_whatever_the_input_zone() -> None:
    deadline = PO_FAKTU.add(datetime(2025, 10, 29, 7, tzinfo=UTC), HOUR)  # 10:00 in Moscow
    assert deadline == moscow(2025, 10, 29, 11)
    assert deadline.tzinfo == MOSCOW


# ---------------------------------------------------------------------------
# between and open_spans


def test_between_counts_open_time_only() -> None:
    assert PO_FAKTU.between(moscow(2025, 10, 30, 15), moscow(2025, 11, 5, 15)) == 24 * HOUR
    assert PRIORITY_TYPICAL.between(moscow(2026, 1, 3), moscow(2026, 1, 5)) == 12 * HOUR


def test_between_is_zero_for_an_empty_or_reversed_range() -> None:
    assert PO_FAKTU.between(moscow(2025, 10, 30, 15), moscow(2025, 10, 30, 15)) == timedelta(0)
    assert PO_FAKTU.between(moscow(2025, 10, 30, 16), moscow(2025, 10, 30, 15)) == timedelta(0)
    assert PO_FAKTU.between(moscow(2025, 11, 2), moscow(2025, 11, 5, 10)) == timedelta(0)


def test_open_spans_lists_the_open_stretches_clipped_to_the_range() -> None:
    spans = list(PRIORITY_TYPICAL.open_spans(moscow(2026, 1, 3, 13), moscow(2026, 1, 12, 11)))
    expected_days = [(date(2026, 1, day), 12, 18) for day in range(3, 12)]
    expected = [
        (moscow(d.year, d.month, d.day, a), moscow(d.year, d.month, d.day, b))
        for d, a, b in expected_days
    ]
    expected[0] = (moscow(2026, 1, 3, 13), moscow(2026, 1, 3, 18))
    expected.append((moscow(2026, 1, 12, 10), moscow(2026, 1, 12, 11)))
    assert spans == expected


def test_adjacent_open_days_form_one_stretch() -> None:
    always = BusinessCalendar.always_open(MOSCOW)
    spans = list(always.open_spans(moscow(2025, 12, 30), moscow(2026, 1, 10)))
    assert spans == [(moscow(2025, 12, 30), moscow(2026, 1, 10))]


def test_hours_for_names_the_hours_of_a_date() -> None:
    assert PRIORITY_TYPICAL.hours_for(date(2026, 1, 4)) == OpenHours.parse("12:00-18:00")
    assert PRIORITY_TYPICAL.hours_for(date(2025, 11, 1)) == OpenHours.parse("10:00-18:00")


# ---------------------------------------------------------------------------
# Shortened pre-holiday days


def test_a_shortened_pre_holiday_day_closes_an_hour_earlier() -> None:
    shortened = BusinessCalendar(
        zone=MOSCOW, workday_hours=OpenHours.parse("10:00-18:00"), shorten_pre_holiday=True
    )
    # Friday 7 March 2025, the eve of 8 March: 10–17; Saturday and Sunday off; Monday 10 March.
    assert shortened.add(moscow(2025, 3, 7, 16, 30), HOUR) == moscow(2025, 3, 10, 10, 30)
    assert PO_FAKTU.add(moscow(2025, 3, 7, 16, 30), HOUR) == moscow(2025, 3, 7, 17, 30)
    assert shortened.between(moscow(2025, 3, 7), moscow(2025, 3, 8)) == 7 * HOUR
    assert shortened.hours_for(date(2025, 3, 7)) == OpenHours.parse("10:00-17:00")


def test_shortening_takes_the_last_hour_of_open_time_even_across_a_break() -> None:
    hours = OpenHours.parse("09:00-17:30, 17:45-18:15")
    assert hours.without_last(3600) == OpenHours.parse("09:00-17:00")
    assert OpenHours.parse("09:00-09:30").without_last(3600) == OpenHours.CLOSED


# ---------------------------------------------------------------------------
# Daylight-saving time (Europe/Berlin: 30 March 2025 02:00 -> 03:00, 26 October 2025 03:00 -> 02:00)


def test_a_round_the_clock_day_has_23_hours_in_spring_and_25_in_autumn() -> None:
    always = BusinessCalendar.always_open(BERLIN)
    assert always.between(berlin(2025, 3, 30), berlin(2025, 3, 31)) == 23 * HOUR
    assert always.between(berlin(2025, 10, 26), berlin(2025, 10, 27)) == 25 * HOUR
    assert always.add(berlin(2025, 3, 30), 24 * HOUR).astimezone(UTC) == utc(2025, 3, 30, 23)


def test_a_span_starting_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    night = BusinessCalendar(
        zone=BERLIN,
        workday_hours=OpenHours.parse("02:30-03:30"),
        non_working_hours=OpenHours.parse("02:30-03:30"),
    )
    spans = in_utc(night.open_spans(berlin(2025, 3, 30), berlin(2025, 3, 31)))
    # 03:00 CEST is 01:00 UTC, the instant the clock jumps from 02:00 to 03:00.
    assert spans == [(utc(2025, 3, 30, 1), utc(2025, 3, 30, 1, 30))]


def test_a_span_over_the_repeated_hour_counts_both_passes() -> None:
    night = BusinessCalendar(
        zone=BERLIN,
        workday_hours=OpenHours.parse("02:30-03:30"),
        non_working_hours=OpenHours.parse("02:30-03:30"),
    )
    spans = in_utc(night.open_spans(berlin(2025, 10, 26), berlin(2025, 10, 27)))
    # 02:30-03:00 CEST, then the clock goes back to 02:00 at 01:00 UTC; 02:30-03:30 CET.
    assert spans == [
        (utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1)),
        (utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 2, 30)),
    ]
    assert spans[0][0] == berlin(2025, 10, 26, 2, 30, fold=0).astimezone(UTC)
    assert spans[1][0] == berlin(2025, 10, 26, 2, 30, fold=1).astimezone(UTC)
    assert night.between(berlin(2025, 10, 26), berlin(2025, 10, 27)) == 90 * timedelta(minutes=1)


@pytest.mark.parametrize("day", [date(2025, 3, 30), date(2025, 10, 26)])
@pytest.mark.parametrize("hours", ["00:00-24:00", "01:15-02:45", "02:00-03:00, 20:00-21:00"])
def test_dst_days_agree_with_the_minute_by_minute_reference(day: date, hours: str) -> None:
    calendar = BusinessCalendar(
        zone=BERLIN, workday_hours=OpenHours.parse(hours), non_working_hours=OpenHours.parse(hours)
    )
    reference = ReferenceCalendar(calendar)  # one-minute cells
    start = berlin(day.year, day.month, day.day) - 6 * HOUR
    assert calendar.between(start, start + 36 * HOUR) == reference.between(start, start + 36 * HOUR)
    for minutes in range(0, 24 * 60, 37):
        duration = timedelta(minutes=minutes)
        deadline = calendar.add(start, duration)
        assert deadline.astimezone(UTC) == reference.add(start, duration).astimezone(UTC)


# ---------------------------------------------------------------------------
# Inputs


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2025, 10, 29, 12)
    with pytest.raises(ValueError, match="aware"):
        PO_FAKTU.add(naive, HOUR)
    with pytest.raises(ValueError, match="aware"):
        PO_FAKTU.between(naive, moscow(2025, 10, 30))
    with pytest.raises(ValueError, match="aware"):
        PO_FAKTU.open_spans(moscow(2025, 10, 30), naive)


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="backwards"):
        PO_FAKTU.add(moscow(2025, 10, 29, 12), -HOUR)


def test_a_calendar_that_is_never_open_cannot_reach_a_deadline() -> None:
    closed = BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.CLOSED)
    with pytest.raises(ValueError, match="never open"):
        closed.add(moscow(2025, 10, 29, 12), HOUR)
    assert closed.between(moscow(2025, 1, 1), moscow(2026, 1, 1)) == timedelta(0)


def test_fractions_of_a_second_are_kept_exactly() -> None:
    start = moscow(2025, 10, 29, 17, 59, second=59, micro=500_000)
    assert PO_FAKTU.add(start, timedelta(seconds=1)) == moscow(2025, 10, 30, 10, 0, micro=500_000)
    assert PO_FAKTU.between(start, moscow(2025, 10, 30, 12)) == timedelta(
        hours=2, microseconds=500_000
    )


def test_far_apart_instants_are_answered_by_growing_the_cache() -> None:
    per_year = [
        PO_FAKTU.between(moscow(year, 1, 1), moscow(year + 1, 1, 1)) for year in range(2020, 2031)
    ]
    assert PO_FAKTU.between(moscow(2020, 1, 1), moscow(2031, 1, 1)) == sum(per_year, timedelta())
    # 2025 has 247 working days (published calendar), all 8 hours long without shortening.
    assert per_year[5] == 247 * 8 * HOUR
    assert PO_FAKTU.add(moscow(2090, 6, 1, 10), 8 * HOUR).date() == date(2090, 6, 1)


# ---------------------------------------------------------------------------
# Open hours and calendars as values


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("10:00-18:00", ((36000, 64800),)),
        ("09:00-13:00, 14:00-18:00", ((32400, 46800), (50400, 64800))),
        ("14:00–18:00; 09:00 - 13:00", ((32400, 46800), (50400, 64800))),
        ("09:00-13:00, 13:00-18:00", ((32400, 64800),)),
        ("00:00-24:00", ((0, 86400),)),
        ("08:30:15-09:00", ((30615, 32400),)),
        ("", ()),
        ("  ", ()),
    ],
)
def test_open_hours_parse(text: str, spans: tuple[tuple[int, int], ...]) -> None:
    assert OpenHours.parse(text).spans == spans


@pytest.mark.parametrize(
    "text",
    [
        "10-18",
        "18:00-10:00",
        "22:00-02:00",
        "10:00-24:30",
        "09:00-13:00, 12:00-18:00",
        "9:61-10:00",
    ],
)
def test_open_hours_parse_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="open hours"):
        OpenHours.parse(text)


def test_open_hours_validate_direct_construction() -> None:
    with pytest.raises(ValueError, match="inside one day"):
        OpenHours(((0, 90_000),))
    with pytest.raises(ValueError, match="overlap"):
        OpenHours(((0, 100), (50, 200)))


def test_open_hours_print_as_they_are_written() -> None:
    assert str(OpenHours.parse("09:00-13:00, 14:00-18:00")) == "09:00-13:00, 14:00-18:00"
    assert str(OpenHours.ALL_DAY) == "00:00-24:00"
    assert OpenHours.parse("09:00-13:00, 14:00-18:00").seconds == 8 * 3600
    assert OpenHours.CLOSED.seconds == 0


def test_business_calendars_are_values_whatever_their_caches_hold() -> None:
    fresh = BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.parse("10:00-18:00"))
    assert fresh == PO_FAKTU
    assert hash(fresh) == hash(PO_FAKTU)
    assert fresh != PRIORITY_TYPICAL
    assert {fresh: "cached"}[PO_FAKTU] == "cached"
    copied = copy.deepcopy(PO_FAKTU)
    assert copied == PO_FAKTU
    assert copied.add(moscow(2025, 10, 30, 15), 24 * HOUR) == moscow(2025, 11, 5, 15)
