"""``python -m worker init``: the support pipeline's settings, picked from the account, in a .env.

The admin names the account and its token in the environment; ``init`` lists the account's
pipelines and stages with their ids and takes, from flags or by asking, the support
pipeline, its hold, acceptance and extra done stages, where accepted requests go, the
policy (the built-in CRMBP one, a preset of ``sla/presets/`` or a file) and the ledger
switches. It writes them as a ``.env`` the worker reads from its working directory and
``docker run --env-file`` takes as it is. The token is written only when the admin asks
(``--write-token``, or yes to the question), and never shown.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TypeVar

from amo_client.models import Pipeline, Status
from config.settings import Settings
from sla.policy import Policy, PolicyError, default_policy, load_policy
from sla.state import LOST, WON
from worker.envfile import UnsafeValue, plain_line
from worker.setup import loose_name as _loose

Ask = Callable[[str], str]  # one answer to a prompt; EOFError when there is none
Say = Callable[[str], None]
BUILT_IN = "crmbp"  # the preset that is the built-in policy: no SLA_POLICY_FILE needed
T = TypeVar("T")


class InitError(Exception):
    """What keeps ``init`` from writing the file, worded for the admin (exit 2)."""


@dataclass(frozen=True)
class Answers:
    """What the flags already answer; None: not given (asked, or the default)."""

    pipeline: str | None = None
    hold: tuple[str, ...] | None = None
    acceptance: tuple[str, ...] | None = None
    accepted: str | None = None
    done: tuple[str, ...] | None = None
    policy: str | None = None
    packages: bool | None = None
    call_time: bool | None = None
    write_token: bool | None = None


@dataclass(frozen=True)
class PolicyChoice:
    label: str  # as the admin sees it: "CRMBP (built-in)", "Prime Gate (prime_gate.toml)"
    path: Path | None  # SLA_POLICY_FILE; None for the built-in policy
    policy: Policy


@dataclass(frozen=True)
class Choice:
    pipeline: Pipeline
    hold: tuple[Status, ...]
    acceptance: tuple[Status, ...]
    accepted: Status
    done: tuple[Status, ...]
    policy: PolicyChoice
    packages: bool
    call_time: bool
    write_token: bool


def stages_of(pipeline: Pipeline) -> list[Status]:
    return sorted(pipeline.statuses, key=lambda status: (status.sort, status.id))


def listing(pipelines: Sequence[Pipeline]) -> list[str]:
    """The account's pipelines and their stages, numbered, with ids."""
    lines = ["pipelines:"]
    for number, pipeline in enumerate(pipelines, 1):
        archived = ", archived" if pipeline.is_archive else ""
        lines.append(f"  {number}. {pipeline.name} ({pipeline.id}{archived})")
        lines += [
            f"       {position}. {status.name} ({status.id})"
            for position, status in enumerate(stages_of(pipeline), 1)
        ]
    return lines


def presets() -> dict[str, Path]:
    """The policy presets by name (the file's stem)."""
    folder = resources.files("sla.presets")
    return {
        Path(item.name).stem: Path(str(item)).resolve()
        for item in sorted(folder.iterdir(), key=lambda item: item.name)
        if item.name.endswith(".toml")
    }


def policy_choice(wanted: str) -> PolicyChoice:
    """``crmbp`` (the built-in policy), another preset's name, or a policy file's path."""
    known = presets()
    name = wanted.strip().removesuffix(".toml")
    if name.casefold() in {BUILT_IN, "built-in", "builtin", "default"}:
        return PolicyChoice("CRMBP (built-in)", None, default_policy())
    if name in known:
        path = known[name]
    else:
        path = Path(wanted).expanduser()
        if not path.is_file():
            raise InitError(
                f"--policy: no preset or file {wanted!r}; the presets are "
                f"{', '.join(known)} (crmbp is the built-in policy), or give a policy file"
            )
        path = path.resolve()
    try:
        policy = load_policy(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, PolicyError) as error:
        raise InitError(f"--policy: {path}: {error}") from None
    return PolicyChoice(f"{policy.name or path.stem} ({path.name})", path, policy)


def _named(status: Status) -> str:
    return f"{status.name} ({status.id})"


def _pick_pipeline(pipelines: Sequence[Pipeline], wanted: str, *, numbered: bool) -> Pipeline:
    text = wanted.strip()
    if numbered and text.isdigit() and 1 <= int(text) <= len(pipelines):
        return pipelines[int(text) - 1]
    found = [p for p in pipelines if text == str(p.id)] or [
        p for p in pipelines if text.casefold() == p.name.strip().casefold()
    ]
    known = ", ".join(f"{p.name} ({p.id})" for p in pipelines) or "none"
    if not found:
        raise InitError(f"--pipeline: no pipeline {wanted!r}; the account has {known}")
    if len(found) > 1:
        raise InitError(
            f"--pipeline: several pipelines are called {wanted!r}: give its id; {known}"
        )
    return found[0]


