"""Policies: the built-in CRMBP table, the presets, and strict validation of policy TOML."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sla.calendar import BusinessCalendar, DayKind, OpenHours
from sla.policy import (
    DEFAULT_REACTION_EVENT_TYPES,
    Goals,
    Policy,
    PolicyError,
    Quota,
    RequestClass,
    Targets,
    Tariff,
    TimeTerms,
    default_policy,
    load_policy,
    normalize_tag,
)

PRESETS = Path(__file__).resolve().parent.parent / "sla" / "presets"
MOSCOW = ZoneInfo("Europe/Moscow")
HOUR = timedelta(hours=1)

MINIMAL = """
zone = "Europe/Moscow"
acceptance_calendar = "workdays"

[calendars.workdays]
workdays = "10:00-18:00"

[tariffs.priority]
name = "Приоритет"

[tariffs.priority.typical]
calendar = "workdays"
reaction = "1h"
resolution = "12h"
"""


def preset(name: str) -> Policy:
    return load_policy((PRESETS / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------
# The built-in policy


def test_default_policy_equals_the_bundled_crmbp_preset() -> None:
    assert preset("crmbp.toml") == default_policy()


def test_default_policy_is_the_crmbp_table() -> None:
    policy = default_policy()
    assert policy.zone == MOSCOW
    assert policy.tariff_names == ("Приоритет", "По факту")
    priority, po_faktu = policy.tariff_named("Приоритет"), policy.tariff_named("По факту")
    workdays_10_18 = BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.parse("10:00-18:00"))
    with_days_off = BusinessCalendar(
        zone=MOSCOW,
        workday_hours=OpenHours.parse("10:00-18:00"),
        non_working_hours=OpenHours.parse("12:00-18:00"),
    )
    assert priority.targets[RequestClass.TYPICAL] == Targets(with_days_off, HOUR, 12 * HOUR)
    assert priority.targets[RequestClass.NON_STANDARD] == Targets(workdays_10_18, 3 * HOUR, None)
    assert po_faktu.targets[RequestClass.TYPICAL] == Targets(workdays_10_18, 24 * HOUR, 72 * HOUR)
    assert po_faktu.targets[RequestClass.NON_STANDARD] == Targets(workdays_10_18, 24 * HOUR, None)


def test_default_policy_has_no_emergency_rule() -> None:
    # CRMBP says nothing about outages (spec §2): no emergency tags, no emergency calendar.
    policy = default_policy()
    assert policy.emergency_tags == ()
    assert policy.emergency_reaction_calendar is None
    assert "round_the_clock" not in policy.calendars


def test_a_policy_built_in_code_has_no_emergency_tags_unless_given() -> None:
    calendar = BusinessCalendar(zone=MOSCOW, workday_hours=OpenHours.parse("10:00-18:00"))
    tariff = Tariff("Приоритет", (), {RequestClass.TYPICAL: Targets(calendar, HOUR, None)})
    policy = Policy(tariffs=(tariff,), class_tags={})
    assert policy.emergency_tags == ()


def test_default_policy_thresholds_events_and_acceptance() -> None:
    policy = default_policy()
    assert policy.at_risk_fraction == 0.8
    assert policy.default_tariff is None
    assert policy.reaction_event_types == DEFAULT_REACTION_EVENT_TYPES
    assert policy.reaction_event_types == {
        "outgoing_chat_message",
        "outgoing_call",
        "outgoing_mail",
        "common_note_added",
    }
    assert policy.acceptance_period == 8 * HOUR
    assert policy.acceptance_calendar is policy.calendars["workdays"]
    assert policy.class_tags[RequestClass.NON_STANDARD] == ("Нестандартное", "Доработка")


def test_default_policy_is_one_shared_instance() -> None:
    assert default_policy() is default_policy()


# ---------------------------------------------------------------------------
# The other presets


def test_prime_gate_emergencies_react_on_days_off_and_others_do_not() -> None:
    policy = preset("prime_gate.toml")
    assert policy.tariff_names == ("Дата Дривен", "БигДата", "Микробизнес")
    workdays = policy.calendars["workdays"]
    emergency = policy.emergency_reaction_calendar
    assert emergency is not None
    saturday = date(2025, 10, 11)
    assert workdays.production.day_kind(saturday) is DayKind.NON_WORKING
    assert workdays.hours_for(saturday) == OpenHours.CLOSED
    assert emergency.hours_for(saturday) == OpenHours.parse("09:00-18:00")
    assert policy.emergency_tags == ("авария",)
    assert workdays.hours_for(date(2025, 10, 13)) == OpenHours.parse("09:00-18:00")
    # Seed 003 §4: written support only, so a call is not a reaction.
    assert "outgoing_call" not in policy.reaction_event_types


def test_prime_gate_says_its_targets_are_placeholders() -> None:
    text = (PRESETS / "prime_gate.toml").read_text(encoding="utf-8")
    assert "PLACEHOLDER TARGETS" in text
    assert "seed 003 names no reaction or resolution times" in text


def test_prime_gate_plans_without_classes_use_one_target_for_both() -> None:
    plan = preset("prime_gate.toml").tariff_named("БигДата")
    assert plan.targets[RequestClass.NON_STANDARD] == plan.targets[RequestClass.TYPICAL]


def test_prime_gate_carries_the_seeds_three_quotas() -> None:
    quotas = preset("prime_gate.toml").quotas
    plans = ("Микробизнес", "БигДата", "Дата Дривен")
    assert quotas == (
        Quota("Настройки", "Настройка", dict(zip(plans, (2, 4, 8), strict=True))),
        Quota("Настройки модулей", "Настройка модуля", dict(zip(plans, (4, 8, 16), strict=True))),
        Quota("Удалённые подключения", "Удалённое подключение", dict.fromkeys(plans, 1)),
    )
    assert {quota.months for quota in quotas} == {12}


def test_hour_packages_price_extra_hours_by_package() -> None:
    policy = preset("hour_packages.toml")
    assert policy.extra_hour_rate(Decimal(2)) == Decimal(3500)
    assert policy.extra_hour_rate(Decimal(5)) == Decimal(3000)
    assert policy.extra_hour_rate(Decimal("10.0")) == Decimal(2000)
    assert policy.extra_hour_rate(Decimal(3)) is None
    assert policy.quotas == ()


def test_the_default_policy_has_no_quotas_and_no_rates() -> None:
    assert default_policy().quotas == ()
    assert default_policy().extra_hour_rate(Decimal(2)) is None


def test_hour_packages_accept_after_one_business_day_of_nine_hours() -> None:
    policy = preset("hour_packages.toml")
    assert policy.acceptance_period == 9 * HOUR
    calendar = policy.acceptance_calendar
    assert calendar is not None
    assert calendar.hours_for(date(2025, 10, 13)) == OpenHours.parse("09:00-18:00")
    assert policy.emergency_reaction_calendar is None
    for tariff in policy.tariffs:
        assert tariff.targets[RequestClass.TYPICAL].resolution is None


# ---------------------------------------------------------------------------
# The format


def test_minimal_policy_fills_in_defaults() -> None:
    policy = load_policy(MINIMAL)
    assert policy.at_risk_fraction == 0.8
    assert policy.reaction_event_types == DEFAULT_REACTION_EVENT_TYPES
    assert policy.acceptance_period == 8 * HOUR
    assert policy.emergency_tags == ()
    assert policy.emergency_reaction_calendar is None
    priority = policy.tariff_named("Приоритет")
    assert priority.tags == ("Приоритет",)
    assert priority.targets[RequestClass.NON_STANDARD] is priority.targets[RequestClass.TYPICAL]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1h", HOUR), ("90m", 90 * timedelta(minutes=1)), ("1h30m", 90 * timedelta(minutes=1)),
     ("1h 30m", 90 * timedelta(minutes=1)), ("45s", timedelta(seconds=45)), ("72H", 72 * HOUR)],
)  # fmt: skip
def test_durations(text: str, expected: timedelta) -> None:
    policy = load_policy(MINIMAL.replace('reaction = "1h"', f'reaction = "{text}"'))
    assert policy.tariffs[0].targets[RequestClass.TYPICAL].reaction == expected


@pytest.mark.parametrize("spelling", ["by agreement", "By Agreement", "по согласованию"])
def test_by_agreement_spellings(spelling: str) -> None:
    policy = load_policy(MINIMAL.replace('resolution = "12h"', f'resolution = "{spelling}"'))
    assert policy.tariffs[0].targets[RequestClass.TYPICAL].resolution is None


def test_extra_days_and_shortening_reach_every_calendar() -> None:
    policy = load_policy(
        MINIMAL
        + """
