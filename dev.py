#!/usr/bin/env python3
"""Set up the project's virtualenv and run one of its two jobs.

    python3 dev.py run [ARGS...]   the worker (the demo on the built-in amoCRM emulator
                                   when no account is configured)
    python3 dev.py test            the whole test suite: ruff, mypy, import contracts, pytest
    python3 dev.py lock [ARGS...]  pin the runtime dependencies in requirements.lock for the
                                   image (Python 3.11 on Linux, with hashes) using uv; ARGS go
                                   to `uv pip compile`, e.g. --upgrade or --upgrade-package NAME

Only Python 3.11+ is needed: the virtualenv is created in .venv and reinstalled
whenever pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
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
    if not argv or argv[0] not in {"run", "test", "lock"}:
        print(__doc__)
        return 2
    ensure_env()
    job, rest = argv[0], argv[1:]
    if job == "test":
        return test(rest)
    if job == "lock":
        return lock(rest)
    return run([str(PYTHON), "-m", "worker", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
