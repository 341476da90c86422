"""The figures bench.client_load prints from the fake's stamps: the most requests in any
second, counted as the fake counts them (a stamp a whole second old has left the window),
and the shortest time eight consecutive requests took."""

from __future__ import annotations

import pytest

from bench.client_load import closest_span, most_in_one_second


def test_eight_stamps_within_a_second_are_eight() -> None:
    stamps = [10.0 + n * 0.1 for n in range(8)]
    assert most_in_one_second(stamps) == 8
    assert closest_span(stamps) == pytest.approx(0.7)


def test_a_stamp_a_whole_second_later_is_in_the_next_window() -> None:
    stamps = [5.0 + n / 7 for n in range(7)] + [6.0, 6.5]
    assert most_in_one_second(stamps) == 7
    assert closest_span(stamps) == pytest.approx(1.0)


def test_the_order_of_the_stamps_does_not_matter() -> None:
    stamps = [3.0, 0.2, 0.9, 0.1, 2.5, 0.5]
    assert most_in_one_second(stamps) == 4  # 0.1, 0.2, 0.5 and 0.9
    assert closest_span(stamps, count=2) == pytest.approx(0.1)


def test_no_stamps_are_no_figures() -> None:
    assert most_in_one_second([]) == 0
    assert closest_span([0.5, 0.6]) is None
