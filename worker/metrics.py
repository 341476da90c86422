"""The worker's Prometheus metrics, in a registry of their own.

One :class:`Metrics` per process (tests make one each: nothing goes to prometheus_client's
global registry). The service reports each cycle to it (:meth:`Metrics.cycle_done`,
:meth:`Metrics.cycle_failed`), the amoCRM client each request and retry through the
callbacks it is given (:meth:`Metrics.api_request`, :meth:`Metrics.api_retry`), and the
webhook endpoint each hook. ``GET /metrics`` renders :meth:`Metrics.exposition`.

Names (all prefixed ``amo_sla_``):

* ``cycles_total{outcome}``: ``ok``, ``failed``, ``skipped`` (another process held the state
  directory), ``stopped`` (cut short by a shutdown);
* ``cycle_duration_seconds``: histogram of the cycles that ran;
* ``last_good_cycle_timestamp_seconds``: unix time the last good cycle finished;
* ``api_requests_total{method,status}``: every request sent to amoCRM, ``status`` being the
  HTTP code or ``error`` when no answer came;
* ``api_rate_limited_total``: answers 429;
* ``api_retries_total{reason}``: retries after ``rate_limited``, ``server_error``,
  ``transport`` or ``unexpected_answer``;
* ``leads_tracked``: open and recently closed leads the last cycle computed;
* ``leads_breached{deadline}``: of those, how many are past their ``reaction`` or
  ``resolution`` deadline;
* ``breaches_flagged_total{deadline}``: leads this process saw become breached;
* ``leads_written_total``, ``tasks_created_total``;
* ``webhooks_received_total``, ``webhooks_rejected_total{reason}``,
  ``webhook_cycles_total`` (cycles a webhook moved forward).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX: Final = "amo_sla_"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DEADLINES: Final = ("reaction", "resolution", "next_response")


class Metrics:
    """Every metric of the worker, registered in :attr:`registry`. Thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycles = Counter(PREFIX + "cycles", "Sync cycles by outcome.", ["outcome"], registry=r)
        self.cycle_duration = Histogram(
            PREFIX + "cycle_duration_seconds",
            "Duration of the sync cycles that ran.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.last_good_cycle = Gauge(
            PREFIX + "last_good_cycle_timestamp_seconds",
            "Unix time the last good sync cycle finished (0: none yet).",
            registry=r,
        )
        self.api_requests = Counter(
            PREFIX + "api_requests",
            "Requests sent to amoCRM by method and answer status (error: no answer).",
            ["method", "status"],
            registry=r,
        )
        self.api_rate_limited = Counter(
            PREFIX + "api_rate_limited", "amoCRM answers 429 Too Many Requests.", registry=r
        )
        self.api_retries = Counter(
            PREFIX + "api_retries",
            "Requests to amoCRM tried again, by reason.",
            ["reason"],
            registry=r,
        )
        self.leads_tracked = Gauge(
            PREFIX + "leads_tracked", "Leads the last sync cycle computed.", registry=r
        )
        self.leads_breached = Gauge(
            PREFIX + "leads_breached",
            "Leads of the last cycle past a deadline.",
            ["deadline"],
            registry=r,
        )
        self.breaches_flagged = Counter(
            PREFIX + "breaches_flagged",
            "Leads this process saw become breached, by deadline.",
            ["deadline"],
            registry=r,
        )
        self.leads_written = Counter(
            PREFIX + "leads_written", "Leads whose SLA fields were written.", registry=r
        )
        self.tasks_created = Counter(
            PREFIX + "tasks_created", "Breach and ledger tasks created in amoCRM.", registry=r
        )
        self.webhooks_received = Counter(
            PREFIX + "webhooks_received", "Webhooks accepted from amoCRM.", registry=r
        )
        self.webhooks_rejected = Counter(
            PREFIX + "webhooks_rejected",
            "Webhook requests refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.webhook_cycles = Counter(
            PREFIX + "webhook_cycles",
            "Times a webhook moved the next sync cycle forward.",
            registry=r,
        )
        for outcome in ("ok", "failed", "skipped", "stopped"):
            self.cycles.labels(outcome)
        for deadline in DEADLINES:
            self.leads_breached.labels(deadline)
            self.breaches_flagged.labels(deadline)
        self._lock = threading.Lock()
        self._breached: dict[str, set[int]] = {deadline: set() for deadline in DEADLINES}

    # --- the amoCRM client's callbacks ------------------------------------------------------
    def api_request(self, method: str, status: int | None) -> None:
        self.api_requests.labels(method.upper(), "error" if status is None else str(status)).inc()
        if status == 429:
            self.api_rate_limited.inc()

    def api_retry(self, reason: str) -> None:
        self.api_retries.labels(reason).inc()

    # --- the service's callbacks ------------------------------------------------------------
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
    ) -> None:
        if skipped:
            self.cycles.labels("skipped").inc()
            return
        self.cycle_duration.observe(max(duration_s, 0.0))
        self.leads_written.inc(leads_written)
        self.tasks_created.inc(tasks_created)
        if stopped:
            self.cycles.labels("stopped").inc()
            return
        self.cycles.labels("ok").inc()
        self.last_good_cycle.set(finished_at)
        if tracked is not None:
            self.leads_tracked.set(tracked)
        if breached is not None:
            self._count_breaches(breached)

    def cycle_failed(self) -> None:
        self.cycles.labels("failed").inc()

    def _count_breaches(self, breached: Mapping[str, Collection[int]]) -> None:
        with self._lock:
            for deadline in DEADLINES:
                now = set(breached.get(deadline, ()))
                new = now - self._breached[deadline]
                if new:
                    self.breaches_flagged.labels(deadline).inc(len(new))
                self._breached[deadline] = now
                self.leads_breached.labels(deadline).set(len(now))

    # --- the webhook endpoint ---------------------------------------------------------------
    def webhook_received(self) -> None:
        self.webhooks_received.inc()

    def webhook_rejected(self, reason: str) -> None:
        self.webhooks_rejected.labels(reason).inc()

    def webhook_cycle(self) -> None:
        self.webhook_cycles.inc()

    # --- exposition ---------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's current value (0 when absent): for tests and the benchmark."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if found is None else found
