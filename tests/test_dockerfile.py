"""The container image, checked without a Docker engine.

The Dockerfile is parsed and its promises checked (non-root user, state volume, health check,
exec-form command); the slow test repeats its install step in a clean virtualenv from exactly
the files the image copies and starts the installed worker.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

import dev
from tests.test_requirements_lock import parse_lock

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = "/var/lib/amo-sla"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(part) for part in value]


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    (found,) = [i for i in instructions if i.keyword == keyword]
    return found


def test_base_image_is_python_311_slim(dockerfile: list[Instruction]) -> None:
    assert only(dockerfile, "FROM").arguments == "python:3.11-slim"


def test_runs_as_a_user_it_creates_not_root(dockerfile: list[Instruction]) -> None:
    user = [i for i in dockerfile if i.keyword == "USER"][-1].arguments
    uid = user.partition(":")[0]
    assert uid not in {"root", "0"}
    creating = " ".join(i.arguments for i in dockerfile if i.keyword == "RUN")
    assert f"useradd --system --uid {uid}" in creating
    # Everything after USER runs as that user; the service must be started after it.
    keywords = [i.keyword for i in dockerfile]
    assert keywords.index("USER") < keywords.index("CMD")


def test_state_directory_is_a_volume_named_by_the_setting(dockerfile: list[Instruction]) -> None:
    assert STATE_DIR in exec_form(only(dockerfile, "VOLUME").arguments)
    env = env_values(dockerfile)
    assert env["SLA_STATE_DIR"] == STATE_DIR
    assert env["PYTHONUNBUFFERED"] == "1"
    chown = next(i.arguments for i in dockerfile if "chown" in i.arguments)
    assert f"chown amosla:amosla {STATE_DIR}" in chown


def test_health_check_and_command_use_the_worker(dockerfile: list[Instruction]) -> None:
    healthcheck = only(dockerfile, "HEALTHCHECK").arguments
    options, _, command = healthcheck.partition(" CMD ")
    assert exec_form(command) == ["python", "-m", "worker", "health"]
    assert "--interval=" in options
    # Exec form, so python is PID 1 and receives SIGTERM itself.
    assert exec_form(only(dockerfile, "CMD").arguments) == ["python", "-m", "worker", "run"]


def pip_commands(instructions: list[Instruction]) -> list[list[str]]:
    """The pip commands of the RUN instructions, in order, each without the leading ``pip``."""
    return [
        words[1:]
        for instruction in instructions
        if instruction.keyword == "RUN"
        for command in instruction.arguments.split("&&")
        if (words := shlex.split(command)) and words[0] == "pip"
    ]


def test_installs_the_locked_dependencies_then_the_project_without_test_extras(
    dockerfile: list[Instruction],
) -> None:
    commands = pip_commands(dockerfile)
    locked = ["install", "--no-deps", "--require-hashes", "-r", "requirements.lock"]
    project = ["install", "--no-deps", "."]
    assert locked in commands
    assert project in commands
    assert commands.index(locked) < commands.index(project)
    # Nothing is resolved outside the lock, and the installed set is checked for completeness.
    installs = [command for command in commands if command[0] == "install"]
    assert all("--no-deps" in command for command in installs)
    assert not any("-e" in command or "[test" in " ".join(command) for command in installs)
    assert commands.index(["check"]) > commands.index(project)


def test_the_lock_is_resolved_for_the_image_python(dockerfile: list[Instruction]) -> None:
    image_python = only(dockerfile, "FROM").arguments.removeprefix("python:").split("-")[0]
    command = dev.lock_command(Path("uv"), [])
    assert command[command.index("--python-version") + 1] == image_python
    assert command[command.index("--python-platform") + 1] == "linux"
    assert "--generate-hashes" in command
    assert command[command.index("--output-file") + 1] in copied_paths(dockerfile)


def copied_paths(instructions: list[Instruction]) -> set[str]:
    paths: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "COPY":
            *sources, _destination = instruction.arguments.split()
            paths.update(source.rstrip("/") for source in sources)
    return paths


def packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(pattern.rstrip("*") for pattern in includes)


def test_copies_everything_the_install_needs(dockerfile: list[Instruction]) -> None:
    assert {"requirements.lock", "pyproject.toml", "README.md", *packages()} <= copied_paths(
        dockerfile
    )


def test_dockerignore_keeps_secrets_state_and_caches_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "state", "*.sqlite3", "tokens.json"} <= ignored
    assert {".mypy_cache", ".ruff_cache", ".pytest_cache", "**/__pycache__"} <= ignored
    assert not ignored & {"requirements.lock", "pyproject.toml", "README.md", *packages()}


def source_files(package_root: Path) -> set[str]:
    return {
        path.relative_to(package_root.parent).as_posix()
        for path in package_root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_the_image_install_step_works_in_a_clean_virtualenv(
    tmp_path: Path, dockerfile: list[Instruction]
) -> None:
    # The build context as the image sees it: only the copied paths, no caches.
    context = tmp_path / "src"
    context.mkdir()
    for name in copied_paths(dockerfile):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # The Dockerfile's pip commands, in the build context as its working directory, but
    # keeping pip's cache so a second run does not download again.
    for command in pip_commands(dockerfile):
        subprocess.run(
            [str(python), "-m", "pip", command[0], "-q", *command[1:]],
            check=True,
            timeout=300,
            env=env,
            cwd=context,
        )
    # Exactly the locked versions were installed, and nothing else besides the project.
    lock = parse_lock((context / "requirements.lock").read_text())
    expected_versions = {str(pin.name): str(pin.version) for pin in lock.pins}
    expected_versions["amo-sla"] = tomllib.loads((context / "pyproject.toml").read_text())[
        "project"
    ]["version"]
    assert installed_versions(python, env) == expected_versions

    # The worker's state goes to tmp_path, so `health` below finds no heartbeat.
    worker_env = {**env, "SLA_STATE_DIR": str(tmp_path / "state")}

    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "worker", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env,
            cwd=tmp_path,
            check=False,
        )

    help_run = worker("--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: python -m worker" in help_run.stdout

    # The installed worker runs: the demo (the real cycle on the built-in emulator, the
    # bundled policy included) and the health check the image's HEALTHCHECK calls.
    demo = worker("demo")
    assert demo.returncode == 0, demo.stderr
    assert "breach tasks created:" in demo.stdout
    assert "0 answered 429" in demo.stdout
    health = worker("health")
    assert health.returncode == 1
    assert health.stdout.startswith("unhealthy:")

    # Every module imports with only the runtime dependencies (a module that fails here fails
    # the same way in the development environment, where all extras are installed), and every
    # file of the packages, presets and other data included, made it into the installation.
    installed = survey(python, env, cwd=tmp_path)
    development = survey(Path(sys.executable), env, cwd=ROOT)
    assert installed["import_errors"].keys() == development["import_errors"].keys(), installed
    expected = set().union(*(source_files(context / name) for name in packages()))
    assert {"worker/service.py", "worker/py.typed"} <= expected
    assert expected - set(installed["files"]) == set()


def installed_versions(python: Path, env: dict[str, str]) -> dict[str, str]:
    """``python``'s distributions by canonical name, but for the venv's own pip and setuptools."""
    result = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return {
        canonicalize_name(name): version
        for name, version in json.loads(result.stdout)
        if canonicalize_name(name) not in {"pip", "setuptools"}
    }


SURVEY = """
import importlib, importlib.resources, json, pkgutil, sys
files, errors = set(), {}
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        if module.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except Exception as error:
            errors[module.name] = f"{type(error).__name__}: {error}"
    stack = [(importlib.resources.files(name), name)]
    while stack:
        node, prefix = stack.pop()
        for child in node.iterdir():
            if child.name == "__pycache__":
                continue
            path = prefix + "/" + child.name
            if child.is_dir():
                stack.append((child, path))
            else:
                files.add(path)
print(json.dumps({"files": sorted(files), "import_errors": errors}))
"""


def survey(python: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """The packages' importable modules and files as ``python`` sees them."""
    result = subprocess.run(
        [str(python), "-c", SURVEY, *packages()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    surveyed: dict[str, Any] = json.loads(result.stdout)
    return surveyed
