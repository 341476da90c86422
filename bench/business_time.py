"""10,000 deadlines of 72 business hours: sla.calendar against businesstimedelta.

Both get the same calendar: Monday–Friday 10:00–18:00 Europe/Moscow with the
days off of the `holidays` package's RU calendar (businesstimedelta as a
HolidayRule). Starts are random whole seconds over 2024–2026 with a fixed seed.
One run; prints the time of each, the speed ratio, and every disagreement
classified by its cause.

    .venv/bin/python -m bench.business_time
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import businesstimedelta
import holidays
import pytz  # type: ignore[import-untyped]  # businesstimedelta needs pytz zones; no stubs

from sla.calendar import BusinessCalendar, OpenHours, ProductionCalendar

ZONE_NAME = "Europe/Moscow"
ZONE = ZoneInfo(ZONE_NAME)
HOUR = timedelta(hours=1)
DURATION = 72 * HOUR
SEED = 20_240_101
YEARS = range(2023, 2028)  # the starts' years, and a year either side for the deadlines


def random_starts(count: int, seed: int) -> list[datetime]:
    rng = random.Random(seed)
    first = int(datetime(2024, 1, 1, tzinfo=ZONE).timestamp())
    last = int(datetime(2027, 1, 1, tzinfo=ZONE).timestamp()) - 1
    return [datetime.fromtimestamp(rng.randint(first, last), ZONE) for _ in range(count)]


def timed(
    compute: Callable[[datetime], datetime], starts: Sequence[datetime]
) -> tuple[float, list[datetime]]:
    began = time.perf_counter()
    results = [compute(start) for start in starts]
    return time.perf_counter() - began, results


def classify(start: datetime, theirs: datetime, saturday_blind: BusinessCalendar) -> str:
    """Name the calendar fact behind one disagreement by reproducing the library's answer."""
    if saturday_blind.add(start, DURATION) == theirs:
        return (
            "businesstimedelta does not know transferred working Saturdays "
            "(the engine agrees once they are made days off)"
        )
    return "unexplained"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=SEED)
    arguments = parser.parse_args(argv)

    starts = random_starts(arguments.count, arguments.seed)
    ru = holidays.country_holidays("RU", years=list(YEARS))
    days_off = frozenset(ru)

    pytz_zone = pytz.timezone(ZONE_NAME)
    rules = businesstimedelta.Rules(
        [
            businesstimedelta.WorkDayRule(
                start_time=datetime.min.time().replace(hour=10),
                end_time=datetime.min.time().replace(hour=18),
                working_days=[0, 1, 2, 3, 4],
                tz=pytz_zone,
            ),
            businesstimedelta.HolidayRule(days_off, tz=pytz_zone),
        ]
    )
    library_delta = businesstimedelta.BusinessTimeDelta(rules, hours=72)

    def library_add(start: datetime) -> datetime:
        result: datetime = start + library_delta
        return result

    # A fresh calendar: its interval cache is built inside the timed run.
    calendar = BusinessCalendar(zone=ZONE, workday_hours=OpenHours.parse("10:00-18:00"))
    engine_cold, ours = timed(lambda start: calendar.add(start, DURATION), starts)
    engine_warm, again = timed(lambda start: calendar.add(start, DURATION), starts)
    assert again == ours
    library_time, theirs = timed(library_add, starts)

    disagreements = [
        (start, mine, other)
        for start, mine, other in zip(starts, ours, theirs, strict=True)
        if mine != other
    ]
    weekend_workdays = frozenset(getattr(ru, "weekend_workdays", ()))
    saturday_blind = BusinessCalendar(
        zone=ZONE,
        workday_hours=OpenHours.parse("10:00-18:00"),
        production=ProductionCalendar(extra_days_off=weekend_workdays),
    )
    causes = {
        (start, mine, other): classify(start, other, saturday_blind)
        for start, mine, other in disagreements
    }
    tally = Counter(causes.values())
    unexplained = [case for case, cause in causes.items() if cause == "unexplained"]
    working_saturdays = sorted(day for day in weekend_workdays if day.year in (2024, 2025, 2026))

    hours = DURATION / HOUR
    print(f"deadlines: {len(starts)} x {hours:g} business hours, Mon-Fri 10:00-18:00 {ZONE_NAME}")
    print(f"sla.calendar (cold cache): {engine_cold * 1000:9.1f} ms")
    print(f"sla.calendar (warm cache): {engine_warm * 1000:9.1f} ms")
    print(f"businesstimedelta 1.0.1:   {library_time * 1000:9.1f} ms")
    print(f"speed ratio (cold): {library_time / engine_cold:.0f}x faster")
    print(f"speed ratio (warm): {library_time / engine_warm:.0f}x faster")
    print(f"disagreements: {len(disagreements)} of {len(starts)}")
    for cause, count in tally.most_common():
        print(f"  {count:5d}  {cause}")
    print(
        "transferred working Saturdays 2024-2026: "
        + ", ".join(map(date.isoformat, working_saturdays))
    )
    for start, mine, other in disagreements[:3] + unexplained[:10]:
        label = "unexplained" if (start, mine, other) in unexplained else "e.g."
        print(
            f"  {label} start {start:%Y-%m-%d %H:%M:%S}: engine {mine:%Y-%m-%d %H:%M:%S}, "
            f"businesstimedelta {other.astimezone(ZONE):%Y-%m-%d %H:%M:%S}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
