"""``python -m worker explain --company ID`` against the fake amoCRM served on loopback HTTP,
configured through the environment as an admin would: the company's ledger laid out entry by
entry. Expected figures are worked out by hand from spec §7."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cycle_kit import LOST, MOSCOW, World, at
from tests.test_cycle_cli import (
    Served,
    serve,
)
from worker.admin import provision
from worker.cli import main
from worker.fields import Ledger

pytestmark = pytest.mark.usefixtures("cli_environment")

PRIME_GATE = Path(__file__).resolve().parent.parent / "sla" / "presets" / "prime_gate.toml"
PAID = datetime(2025, 11, 3, 15, 0, tzinfo=MOSCOW)
NOW = "2025-11-05T12:00:00+03:00"


@pytest.fixture
def packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    monkeypatch.setenv("SLA_PACKAGES", "true")
    for served in serve(monkeypatch, tmp_path):
        provision(
            served.world.client,
            dry_run=False,
            say=lambda line: None,
            ledgers=frozenset({Ledger.PACKAGES}),
        )
        served.world.fake.reset_request_log()
        yield served


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    monkeypatch.setenv("SLA_POLICY_FILE", str(PRIME_GATE))
    for served in serve(monkeypatch, tmp_path):
        provision(
            served.world.client,
            dry_run=False,
            say=lambda line: None,
            ledgers=frozenset({Ledger.QUOTAS}),
        )
        yield served


def package_company(world: World, hours: float, paid: datetime) -> int:
    fake = world.fake
    hours_id = fake.field_id("Пакет: часов", entity="companies") or 0
    paid_id = fake.field_id("Пакет: оплачен", entity="companies") or 0
    return fake.add_company(
        "ООО Ромашка",
        responsible_user_id=world.agents[1],
        custom_fields={hours_id: hours, paid_id: int(paid.timestamp())},
    )


def request(world: World, company: int | None, *tags: str, created: float, name: str) -> int:
    return world.fake.add_lead(
        name,
        pipeline_id=world.support.id,
        tags=list(tags),
        created_at=created,
        responsible_user_id=world.agents[0],
        company_id=company,
    )


def line_with(output: str, *parts: str) -> str:
    """The one line of ``output`` that holds every part."""
    found = [line for line in output.splitlines() if all(part in line for part in parts)]
    assert len(found) == 1, (parts, output)
    return found[0]


def section(output: str, title: str) -> str:
    """The lines from the one that starts with ``title`` to the next empty line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def cells(line: str) -> list[str]:
    """A table row's cells (they are set apart by two spaces or more)."""
    return re.split(r"\s{2,}", line.strip())