def _pick_stages(
    pipeline: Pipeline, wanted: Sequence[str], option: str, *, numbered: bool
) -> tuple[Status, ...]:
    stages = stages_of(pipeline)
    picked: list[Status] = []
    for item in wanted:
        text = item.strip()
        if numbered and text.isdigit() and 1 <= int(text) <= len(stages):
            found = [stages[int(text) - 1]]
        else:
            found = [s for s in stages if text == str(s.id)] or [
                s for s in stages if text.casefold() == s.name.strip().casefold()
            ]
        known = ", ".join(_named(s) for s in stages)
        if not found:
            raise InitError(
                f"{option}: pipeline «{pipeline.name}» has no stage {item!r}; its stages: {known}"
            )
        if len(found) > 1:
            raise InitError(
                f"{option}: several stages of «{pipeline.name}» are called {item!r}: give its "
                f"id; its stages: {known}"
            )
        if found[0] not in picked:
            picked.append(found[0])
    return tuple(picked)


class _Roles:
    """The stages given a role so far: one role a stage, and 142 and 143 are done already."""

    def __init__(self) -> None:
        self._taken: dict[int, str] = {}

    def check(self, option: str, stages: tuple[Status, ...]) -> tuple[Status, ...]:
        for stage in stages:
            if stage.id in (WON, LOST) and option != "--accepted":
                raise InitError(f"{option}: {_named(stage)} is always a done stage; leave it out")
            if stage.id in self._taken:
                raise InitError(
                    f"{option}: {_named(stage)} is a {self._taken[stage.id].removeprefix('--')} "
                    "stage already; a stage has one role"
                )
        return stages

    def claim(self, option: str, stages: tuple[Status, ...]) -> tuple[Status, ...]:
        self.check(option, stages)
        self._taken.update((stage.id, option) for stage in stages)
        return stages


class _Asker:
    """Asks again after an answer it cannot use; no answer at all (EOF) is an InitError."""

    def __init__(self, ask: Ask, say: Say) -> None:
        self._ask, self._say = ask, say

    def text(self, prompt: str, what: str) -> str:
        try:
            return self._ask(prompt).strip()
        except EOFError:
            raise InitError(
                f"no answer for {what} (the input ended): answer at a terminal, or pass "
                "--non-interactive with the flags"
            ) from None

    def until_valid(self, prompt: str, what: str, read: Callable[[str], T]) -> T:
        while True:
            answer = self.text(prompt, what)
            try:
                return read(answer)
            except InitError as error:
                self._say(f"  {error}")

    def yes(self, prompt: str, what: str) -> bool:
        while True:
            answer = self.text(f"{prompt} [y/N]: ", what).casefold()
            if answer in {"", "n", "no", "н", "нет"}:
                return False
            if answer in {"y", "yes", "д", "да"}:
                return True
            self._say("  answer y or n")


def _split(answer: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in answer.split(",") if part.strip())


def choose(pipelines: Sequence[Pipeline], answers: Answers, *, ask: Ask | None, say: Say) -> Choice:
    """The admin's choice: each item from its flag, else asked (``ask``), else the default
    (the pipeline has none: without ``ask`` it is an InitError)."""
    asker = _Asker(ask, say) if ask is not None else None
    pipeline = _choose_pipeline(pipelines, answers.pipeline, asker)
    if asker is not None:
        say(f"stages of «{pipeline.name}»:")
        for position, status in enumerate(stages_of(pipeline), 1):
            say(f"  {position}. {_named(status)}")
    hold, acceptance, accepted, done = _choose_stages(pipeline, answers, asker)
    policy = _choose_policy(answers.policy, asker, say)

    def switch(given: bool | None, prompt: str, what: str) -> bool:
        if given is not None:
            return given
        return asker.yes(prompt, what) if asker is not None else False

    packages = switch(
        answers.packages, "Track prepaid hour packages per company (SLA_PACKAGES)?", "--packages"
    )
    call_time = packages and switch(
        answers.call_time,
        "Count the duration of calls as time spent (SLA_CALL_TIME)?",
        "--call-time",
    )
    write_token = switch(
        answers.write_token,
        "Write the token into the file too? It is a secret; the file is readable by you only",
        "--write-token",
    )
    return Choice(
        pipeline=pipeline,
        hold=hold,
        acceptance=acceptance,
        accepted=accepted,
        done=done,
        policy=policy,
        packages=packages,
        call_time=call_time,
        write_token=write_token,
    )


