"""The env files ``init`` and ``sandbox`` write: each value reads back the same in the worker
(python-dotenv) and in the other reader the file is for (a POSIX shell, or Docker's literal
``--env-file``); a value that would not is refused."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from worker.envfile import UnsafeValue, plain_line, shell_line, write_private

SH = shutil.which("sh") or "/bin/sh"
BOTH = ["Ждём клиента", "http://127.0.0.1:8080", "a=b", "100%", "", "x,y", "  inner  spaces"]
SHELL_ONLY = ["it's", "#1", " lead", "Поддержка #2"]  # a shell reads these as they are


@pytest.mark.parametrize("value", BOTH + SHELL_ONLY)
def test_shell_lines_read_the_same_in_a_shell_and_in_the_worker(value: str, tmp_path: Path) -> None:
    file = tmp_path / "sandbox.env"
    file.write_text(shell_line("VALUE", value) + "\n", encoding="utf-8")

    shell = subprocess.run(
        [SH, "-c", 'set -a; . "$1"; set +a; printf %s "$VALUE"', "sh", str(file)],
        capture_output=True,
        text=True,
        check=True,
    )

    assert shell.stdout == value
    assert dotenv_values(file)["VALUE"] == value


@pytest.mark.parametrize("value", [v for v in BOTH if v == v.strip()])
def test_plain_lines_read_the_same_in_the_worker_and_in_docker(value: str, tmp_path: Path) -> None:
    line = plain_line("VALUE", value)
    file = tmp_path / ".env"
    file.write_text(line + "\n", encoding="utf-8")

    assert line == f"VALUE={value}"  # Docker takes everything after the `=` as it is
    assert dotenv_values(file)["VALUE"] == value


@pytest.mark.parametrize("value", ['say "hi"', "$HOME", "a\\b", "`id`", "two\nlines"])
def test_values_a_shell_would_change_are_refused(value: str) -> None:
    with pytest.raises(UnsafeValue, match=r"^VALUE: "):
        shell_line("VALUE", value)


@pytest.mark.parametrize("value", [*SHELL_ONLY, "$HOME", "a\\b", "trailing "])
def test_values_the_worker_and_docker_would_read_apart_are_refused(value: str) -> None:
    with pytest.raises(UnsafeValue, match=r"^VALUE: "):
        plain_line("VALUE", value)


def test_the_file_is_its_owners_alone_and_kept_unless_replaced(tmp_path: Path) -> None:
    file = tmp_path / ".env"
    file.write_text("OLD=1\n", encoding="utf-8")
    file.chmod(0o644)

    with pytest.raises(FileExistsError):
        write_private(file, "NEW=1\n", replace=False)
    assert file.read_text(encoding="utf-8") == "OLD=1\n"
    write_private(file, "NEW=1\n", replace=True)

    assert file.read_text(encoding="utf-8") == "NEW=1\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
