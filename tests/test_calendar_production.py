"""The production calendar against the published Russian calendars for 2024–2026."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest

from sla.calendar import DayKind, ProductionCalendar

DATA = Path(__file__).parent / "data" / "ru-production-calendar"
KIND_OF_TYPE = {"1": DayKind.NON_WORKING, "2": DayKind.PRE_HOLIDAY, "3": DayKind.WORKDAY}


def published_kinds(year: int) -> dict[date, DayKind]:
    """Every day of ``year`` as the published calendar has it."""
    listed: dict[date, DayKind] = {}
    tree = ET.parse(DATA / f"ru_{year}.xml")  # noqa: S314 - files shipped with these tests
    for element in tree.getroot().iter("day"):
        month, day_of_month = (int(part) for part in element.attrib["d"].split("."))
        listed[date(year, month, day_of_month)] = KIND_OF_TYPE[element.attrib["t"]]
    kinds: dict[date, DayKind] = {}
    day = date(year, 1, 1)
    while day.year == year:
        ordinary = DayKind.WORKDAY if day.weekday() < 5 else DayKind.NON_WORKING
        kinds[day] = listed.get(day, ordinary)
        day += timedelta(days=1)
    return kinds


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_every_day_matches_the_published_calendar(year: int) -> None:
    calendar = ProductionCalendar()
    published = published_kinds(year)
    differences = {
        day: (calendar.day_kind(day), kind)
        for day, kind in published.items()
        if calendar.day_kind(day) != kind
    }
    assert differences == {}
    assert len(published) in (365, 366)


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_is_working_day_agrees_with_day_kind(year: int) -> None:
    calendar = ProductionCalendar()
    for day in published_kinds(year):
        assert calendar.is_working_day(day) == (calendar.day_kind(day) != DayKind.NON_WORKING)


@pytest.mark.parametrize(
    ("day", "kind", "why"),
    [
        (date(2024, 2, 22), DayKind.PRE_HOLIDAY, "the eve of Friday 23 February"),
        (date(2025, 3, 7), DayKind.PRE_HOLIDAY, "the eve of 8 March, which falls on a Saturday"),
        (date(2025, 2, 21), DayKind.WORKDAY, "Saturday, not a holiday, comes between"),
        (date(2025, 5, 7), DayKind.WORKDAY, "8 May 2025 is a transferred day off, not a holiday"),
        (date(2024, 11, 2), DayKind.PRE_HOLIDAY, "works in place of 30 April, the eve of 1 May"),
        (date(2025, 11, 1), DayKind.PRE_HOLIDAY, "works in place of 3 November, eve of 4th"),
        (date(2024, 4, 27), DayKind.WORKDAY, "works in place of 29 April, not an eve"),
        (date(2024, 12, 28), DayKind.WORKDAY, "works in place of 30 December, not an eve"),
        (date(2025, 12, 31), DayKind.NON_WORKING, "a transferred day off"),
        (date(2026, 3, 9), DayKind.NON_WORKING, "8 March 2026 is a Sunday, its rest moves"),
    ],
)
def test_the_pre_holiday_rule_on_its_telling_days(day: date, kind: DayKind, why: str) -> None:
    assert ProductionCalendar().day_kind(day) == kind, why


def test_admin_days_override_the_state_calendar() -> None:
    calendar = ProductionCalendar(
        extra_days_off=frozenset({date(2025, 3, 5)}),
        extra_working_days=frozenset({date(2025, 3, 8), date(2025, 3, 15)}),
    )
    assert calendar.day_kind(date(2025, 3, 5)) == DayKind.NON_WORKING
    # 8 March worked by the company stays an ordinary day, and then 7 March has no holiday after it.
    assert calendar.day_kind(date(2025, 3, 8)) == DayKind.WORKDAY
    assert calendar.day_kind(date(2025, 3, 7)) == DayKind.WORKDAY
    assert calendar.day_kind(date(2025, 3, 15)) == DayKind.WORKDAY
    assert ProductionCalendar().day_kind(date(2025, 3, 15)) == DayKind.NON_WORKING


def test_a_day_cannot_be_both_an_extra_day_off_and_an_extra_working_day() -> None:
    with pytest.raises(ValueError, match="2025-03-05"):
        ProductionCalendar(
            extra_days_off=frozenset({date(2025, 3, 5)}),
            extra_working_days=frozenset({date(2025, 3, 5)}),
        )


def test_production_calendars_are_values() -> None:
    first = ProductionCalendar(extra_days_off=frozenset({date(2025, 3, 5)}))
    second = ProductionCalendar(extra_days_off=frozenset({date(2025, 3, 5)}))
    assert first == second
    assert hash(first) == hash(second)
    assert first != ProductionCalendar()