[production_calendar]
extra_days_off = [2025-10-13, "2025-10-14"]
extra_working_days = [2025-10-11]
shorten_pre_holiday = true
"""
    )
    calendar = policy.calendars["workdays"]
    assert calendar.shorten_pre_holiday
    assert calendar.production.extra_days_off == {date(2025, 10, 13), date(2025, 10, 14)}
    assert calendar.production.is_working_day(date(2025, 10, 11))
    assert policy.tariffs[0].targets[RequestClass.TYPICAL].calendar is calendar


def test_a_calendar_can_have_its_own_zone() -> None:
    policy = load_policy(
        MINIMAL.replace('workdays = "10:00-18:00"', 'workdays = "10:00-18:00"\nzone = "Asia/Omsk"')
    )
    assert policy.calendars["workdays"].zone == ZoneInfo("Asia/Omsk")
    assert policy.zone == MOSCOW


def test_tariff_precedence_is_file_order() -> None:
    policy = load_policy(
        MINIMAL
        + """
[tariffs.basic]
name = "Базовый"
[tariffs.basic.typical]
calendar = "workdays"
reaction = "8h"
resolution = "by agreement"
"""
    )
    assert policy.tariff_names == ("Приоритет", "Базовый")


def test_quotas_and_rates_are_read() -> None:
    policy = load_policy(
        MINIMAL
        + """