def _choose_pipeline(
    pipelines: Sequence[Pipeline], given: str | None, asker: _Asker | None
) -> Pipeline:
    if given is not None:
        return _pick_pipeline(pipelines, given, numbered=False)
    if asker is None:
        known = ", ".join(f"{p.name} ({p.id})" for p in pipelines) or "none"
        raise InitError(f"--pipeline: required with --non-interactive; the account has {known}")
    return asker.until_valid(
        "Support pipeline (number, id or name): ",
        "the support pipeline",
        lambda text: _pick_pipeline(pipelines, text, numbered=True),
    )


def _choose_stages(
    pipeline: Pipeline, answers: Answers, asker: _Asker | None
) -> tuple[tuple[Status, ...], tuple[Status, ...], Status, tuple[Status, ...]]:
    """Hold, acceptance, accepted and extra done stages, one role a stage."""
    roles = _Roles()

    def stage_list(given: tuple[str, ...] | None, option: str, prompt: str) -> tuple[Status, ...]:
        if given is not None:
            return roles.claim(option, _pick_stages(pipeline, given, option, numbered=False))
        if asker is None:
            return ()
        return asker.until_valid(
            f"{prompt} (numbers, ids or names, comma-separated; empty: none): ",
            option.removeprefix("--") + " stages",
            lambda text: roles.claim(
                option, _pick_stages(pipeline, _split(text), option, numbered=True)
            ),
        )

    def accepted_stage(text: str, *, numbered: bool) -> Status:
        picked = _pick_stages(pipeline, [text], "--accepted", numbered=numbered)
        (stage,) = roles.check("--accepted", picked)
        return stage

    hold = stage_list(answers.hold, "--hold", "Hold stages, where the clocks stop")
    acceptance = stage_list(
        answers.acceptance,
        "--acceptance",
        "Acceptance stages, done stages waiting for the customer's acceptance",
    )
    if answers.accepted is not None:
        accepted = accepted_stage(answers.accepted, numbered=False)
    elif asker is not None and acceptance:
        won = next((s for s in stages_of(pipeline) if s.id == WON), None)
        shown = _named(won) if won is not None else str(WON)
        accepted = asker.until_valid(
            f"Stage accepted requests move to (number, id or name; empty: {shown}): ",
            "the accepted stage",
            lambda text: accepted_stage(text or str(WON), numbered=True),
        )
    else:
        accepted = accepted_stage(str(WON), numbered=False)
    done = stage_list(answers.done, "--done", "Extra done stages (142 and 143 always are)")
    return hold, acceptance, accepted, done


def _choose_policy(given: str | None, asker: _Asker | None, say: Say) -> PolicyChoice:
    if given is not None:
        return policy_choice(given)
    if asker is None:
        return policy_choice(BUILT_IN)
    names = [BUILT_IN, *(name for name in presets() if name != BUILT_IN)]
    say("policies:")
    for number, name in enumerate(names, 1):
        say(f"  {number}. {policy_choice(name).label}")

    def read(text: str) -> PolicyChoice:
        if text.isdigit() and 1 <= int(text) <= len(names):
            return policy_choice(names[int(text) - 1])
        return policy_choice(text or BUILT_IN)

    return asker.until_valid(
        "Policy (number, preset name or a policy file; empty: 1): ", "the policy", read
    )


def _reference(item: Pipeline | Status, siblings: Sequence[Pipeline | Status]) -> str:
    """How the file names a pipeline or stage: by name when the name alone finds it and the
    file can hold it as it is; else by id. 142 and 143, named by each account its own way,
    by id."""
    name = item.name.strip()
    clashes = [
        other
        for other in siblings
        if other.id != item.id and (_loose(other.name) == _loose(name) or str(other.id) == name)
    ]
    if item.id in (WON, LOST) or clashes or not name or "," in name:
        return str(item.id)
    try:
        plain_line("X", name)
    except UnsafeValue:
        return str(item.id)
    return name