def explain_company(company: int, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["explain", "--company", str(company), "--now", NOW])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_every_time_entry_shows_its_note_its_minutes_and_its_package(
    packages: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    world = packages.world
    anna, oleg = world.agents
    company = package_company(world, 2, PAID)
    funnel = request(world, company, "Приоритет", created=at(5, 10, 0), name="Настроить воронку")
    earlier = request(world, company, "По факту", created=at(31, 9, 0, month=10), name="Отчёт")
    world.fake.move_lead(earlier, 142, by_user=oleg, at=at(2, 13, 0))
    elsewhere = world.fake.add_company("ООО Лютик")
    other = request(world, elsewhere, "Приоритет", created=at(5, 9, 0), name="Чужое обращение")
    world.fake.add_note(earlier, "Время: 40 — выгрузка", created_by=oleg, at=at(2, 12, 0))
    world.fake.add_note(funnel, "Время: 1 ч 30 мин — настройка воронки", created_by=anna,
                        at=at(5, 10, 30))  # fmt: skip
    world.fake.add_note(funnel, "Время: 21\nподробности", created_by=anna, at=at(5, 11, 0))
    world.fake.add_note(funnel, "Обсудили задачу", created_by=anna, at=at(5, 11, 5))
    world.fake.add_note(funnel, "Время: полчаса", created_by=oleg, at=at(5, 11, 10))
    world.fake.add_note(funnel, "Время: 10 мин — проверка", created_by=oleg, at=at(5, 11, 30))
    world.fake.add_note(other, "Время: 3 ч", created_by=oleg, at=at(5, 11, 0))

    out = explain_company(company, capsys)

    assert "company" in out.splitlines()[0]
    assert "«ООО Ромашка», responsible Олег Петров" in out.splitlines()[0]
    entry = line_with(out, "Время: 1 ч 30 мин — настройка воронки")
    assert all(part in entry for part in ("05.11.2025 10:30", str(funnel), "Анна Смирнова"))
    assert cells(entry)[-3:] == ["1 ч 30 мин", "90", "package of 03.11.2025"]
    assert cells(line_with(out, "Время: 21"))[-3:] == ["21 мин", "25", "package of 03.11.2025"]
    assert "outside the package" in line_with(out, "Время: 40 — выгрузка", "02.11.2025 12:00")
    assert "unreadable" in line_with(out, "Время: полчаса", "Олег Петров")
    assert "Обсудили задачу" not in out
    assert "Время: 3 ч" not in out  # another company's request
    assert "paid on 03.11.2025, valid to 03.12.2025" in out
    assert "used 2 ч 5 мин of 2 ч in 3 entries, left -5 мин; status Исчерпан" in out
    assert "outside the package: 1 entry, 40 мин" in out
    open_request = line_with(out, str(funnel), "Настроить воронку", "Приоритет", "05.11.2025 10:00")
    assert cells(open_request)[-2:] == ["125", "да"]  # spent minutes, «Пакет: исчерпан»
    assert cells(line_with(out, "Пакет: остаток, мин"))[-2:] == ["—", "-5"]
    assert "Пакет: часов" in line_with(out, "(typed by a manager)", "Пакет: часов")
    task = line_with(out, f"company {company}, for Олег Петров")
    assert "израсходовано 2 ч 5 мин из 2 ч" in task
    assert packages.gets_only()


def test_entries_round_up_to_the_policys_unit(
    packages: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = tmp_path / "policy.toml"
    crmbp = (PRIME_GATE.parent / "crmbp.toml").read_text(encoding="utf-8")
    policy.write_text(crmbp + '\n[time_entries]\nunit = "15m"\n', encoding="utf-8")
    monkeypatch.setenv("SLA_POLICY_FILE", str(policy))
    world = packages.world
    company = package_company(world, 2, PAID)
    funnel = request(world, company, "Приоритет", created=at(5, 10, 0), name="Настроить воронку")
    world.fake.add_note(funnel, "Время: 21 — звонок", created_by=world.agents[0], at=at(5, 10, 30))
    world.fake.add_note(funnel, "Время: 1 ч", created_by=world.agents[0], at=at(5, 11, 0))

    out = explain_company(company, capsys)

    assert "each rounded up to whole 15-minute units" in out
    assert cells(line_with(out, "Время: 21 — звонок"))[-3:] == [
        "21 мин",
        "30",
        "package of 03.11.2025",
    ]
    assert "used 1 ч 30 мин of 2 ч in 2 entries, left 30 мин" in out


def test_each_quota_lists_the_requests_it_counted_and_the_one_over_it(
    quotas: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    world = quotas.world
    company = world.fake.add_company("ИП Сидоров", responsible_user_id=world.agents[1])
    day = datetime(2025, 11, 5, 10, 0, tzinfo=MOSCOW)

    def setup(days_before: int, name: str, *tags: str) -> int:
        created = (day - timedelta(days=days_before)).timestamp()
        return request(world, company, "Микробизнес", *tags, created=created, name=name)

    lost = setup(40, "Отказ", "Настройка")
    world.fake.move_lead(lost, LOST, by_user=world.agents[0], at=at(1, 10, 0))
    first = setup(30, "Сайт", "Настройка")
    second = setup(10, "Интеграция", "Настройка")
    third = setup(0, "Телеграм-бот", "Настройка")
    session = setup(5, "AnyDesk", "Удалённое подключение")

    out = explain_company(company, capsys)

    quota = section(out, "quotas (plan: Микробизнес, the tariff of its latest request")
    counted = [cells(line) for line in quota.splitlines() if re.match(r"\s+\d+\s+3000", line)]
    assert [row[:3] for row in counted] == [
        ["1", str(first), "Сайт"],
        ["2", str(second), "Интеграция"],
        ["3", str(third), "Телеграм-бот"],
        ["1", str(session), "AnyDesk"],
    ]
    assert [row[-1] for row in counted] == ["2", "2", "over the quota", "1"]
    assert line_with(quota, str(lost)).strip() == f"not counted: {lost} «Отказ» (closed as lost)"
    assert line_with(out, "«Квоты»: ") == (
        "«Квоты»: Настройки: 3 из 2; Настройки модулей: 0 из 4; Удалённые подключения: 1 из 1"
    )
    assert cells(line_with(out, str(third), "Телеграм-бот", "Новое обращение"))[-1] == "да"
    assert line_with(out, f"lead {third}, for Анна Смирнова", "3-е по квоте «Настройки»")


def test_an_unknown_company_is_an_error(
    packages: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explain", "--company", "999999", "--now", NOW])

    assert code == 1
    assert "company 999999 does not exist" in capsys.readouterr().err


def test_without_a_ledger_switched_on_it_says_how_to_switch_one_on(
    packages: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLA_PACKAGES", "false")

    code = main(["explain", "--company", "1", "--now", NOW])

    assert code == 2
    assert "SLA_PACKAGES" in capsys.readouterr().err
    assert packages.world.fake.request_log == []


def test_with_a_ledger_on_a_lead_and_a_backfill_read_the_company_fields_too(
    packages: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    world = packages.world
    company = package_company(world, 2, PAID)
    lead = request(world, company, "Приоритет", created=at(5, 10, 0), name="Настроить воронку")
    world.fake.add_note(lead, "Время: 25 мин", created_by=world.agents[0], at=at(5, 10, 30))

    explained = main(["explain", str(lead), "--now", NOW, "--no-trace"])

    out = capsys.readouterr()
    assert explained == 0, out.err
    assert '"tariff": "Приоритет"' in out.out
    assert main(["backfill", "--since", "2025-11-01", "--dry-run"]) == 0, capsys.readouterr()
