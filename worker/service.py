"""The long-running worker: the sync cycle on a schedule, stopped cleanly by a signal.

One APScheduler job runs the cycle: at once on start, then every poll interval. Runs never
overlap (one worker thread, ``max_instances=1``); runs missed while one was in progress
coalesce into a single run that starts as soon as the slow one returns.

After a cycle whose report names a ``next_change_at`` sooner than the next poll, the job's
next run moves to that instant plus a small margin (the state changes *at* the instant, and
the cycle must see a clock past it). A reaction deadline is then flagged seconds after it
passes rather than up to a poll interval later; a reaction just before it is not flagged
because the cycle reads new events before it computes. The instant is read on the service's
``clock`` (the one each cycle is given) and turned into a delay, because APScheduler always
runs on the wall clock; with the default clock the two are the same.

SIGTERM or SIGINT: the cycle is asked to stop (it finishes the write batch in flight), the
service waits for it to return, shuts the scheduler down and returns 0. A second signal
kills the process at once.

A failing cycle is logged and retried at the next poll, except an error the admin has to
fix (:func:`worker.errors.is_fatal`), which stops the service with exit code 2. A cycle
skipped because another process held the state directory leaves the heartbeat alone:
only a cycle that ran counts as good.

:meth:`SyncService.trigger` (an amoCRM webhook) moves the same job's next run forward, so
a triggered cycle is the very cycle the schedule runs, never a second one beside it. The
run starts ``debounce`` seconds after the first trigger of a burst (the rest of the burst
joins it) and never sooner than ``min_interval`` seconds after the previous cycle started;
a trigger that arrives while a cycle runs gets one more run after it, under the same rule.

Companions (the HTTP server of webhooks and metrics) start with the scheduler and stop
after it: the write batch in flight finishes first, then the server closes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

import structlog
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from worker.connections import open_file_limit
from worker.errors import is_fatal
from worker.health import write_heartbeat

log = structlog.stdlib.get_logger("worker.service")

JOB_ID: Final = "sync-cycle"
WAKEUP_MARGIN_SECONDS: Final = 1.0
DEBOUNCE_SECONDS: Final = 1.0
MIN_TRIGGER_INTERVAL_SECONDS: Final = 1.5
EXIT_OK: Final = 0
EXIT_FATAL: Final = 2
# How often the main thread looks for a received signal; signal handlers only set a flag
# because taking a lock inside one can deadlock the thread it interrupted.
_SIGNAL_POLL_SECONDS: Final = 0.1
_REPORT_FIELDS: Final = (
    "full_sync",
    "leads_read",
    "leads_computed",
    "leads_written",
    "leads_failed",
    "tasks_created",
    "requests",
)


class CycleReportLike(Protocol):
    """What the service reads from a cycle's report (worker.cycle.CycleReport fits)."""

    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime: ...
    @property
    def full_sync(self) -> bool: ...
    @property
    def leads_read(self) -> int: ...
    @property
    def leads_computed(self) -> int: ...
    @property
    def leads_written(self) -> int: ...
    @property
    def leads_failed(self) -> int: ...
    @property
    def tasks_created(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def next_change_at(self) -> datetime | None: ...
    @property
    def skipped(self) -> bool: ...


class Cycle(Protocol):
    """What the scheduler drives (worker.cycle.SyncCycle fits)."""

    def run(self, now: datetime) -> CycleReportLike: ...
    def request_stop(self) -> None: ...


class Companion(Protocol):
    """Something that runs beside the scheduler (worker.webhooks.HttpServer fits)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


class CycleObserver(Protocol):
    """Told about every run (worker.metrics.Metrics fits)."""

    def cycle_done(
        self,
        *,
        duration_s: float,
        finished_at: float,
        skipped: bool,
        stopped: bool,
        leads_written: int,
        tasks_created: int,
        tracked: int | None,
        breached: Mapping[str, Collection[int]] | None,
    ) -> None: ...
    def cycle_failed(self) -> None: ...
    def webhook_cycle(self) -> None: ...


_SignalHandler = Callable[[int, FrameType | None], object] | int | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def report_summary(report: CycleReportLike) -> dict[str, object]:
    """The report's counts as JSON-ready values: the ``cycle_done`` line and the heartbeat."""
    summary_method = getattr(report, "summary", None)
    if callable(summary_method):
        raw = summary_method()
        if isinstance(raw, Mapping):
            return {str(key): _json_ready(value) for key, value in raw.items()}
    summary = {name: _json_ready(getattr(report, name)) for name in _REPORT_FIELDS}
    summary["duration_s"] = round((report.finished_at - report.started_at).total_seconds(), 3)
    summary["next_change_at"] = _json_ready(report.next_change_at)
    return summary


def _json_ready(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return _json_ready(value.value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class _Ran:
    """What one run of the job hands to the scheduler's listener."""

    now: datetime  # the instant the cycle was given, on the service's clock
    report: CycleReportLike


@dataclasses.dataclass(frozen=True)
class _Shutdown:
    reason: str
    exit_code: int


class SyncService:
    """Runs ``cycle`` on a schedule until :meth:`request_shutdown`, a signal or a fatal error."""

    def __init__(
        self,
        cycle: Cycle,
        *,
        poll_interval: float,
        state_dir: Path,
        clock: Callable[[], datetime] = _utc_now,
        wakeup_margin: float = WAKEUP_MARGIN_SECONDS,
        debounce: float = DEBOUNCE_SECONDS,
        min_interval: float = MIN_TRIGGER_INTERVAL_SECONDS,
        observer: CycleObserver | None = None,
        companions: Sequence[Companion] = (),
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if wakeup_margin < 0:
            raise ValueError("wakeup_margin must not be negative")
        if debounce < 0 or min_interval < 0:
            raise ValueError("debounce and min_interval must not be negative")
        self._cycle = cycle
        self._poll_interval = poll_interval
        self._state_dir = state_dir
        self._clock = clock
        self._wakeup_margin = timedelta(seconds=wakeup_margin)
        self._scheduler: BackgroundScheduler | None = None
        self._shutdown: _Shutdown | None = None
        self._shutdown_event = threading.Event()
        self._received_signal: int | None = None
        self._overran = False
        self._debounce = debounce
        self._min_interval = min_interval
        self._observer = observer
        self._companions: list[Companion] = list(companions)
        # The trigger's state, under its own lock: webhooks call trigger() from the server.
        self._trigger_lock = threading.Lock()
        self._running = False  # a cycle is running
        self._pending = False  # a trigger moved the next run forward and it has not started
        self._again = False  # a trigger came while a cycle ran: one more run after it
        self._last_start: float | None = None  # time.monotonic() at the last cycle's start
        self.cycles_started = 0

    # --- control ------------------------------------------------------------------------------
    def request_shutdown(self, reason: str = "requested", exit_code: int = EXIT_OK) -> None:
        """Stop after the running cycle (if any) returns; the first request wins. Thread-safe."""
        if self._shutdown is None:
            self._shutdown = _Shutdown(reason, exit_code)
        self._shutdown_event.set()

    @property
    def stopping(self) -> bool:
        return self._shutdown is not None or self._received_signal is not None

    def add_companion(self, companion: Companion) -> None:
        """Start ``companion`` with the scheduler and stop it after the scheduler (before run)."""
        self._companions.append(companion)

    def trigger(self, reason: str = "webhook") -> bool:
        """Run the cycle soon: debounced, rate-capped, never beside a running one. Thread-safe.

        Returns True when this call moved the next run forward (the first of a burst).
        """
        with self._trigger_lock:
            scheduler = self._scheduler
            if self.stopping or scheduler is None or not scheduler.running:
                return False
            if self._running:
                self._again = True
                return False
            if self._pending:
                return False
            moved = self._move_for_trigger(scheduler)
            self._pending = True
        if moved is not None:
            log.info("cycle_triggered", reason=reason, in_s=round(moved, 3))
            if self._observer is not None:
                self._observer.webhook_cycle()
        return moved is not None

    def _move_for_trigger(self, scheduler: BackgroundScheduler) -> float | None:
        """Move the job to the trigger's instant; the delay in seconds, None if not sooner.

        Called with the trigger lock held."""
        delay = self._debounce
        if self._last_start is not None:
            delay = max(delay, self._last_start + self._min_interval - time.monotonic())
        wall_now = datetime.now(UTC)
        when = wall_now + timedelta(seconds=delay)
        job = scheduler.get_job(JOB_ID)
        if job is None or job.next_run_time is None or when >= job.next_run_time:
            return None
        try:
            scheduler.modify_job(JOB_ID, next_run_time=when)
        except JobLookupError:
            return None
        return delay

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Start the schedule, block until shutdown, return the exit code (0, or 2 if fatal)."""
        if install_signal_handlers and threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "signal handlers can only be installed from the main thread; "
                "pass install_signal_handlers=False"
            )
        previous_handlers = self._install_signal_handlers() if install_signal_handlers else {}
        scheduler = self._build_scheduler()
        self._scheduler = scheduler
        started: list[Companion] = []
        try:
            open_files = open_file_limit()
            log.info(
                "worker_started",
                pid=os.getpid(),
                open_files=open_files[0] if open_files is not None else None,
                open_files_hard=open_files[1] if open_files is not None else None,
                poll_interval_s=self._poll_interval,
                state_dir=str(self._state_dir),
            )
            try:
                for companion in self._companions:
                    companion.start()
                    started.append(companion)
            except Exception as error:
                log.error("companion_failed", error_type=type(error).__name__, error=str(error))
                self.request_shutdown("companion_failed", EXIT_FATAL)
            else:
                scheduler.start()
            shutdown = self._wait_for_shutdown()
            log.info("shutdown_requested", reason=shutdown.reason)
            if scheduler.running:
                scheduler.pause()
            # The running cycle finishes its write batch and returns; shutdown() waits for it.
            self._cycle.request_stop()
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=True)
            for companion in reversed(started):
                try:
                    companion.stop()
                except Exception as error:
                    log.error("companion_stop_failed", error=str(error))
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        log.info("shutdown_complete", reason=shutdown.reason, exit_code=shutdown.exit_code)
        return shutdown.exit_code

    def _wait_for_shutdown(self) -> _Shutdown:
        while not self._shutdown_event.is_set() and self._received_signal is None:
            self._shutdown_event.wait(_SIGNAL_POLL_SECONDS)
        if self._received_signal is not None:
            self.request_shutdown(signal.Signals(self._received_signal).name)
        return self._shutdown or _Shutdown("requested", EXIT_OK)

    # --- signals ------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, _SignalHandler]:
        previous: dict[int, _SignalHandler] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._received_signal = signum
        # A second signal gets the default treatment: the process ends at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    # --- the schedule -------------------------------------------------------------------------
    def _build_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_listener(self._on_job_event, EVENT_JOB_EXECUTED | EVENT_JOB_MAX_INSTANCES)
        scheduler.add_job(
            self._run_cycle,
            trigger=IntervalTrigger(seconds=self._poll_interval, timezone=UTC),
            id=JOB_ID,
            name="sync cycle",
            next_run_time=datetime.now(UTC),
        )
        return scheduler

    def _run_cycle(self) -> _Ran | None:
        if self.stopping:
            return None
        with self._trigger_lock:
            self._running, self._pending, self._again = True, False, False
            self._last_start = time.monotonic()
            self.cycles_started += 1
        now = self._clock()
        started = time.monotonic()
        try:
            report = self._cycle.run(now)
        except Exception as error:
            if self._observer is not None:
                self._observer.cycle_failed()
            self._cycle_failed(error)
            return None
        summary = report_summary(report)
        if not report.skipped:
            try:
                write_heartbeat(self._state_dir, summary, self._clock())
            except OSError as error:
                log.error("heartbeat_failed", state_dir=str(self._state_dir), error=str(error))
        if self._observer is not None:
            self._observer.cycle_done(
                duration_s=time.monotonic() - started,
                finished_at=time.time(),
                skipped=report.skipped,
                stopped=bool(getattr(report, "stopped_early", False)),
                leads_written=report.leads_written,
                tasks_created=report.tasks_created,
                tracked=getattr(report, "tracked", None),
                breached=getattr(report, "breached_by", None),
            )
        log.info("cycle_done", **summary)
        return _Ran(now, report)

    def _cycle_failed(self, error: Exception) -> None:
        if is_fatal(error):
            log.error(
                "cycle_failed",
                fatal=True,
                error_type=type(error).__name__,
                error=str(error),
                action="the worker stops: this needs the admin (see the error), then restart it",
            )
            self.request_shutdown("fatal_error", EXIT_FATAL)
            return
        log.error(
            "cycle_failed",
            fatal=False,
            error_type=type(error).__name__,
            error=str(error),
            retry_in_s=self._poll_interval,
            exc_info=error,
        )

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        # Runs after the job's instance count is released, so a run moved to "now" can start.
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self._overran = True
            return
        scheduler = self._scheduler
        with self._trigger_lock:
            self._running = False
            again, self._again = self._again, False
            if again and not self.stopping and scheduler is not None:
                # A trigger came during the run: it gets a run after it, debounced and capped.
                self._pending = self._move_for_trigger(scheduler) is not None or self._pending
        if self.stopping or scheduler is None:
            return
        # The service's clock is read first: with the default clock the wall clock is then a
        # hair later, and the run never starts before the wake-up instant.
        clock_now = self._clock()
        wall_now = datetime.now(UTC)
        ran: _Ran | None = event.retval
        change_at = ran.report.next_change_at if ran is not None else None
        # An instant not after the cycle's own "now" is already reflected in its results.
        # (The report's started_at may come from another clock than the one the cycle got.)
        if change_at is not None and ran is not None and change_at <= ran.now:
            change_at = None
        overran, self._overran = self._overran, False
        if overran:
            self._move_next_run(scheduler, wall_now, wall_now)
        elif change_at is not None:
            wake_at = change_at + self._wakeup_margin
            delay = max(wake_at - clock_now, timedelta(0))
            self._move_next_run(
                scheduler, wall_now + delay, wall_now, (change_at, wake_at, clock_now)
            )

    def _move_next_run(
        self,
        scheduler: BackgroundScheduler,
        when: datetime,
        wall_now: datetime,
        wakeup: tuple[datetime, datetime, datetime] | None = None,
    ) -> None:
        """Move the job to ``when`` (wall clock) if that is sooner than its next run.

        ``wakeup`` is (the change instant, the wake-up instant, now), all on the service's
        clock: logged in those terms, since they are the instants the admin can relate to.
        """
        job = scheduler.get_job(JOB_ID)
        if job is None or job.next_run_time is None or when >= job.next_run_time:
            return
        next_poll_at: datetime = job.next_run_time
        try:
            scheduler.modify_job(JOB_ID, next_run_time=when)
        except JobLookupError:
            return
        if wakeup is None:
            log.info("cycle_overran", poll_interval_s=self._poll_interval)
            return
        change_at, wake_at, clock_now = wakeup
        log.info(
            "wakeup_scheduled",
            at=wake_at.astimezone(UTC).isoformat(),
            next_change_at=change_at.isoformat(),
            in_s=round((when - wall_now).total_seconds(), 3),
            instead_of=(next_poll_at - wall_now + clock_now).astimezone(UTC).isoformat(),
        )


def run_service(
    cycle: Cycle,
    *,
    poll_interval: float,
    state_dir: Path,
    clock: Callable[[], datetime] = _utc_now,
    install_signal_handlers: bool = True,
    wakeup_margin: float = WAKEUP_MARGIN_SECONDS,
    observer: CycleObserver | None = None,
    companions: Sequence[Companion] = (),
) -> int:
    """Run ``cycle`` every ``poll_interval`` seconds until SIGTERM/SIGINT; return the exit code.

    0 after a clean shutdown, 2 when a cycle raised an error only the admin can fix
    (:func:`worker.errors.is_fatal`).
    ``clock`` gives the ``now`` passed to each cycle and stamped on the heartbeat.
    """
    service = SyncService(
        cycle,
        poll_interval=poll_interval,
        state_dir=state_dir,
        clock=clock,
        wakeup_margin=wakeup_margin,
        observer=observer,
        companions=companions,
    )
    return service.run(install_signal_handlers=install_signal_handlers)