def _account_lines(settings: Settings, write_token: bool) -> list[str]:
    lines = ["# the account"]
    if settings.amo_base_url:
        lines.append(plain_line("AMO_BASE_URL", settings.amo_base_url))
    elif settings.amo_subdomain:
        lines.append(plain_line("AMO_SUBDOMAIN", settings.amo_subdomain))
        lines.append(plain_line("AMO_DOMAIN", settings.amo_domain.value))
    if settings.uses_oauth:
        lines.append(plain_line("AMO_CLIENT_ID", settings.amo_client_id or ""))
        lines.append(plain_line("AMO_REDIRECT_URI", settings.amo_redirect_uri or ""))
        if settings.amo_token_file is not None:
            lines.append(plain_line("AMO_TOKEN_FILE", str(settings.amo_token_file)))
        secret_name, secret = "AMO_CLIENT_SECRET", settings.amo_client_secret
    else:
        secret_name, secret = "AMO_LONG_LIVED_TOKEN", settings.amo_long_lived_token
    if write_token and secret is not None:
        try:
            lines.append(plain_line(secret_name, secret.get_secret_value()))
        except UnsafeValue:
            raise InitError(
                f"{secret_name}: it holds characters a .env cannot keep as they are; keep it "
                "in the environment (init without --write-token)"
            ) from None
    else:
        lines.append(
            f"# {secret_name} is not written here: keep it in the environment, or run "
            "`python -m worker init --write-token`"
        )
    return lines


def render(
    choice: Choice,
    settings: Settings,
    pipelines: Sequence[Pipeline],
    *,
    state_dir: Path | None,
    today: date,
) -> str:
    """The .env text: the account, the pipeline and stages, the policy, the ledgers."""
    pipeline, stages = choice.pipeline, stages_of(choice.pipeline)
    roles: dict[int, list[str]] = {}
    for role, chosen in (
        ("hold", choice.hold),
        ("acceptance", choice.acceptance),
        ("done", choice.done),
        ("accepted", (choice.accepted,)),
    ):
        for stage in chosen:
            roles.setdefault(stage.id, []).append(role)
    for closed in (WON, LOST):
        roles.setdefault(closed, []).insert(0, "done")

    def names(chosen: Sequence[Status]) -> str:
        return ",".join(_reference(stage, stages) for stage in chosen)

    lines = [
        f"# amo-sla settings, written by `python -m worker init` on {today.isoformat()}.",
        "# The worker reads this file from its working directory (the environment wins);",
        "# `docker run --env-file` takes it as it is. The reference: README.md.",
        "",
        *_account_lines(settings, choice.write_token),
        "",
        f"# the support pipeline «{pipeline.name}» ({pipeline.id}) and its stages:",
        *(
            f"#   {_named(stage)}"
            + (f": {', '.join(roles[stage.id])}" if stage.id in roles else "")
            for stage in stages
        ),
        plain_line("SLA_PIPELINE", _reference(pipeline, pipelines)),
    ]
    if choice.hold:
        lines.append(plain_line("SLA_HOLD_STAGES", names(choice.hold)))
    if choice.acceptance:
        lines.append(plain_line("SLA_ACCEPTANCE_STAGES", names(choice.acceptance)))
    if choice.done:
        lines.append(plain_line("SLA_DONE_STAGES", names(choice.done)))
    lines.append(plain_line("SLA_ACCEPTED_STAGE", _reference(choice.accepted, stages)))
    lines += ["", f"# the policy: {choice.policy.label}"]
    if choice.policy.path is not None:
        lines.append(plain_line("SLA_POLICY_FILE", str(choice.policy.path)))
    quotas = choice.policy.policy.quotas
    lines += [
        "",
        "# company ledgers: hour packages by this switch; quotas by the policy ("
        + (", ".join(quota.name for quota in quotas) if quotas else "none in it")
        + ")",
        plain_line("SLA_PACKAGES", "true" if choice.packages else "false"),
    ]
    if choice.call_time:
        lines.append(plain_line("SLA_CALL_TIME", "true"))
    if state_dir is not None:
        lines += ["", plain_line("SLA_STATE_DIR", str(state_dir))]
    return "\n".join(_one_line(line) if line.startswith("#") else line for line in lines) + "\n"


def _one_line(comment: str) -> str:
    """A comment with the account's names in it kept to one line: a line break or another
    control character in a name (any text amoCRM holds) becomes a space."""
    return "".join(
        " " if unicodedata.category(char) in {"Cc", "Zl", "Zp"} else char for char in comment
    )


def summary(choice: Choice) -> str:
    parts = [f"pipeline «{choice.pipeline.name}»"]
    for label, chosen in (
        ("hold", choice.hold),
        ("acceptance", choice.acceptance),
        ("extra done", choice.done),
    ):
        if chosen:
            parts.append(f"{label}: {', '.join(s.name for s in chosen)}")
    if choice.acceptance:
        parts.append(f"accepted go to {choice.accepted.name}")
    parts.append(f"policy {choice.policy.label}")
    ledgers = ["hour packages"] if choice.packages else []
    if choice.policy.policy.quotas:
        ledgers.append("quotas")
    parts.append(f"ledgers: {', '.join(ledgers) or 'off'}")
    return "; ".join(parts)
