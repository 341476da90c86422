"""The demo end to end, on a virtual clock: the three acts run, and their closing tables show the
SLA fields, the company ledgers (an hour package used up, a quota gone over), a customer's
message that waited too long, and every task."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from amo_client.fake import FakeAmoCRM
from sla.policy import Policy
from sla.state import StageRoles
from tests.client_kit import FakeClock
from tests.oracle import engine_state, expected_fields, stored_fields, support_roles
from worker import demo
from worker.cycle import CycleOptions
from worker.demo import Pacing, run_demo
from worker.logs import configure_logging


@dataclass(frozen=True)
class DemoAccount:
    """One act's account, as the oracle takes it."""

    act: demo.Act

    @property
    def fake(self) -> FakeAmoCRM:
        return self.act.fake

    @property
    def policy(self) -> Policy:
        return self.act.policy

    @property
    def roles(self) -> StageRoles:
        first, _, hold, acceptance = demo.STAGES
        return support_roles(self.act.support, first=first, hold=hold, acceptance=acceptance)


@dataclass(frozen=True)
class Played:
    output: str
    accounts: list[DemoAccount]  # act 1's, act 2's, act 3's


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Played:
    clock = FakeClock()
    out = io.StringIO()
    state_dir: Path = tmp_path_factory.mktemp("demo")
    accounts: list[DemoAccount] = []

    def kept(seeder: Callable[[FakeAmoCRM], demo.Act]) -> Callable[[FakeAmoCRM], demo.Act]:
        def seed(fake: FakeAmoCRM) -> demo.Act:
            accounts.append(DemoAccount(seeder(fake)))
            return accounts[-1].act

        return seed

    with pytest.MonkeyPatch.context() as patch:  # the acts' emulators, for the oracle
        patch.setattr(demo, "seed", kept(demo.seed))
        patch.setattr(demo, "seed_quotas", kept(demo.seed_quotas))
        patch.setattr(demo, "seed_conversation", kept(demo.seed_conversation))
        code = run_demo(
            out,
            state_dir=state_dir,
            pacing=Pacing(clock.sleep, clock.monotonic),
            report_dir=state_dir / "report",
            wide=True,
        )
    assert code == 0
    return Played(out.getvalue(), accounts)


@pytest.fixture(scope="module")
def output(played: Played) -> str:
    return played.output


