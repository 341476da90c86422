from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sla.words import days_text, duration_text, span_text


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (0, "0 мин"),
        (45, "45 мин"),
        (60, "1 ч"),
        (135, "2 ч 15 мин"),
        (4320, "72 ч"),
        (-45, "-45 мин"),
    ],
)
def test_minutes_read_in_hours_and_minutes(minutes: int, text: str) -> None:
    assert duration_text(minutes) == text


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(hours=4, minutes=30), "4 ч 30 мин"),
        (timedelta(minutes=1, seconds=5), "1 мин 5 с"),
        (timedelta(seconds=59), "59 с"),
        (timedelta(hours=24), "24 ч"),
    ],
)
def test_spans_keep_their_seconds(span: timedelta, text: str) -> None:
    assert span_text(span) == text


@given(st.integers(0, 10**6))
def test_the_text_gives_the_minutes_back(minutes: int) -> None:
    words = duration_text(minutes).split()
    hours = int(words[0]) if words[1] == "ч" else 0
    rest = int(words[-2]) if words[-1] == "мин" else 0
    assert hours * 60 + rest == minutes


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (135, "2 ч 15 мин"),
        (1439, "23 ч 59 мин"),
        (1440, "1 дн"),
        (1441, "1 дн"),
        (1500, "1 дн 1 ч"),
        (175_140, "121 дн 15 ч"),
        (-3000, "-2 дн 2 ч"),
    ],
)
def test_long_wall_clock_spans_read_in_days(minutes: int, text: str) -> None:
    assert days_text(minutes) == text
