#!/usr/bin/env python3
"""Set up the project's virtualenv and run one of its two jobs.

    python3 dev.py run [ARGS...]   the worker (the demo on the built-in amoCRM emulator
                                   when no account is configured)
    python3 dev.py test            the whole test suite: ruff, mypy, import contracts, dead
                                   code (vulture), pytest
    python3 dev.py dead-code       only the dead-code check (a step of `test`)
    python3 dev.py figures [NAME]  run the benches again and rewrite bench/README.md's figures
                                   (every block, or the named ones)
    python3 dev.py lock [ARGS...]  pin the runtime dependencies in requirements.lock for the
                                   image (Python 3.11 on Linux, with hashes) using uv; ARGS go
                                   to `uv pip compile`, e.g. --upgrade or --upgrade-package NAME

Only Python 3.11+ is needed: the virtualenv is created in .venv and reinstalled
whenever pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed-from"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
UV = BIN / ("uv.exe" if os.name == "nt" else "uv")
UV_REQUIREMENT = "uv>=0.9,<1"
# The Docker image's Python (python:3.11-slim) and platform, which the lock is resolved for.
IMAGE_PYTHON = "3.11"
IMAGE_PLATFORM = "linux"


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the user has
        sys.exit(f"amo-sla needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("installing amo-sla and its test tools into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(digest)


def run(command: list[str]) -> int:
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def test(extra: list[str]) -> int:
    checks = [
        [str(PYTHON), "-m", "ruff", "check", "."],
        [str(PYTHON), "-m", "ruff", "format", "--check", "."],
        [str(PYTHON), "-m", "mypy"],
        [str(BIN / "lint-imports")],
        [str(PYTHON), str(ROOT / "dev.py"), "dead-code"],
        # One pytest worker per core: the suite waits on subprocesses and sockets as much as
        # it computes, and each test owns its fake amoCRM, ports and temporary folders.
        [str(PYTHON), "-m", "pytest", "--numprocesses=auto", "--dist=worksteal", *extra],
    ]
    for check in checks:
        print(
            "$",
            " ".join(Path(part).name if i == 0 else part for i, part in enumerate(check)),
            flush=True,
        )
        code = run(check)
        if code != 0:
            return code
    return 0


# Code nothing calls: vulture's functions, methods, classes and properties (its 60 %
# findings; its variables there are mostly model fields amoCRM's JSON fills) and all of its
# 80 % findings. Names called by frameworks are listed; decorated rules are the tests'.
DEAD_CODE_PATHS = ["worker", "amo_client", "sla", "config", "bench", "tests", "dev.py"]
CALLED_BY_FRAMEWORKS = [
    "_check_*",  # pydantic validators of config.settings
    "_split_commas",
    "_empty_params",
    "handle_request",  # httpx transports
    "handle_RCPT",  # aiosmtpd's handler hooks
    "handle_DATA",
    "handle_QUIT",
    "log_message",  # http.server
    "do_*",
    "page_rows",  # the report's template
    "page_headers",
    "page_urls",
    "teardown",  # hypothesis' state machines
]
FRAMEWORK_DECORATORS = [
    "@rule",
    "@invariant",
    "@precondition",
    "@initialize",
    "@pytest.fixture",
    "@field_validator",
    "@model_validator",
]
DEAD_KINDS = ("unused function", "unused method", "unused class", "unused property")


def dead_code() -> int:
    found = subprocess.run(
        [
            str(PYTHON),
            "-m",
            "vulture",
            *DEAD_CODE_PATHS,
            "--min-confidence=60",
            f"--ignore-names={','.join(CALLED_BY_FRAMEWORKS)}",
            f"--ignore-decorators={','.join(FRAMEWORK_DECORATORS)}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    dead = [line for line in found if _is_dead(line)]
    for line in dead:
        print(line)
    return 1 if dead else 0


def _is_dead(finding: str) -> bool:
    confidence = re.search(r"\((\d+)% confidence\)", finding)
    sure = confidence is not None and int(confidence.group(1)) >= 80
    return sure or any(kind in finding for kind in DEAD_KINDS)


def figures(names: list[str]) -> int:
    """Install the benches' extra, then run them and rewrite bench/README.md's figures."""
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test,bench]"], check=True)
    return run([str(PYTHON), "-m", "bench.figures", *names])


def lock_command(uv: Path, extra: list[str]) -> list[str]:
    """``uv pip compile`` pinning pyproject.toml's runtime dependencies for the image."""
    return [
        str(uv),
        "pip",
        "compile",
        "pyproject.toml",
        "--generate-hashes",
        "--python-version",
        IMAGE_PYTHON,
        "--python-platform",
        IMAGE_PLATFORM,
        "--custom-compile-command",
        "python3 dev.py lock",
        "--output-file",
        "requirements.lock",
        "--quiet",
        *extra,
    ]


def lock(extra: list[str]) -> int:
    if not UV.exists():
        print(f"installing {UV_REQUIREMENT} into .venv", flush=True)
        pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", UV_REQUIREMENT], check=True)
    return run(lock_command(UV, extra))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "lock", "dead-code", "figures"}:
        print(__doc__)
        return 2
    ensure_env()
    job, rest = argv[0], argv[1:]
    if job == "test":
        return test(rest)
    if job == "lock":
        return lock(rest)
    if job == "dead-code":
        return dead_code()
    if job == "figures":
        return figures(rest)
    return run([str(PYTHON), "-m", "worker", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
