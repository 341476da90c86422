"""deploy/prometheus: the alert rules checked and unit-tested by promtool, and a real Prometheus
scraping a real worker, whose series the alerts name and whose alerts turn pending when the
worker refuses webhooks and when it stops.

promtool and prometheus come from Debian's ``prometheus`` package. Without them the tests are
skipped on a developer's machine and fail in CI (CI=true): ``.ci/run`` installs the package.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.live_account import ROOT, LoopbackAccount, WorkerProcess, loopback_account
from worker.metrics import PREFIX, Metrics

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
JOB = "amo-sla"
SECRET = "deploy-" + "0123456789abcdef" * 2
# A vector selector in an alert's expression: a metric name, then its label matchers.
SELECTOR = re.compile(r"\b(" + PREFIX + r"[a-z_]+|up)\b(\{[^}]*\})?")


def tool(name: str) -> str:
    """The path of a tool of Debian's prometheus package; skipped without it, failed in CI."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip(f"no {name} here (apt-get install prometheus); CI runs this test")
    return found


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each vector selector of ``expr``: its metric name, and the whole selector."""
    return [(match.group(1), match.group(0)) for match in SELECTOR.finditer(expr)]


def exported_names() -> set[str]:
    """Every sample name the worker's metrics can expose, labelled or not yet."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }


# --- the rules as files ------------------------------------------------------------------------
def test_promtool_accepts_the_rules_and_the_compose_prometheus_config() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    # The config loads alerts.yml beside it, as the compose file mounts them.
    config = subprocess.run(
        [promtool, "check", "config", str(CONFIG)], capture_output=True, text=True, check=False
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    tested = subprocess.run(
        [tool("promtool"), "test", "rules", ALERT_TESTS.name],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    document = yaml.safe_load(ALERT_TESTS.read_text())
    assert document["rule_files"] == [ALERTS.name]
    cases = [case for test in document["tests"] for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_every_alert_waits_has_a_severity_and_tells_ops_where_to_look() -> None:
    for rule in rules():
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].startswith("amo-sla"), rule["alert"]
        assert "README" in rule["annotations"]["description"], rule["alert"]


def test_the_alerts_name_only_metrics_the_worker_exports_and_the_readme_documents() -> None:
    exported = exported_names()
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Metrics") : readme.index("## Configuration reference")]
    used = {name for rule in rules() for name, _ in selectors(rule["expr"])}
    assert used >= {
        PREFIX + "last_good_cycle_timestamp_seconds",
        PREFIX + "api_rate_limited_total",
        PREFIX + "webhooks_rejected_total",
        PREFIX + "cycles_total",
        "up",
    }
    for name in used - {"up"}:
        assert name in exported, f"{name}: the worker exports no such metric"
        assert f"`{name.removeprefix(PREFIX)}" in table, f"{name}: not in the README's table"
    # The alerts on `up` match the job that the compose Prometheus scrapes the worker in.
    config = yaml.safe_load(CONFIG.read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == [JOB]
    ups = [
        selector for rule in rules() for name, selector in selectors(rule["expr"]) if name == "up"
    ]
    assert ups
    assert all(f'job="{JOB}"' in selector for selector in ups)


# --- a real Prometheus scraping a real worker ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@dataclass
class Prometheus:
    process: subprocess.Popen[str]
    api: httpx.Client

    def get(self, path: str, **params: str) -> Any:
        answer = self.api.get(path, params=params)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> dict[str, list[dict[str, Any]]]:
        active: dict[str, list[dict[str, Any]]] = {}
        for alert in self.get("/api/v1/alerts")["alerts"]:
            active.setdefault(alert["labels"]["alertname"], []).append(alert)
        return active

    def value(self, query: str) -> float | None:
        result = self.get("/api/v1/query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def target_health(self) -> str | None:
        targets = self.get("/api/v1/targets")["activeTargets"]
        health = [target["health"] for target in targets if target["labels"]["job"] == JOB]
        return health[0] if health else None


@contextmanager
def prometheus(folder: Path, worker_port: int) -> Iterator[Prometheus]:
    """Debian's prometheus with the compose config, scraping 127.0.0.1:``worker_port`` and
    evaluating the alerts every second, its TSDB in ``folder``."""
    binary = tool("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
            server = Prometheus(process, api)

            def ready() -> bool:
                assert process.poll() is None, (folder / "prometheus.log").read_text()
                try:
                    return api.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for("Prometheus to be ready", ready)
            yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def account() -> Iterator[LoopbackAccount]:
    with loopback_account() as account:
        account.provision()
        account.add_leads(2)
        yield account


def test_prometheus_scrapes_the_series_the_alerts_use_and_raises_them(
    account: LoopbackAccount, tmp_path: Path
) -> None:
    tool("prometheus")
    port = free_port()
    env = account.env(
        tmp_path / "state",
        SLA_LOG_FORMAT="json",
        SLA_METRICS="true",
        SLA_HTTP_LISTEN=f"127.0.0.1:{port}",
        SLA_WEBHOOK_SECRET=SECRET,
    )
    worker = WorkerProcess(["run"], env, cwd=tmp_path)
    wrong = f"/amocrm/webhook/{'f' * 32}"
    try:
        worker.wait_for_event("cycle_done")
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
            prometheus(tmp_path, port) as server,
        ):
            # A refused webhook makes the labelled series exist before the first scrape.
            assert http.post(wrong, content=b"").status_code == 404
            wait_for("the worker's target to be up", lambda: server.target_health() == "up")
            wait_for(
                "the first refusal to be scraped",
                lambda: server.value(PREFIX + "webhooks_rejected_total") == 1,
            )
            for rule in rules():
                for _, selector in selectors(rule["expr"]):
                    found = server.get("/api/v1/series", **{"match[]": selector})
                    assert found, f"{rule['alert']}: no series {selector}"
            assert server.value(PREFIX + "last_good_cycle_timestamp_seconds") == pytest.approx(
                time.time(), abs=30
            )
            # Every rule evaluates without an error, and a healthy worker raises none.
            groups = server.get("/api/v1/rules")["groups"]
            evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
            assert set(evaluated) == {rule["alert"] for rule in rules()}
            assert all(rule["health"] == "ok" for rule in evaluated.values()), evaluated
            # (AmoSlaNotScraped may be pending from an evaluation before the first scrape.)
            wait_for("no alert to be active", lambda: server.alerts() == {})

            # Refusals that keep coming: the alert is pending (it waits its `for:`).
            for _ in range(7):
                assert http.post(wrong, content=b"").status_code == 404
            wait_for(
                "AmoSlaWebhooksRejected to be pending",
                lambda: "AmoSlaWebhooksRejected" in server.alerts(),
            )
            (rejected,) = server.alerts()["AmoSlaWebhooksRejected"]
            assert rejected["state"] == "pending"
            assert rejected["labels"]["reason"] == "wrong_secret"

            # The worker stops: its target goes down and so does AmoSlaWorkerDown.
            worker.process.send_signal(signal.SIGTERM)
            assert worker.finish().code == 0
            wait_for("the target to be down", lambda: server.target_health() == "down")
            wait_for(
                "AmoSlaWorkerDown to be pending", lambda: "AmoSlaWorkerDown" in server.alerts()
            )
            (down,) = server.alerts()["AmoSlaWorkerDown"]
            assert down["labels"]["job"] == JOB
            assert down["labels"]["instance"] == f"127.0.0.1:{port}"
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
