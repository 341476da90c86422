"""sla.ledger on named examples: time notes, rounding, package validity and status, quotas."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from sla.ledger import (
    Duration,
    Package,
    PackageStatus,
    Quota,
    QuotaRequest,
    QuotaSummary,
    QuotaUse,
    TimeEntry,
    Unreadable,
    minutes_over,
    months_before,
    package_balance,
    parse_time_note,
    quota_summary,
    quota_text,
    quota_uses,
    rounded_minutes,
)
from sla.policy import normalize_tag

MOSCOW = ZoneInfo("Europe/Moscow")
SECOND = timedelta(seconds=1)


def moscow(*parts: int) -> datetime:
    """A Moscow wall time: year, month, day and optionally hour, minute, second."""
    return datetime(*parts, tzinfo=MOSCOW)  # type: ignore[arg-type,misc]


def entry(at: datetime, minutes: int, note_id: int = 1, lead_id: int = 10) -> TimeEntry:
    return TimeEntry(note_id, lead_id, 7, at, 99, minutes * 60)


# ---------------------------------------------------------------------------
# Time notes (spec §7.1)

READABLE = [
    pytest.param("Время: 25 мин", 1500, "", id="spec-25-min"),
    pytest.param("Время: 1 ч 30 мин — настройка воронки", 5400, "настройка воронки",
                 id="spec-hours-minutes-and-what"),
    pytest.param("Время: 1:30", 5400, "", id="spec-clock"),
    pytest.param("Время: 1,5 ч", 5400, "", id="spec-decimal-comma-hours"),
    pytest.param("Время: 40", 2400, "", id="spec-bare-number-is-minutes"),
    pytest.param("Время: 1.5 ч", 5400, "", id="decimal-point-hours"),
    pytest.param("Время: 25 мин.", 1500, "", id="min-with-dot"),
    pytest.param("Время: 2 часа – созвон", 7200, "созвон", id="chasa-en-dash"),
    pytest.param("Время: 3 часов - отчёт", 10800, "отчёт", id="chasov-hyphen"),
    pytest.param("Время: 1 час 5 минут", 3900, "", id="chas-minut"),
    pytest.param("Время: 1h 30min", 5400, "", id="latin-units"),
    pytest.param("Время: 1ч30м", 5400, "", id="no-spaces"),
    pytest.param("Время: 1 ч 30", 5400, "", id="bare-minutes-after-hours"),
    pytest.param("Время: 7", 420, "", id="seven-minutes"),
    pytest.param("Время: 24 ч", 86400, "", id="exactly-24-hours"),
    pytest.param("Время: 0,5 мин", 30, "", id="half-a-minute"),
    pytest.param("  время :", None, None, id="space-before-colon-is-no-marker"),
    pytest.param("   ВРЕМЯ:   25 МИН   —   что-то  ", 1500, "что-то", id="case-and-spaces"),
    pytest.param("\n Время: 25 мин\nвторая строка", 1500, "", id="only-the-first-line"),
    pytest.param("Время: 10 мин — a — b", 600, "a — b", id="first-dash-separates"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "seconds", "what"), READABLE)
def test_time_note_examples(text: str, seconds: int | None, what: str | None) -> None:
    expected = None if seconds is None or what is None else Duration(seconds, what)
    assert parse_time_note(text) == expected


@pytest.mark.parametrize(
    "text",
    ["Звонок клиенту", "Время встречи", "Итого. Время: 25 мин", "", "   ",
     "Заметка\nВремя: 25 мин", "Временно: 25 мин"],
)  # fmt: skip
def test_notes_without_the_marker_on_the_first_line_are_not_entries(text: str) -> None:
    assert parse_time_note(text) is None


UNREADABLE = [
    pytest.param("Время:", "no duration", id="marker-only"),
    pytest.param("Время:   ", "no duration", id="marker-and-spaces"),
    pytest.param("Время: abc", "no duration", id="letters"),
    pytest.param("Время: — настройка", "no duration", id="dash-but-no-duration"),
    pytest.param("Время: 0", "more than zero", id="zero"),
    pytest.param("Время: 0 ч 0 мин", "more than zero", id="zero-units"),
    pytest.param("Время: 0:00", "more than zero", id="zero-clock"),
    pytest.param("Время: 25 ч", "at most 24 hours", id="25-hours"),
    pytest.param("Время: 24:05", "at most 24 hours", id="over-24-hours-clock"),
    pytest.param("Время: 1441", "at most 24 hours", id="over-24-hours-minutes"),
    pytest.param("Время: -5 мин", "negative", id="negative"),
    pytest.param("Время: −1 ч", "negative", id="minus-sign"),
    pytest.param("Время: 2 дня", "cannot read «дня»", id="unknown-unit"),
    pytest.param("Время: 25 минуток", "cannot read «минуток»", id="unit-must-be-a-word"),
    pytest.param("Время: 25 мин настройка", "cannot read «настройка»", id="no-dash"),
    pytest.param("Время: 1:75", "cannot read «:75»", id="bad-clock"),
    pytest.param("Время: ２５ мин", "no duration", id="full-width-digits"),
    pytest.param("Время: ١٢", "no duration", id="arabic-indic-digits"),
    pytest.param("Время: 0,0001", "more than zero", id="under-a-second"),
    pytest.param("Время : 25 мин", "the word and «:» together", id="space-before-colon"),
    pytest.param("Время 25 мин", "the word and «:» together", id="no-colon"),
    pytest.param("Время - 25 мин", "the word and «:» together", id="dash-for-colon"),
    pytest.param("Время. 25 mins", "the word and «:» together", id="dot-for-colon"),
    pytest.param("Время: 25 мин\nВремя: 2 ч", "one «Время:» line per note", id="second-line"),
]  # fmt: skip


def test_a_note_that_only_starts_with_the_markers_word_is_no_time_entry() -> None:
    assert parse_time_note("Время встречи перенесли на среду") is None
    assert parse_time_note("Временно отключили интеграцию: 25 мин простоя") is None


@pytest.mark.parametrize(("text", "fragment"), UNREADABLE)
def test_unreadable_time_notes(text: str, fragment: str) -> None:
    found = parse_time_note(text)
    assert isinstance(found, Unreadable)
    assert fragment in found.problem
    assert found.problem.startswith(f"«{text.strip().splitlines()[0]}»")


def test_an_unreadable_long_line_is_quoted_short() -> None:
    found = parse_time_note("Время: " + "очень долго " * 1000)
    assert isinstance(found, Unreadable)
    assert len(found.problem) < 200


def test_the_marker_is_configurable_and_a_word_marker_must_end_a_word() -> None:
    assert parse_time_note("Time 25 min", marker="time") == Duration(1500)
    assert parse_time_note("Timeline 25 min", marker="time") is None
    assert parse_time_note("Время: 25 мин", marker="Затрачено:") is None
    assert parse_time_note("затрачено: 1:00 — x", marker=" Затрачено: ") == Duration(3600, "x")


ROUNDING = [
    pytest.param(1, 5, id="1-min-to-5"), pytest.param(6, 10, id="6-min-to-10"),
    pytest.param(7, 10, id="7-min-to-10-seed-004"), pytest.param(25, 25, id="25-stays"),
    pytest.param(5, 5, id="5-stays"), pytest.param(90, 90, id="90-stays"),
]  # fmt: skip


@pytest.mark.parametrize(("minutes", "rounded"), ROUNDING)
def test_rounding_to_five_minute_units(minutes: int, rounded: int) -> None:
    assert rounded_minutes(minutes * 60) == rounded
    assert Duration(minutes * 60).minutes == rounded


@pytest.mark.parametrize(
    ("text", "rounded"),
    [("Время: 1:30", 90), ("Время: 1,5 ч", 90), ("Время: 1", 5), ("Время: 6 мин", 10),
     ("Время: 25", 25), ("Время: 0,5", 5)],
)  # fmt: skip
def test_parsed_entries_round_up_on_their_own(text: str, rounded: int) -> None:
    found = parse_time_note(text)
    assert isinstance(found, Duration)
    assert found.minutes == rounded


@pytest.mark.parametrize(
    ("seconds", "unit", "rounded"),
    [(1, 60, 1), (61, 60, 2), (1, 900, 15), (900, 900, 15), (901, 900, 30), (7 * 60, 3600, 60),
     (0, 900, 0)],
)  # fmt: skip
def test_rounding_to_any_whole_minute_unit(seconds: int, unit: int, rounded: int) -> None:
    assert rounded_minutes(seconds, unit) == rounded
    if seconds:
        entry_ = TimeEntry(1, 10, 7, moscow(2025, 1, 15), 99, seconds, unit=unit)
        assert entry_.minutes == rounded


@pytest.mark.parametrize("unit", [0, 30, 90, -60])
def test_a_unit_is_whole_minutes(unit: int) -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        rounded_minutes(60, unit)
    with pytest.raises(ValueError, match="whole minutes"):
        TimeEntry(1, 10, 7, moscow(2025, 1, 15), 99, 60, unit=unit)


def test_a_package_holds_one_unit_of_the_policy() -> None:
    assert Package(Decimal("0.25"), date(2025, 1, 1), unit=900).minutes == 15
    with pytest.raises(ValueError, match="at least one 60-minute unit"):
        Package(Decimal("0.5"), date(2025, 1, 1), unit=3600)
    # the unit is how entries count, not part of the package's identity
    assert Package(Decimal(2), date(2025, 1, 1), unit=900) == Package(Decimal(2), date(2025, 1, 1))


def test_rounding_by_the_second() -> None:
    assert [rounded_minutes(s) for s in (0, 1, 299, 300, 301, 600, 601)] == [0, 5, 5, 5, 10, 10, 15]
    with pytest.raises(ValueError, match="negative"):
        rounded_minutes(-1)


def test_a_duration_is_more_than_zero_and_at_most_a_day() -> None:
    for seconds in (0, -60, 86401):
        with pytest.raises(ValueError, match="at most 24 h"):
            Duration(seconds)


def test_a_time_entry_is_rounded_and_needs_an_aware_instant() -> None:
    assert entry(moscow(2025, 1, 15, 10), 7).minutes == 10
    with pytest.raises(ValueError, match="aware"):
        TimeEntry(1, 10, 7, datetime(2025, 1, 15, 10), 99, 60)
    with pytest.raises(ValueError, match="negative"):
        TimeEntry(1, 10, 7, moscow(2025, 1, 15), 99, -1)


# ---------------------------------------------------------------------------
# Hour packages (spec §7.2)

VALIDITY = [
    pytest.param(date(2025, 3, 15), date(2025, 4, 15), id="15th-to-15th"),
    pytest.param(date(2025, 1, 31), date(2025, 2, 28), id="jan-31-to-feb-28"),
    pytest.param(date(2024, 1, 31), date(2024, 2, 29), id="jan-31-to-feb-29-leap-year"),
    pytest.param(date(2024, 1, 30), date(2024, 2, 29), id="jan-30-to-feb-29-leap-year"),
    pytest.param(date(2025, 12, 31), date(2026, 1, 31), id="dec-31-to-jan-31"),
    pytest.param(date(2025, 3, 31), date(2025, 4, 30), id="mar-31-to-apr-30"),
    pytest.param(date(2025, 2, 28), date(2025, 3, 28), id="feb-28-to-mar-28"),
]  # fmt: skip


@pytest.mark.parametrize(("paid_on", "valid_to"), VALIDITY)
def test_package_validity(paid_on: date, valid_to: date) -> None:
    package = Package(Decimal(5), paid_on)
    assert package.valid_to() == valid_to
    start, end = package.window(MOSCOW)
    assert start == datetime(paid_on.year, paid_on.month, paid_on.day, tzinfo=MOSCOW)
    assert end == datetime(valid_to.year, valid_to.month, valid_to.day, tzinfo=MOSCOW) + timedelta(
        days=1
    )


def test_package_minutes_and_bad_packages() -> None:
    assert Package(Decimal("2.5"), date(2025, 1, 1)).minutes == 150
    assert Package(Decimal(10), date(2025, 1, 1)).minutes == 600
    assert Package(Decimal("0.33"), date(2025, 1, 1)).minutes == 20
    assert Package(Decimal(1) / 12, date(2025, 1, 1)).minutes == 5  # one unit of account
    assert Package(Decimal(10_000), date(2025, 1, 1)).minutes == 600_000
    for hours in (Decimal(0), Decimal(-2), Decimal("NaN"), Decimal("Infinity"), Decimal("0.001")):
        with pytest.raises(ValueError, match="at least one 5-minute unit"):
            Package(hours, date(2025, 1, 1))
    for hours in (Decimal("10000.01"), Decimal("1E20")):
        with pytest.raises(ValueError, match="at most 10,000 hours"):
            Package(hours, date(2025, 1, 1))


PACKAGE = Package(Decimal(5), date(2025, 3, 15))  # 300 minutes, 15 Mar 00:00 - 16 Apr 00:00
DURING = moscow(2025, 3, 20, 12)


def test_entries_one_second_inside_and_one_second_after_the_validity() -> None:
    start, end = PACKAGE.window(MOSCOW)
    first = entry(start, 10, note_id=1)
    last = entry(end - SECOND, 20, note_id=2)
    after = entry(end, 40, note_id=3)
    before = entry(start - SECOND, 80, note_id=4)
    balance = package_balance(PACKAGE, [after, last, before, first], zone=MOSCOW, now=DURING)
    assert balance.counted == (first, last)
    assert balance.outside == (before, after)
    assert balance.used_minutes == 30
    assert balance.remaining_minutes == 270
    assert balance.valid_to == date(2025, 4, 15)


def test_the_window_is_read_in_the_given_zone() -> None:
    # 23:30 UTC on 14 March is 02:30 on 15 March in Moscow: inside there, outside in UTC.
    late = entry(datetime(2025, 3, 14, 23, 30, tzinfo=UTC), 10)
    assert package_balance(PACKAGE, [late], zone=MOSCOW, now=DURING).used_minutes == 10
    assert package_balance(PACKAGE, [late], zone=ZoneInfo("UTC"), now=DURING).used_minutes == 0


@pytest.mark.parametrize(
    ("used", "status"),
    [(0, PackageStatus.ACTIVE), (235, PackageStatus.ACTIVE), (240, PackageStatus.AT_RISK),
     (295, PackageStatus.AT_RISK), (300, PackageStatus.EXHAUSTED),
     (310, PackageStatus.EXHAUSTED)],
)  # fmt: skip
def test_status_by_use_with_exactly_80_percent_at_risk(used: int, status: PackageStatus) -> None:
    entries = [entry(DURING, 5, note_id=n) for n in range(used // 5)]
    balance = package_balance(PACKAGE, entries, zone=MOSCOW, now=DURING, at_risk=0.8)
    assert balance.used_minutes == used
    assert balance.status is status
    assert balance.exhausted is (status is PackageStatus.EXHAUSTED)
    assert balance.used_up is (used >= 300)


@pytest.mark.parametrize(
    ("fraction", "minutes", "used", "status"),
    [(0.7, 600, 420, PackageStatus.AT_RISK), (0.7, 600, 415, PackageStatus.ACTIVE),
     (0.9, 120, 110, PackageStatus.AT_RISK), (0.9, 120, 105, PackageStatus.ACTIVE),
     (1.0, 120, 115, PackageStatus.ACTIVE), (0.3, 150, 45, PackageStatus.AT_RISK)],
)  # fmt: skip
def test_the_at_risk_threshold_is_exact_for_other_fractions(
    fraction: float, minutes: int, used: int, status: PackageStatus
) -> None:
    package = Package(Decimal(minutes) / 60, date(2025, 3, 15))
    entries = [entry(DURING, 5, note_id=n) for n in range(used // 5)]
    assert package_balance(package, entries, zone=MOSCOW, now=DURING, at_risk=fraction).status is (
        status
    )


def test_a_negative_remainder_when_work_went_over() -> None:
    small = Package(Decimal(2), date(2025, 3, 15))
    balance = package_balance(
        small, [entry(DURING, 100, 1), entry(DURING, 31, 2)], zone=MOSCOW, now=DURING
    )
    assert balance.used_minutes == 135
    assert balance.remaining_minutes == -15
    assert balance.status is PackageStatus.EXHAUSTED
    assert balance.used_up
    assert balance.exhausted


def test_expired_wins_over_exhausted_and_unused_minutes_are_void() -> None:
    _, end = PACKAGE.window(MOSCOW)
    full = [entry(DURING, 300)]
    assert package_balance(PACKAGE, full, zone=MOSCOW, now=end - SECOND).status is (
        PackageStatus.EXHAUSTED
    )
    expired = package_balance(PACKAGE, full, zone=MOSCOW, now=end)
    assert expired.status is PackageStatus.EXPIRED
    assert expired.used_up
    assert expired.exhausted
    unused = package_balance(PACKAGE, [entry(DURING, 5)], zone=MOSCOW, now=end)
    assert unused.status is PackageStatus.EXPIRED
    assert unused.exhausted
    assert not unused.used_up
    assert unused.remaining_minutes == 295


def test_a_package_paid_later_than_now_is_active_and_counts_nothing_yet() -> None:
    balance = package_balance(PACKAGE, [entry(DURING, 10)], zone=MOSCOW, now=moscow(2025, 3, 1))
    assert balance.status is PackageStatus.ACTIVE
    assert balance.used_minutes == 10  # the entry itself lies inside the validity


def test_package_balance_refuses_a_naive_now_and_a_bad_fraction() -> None:
    with pytest.raises(ValueError, match="aware"):
        package_balance(PACKAGE, [], zone=MOSCOW, now=datetime(2025, 3, 20))
    with pytest.raises(ValueError, match="at_risk"):
        package_balance(PACKAGE, [], zone=MOSCOW, now=DURING, at_risk=0)


# ---------------------------------------------------------------------------
# Calendar months back


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [(moscow(2025, 3, 15, 10, 30), 12, moscow(2024, 3, 15, 10, 30)),
     (moscow(2025, 3, 31, 9), 1, moscow(2025, 3, 1)),
     (moscow(2025, 3, 29, 23), 1, moscow(2025, 3, 1)),
     (moscow(2024, 3, 31, 9), 1, moscow(2024, 3, 1)),
     (moscow(2024, 3, 29, 9), 1, moscow(2024, 2, 29, 9)),
     (moscow(2025, 2, 28, 9), 12, moscow(2024, 2, 28, 9)),
     (moscow(2024, 2, 29, 9), 12, moscow(2023, 3, 1)),
     (moscow(2027, 12, 31), 3, moscow(2027, 10, 1)),
     (moscow(2025, 1, 15), 1, moscow(2024, 12, 15)),
     (moscow(2025, 1, 15), 25, moscow(2022, 12, 15)),
     (moscow(2025, 1, 15), 0, moscow(2025, 1, 15))],
)  # fmt: skip
def test_months_before(moment: datetime, months: int, expected: datetime) -> None:
    assert months_before(moment, months) == expected


def test_months_before_keeps_the_wall_time_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    july = datetime(2025, 7, 10, 12, tzinfo=berlin)
    assert months_before(july, 6) == datetime(2025, 1, 10, 12, tzinfo=berlin)
    elapsed = july.astimezone(UTC) - months_before(july, 6).astimezone(UTC)
    assert elapsed == timedelta(days=181, hours=-1)


def test_months_before_refuses_naive_moments_and_negative_months() -> None:
    with pytest.raises(ValueError, match="aware"):
        months_before(datetime(2025, 1, 1), 1)
    with pytest.raises(ValueError, match="negative"):
        months_before(moscow(2025, 1, 1), -1)


# ---------------------------------------------------------------------------
# Quotas (spec §7.3)

SETUPS = Quota("Настройки", "Настройка", {"Микробизнес": 2, "БигДата": 4, "Дата Дривен": 8})
REMOTE = Quota("Удалённые подключения", "Удалённое подключение", {"Микробизнес": 1, "БигДата": 1})
QUOTAS = (SETUPS, REMOTE)


def request(
    lead_id: int,
    at: datetime,
    *tags: str,
    company: int | None = 7,
    tariff: str | None = "Микробизнес",
    lost: bool = False,
) -> QuotaRequest:
    normal = frozenset(normalize_tag(tag) for tag in tags or ("Настройка",))
    return QuotaRequest(lead_id, company, tariff, normal, at, lost)


def ordinals(uses: dict[int, tuple[QuotaUse, ...]], quota: Quota) -> dict[int, tuple[int, bool]]:
    return {
        lead: (use.ordinal, use.over) for lead, found in uses.items() for use in found
        if use.quota == quota
    }  # fmt: skip


def test_the_third_setup_of_a_two_setup_plan_is_over() -> None:
    requests = [request(n, moscow(2025, 1, n)) for n in (1, 2, 3)]
    uses = quota_uses(QUOTAS, requests)
    assert uses[3] == (QuotaUse(SETUPS, 3, ordinal=3, limit=2, over=True),)
    assert ordinals(uses, SETUPS) == {1: (1, False), 2: (2, False), 3: (3, True)}


def test_a_lost_request_is_not_counted() -> None:
    requests = [
        request(1, moscow(2025, 1, 1)),
        request(2, moscow(2025, 1, 2), lost=True),
        request(3, moscow(2025, 1, 3)),
    ]
    uses = quota_uses(QUOTAS, requests)
    assert 2 not in uses
    assert ordinals(uses, SETUPS) == {1: (1, False), 3: (2, False)}


def test_a_request_from_13_months_ago_is_not_counted() -> None:
    requests = [request(1, moscow(2024, 1, 10)), request(2, moscow(2024, 12, 1)),
                request(3, moscow(2025, 2, 10))]  # fmt: skip
    assert ordinals(quota_uses(QUOTAS, requests), SETUPS)[3] == (2, False)


def test_the_window_excludes_a_request_exactly_12_months_before() -> None:
    # The window of a request registered at T is (T - 12 months, T]: a request registered
    # at exactly T - 12 months is outside it, one a second later is inside.
    now = moscow(2025, 3, 10, 12)
    exactly = [request(1, moscow(2024, 3, 10, 12)), request(2, moscow(2024, 6, 1)),
               request(3, now)]  # fmt: skip
    assert ordinals(quota_uses(QUOTAS, exactly), SETUPS)[3] == (2, False)
    inside = [request(1, moscow(2024, 3, 10, 12, 0, 1)), request(2, moscow(2024, 6, 1)),
              request(3, now)]  # fmt: skip
    assert ordinals(quota_uses(QUOTAS, inside), SETUPS)[3] == (3, True)


def test_requests_without_company_or_tariff_count_toward_nothing() -> None:
    requests = [
        request(1, moscow(2025, 1, 1), company=None),
        request(2, moscow(2025, 1, 2), tariff=None),
        request(3, moscow(2025, 1, 3)),
        request(4, moscow(2025, 1, 4)),
    ]
    uses = quota_uses(QUOTAS, requests)
    assert set(uses) == {3, 4}
    assert ordinals(uses, SETUPS) == {3: (1, False), 4: (2, False)}


def test_a_tariff_without_a_limit_has_no_quota_but_its_requests_count() -> None:
    requests = [request(1, moscow(2025, 1, 1), tariff="Индивидуальный"),
                request(2, moscow(2025, 1, 2)), request(3, moscow(2025, 1, 3))]  # fmt: skip
    uses = quota_uses(QUOTAS, requests)
    assert uses[1] == (QuotaUse(SETUPS, 1, ordinal=1, limit=None, over=False),)
    assert uses[3] == (QuotaUse(SETUPS, 3, ordinal=3, limit=2, over=True),)
    remote = [request(n, moscow(2025, 1, n), "Удалённое подключение", tariff="Дата Дривен")
              for n in (1, 2)]  # fmt: skip
    assert quota_uses(QUOTAS, remote)[2] == (QuotaUse(REMOTE, 2, 2, None, over=False),)


def test_a_request_can_use_several_quotas_and_companies_count_apart() -> None:
    requests = [
        request(1, moscow(2025, 1, 1), "Удалённое подключение"),
        request(2, moscow(2025, 1, 2), "настройка ", "УДАЛЁННОЕ ПОДКЛЮЧЕНИЕ"),
        request(3, moscow(2025, 1, 3), "Удалённое подключение", company=8),
    ]
    uses = quota_uses(QUOTAS, requests)
    assert uses[2] == (
        QuotaUse(SETUPS, 2, ordinal=1, limit=2, over=False),
        QuotaUse(REMOTE, 2, ordinal=2, limit=1, over=True),
    )
    assert uses[3] == (QuotaUse(REMOTE, 3, ordinal=1, limit=1, over=False),)


def test_each_request_is_judged_by_its_own_tariff() -> None:
    requests = [request(n, moscow(2025, 1, n)) for n in (1, 2)] + [
        request(3, moscow(2025, 1, 3), tariff="БигДата")
    ]
    assert ordinals(quota_uses(QUOTAS, requests), SETUPS)[3] == (3, False)


def test_same_instant_requests_are_ordered_by_lead_id() -> None:
    at = moscow(2025, 1, 1, 10)
    requests = [request(30, at), request(10, at), request(20, at)]
    uses = ordinals(quota_uses(QUOTAS, requests), SETUPS)
    assert uses == {10: (1, False), 20: (2, False), 30: (3, True)}


def test_a_lead_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        quota_uses(QUOTAS, [request(1, moscow(2025, 1, 1)), request(1, moscow(2025, 1, 2))])


def test_quota_summary_and_text() -> None:
    now = moscow(2025, 3, 10, 12)
    requests = [
        request(1, moscow(2024, 3, 10, 12)),  # exactly 12 months before now: outside
        request(2, moscow(2024, 3, 10, 12, 0, 1)),
        request(3, moscow(2025, 1, 5), lost=True),
        request(4, moscow(2025, 3, 10, 12, 0, 1)),  # after now
        request(5, moscow(2025, 2, 1), company=8),
        request(6, moscow(2025, 2, 1), "Удалённое подключение", tariff=None),
    ]
    summary = quota_summary(QUOTAS, requests, company_id=7, plan="Микробизнес", now=now)
    assert summary == (QuotaSummary(SETUPS, 1, 2), QuotaSummary(REMOTE, 0, 1))
    assert quota_text(summary) == "Настройки: 1 из 2; Удалённые подключения: 0 из 1"
    no_plan = quota_summary(QUOTAS, requests, company_id=7, plan=None, now=now)
    assert quota_text(no_plan) == "Настройки: 1; Удалённые подключения: 0"
    other = quota_summary(QUOTAS, requests, company_id=7, plan="Дата Дривен", now=now)
    assert quota_text(other) == "Настройки: 1 из 8; Удалённые подключения: 0"
    assert quota_text(()) == ""


def test_a_quota_of_other_months_uses_its_own_window() -> None:
    quarterly = Quota("Настройки", "Настройка", {"Микробизнес": 1}, months=3)
    requests = [request(1, moscow(2025, 1, 1)), request(2, moscow(2025, 4, 1)),
                request(3, moscow(2025, 4, 2))]  # fmt: skip
    assert ordinals(quota_uses((quarterly,), requests), quarterly) == {
        1: (1, False), 2: (1, False), 3: (2, True)
    }  # fmt: skip


def test_requests_and_entries_in_a_repeated_hour_are_ordered_by_instant() -> None:
    # Berlin, 26 Oct 2025: 02:45 of the first pass (00:45 UTC) comes before 02:15 of the
    # second (01:15 UTC), though its wall time is later.
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2025, 10, 26, 2, 45, tzinfo=berlin)
    second = datetime(2025, 10, 26, 2, 15, fold=1, tzinfo=berlin)
    assert first.astimezone(UTC) < second.astimezone(UTC)
    uses = quota_uses(QUOTAS, [request(2, second), request(1, first), request(3, second)])
    assert ordinals(uses, SETUPS) == {1: (1, False), 2: (2, False), 3: (3, True)}
    early, late = entry(first, 5, note_id=2), entry(second, 5, note_id=1)
    package = Package(Decimal(1), date(2025, 10, 1))
    balance = package_balance(package, [late, early], zone=berlin, now=second)
    assert balance.counted == (early, late)


def test_minutes_over_goes_to_the_entries_that_passed_the_limit() -> None:
    """A 2-hour package: 90, then 40 (10 of them over), then 25 (all over)."""
    package = Package(Decimal(2), date(2025, 11, 3))
    start = datetime(2025, 11, 3, 12, 0, tzinfo=MOSCOW)
    entries = [
        entry(start, 90, note_id=1),
        entry(start + timedelta(days=1), 40, note_id=2),
        entry(start + timedelta(days=2), 25, note_id=3),
    ]
    balance = package_balance(package, entries, zone=MOSCOW, now=start + timedelta(days=3))
    assert minutes_over(balance) == {2: 10, 3: 25}
