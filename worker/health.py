"""The heartbeat the service leaves after each good cycle, and the health check that reads it.

``SLA_STATE_DIR/last_cycle.json`` holds ``{"finished_at": ISO 8601, "report": {...}}`` and is
replaced atomically, so a reader never sees half a file. ``python -m worker health`` (a
container's HEALTHCHECK) passes while the last good cycle is recent enough.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

HEARTBEAT_FILE: Final = "last_cycle.json"

# A heartbeat this far ahead of the checking clock still counts as fresh: the two clocks are
# the same machine's, but a health probe may read it a moment before the writer's clock ticks.
_CLOCK_SKEW_SECONDS: Final = 5.0


@dataclass(frozen=True)
class HealthVerdict:
    healthy: bool
    reason: str  # one line, printed by ``python -m worker health``


def heartbeat_path(state_dir: Path) -> Path:
    return state_dir / HEARTBEAT_FILE


def write_heartbeat(
    state_dir: Path, report_dict: Mapping[str, object], finished_at: datetime
) -> Path:
    """Record a successful cycle; atomic (temp file, fsync, rename). Returns the file's path."""
    if finished_at.tzinfo is None:
        raise ValueError("finished_at must be timezone-aware")
    state_dir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        {"finished_at": finished_at.astimezone(UTC).isoformat(), "report": dict(report_dict)},
        ensure_ascii=False,
        default=str,
    )
    target = heartbeat_path(state_dir)
    fd, temp_name = tempfile.mkstemp(dir=state_dir, prefix=f".{HEARTBEAT_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(state_dir)
    return target


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_health(state_dir: Path, max_age_seconds: float, now: datetime) -> HealthVerdict:
    """Healthy when the heartbeat records a cycle that finished at most ``max_age_seconds`` ago."""
    if max_age_seconds <= 0:
        raise ValueError("max_age_seconds must be positive")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    path = heartbeat_path(state_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return HealthVerdict(False, f"no heartbeat at {path}: no sync cycle has finished yet")
    except OSError as error:
        return HealthVerdict(False, f"cannot read heartbeat {path}: {error.strerror or error}")
    finished_at = _finished_at(raw)
    if finished_at is None:
        return HealthVerdict(False, f"heartbeat {path} is damaged: no aware finished_at")
    age = (now - finished_at).total_seconds()
    stamp = finished_at.astimezone(UTC).isoformat()
    if age < -_CLOCK_SKEW_SECONDS:
        return HealthVerdict(
            False, f"last cycle finished at {stamp}, {-age:.0f} s in the future: check the clock"
        )
    if age > max_age_seconds:
        return HealthVerdict(
            False,
            f"last successful cycle finished at {stamp}, {age:.0f} s ago "
            f"(limit {max_age_seconds:.0f} s)",
        )
    return HealthVerdict(
        True, f"ok: last successful cycle finished at {stamp}, {max(age, 0):.0f} s ago"
    )


def _finished_at(raw: str) -> datetime | None:
    try:
        document = json.loads(raw)
        value = datetime.fromisoformat(document["finished_at"])
    except (ValueError, TypeError, KeyError):
        return None
    return value if value.tzinfo is not None else None


def health_main(state_dir: Path, max_age_seconds: int, now: datetime | None = None) -> int:
    """``python -m worker health``: print one line, return 0 when healthy, 1 otherwise."""
    verdict = check_health(state_dir, max_age_seconds, now or datetime.now(UTC))
    print(verdict.reason if verdict.healthy else f"unhealthy: {verdict.reason}", flush=True)
    return 0 if verdict.healthy else 1