def section(output: str, title: str) -> list[str]:
    """The lines after the one that starts with ``title``, up to the next empty line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1 : end]


def acts(output: str) -> tuple[str, str]:
    first, rest = output.split("\nAct 2:", 1)
    second, _ = rest.split("\nAct 3:", 1)
    return first, second


def third_act(output: str) -> str:
    return output.split("\nAct 3:", 1)[1]


def row(lines: list[str], *parts: str) -> list[str]:
    """The cells of the one table row that holds every part."""
    found = [line for line in lines if all(part in line for part in parts)]
    assert len(found) == 1, (parts, lines)
    return re.split(r"\s{2,}", found[0].strip())


def test_the_acts_finish_without_a_429(output: str) -> None:
    assert output.count("0 answered 429.") == 3
    assert "breach tasks created:" in output


def test_act_one_leads_table_gains_the_package_columns(output: str) -> None:
    first, _ = acts(output)
    leads = section(first, "the leads' SLA fields in amoCRM")
    assert leads[0].split("  ")[-1].strip() == "Пакет: исчерпан"
    assert "SLA: затрачено, мин" in leads[0]
    # 35 + 65 minutes logged on an open request of the used-up package.
    assert row(leads, "По факту, типовое")[-2:] == ["100", "да"]
    assert row(leads, "По факту, ждём клиента")[-2:] == ["65", "да"]
    assert row(leads, "Приоритет, типовое ")[-2:] == ["—", "нет"]  # a company with no package
    assert row(leads, "Приоритет, типовое ")[3] == "Просрочено"  # the SLA part is unchanged


def test_act_one_company_has_used_its_two_hours(output: str) -> None:
    first, _ = acts(output)
    companies = section(first, "the companies' ledger fields in amoCRM")
    assert "Пакет: статус" in companies[0]
    assert row(companies, "ООО Ромашка") == [
        "ООО Ромашка",
        "Мария Козлова",
        "2",
        "01.11.2025",
        "01.12.2025",
        "165",
        "-45",
        "Исчерпан",
    ]
    tasks = section(first, "ledger tasks created:")
    assert len(tasks) == 1
    assert tasks[0].startswith("  company 40000001, to Мария Козлова: Пакет часов")
    assert "израсходовано 2 ч 45 мин из 2 ч" in tasks[0]


def test_act_one_ends_with_the_company_audit(output: str) -> None:
    first, _ = acts(output)
    audit = first.split("$ python -m worker explain --company ", 1)[1]
    assert "unreadable: «Время: полчаса»" in audit
    assert "balance: used 2 ч 45 мин of 2 ч in 4 entries, left -45 мин; status Исчерпан" in audit


def test_act_two_third_setup_goes_over_the_quota(output: str) -> None:
    _, second = acts(output)
    assert "prime_gate.toml" in second.splitlines()[0]
    leads = section(second, "the leads' SLA fields in amoCRM")
    assert leads[0].rstrip().endswith("Квота: сверх лимита")
    assert row(leads, "Микробизнес, 3-я настройка")[-1] == "да"
    assert row(leads, "Микробизнес, 2-я настройка")[-1] == "нет"
    companies = section(second, "the companies' ledger fields in amoCRM")
    assert row(companies, "ИП Сидоров")[-1] == (
        "Настройки: 3 из 2; Настройки модулей: 0 из 4; Удалённые подключения: 1 из 1"
    )
    assert row(companies, "ООО Вектор")[-1].startswith("Настройки: 1 из 4;")
    tasks = section(second, "ledger tasks created:")
    assert len(tasks) == 1
    assert tasks[0].startswith("  lead 30000005, to Анна Смирнова:")
    assert "3-е по квоте «Настройки»" in tasks[0]
    assert "breach tasks created: none" in second


def test_act_three_a_second_message_waits_too_long_and_is_escalated(output: str) -> None:
    third = third_act(output)
    assert "crmbp_next_response.toml" in third.splitlines()[0]
    assert "creating: «SLA: ответ до» (date_time)" in third
    leads = section(third, "the leads' SLA fields in amoCRM")
    assert re.split(r"\s{2,}", leads[0].strip())[-2:] == ["SLA: ответ до", "SLA: ответ просрочен"]
    # Answered by phone at 15:40, two and a half hours late: nothing waits, the breach stays.
    assert row(leads, "второе сообщение ждёт")[-2:] == ["—", "да"]
    assert row(leads, "ответ в срок")[-2:] == ["—", "нет"]
    assert "14:15:02  worker: read 1, wrote 1, tasks 1" in third
    tasks = section(third, "breach tasks created:")
    assert len(tasks) == 2
    assert tasks[0].startswith("  lead 30000001, to Анна Смирнова: Клиент ждёт ответа")
    assert "[SLA: следующий ответ после 05.11.2025 11:05:00, срок → ответственный]" in tasks[0]
    assert tasks[1].startswith("  lead 30000001, to Мария Козлова: Клиент ждёт ответа")
    assert "срок + 1 ч → руководитель]" in tasks[1]
    assert "companies' ledger fields" not in third


def test_a_company_without_a_package_shows_none(output: str) -> None:
    first, _ = acts(output)
    companies = section(first, "the companies' ledger fields in amoCRM")
    assert row(companies, "ООО Василёк")[2:] == ["—"] * 6


def test_the_demo_ends_with_the_report_of_its_day(output: str) -> None:
    last = output.rstrip().splitlines()[-1]
    assert last.startswith("The SLA report of act 1's support day: ")
    page = Path(last.split(": ", 1)[1])
    assert page.name == "report.html"
    html = page.read_text(encoding="utf-8")
    assert "Обращения, зарегистрированные 05.11.2025 — 05.11.2025" in html
    assert (page.parent / "summary.csv").exists()
    first, _ = acts(output)
    assert "$ python -m worker report --from 2025-11-05 --to 2025-11-05" in first
    # ООО Ромашка's 2-hour package went 45 minutes over: at 3 500 ₽ an hour, 2 625 ₽.
    hours = (page.parent / "hours.csv").read_text(encoding="utf-8-sig").splitlines()
    romashka = next(line for line in hours if line.startswith("ООО Ромашка"))
    assert romashka.split(",")[-3:] == ["45", "3500", "2625"]
    # and its statement says the same: 45 minutes over, not «0 left»
    pages = [
        " ".join(path.read_text(encoding="utf-8").replace("\u00a0", " ").split())
        for path in sorted((page.parent / "statements").glob("statement-*.html"))
    ]
    (text,) = [text for text in pages if '<dd id="customer">ООО Ромашка</dd>' in text]
    assert "(-45 мин) — работы сверх пакета" in text
    assert 'К оплате сверх пакета</dt><dd class="due">2 625 ₽' in text


def test_the_demo_fits_120_columns_and_logs_in_the_storys_time(tmp_path: Path) -> None:
    clock = FakeClock()
    out, logs = io.StringIO(), io.StringIO()
    handlers = list(logging.getLogger().handlers)
    try:
        code = run_demo(
            out,
            state_dir=tmp_path,
            pacing=Pacing(clock.sleep, clock.monotonic),
            report_dir=tmp_path / "report",
            log=lambda story: configure_logging("json", "INFO", logs, clock=story),
        )
    finally:
        for handler in logging.getLogger().handlers:
            if handler not in handlers:
                logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()

    assert code == 0
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) == 120  # folded, not cut: the longest lines fill the width
    assert "breach tasks created:" in lines
    stamps = [json.loads(line)["timestamp"] for line in logs.getvalue().splitlines()]
    assert len(stamps) > 20
    assert {stamp[:10] for stamp in stamps} == {"2025-11-05"}


@pytest.mark.parametrize("act", [1, 2, 3])
def test_each_acts_table_shows_the_fields_the_engine_gives_its_requests(
    played: Played, act: int
) -> None:
    text = (*acts(played.output), third_act(played.output))[act - 1]
    shown = re.search(r"the leads' SLA fields in amoCRM at (\d\d):(\d\d):(\d\d):", text)
    assert shown is not None
    hour, minute, second = (int(part) for part in shown.groups())
    at = demo.DEMO_START.replace(hour=hour, minute=minute, second=second)
    account = played.accounts[act - 1]
    for sample in account.act.samples:
        stored = stored_fields(account, sample.lead_id)
        closed_at = (account.fake.lead(sample.lead_id) or {})["closed_at"]
        if closed_at and closed_at < (at - CycleOptions.history_horizon).timestamp():
            assert not any(stored.values()), sample.about  # closed before the worker's horizon
            continue
        next_response = account.policy.next_response is not None
        expected = expected_fields(
            engine_state(account, sample.lead_id, at), next_response=next_response
        )
        assert stored == expected, sample.about
