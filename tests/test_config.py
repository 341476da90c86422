"""Settings: one frozen object, every bad variable named, secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.reference import markdown_table, readme_section
from config.settings import (
    ConfigError,
    Settings,
    cron_fields,
    load_settings,
    task_template_problem,
    unknown_variables,
)

pytestmark = pytest.mark.usefixtures("clean_environment")

ROOT = Path(__file__).resolve().parent.parent


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_nothing_configured_means_no_account_and_crmbp_defaults() -> None:
    settings = load_settings()
    assert settings.account_configured is False
    assert settings.base_url is None
    assert settings.sla_poll_interval == 300
    assert settings.sla_policy_file is None
    assert settings.token_file == Path("state/tokens.json")
    assert settings.health_max_age == 900


def test_subdomain_and_domain_make_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        AMO_SUBDOMAIN="Acme",
        AMO_DOMAIN="kommo.com",
        AMO_LONG_LIVED_TOKEN="t0ken",
        SLA_PIPELINE="Поддержка",
    )
    settings = load_settings()
    assert settings.base_url == "https://acme.kommo.com"
    assert settings.uses_oauth is False


def test_lists_are_comma_separated_and_mappings_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        AMO_BASE_URL="https://acme.amocrm.ru/leads/pipeline/1",
        AMO_LONG_LIVED_TOKEN="t0ken",
        SLA_PIPELINE="7001",
        SLA_HOLD_STAGES=" Ждём клиента , 55 ",
        SLA_EMERGENCY_TAGS="авария,Outage",
        SLA_TARIFF_TAGS='{"Приоритет": ["Приоритет", "VIP"]}',
    )
    settings = load_settings()
    assert settings.base_url == "https://acme.amocrm.ru"
    assert settings.sla_hold_stages == ("Ждём клиента", "55")
    assert settings.sla_emergency_tags == ("авария", "Outage")
    assert settings.sla_tariff_tags == {"Приоритет": ("Приоритет", "VIP")}


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.sla_poll_interval = 5  # type: ignore[misc]


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SLA_POLL_INTERVAL=120\nSLA_LOG_LEVEL=debug\n")
    configure(monkeypatch, SLA_POLL_INTERVAL="90")
    settings = load_settings()
    assert settings.sla_poll_interval == 90
    assert settings.sla_log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SLA_POLL_INTERVAL", "soon", "SLA_POLL_INTERVAL: Input should be a valid integer"),
        ("SLA_POLL_INTERVAL", "1", "SLA_POLL_INTERVAL: Input should be greater than or equal"),
        ("AMO_DOMAIN", "bitrix24.ru", "AMO_DOMAIN: Input should be"),
        ("AMO_BASE_URL", "acme.amocrm.ru", "AMO_BASE_URL: expected an address"),
        ("AMO_MAX_REQUESTS_PER_SECOND", "20", "AMO_MAX_REQUESTS_PER_SECOND: Input should be less"),
        ("SLA_TASK_TEXT", "Просрочено {deadline}", "SLA_TASK_TEXT: unknown placeholder {deadline}"),
        ("SLA_LOG_LEVEL", "chatty", "SLA_LOG_LEVEL: expected DEBUG"),
        ("SLA_TARIFF_TAGS", "Приоритет=VIP", "SLA_TARIFF_TAGS"),
        ("SLA_PACKAGES", "maybe", "SLA_PACKAGES: expected true or false (also yes/no, on/off"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    configure(monkeypatch, **{variable: value})
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert said in str(raised.value)


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("#{lead_id[0]}", "placeholder {lead_id[0]} cannot be rendered ({lead_id} is a number"),
        ("до {due.year}", "placeholder {due.year} cannot be rendered ({due} is a text"),
        ("{lead_name:d}", "placeholder {lead_name:d} cannot be rendered ({lead_name} is a text"),
        ("{tariff[1]}", "placeholder {tariff[1]} cannot be rendered ({tariff} is a text"),
        ("{lead_id!x}", "placeholder {lead_id!x} cannot be rendered"),
        ("{} просрочено", "placeholder {} cannot be rendered"),
        ("{0}", "placeholder {0} cannot be rendered"),
        ("{lead_id:{due}}", "placeholder {lead_id:{due}}: a placeholder inside a format spec"),
        ("{lead.name}", "unknown placeholder {lead.name}"),
        ("срок }", "malformed template"),
        ("срок {due", "malformed template"),
    ],
)
@pytest.mark.parametrize("variable", ["SLA_TASK_TEXT", "SLA_RESOLUTION_TASK_TEXT"])
def test_a_task_template_that_would_fail_at_the_first_breach_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, template: str, said: str
) -> None:
    configure(monkeypatch, **{variable: template})
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{variable}: {said}" in str(raised.value)
    assert "allowed: {lead_id}, {lead_name}, {tariff}, {request_class}, {due}" in str(raised.value)


def test_task_templates_that_render_with_the_worker_s_values_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = "#{lead_id:>9} {lead_id.real} {lead_name!r} {tariff[0]} {request_class:>12} {due}"
    configure(monkeypatch, SLA_TASK_TEXT=template, SLA_RESOLUTION_TASK_TEXT="{{literal}} {due}")
    settings = load_settings()
    assert settings.sla_task_text == template
    assert task_template_problem(Settings.model_fields["sla_task_text"].default) is None
    assert task_template_problem(Settings.model_fields["sla_resolution_task_text"].default) is None


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"AMO_CLIENT_ID": "abc", "AMO_BASE_URL": "https://a.amocrm.ru"}, "OAuth needs all three"),
        (
            {"AMO_BASE_URL": "https://a.amocrm.ru", "AMO_SUBDOMAIN": "a"},
            "AMO_BASE_URL and AMO_SUBDOMAIN",
        ),
        ({"AMO_BASE_URL": "https://a.amocrm.ru", "AMO_LONG_LIVED_TOKEN": "x"}, "SLA_PIPELINE"),
    ],
)
def test_inconsistent_account_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], said: str
) -> None:
    configure(monkeypatch, **values)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert said in str(raised.value)


def test_a_bad_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    configure(
        monkeypatch,
        AMO_LONG_LIVED_TOKEN=secret,
        AMO_CLIENT_ID="id",
        AMO_CLIENT_SECRET=secret,
        AMO_REDIRECT_URI="https://example.org/cb",
        AMO_BASE_URL="https://a.amocrm.ru",
        SLA_PIPELINE="1",
    )
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert secret not in str(raised.value)
    monkeypatch.delenv("AMO_CLIENT_ID")
    monkeypatch.delenv("AMO_CLIENT_SECRET")
    monkeypatch.delenv("AMO_REDIRECT_URI")
    settings = load_settings()
    assert secret not in repr(settings)
    assert secret not in str(settings.model_dump())


def test_readme_reference_table_is_generated_from_settings() -> None:
    assert readme_section(ROOT / "README.md") == markdown_table(), (
        "README's configuration table is stale: run `python -m config.reference --update`"
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLA_TIME_MARKER", "   ", "e.g. `Время:`"),
        ("SLA_HTTP_LISTEN", "no-such-host.invalid:8080", "does not resolve"),
        ("SLA_FIRST_START", "2026-03-02T09:00:00", "an offset too"),
        ("SLA_PAST_BREACH_TASKS", "yesterday", "`none`, `all`, or an age"),
    ],
)
def test_a_bad_day_one_setting_stops_the_worker_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    configure(monkeypatch, **{name: value})
    with pytest.raises(ConfigError) as raised:
        load_settings()
    (problem,) = [line for line in raised.value.problems if name in line]
    assert says in problem


def test_the_time_marker_is_kept_without_the_spaces_around_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, SLA_TIME_MARKER="  Время:  ", SLA_FIRST_START="2026-03-02T09:00+03:00")
    settings = load_settings()
    assert settings.sla_time_marker == "Время:"
    assert settings.sla_first_start is not None
    assert settings.sla_first_start.utcoffset() is not None


def test_robot_replies_are_switched_on_by_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.app import build_policy

    assert build_policy(load_settings()).robot_replies is False
    configure(monkeypatch, SLA_ROBOT_REPLIES="true")
    assert build_policy(load_settings()).robot_replies is True


def test_a_misspelled_variable_is_named_with_the_nearest_known_one(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLA_HOLD_STAGE=Ждём клиента\nOTHER_THING=1\n")
    environ = {"SLA_PIPLINE": "Техподдержка", "SLA_PIPELINE": "x", "HOME": "/root"}

    assert unknown_variables(environ, tmp_path / ".env") == [
        "SLA_HOLD_STAGE is not a variable the worker reads; did you mean SLA_HOLD_STAGES?",
        "SLA_PIPLINE is not a variable the worker reads; did you mean SLA_PIPELINE?",
    ]
    assert unknown_variables({"AMO_COLOUR": "red"}, None) == [
        "AMO_COLOUR is not a variable the worker reads; the README lists every variable"
    ]
    assert unknown_variables({name.upper(): "" for name in Settings.model_fields}, None) == []


SMTP_PASSWORD = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("values", "name", "says"),
    [
        ({"SLA_SMTP_URL": f"mail://bob:{SMTP_PASSWORD}@smtp.example.com"}, "SLA_SMTP_URL",
         "expected smtp://USER:PASSWORD@HOST:587"),
        ({"SLA_SMTP_URL": f"smtp://bob:{SMTP_PASSWORD}@smtp.example.com:99999"}, "SLA_SMTP_URL",
         "smtps://USER:PASSWORD@HOST:465"),
        ({"SLA_SMTP_URL": f"smtp://bob:{SMTP_PASSWORD}@smtp.example.com"}, "SLA_SMTP_FROM",
         "required with SLA_SMTP_URL"),
        ({"SLA_SMTP_FROM": "not an address"}, "SLA_SMTP_FROM", "like sla@example.com"),
        ({"SLA_REPORT_TO": "boss@example.com, nobody"}, "SLA_REPORT_TO", "'nobody'"),
        ({"SLA_REPORT_SCHEDULE": "at nine"}, "SLA_REPORT_SCHEDULE", "cron expression"),
        ({"SLA_REPORT_SCHEDULE": "0 9 1 * *", "SLA_REPORT_TO": "boss@example.com"},
         "SLA_SMTP_URL", "required with SLA_REPORT_SCHEDULE"),
        ({"SLA_REPORT_SCHEDULE": "0 9 1 * *", "SLA_SMTP_URL": "smtp+plain://relay",
          "SLA_SMTP_FROM": "sla@example.com"}, "SLA_REPORT_TO", "set one"),
        ({"SLA_REPORT_RETRY_MINUTES": "0"}, "SLA_REPORT_RETRY_MINUTES", "greater than or equal"),
    ],
)  # fmt: skip
def test_bad_mail_settings_are_named_and_the_password_never_echoed(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], name: str, says: str
) -> None:
    configure(monkeypatch, **values)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    (problem,) = [line for line in raised.value.problems if line.startswith(name)]
    assert says in problem
    assert SMTP_PASSWORD not in str(raised.value)


def test_mail_settings_read_as_an_admin_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLA_SMTP_URL=f"smtps://bob%40example.com:{SMTP_PASSWORD}@smtp.example.com",
        SLA_SMTP_FROM=" sla@example.com ",
        SLA_REPORT_SCHEDULE="0  9 1 * *",
        SLA_REPORT_TO="boss@example.com, head@example.com",
        SLA_PROVIDER_NAME="ИП Иванов Иван Иванович",
    )
    settings = load_settings()
    assert settings.sla_report_schedule == "0 9 1 * *"
    assert settings.sla_report_to == ("boss@example.com", "head@example.com")
    assert settings.sla_smtp_from == "sla@example.com"
    assert settings.sla_provider_name == "ИП Иванов Иван Иванович"
    assert SMTP_PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("weekday", "days"),
    [("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
     ("*/2", "sun,tue,thu,sat"), ("Mon,fri", "mon,fri"), ("5-7", "sun,fri,sat"), ("*", "*")],
)  # fmt: skip
def test_a_schedules_weekdays_read_as_cron_reads_them(weekday: str, days: str) -> None:
    # APScheduler's own reading would take 1 for Tuesday and refuse 7.
    assert cron_fields(f"0 9 * * {weekday}")["day_of_week"] == days


@pytest.mark.parametrize("expression", ["0 9 * *", "0 9 * * 8", "0 9 * * 5-1", "0 9 * * */0"])
def test_a_schedule_that_is_no_cron_expression_is_refused(expression: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each says what is wrong in its own words
        cron_fields(expression)


def test_a_misspelled_line_holding_the_token_does_not_put_the_token_in_a_warning(
    tmp_path: Path,
) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhbW8ifQ.c2lnbmF0dXJl"
    (tmp_path / ".env").write_text(f"AMO_SUBDOMAIN=example\nAMO_LONG_LIVED_TOKEN:{token}\n")

    warnings = unknown_variables({}, tmp_path / ".env")

    assert warnings  # the line is still worth a warning
    assert token.upper() not in " ".join(warnings).upper()