[quotas.setups]
tag = " Настройка "
months = 6
[quotas.setups.limits]
"Приоритет" = 0
[extra_hour_rates]
"2,5" = 3500.5
"""
    )
    (quota,) = policy.quotas
    assert quota == Quota(name="setups", tag="Настройка", limits={"Приоритет": 0}, months=6)
    assert quota.key == "setups"
    assert quota.path == "quotas.setups"
    assert policy.extra_hour_rates == {Decimal("2.5"): Decimal("3500.5")}


def test_goals_are_read_per_clock_and_per_tariff() -> None:
    policy = load_policy(
        MINIMAL
        + """
[goals]
reaction = 95
resolution = 90.5
[goals.tariffs."Приоритет"]
reaction = 98
"""
    )
    goals = policy.goals
    assert goals.target("reaction") == Decimal(95)
    assert goals.target("reaction", "Приоритет") == Decimal(98)
    # a tariff without its own goal of a clock takes every tariff's
    assert goals.target("resolution", "Приоритет") == Decimal("90.5")
    assert goals.target("resolution", "Нет такого") == Decimal("90.5")


def test_without_goals_there_is_no_target() -> None:
    assert default_policy().goals.target("reaction") is None
    assert (
        load_policy(MINIMAL + '[goals.tariffs."Приоритет"]\nreaction = 99\n').goals.target(
            "resolution", "Приоритет"
        )
        is None
    )


def test_time_terms_default_to_seed_004s_five_minutes_and_cite_nothing() -> None:
    terms = default_policy().time_terms
    assert (terms.unit_minutes, terms.unit_seconds, terms.unit_clause, terms.contract) == (
        5,
        300,
        "",
        "",
    )


def test_time_terms_take_any_whole_minute_unit_and_the_contract_citations() -> None:
    terms = load_policy(
        MINIMAL
        + """
