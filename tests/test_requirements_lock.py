"""requirements.lock, which the image installs, against pyproject.toml's runtime dependencies.

Read offline: each dependency pinned once, inside its range, every pin with its hashes, and
nothing in the file but names, versions, hashes and comments.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?P<hashes>(?: --hash=\S+)*)"
)
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    hashes: tuple[str, ...]
    direct: bool  # the lock says pyproject.toml asks for it


@dataclass(frozen=True)
class Lock:
    pins: tuple[Pin, ...]
    unreadable: tuple[str, ...]  # lines that are neither a pin nor a comment


def parse_lock(text: str) -> Lock:
    """The pins of a hashed requirements file; a pin's comments tell whether it is direct."""
    pins: list[Pin] = []
    unreadable: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and line.startswith("#"):
            if pins and "(pyproject.toml)" in line:
                pins[-1] = Pin(pins[-1].name, pins[-1].version, pins[-1].hashes, direct=True)
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        entry, pending = (pending + line).strip(), ""
        if not entry:
            continue
        match = PIN.fullmatch(entry)
        if match is None:
            unreadable.append(entry)
            continue
        hashes = tuple(match["hashes"].replace("--hash=", "").split())
        pins.append(
            Pin(
                canonicalize_name(match["name"]),
                Version(match["version"]),
                hashes,
                direct=False,
            )
        )
    if pending:
        unreadable.append(pending.strip())
    return Lock(tuple(pins), tuple(unreadable))


def lock_problems(requirements: list[Requirement], lock: Lock) -> list[str]:
    """What keeps ``lock`` from installing exactly ``requirements`` with ``--require-hashes``."""
    problems = [f"not a pin: {line}" for line in lock.unreadable]
    wanted = {canonicalize_name(requirement.name) for requirement in requirements}
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        pins = [pin for pin in lock.pins if pin.name == name]
        if len(pins) != 1:
            problems.append(f"{name}: pinned {len(pins)} times")
        problems.extend(
            f"{name}=={pin.version} is outside {requirement.specifier}"
            for pin in pins
            if not requirement.specifier.contains(pin.version, prereleases=True)
        )
    for pin in lock.pins:
        if not pin.hashes:
            problems.append(f"{pin.name}=={pin.version}: no hash")
        problems.extend(
            f"{pin.name}=={pin.version}: not a sha256 hash: {digest}"
            for digest in pin.hashes
            if not HASH.fullmatch(digest)
        )
        if pin.direct and pin.name not in wanted:
            problems.append(f"{pin.name}: locked for pyproject.toml, which does not ask for it")
    return problems


def runtime_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(line) for line in pyproject["project"]["dependencies"]]


def test_the_lock_pins_every_runtime_dependency_in_its_range_with_hashes() -> None:
    lock = parse_lock((ROOT / "requirements.lock").read_text())
    assert lock_problems(runtime_requirements(), lock) == []
    # The transitive dependencies are pinned too (the image installs with --no-deps).
    assert {"pydantic-core", "httpcore", "h11"} <= {pin.name for pin in lock.pins}


def test_the_lock_names_the_command_that_refreshes_it() -> None:
    assert "python3 dev.py lock" in (ROOT / "requirements.lock").read_text()


HASH_A = "--hash=sha256:" + "a" * 64
HASH_B = "--hash=sha256:" + "b" * 64


def test_each_way_a_lock_falls_out_of_sync_is_a_problem() -> None:
    requirements = [Requirement(r) for r in ("httpx<0.29", "tenacity>=8.2", "holidays")]
    lock = parse_lock(
        "# header\n"
        "--index-url file:///opt/pypi-more/simple\n"
        f"httpx==0.29.0 \\\n    {HASH_A}\n    # via amo-sla (pyproject.toml)\n"
        "holidays==0.60\n    # via\n    #   amo-sla (pyproject.toml)\n"
        f"holidays==0.61 \\\n    {HASH_A} \\\n    {HASH_B}\n"
        f"anyio==4.0 \\\n    --hash=md5:0\n    # via httpx\n"
        f"six==1.17.0 \\\n    {HASH_B}\n    # via amo-sla (pyproject.toml)\n"
        "./vendor/structlog-24.1.0-py3-none-any.whl\n"
    )
    assert lock_problems(requirements, lock) == [
        "not a pin: --index-url file:///opt/pypi-more/simple",
        "not a pin: ./vendor/structlog-24.1.0-py3-none-any.whl",
        "httpx==0.29.0 is outside <0.29",
        "tenacity: pinned 0 times",
        "holidays: pinned 2 times",
        "holidays==0.60: no hash",
        "anyio==4.0: not a sha256 hash: md5:0",
        "six: locked for pyproject.toml, which does not ask for it",
    ]


def test_a_lock_in_sync_has_no_problem() -> None:
    lock = parse_lock(
        f"httpx==0.28.1 \\\n    {HASH_A} \\\n    {HASH_B}\n    # via amo-sla (pyproject.toml)\n"
        f"h11==0.16.0 \\\n    {HASH_A}\n    # via httpcore\n"
    )
    assert lock_problems([Requirement("httpx>=0.27,<0.29")], lock) == []
    assert [pin.direct for pin in lock.pins] == [True, False]
