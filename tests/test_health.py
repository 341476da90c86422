"""The heartbeat file and ``python -m worker health``'s verdict on it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from worker.health import HEARTBEAT_FILE, check_health, health_main, write_heartbeat

FINISHED = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
REPORT = {"leads_read": 12, "leads_written": 3, "next_change_at": None}


def test_write_heartbeat_leaves_one_complete_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "nested"
    path = write_heartbeat(state_dir, REPORT, FINISHED.astimezone(timezone(timedelta(hours=3))))

    assert path == state_dir / HEARTBEAT_FILE
    assert json.loads(path.read_text()) == {
        "finished_at": "2025-03-03T09:00:00+00:00",
        "report": REPORT,
    }
    write_heartbeat(state_dir, {"leads_read": 1}, FINISHED + timedelta(minutes=5))
    assert json.loads(path.read_text())["report"] == {"leads_read": 1}
    assert sorted(os.listdir(state_dir)) == [HEARTBEAT_FILE]  # no temp file left behind


def test_write_heartbeat_refuses_a_naive_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        write_heartbeat(tmp_path, REPORT, datetime(2025, 3, 3, 9, 0))
    assert not (tmp_path / HEARTBEAT_FILE).exists()


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(timedelta(0), 0, id="just-written"),
        pytest.param(timedelta(seconds=899), 0, id="within-the-limit"),
        pytest.param(timedelta(seconds=900), 0, id="at-the-limit"),
        pytest.param(timedelta(seconds=901), 1, id="stale"),
        pytest.param(timedelta(seconds=-2), 0, id="a-moment-ahead"),
        pytest.param(timedelta(minutes=-10), 1, id="from-the-future"),
    ],
)
def test_health_by_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], age: timedelta, expected: int
) -> None:
    write_heartbeat(tmp_path, REPORT, FINISHED)

    assert health_main(tmp_path, 900, now=FINISHED + age) == expected
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("ok: " if expected == 0 else "unhealthy: ")
    assert "2025-03-03T09:00:00+00:00" in out


def test_stale_reason_names_the_age_and_the_limit(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, REPORT, FINISHED)
    verdict = check_health(tmp_path, 900, FINISHED + timedelta(hours=1))
    assert not verdict.healthy
    assert "3600 s ago" in verdict.reason
    assert "limit 900 s" in verdict.reason


def test_missing_heartbeat_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert health_main(tmp_path / "never-created", 900, now=FINISHED) == 1
    out = capsys.readouterr().out
    assert out.startswith("unhealthy: no heartbeat at ")
    assert "no sync cycle has finished yet" in out


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"report": {}}',
        '{"finished_at": "yesterday"}',
        '{"finished_at": "2025-03-03T09:00:00"}',
        '{"finished_at": 1741000000}',
    ],
    ids=["empty", "broken", "list", "no-time", "bad-time", "naive-time", "number"],
)
def test_damaged_heartbeat_is_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text(content)
    assert health_main(tmp_path, 900, now=FINISHED) == 1
    assert "is damaged" in capsys.readouterr().out


def test_health_uses_the_wall_clock_by_default(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, REPORT, datetime.now(UTC))
    assert health_main(tmp_path, 60) == 0
    write_heartbeat(tmp_path, REPORT, datetime.now(UTC) - timedelta(seconds=120))
    assert health_main(tmp_path, 60) == 1


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        check_health(tmp_path, 0, FINISHED)