[time_entries]
unit = "1h"
unit_clause = " п. 5.2 оферты "
contract = "Договор № 7"
"""
    ).time_terms
    assert (terms.unit_minutes, terms.unit_clause, terms.contract) == (
        60,
        "п. 5.2 оферты",
        "Договор № 7",
    )
    assert load_policy(MINIMAL + '[time_entries]\nunit = "1m"\n').time_terms.unit_minutes == 1


def test_the_hour_package_preset_cites_the_offer_for_its_unit() -> None:
    terms = preset("hour_packages.toml").time_terms
    assert terms.unit_minutes == 5
    assert terms.unit_clause == "п. 5.2 оферты"
    assert "оферт" in terms.contract.casefold()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"every": {"reaction": Decimal(0)}}, "goals.reaction"),
     ({"tariffs": {"X": {"speed": Decimal(50)}}}, "goals.tariffs.X.speed")],
)  # fmt: skip
def test_goals_built_in_code_are_checked(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Goals(**kwargs)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_a_unit_built_in_code_is_checked() -> None:
    with pytest.raises(PolicyError) as caught:
        TimeTerms(unit_minutes=0)
    assert caught.value.key == "time_entries.unit"


def test_a_quota_months_default_to_twelve_and_it_hashes() -> None:
    quota = Quota("Настройки", "Настройка", {"Приоритет": 2})
    assert quota.months == 12
    assert hash(quota) == hash(Quota("Настройки", "Настройка", {"Приоритет": 2}, key="x"))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"name": " "}, "quotas.X.name"), ({"tag": " "}, "quotas.X.tag"),
     ({"months": 0}, "quotas.X.months"), ({"limits": {"A": -1}}, "quotas.X.limits.A")],
)  # fmt: skip
def test_a_quota_built_in_code_is_checked(kwargs: dict[str, object], key: str) -> None:
    fields: dict[str, object] = {"name": "N", "tag": "T", "limits": {"A": 1}, "key": "X"}
    with pytest.raises(PolicyError) as caught:
        Quota(**(fields | kwargs))  # type: ignore[arg-type]
    assert caught.value.key == key


def test_tags_compare_ignoring_case_and_spaces() -> None:
    assert normalize_tag("  По  Факту ") == normalize_tag("по факту")
    assert normalize_tag("АВАРИЯ") == "авария"


def test_tariff_named_refuses_an_unknown_name() -> None:
    with pytest.raises(KeyError, match="Золото"):
        default_policy().tariff_named("Золото")


def test_a_tariff_needs_typical_targets_when_built_directly() -> None:
    with pytest.raises(PolicyError) as caught:
        Tariff(name="X", tags=("X",), targets={})
    assert caught.value.key == "tariffs.X.typical"


# ---------------------------------------------------------------------------
# Validation: every error names the key

DURATION_HINT = 'expected a duration like "1h" or "90m"'


def _with(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


QUOTA = """
[quotas.setups]
tag = "Настройка"
[quotas.setups.limits]
"Приоритет" = 2
"""

BAD_POLICIES = [
    pytest.param(MINIMAL + 'colour = "red"\n', "tariffs.priority.typical.colour", "unknown key",
                 id="unknown-key-lands-in-the-last-table"),
    pytest.param('colour = "red"\n' + MINIMAL, "colour", "unknown key", id="unknown-top-key"),
    pytest.param(_with('reaction = "1h"', 'reacton = "1h"'), "tariffs.priority.typical.reacton",
                 "unknown key (expected one of: calendar, reaction, resolution)",
                 id="misspelt-key"),
    pytest.param(_with('reaction = "1h"\n', ""), "tariffs.priority.typical.reaction",
                 "missing", id="missing-reaction"),
    pytest.param(_with('reaction = "1h"', 'reaction = "1h"\nreacton = "1h"'),
                 "tariffs.priority.typical.reacton", "unknown key", id="unknown-class-key"),
    pytest.param(_with('reaction = "1h"', "reaction = 60"), "tariffs.priority.typical.reaction",
                 DURATION_HINT, id="number-duration"),
    pytest.param(_with('reaction = "1h"', 'reaction = "1 hour"'),
                 "tariffs.priority.typical.reaction", DURATION_HINT, id="words-duration"),
    pytest.param(_with('reaction = "1h"', 'reaction = "1d"'),
                 "tariffs.priority.typical.reaction", DURATION_HINT, id="days-duration"),
    pytest.param(_with('reaction = "1h"', 'reaction = "-1h"'),
                 "tariffs.priority.typical.reaction", "cannot be negative", id="negative-duration"),
    pytest.param(_with('reaction = "1h"', 'reaction = "0m"'),
                 "tariffs.priority.typical.reaction", "more than zero", id="zero-duration"),
    pytest.param(_with('resolution = "12h"', 'resolution = "soon"'),
                 "tariffs.priority.typical.resolution", 'or "by agreement"', id="bad-resolution"),
    pytest.param(_with('\ncalendar = "workdays"', '\ncalendar = "weekends"'),
                 "tariffs.priority.typical.calendar", "unknown calendar 'weekends'",
                 id="unknown-calendar"),
    pytest.param(_with('zone = "Europe/Moscow"', 'zone = "Europe/Mosco"'), "zone",
                 "unknown time zone", id="bad-zone"),
    pytest.param(_with('zone = "Europe/Moscow"', "zone = 3"), "zone", "expected a text",
                 id="zone-not-text"),
    pytest.param(_with('zone = "Europe/Moscow"\n', ""), "zone", "missing", id="no-zone"),
    pytest.param(_with('workdays = "10:00-18:00"', 'workdays = "10-18"'),
                 "calendars.workdays.workdays", "expected HH:MM-HH:MM", id="bad-open-hours"),
    pytest.param(_with('workdays = "10:00-18:00"', 'workdays = "18:00-10:00"'),
                 "calendars.workdays.workdays", "must end after it starts", id="backwards-hours"),
    pytest.param(_with('workdays = "10:00-18:00"', 'workdays = "10:00-25:00"'),
                 "calendars.workdays.workdays", "bad time of day", id="hour-25"),
    pytest.param(_with('workdays = "10:00-18:00"', 'workdays = ""'), "calendars.workdays",
                 "must be open", id="never-open"),
    pytest.param(_with('workdays = "10:00-18:00"', 'workdays = "10:00-18:00"\nzone = "Mars/Base"'),
                 "calendars.workdays.zone", "unknown time zone", id="bad-calendar-zone"),
    pytest.param(MINIMAL + '[production_calendar]\nextra_days_off = ["2026-02-30"]\n',
                 "production_calendar.extra_days_off[0]", "expected a date", id="no-such-date"),
    pytest.param(MINIMAL + '[production_calendar]\nextra_days_off = ["31.12.2026"]\n',
                 "production_calendar.extra_days_off[0]", "expected a date", id="russian-date"),
    pytest.param(MINIMAL + "[production_calendar]\nextra_working_days = [2026-01-01T10:00:00]\n",
                 "production_calendar.extra_working_days[0]", "expected a date", id="datetime"),
    pytest.param(MINIMAL + "[production_calendar]\nextra_days_off = 2026-01-01\n",
                 "production_calendar.extra_days_off", "expected a list of dates", id="not-list"),
    pytest.param(MINIMAL + "[production_calendar]\nextra_days_off = [2026-01-09]\n"
                 "extra_working_days = [2026-01-09]\n", "production_calendar.extra_working_days",
                 "listed in extra_days_off too", id="day-both-ways"),
    pytest.param(MINIMAL + '[production_calendar]\nshorten_pre_holiday = "yes"\n',
                 "production_calendar.shorten_pre_holiday", "expected true or false",
                 id="flag-not-bool"),
    pytest.param('at_risk_fraction = "0.8"\n' + MINIMAL, "at_risk_fraction",
                 "expected a number", id="fraction-text"),
    pytest.param("at_risk_fraction = 1.5\n" + MINIMAL, "at_risk_fraction", "at most 1",
                 id="fraction-too-big"),
    pytest.param("at_risk_fraction = true\n" + MINIMAL, "at_risk_fraction", "expected a number",
                 id="fraction-bool"),
    pytest.param('default_tariff = "Золото"\n' + MINIMAL, "default_tariff",
                 "no tariff is named 'Золото'", id="unknown-default-tariff"),
    pytest.param('reaction_events = ["Outgoing Call"]\n' + MINIMAL, "reaction_events[0]",
                 "expected an amoCRM event type", id="bad-event-type"),
    pytest.param("reaction_events = []\n" + MINIMAL, "reaction_events", "at least one",
                 id="no-event-types"),
    pytest.param('reaction_events = "outgoing_call"\n' + MINIMAL, "reaction_events",
                 "expected a list of texts", id="event-types-not-list"),
    pytest.param('acceptance_period = "0h"\n' + MINIMAL, "acceptance_period", "more than zero",
                 id="zero-acceptance"),
    pytest.param(_with('acceptance_calendar = "workdays"', 'acceptance_calendar = "x"'),
                 "acceptance_calendar", "unknown calendar", id="unknown-acceptance-calendar"),
    pytest.param(MINIMAL + '[emergency]\ntags = ["авария"]\nreaction_calendar = "24x7"\n',
                 "emergency.reaction_calendar", "unknown calendar", id="unknown-emergency-cal"),
    pytest.param(MINIMAL + '[emergency]\ntags = ["авария", ""]\n', "emergency.tags[1]",
                 "cannot be empty", id="empty-tag"),
    pytest.param(MINIMAL + '[classes]\nnon_standard = ["Доработка"]\nurgent = ["Срочно"]\n',
                 "classes.urgent", "unknown key", id="unknown-class"),
    pytest.param(MINIMAL + '[classes]\nnon_standard = ["Приоритет"]\n', "classes.non_standard[0]",
                 "already belongs to tariff 'Приоритет'", id="class-tag-is-a-tariff-tag"),
    pytest.param(MINIMAL + '[tariffs.other]\nname = "Другой"\ntags = ["приоритет"]\n'
                 '[tariffs.other.typical]\ncalendar = "workdays"\nreaction = "1h"\n'
                 'resolution = "2h"\n', "tariffs.other.tags[0]", "already belongs to tariff",
                 id="tag-in-two-tariffs"),
    pytest.param(MINIMAL + '[tariffs.other]\nname = "Приоритет"\n[tariffs.other.typical]\n'
                 'calendar = "workdays"\nreaction = "1h"\nresolution = "2h"\n',
                 "tariffs.other.name", "also used by tariffs.priority", id="tariff-name-twice"),
    pytest.param(MINIMAL + '[tariffs."Дата Дривен"]\ntags = []\n',
                 'tariffs."Дата Дривен".tags', "at least one tag", id="quoted-key-no-tags"),
    pytest.param(MINIMAL + '[tariffs."Дата Дривен"]\n', 'tariffs."Дата Дривен".typical',
                 "missing table", id="no-typical-table"),
    pytest.param(MINIMAL + 'tariffs.x = "gold"\n', "tariffs.priority.typical.tariffs",
                 "unknown key", id="dotted-key-inside-a-table"),
    pytest.param(_with("[tariffs.priority]", "[tariffs.priority.non_standard.extra]"),
                 "tariffs.priority.non_standard.extra", "unknown key", id="deep-unknown"),
    pytest.param(_with('[calendars.workdays]\nworkdays = "10:00-18:00"\n', ""), "calendars",
                 "missing table", id="no-calendars"),
    pytest.param("zone = \n", "", "not valid TOML", id="toml-syntax"),
    pytest.param(MINIMAL + QUOTA + 'colour = "red"\n', "quotas.setups.limits.colour",
                 "expected a whole number", id="quota-limit-text"),
    pytest.param(MINIMAL + QUOTA.replace('tag = "Настройка"\n', ""), "quotas.setups.tag",
                 "missing", id="quota-without-tag"),
    pytest.param(MINIMAL + QUOTA.replace('tag = "Настройка"', 'tag = "Настройка"\nlimit = 2'),
                 "quotas.setups.limit", "unknown key (expected one of: name, tag, months, limits)",
                 id="quota-unknown-key"),
    pytest.param(MINIMAL + QUOTA.replace('"Приоритет" = 2', '"Золото" = 2'),
                 'quotas.setups.limits."Золото"', "no tariff is named 'Золото'",
                 id="quota-unknown-tariff"),
    pytest.param(MINIMAL + QUOTA.replace('"Приоритет" = 2', '"Приоритет" = -1'),
                 'quotas.setups.limits."Приоритет"', "cannot be negative", id="quota-negative"),
    pytest.param(MINIMAL + QUOTA.replace('"Приоритет" = 2', '"Приоритет" = 1.5'),
                 'quotas.setups.limits."Приоритет"', "expected a whole number",
                 id="quota-fraction"),
    pytest.param(MINIMAL + QUOTA.replace('"Приоритет" = 2', ""), "quotas.setups.limits",
                 "at least one tariff", id="quota-no-limits"),
    pytest.param(MINIMAL + QUOTA.replace("[quotas.setups.limits]\n", "").replace(
                 '"Приоритет" = 2', ""), "quotas.setups.limits", "missing table",
                 id="quota-no-limits-table"),
    pytest.param(MINIMAL + QUOTA.replace('tag = "Настройка"', 'tag = "Настройка"\nmonths = 0'),
                 "quotas.setups.months", "at least 1", id="quota-zero-months"),
    pytest.param(MINIMAL + QUOTA.replace('tag = "Настройка"', 'tag = "приоритет"'),
                 "quotas.setups.tag", "already belongs to tariff 'Приоритет'",
                 id="quota-tag-is-a-tariff-tag"),
    pytest.param(MINIMAL + QUOTA + QUOTA.replace("setups", "again"), "quotas.again.tag",
                 "already belongs to quotas.setups", id="quota-tag-twice"),
    pytest.param(MINIMAL + QUOTA + QUOTA.replace("setups", "again").replace(
                 'tag = "Настройка"', 'name = "setups"\ntag = "Другое"'), "quotas.again",
                 "quota name 'setups' is also used by quotas.setups", id="quota-name-twice"),
    pytest.param(MINIMAL + '[extra_hour_rates]\n"2" = 0\n', "extra_hour_rates.2",
                 "more than zero", id="zero-rate"),
    pytest.param(MINIMAL + '[extra_hour_rates]\n"two" = 3500\n', "extra_hour_rates.two",
                 "expected a number", id="rate-hours-not-a-number"),
    pytest.param(MINIMAL + '[extra_hour_rates]\n"2" = "3500 ₽"\n', "extra_hour_rates.2",
                 "expected a number", id="rate-text"),
    pytest.param(MINIMAL + '[extra_hour_rates]\n"2" = 3500\n"2.0" = 3000\n',
                 'extra_hour_rates."2.0"', "already has a rate", id="rate-twice"),
    pytest.param(MINIMAL + "[goals]\nreaction = 0\n", "goals.reaction", "more than 0",
                 id="goal-zero"),
    pytest.param(MINIMAL + "[goals]\nresolution = 101\n", "goals.resolution", "at most 100",
                 id="goal-over-100"),
    pytest.param(MINIMAL + '[goals]\nreaction = "95 %"\n', "goals.reaction",
                 "expected a percentage like 95", id="goal-text"),
    pytest.param(MINIMAL + "[goals]\nreaction = true\n", "goals.reaction",
                 "expected a percentage", id="goal-bool"),
    pytest.param(MINIMAL + "[goals]\nrespond = 95\n", "goals.respond",
                 "unknown key (expected one of: reaction, resolution, tariffs)", id="goal-clock"),
    pytest.param(MINIMAL + '[goals.tariffs."Золото"]\nreaction = 95\n',
                 'goals.tariffs."Золото"', "no tariff is named 'Золото'", id="goal-tariff"),
    pytest.param(MINIMAL + '[goals.tariffs."Приоритет"]\nreacton = 95\n',
                 'goals.tariffs."Приоритет".reacton', "unknown key", id="goal-tariff-key"),
    pytest.param(MINIMAL + '[time_entries]\nunit = "0m"\n', "time_entries.unit",
                 "more than zero", id="unit-zero"),
    pytest.param(MINIMAL + '[time_entries]\nunit = "90s"\n', "time_entries.unit",
                 "whole minutes", id="unit-seconds"),
    pytest.param(MINIMAL + "[time_entries]\nunit = 5\n", "time_entries.unit",
                 DURATION_HINT, id="unit-number"),
    pytest.param(MINIMAL + "[time_entries]\nunit_clause = 5\n", "time_entries.unit_clause",
                 "expected a text", id="clause-number"),
    pytest.param(MINIMAL + '[time_entries]\nround = "5m"\n', "time_entries.round",
                 "unknown key (expected one of: unit, unit_clause, contract)", id="terms-key"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key", "fragment"), BAD_POLICIES)
def test_bad_policy_names_the_key(text: str, key: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    error = caught.value
    assert error.key == key
    assert fragment in str(error)
    assert str(error).startswith(f"{key}: ") or not key


def test_duration_error_reads_exactly() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(_with('reaction = "1h"', 'reaction = "an hour"'))
    assert str(caught.value) == (
        'tariffs.priority.typical.reaction: expected a duration like "1h" or "90m", got \'an hour\''
    )


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)
