"""The packages depend on each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOWER = ("sla", "amo_client", "config")
# No file, socket, process, logging or wall-clock access in the pure SLA engine.
FORBIDDEN_IN_SLA = {
    "httpx",
    "structlog",
    "logging",
    "sqlite3",
    "socket",
    "subprocess",
    "os",
    "pathlib",
    "io",
    "time",
    "apscheduler",
    "pydantic_settings",
    "tenacity",
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", LOWER)
def test_lower_packages_do_not_import_each_other_or_worker(package: str) -> None:
    others = {"worker", *LOWER} - {package}
    for path in (ROOT / package).rglob("*.py"):
        assert not imported_roots(path) & others, f"{path} imports {imported_roots(path) & others}"


def test_sla_imports_no_io_library() -> None:
    for path in (ROOT / "sla").rglob("*.py"):
        assert not imported_roots(path) & FORBIDDEN_IN_SLA, path
