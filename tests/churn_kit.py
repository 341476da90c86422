"""Pieces of the stateful cycle test: a worker killed mid-request, faults, and the worker's
tasks and notes counted in the fake (the fields' oracle is :mod:`tests.oracle`)."""

from __future__ import annotations

from collections import Counter

import httpx

from amo_client.fake import FakeAmoCRM
from sla.state import SlaState
from tests.cycle_kit import ACCEPTANCE, MOSCOW, World
from worker.tasks import step_marker
from worker.writes import ACCEPTANCE_NOTE


class Killed(BaseException):
    """The worker's process dies here: nothing after this line of the cycle runs."""


class KillingTransport(httpx.BaseTransport):
    """The fake's transport that kills the worker at its ``at``-th request (counting from 1),
    or its ``at``-th request of the method and path ``only``.

    With ``after_processing`` the fatal request reaches amoCRM and takes effect first, as
    when the process dies while the answer is on its way.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        at: int,
        *,
        after_processing: bool,
        only: tuple[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self.at = at
        self.after_processing = after_processing
        self.only = only
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.only is not None and (request.method, request.url.path) != self.only:
            return self.inner.handle_request(request)
        self.sent += 1
        if self.sent == self.at and not self.after_processing:
            raise Killed(f"killed before request {self.sent}: {request.method} {request.url.path}")
        response = self.inner.handle_request(request)
        if self.sent == self.at:
            raise Killed(f"killed after request {self.sent}: {request.method} {request.url.path}")
        return response


def live_request_ids(world: World) -> list[int]:
    """Every lead of the support pipeline that is not deleted."""
    return sorted(
        lead_id
        for lead_id, raw in world.fake.leads.items()
        if raw["pipeline_id"] == world.support.id
    )


def fired_markers(state: SlaState) -> set[str]:
    """The marker lines of the escalation steps the engine says fired (each marker names its
    clock, waiting period and step)."""
    return {step_marker(step, MOSCOW) for step in state.ladder if step.fired}


def acceptance_notes(world: World) -> Counter[int]:
    """The worker's acceptance notes in the fake, by lead."""
    return Counter(
        int(note["entity_id"])
        for note in world.fake.notes
        if ACCEPTANCE_NOTE in str(note.get("params"))
    )


def accepted_by_worker(world: World) -> Counter[int]:
    """How often the worker moved each lead out of the acceptance stage (its status changes)."""
    acceptance = world.support.status(ACCEPTANCE)
    moves: Counter[int] = Counter()
    for event in world.fake.events:
        if event["type"] != "lead_status_changed" or event["created_by"] != world.fake.api_user_id:
            continue
        before = (event.get("value_before") or [{}])[0].get("lead_status") or {}
        if before.get("id") == acceptance:
            moves[int(event["entity_id"])] += 1
    return moves


def marker_counts(world: World) -> Counter[tuple[int, str]]:
    """The worker's escalation tasks in the fake, by lead and marker line."""
    counts: Counter[tuple[int, str]] = Counter()
    for task in world.fake.tasks:
        marker = str(task["text"]).rsplit("\n", 1)[-1]
        if marker.startswith("[SLA:"):
            counts[(int(task["entity_id"]), marker)] += 1
    return counts


FAULTS = ("503", "429", "timeout_write", "timeout_task", "odd", "disconnect")
ODD_SHAPES = ("empty_object", "empty_embedded", "null_list", "html", "truncated", "list")


def inject_fault(
    fake: FakeAmoCRM,
    fault: str,
    count: int,
    *,
    shape: str,
    path: str | None,
    write_path: str = "/api/v4/leads",
) -> None:
    """Make the fake's next ``count`` answers on ``path`` (any, when None) fail as ``fault``
    says; the write timeouts hit ``write_path`` (PATCH) or the tasks (POST) after amoCRM
    applied them."""
    if fault in ("503", "429"):
        fake.fail_next(count, status=int(fault), path=path)
    elif fault == "timeout_write":
        fake.timeout_next(count, path=write_path, method="PATCH", after_processing=True)
    elif fault == "timeout_task":
        fake.timeout_next(count, path="/api/v4/tasks", method="POST", after_processing=True)
    elif fault == "odd":
        fake.odd_answer_next(shape, count, path=path)  # type: ignore[arg-type]
    else:
        fake.disconnect_next(count, path=path)
