"""The monitoring stack without Docker: two workers on the embedded broker, scraped by a real
Prometheus server that loads deploy/prometheus/ rules; kill -9 of a worker fires
ChurnwatchWorkerDown.

The Prometheus config is deploy/prometheus/prometheus.yml with the churnwatch targets pointed
at the local workers, 1 s scrape and evaluation intervals and no Alertmanager. The rule file is
a copy of alerts.yml with every ``for:`` shortened to 2 s (the rules themselves are unchanged),
so the alert fires within seconds instead of after a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.settings import Settings
from streams.topics import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

PARTITIONS = 4
WORKERS = ("worker-1", "worker-2")
FOR = "2s"
BUDGET_S = 85  # the whole test, from topic creation to the fired alert


def prometheus_files(deploy: Path, out: Path, ports: list[int]) -> Path:
    """Write the test's prometheus.yml and rule file copy to ``out``; the config path."""
    rules = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    (out / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))

    config = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config.pop("alerting", None)
    config["rule_files"] = [str(out / "alerts.yml")]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "churnwatch"]
    statics = job["static_configs"]
    assert [sc["labels"]["worker"] for sc in statics] == list(WORKERS)
    for sc, port in zip(statics, ports, strict=True):
        sc["targets"] = [f"127.0.0.1:{port}"]
    config["scrape_configs"] = [job]
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - local test server
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]

    def by_worker(self, expr: str) -> dict[str, float]:
        return {r["metric"].get("worker", ""): float(r["value"][1]) for r in self.query(expr)}

    def firing(self, name: str) -> list[dict[str, str]]:
        alerts = self.get("/api/v1/alerts")["alerts"]
        return [
            a["labels"]
            for a in alerts
            if a["labels"]["alertname"] == name and a["state"] == "firing"
        ]


def wait_until(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    """Poll ``get()`` until ``ok(value)``; the value, or a test failure after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = get()
        except OSError as exc:  # server not up yet
            last = exc
        else:
            if ok(last):
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_prometheus_scrapes_both_workers_and_alerts_when_one_dies(
    broker: EmbeddedBroker,
    prometheus_bin: str,
    deploy_dir: Path,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + BUDGET_S

    def wait(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
        return wait_until(get, ok, min(timeout, deadline - time.monotonic()), what)

    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        broker=broker.bootstrap,
        app_id=f"cw-{tag}",
        topic_prefix=f"t-{tag}-",
        partitions=PARTITIONS,
    )
    asyncio.run(create_topics(settings))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    ports = [free_port(), free_port()]
    workers = []
    for name, port in zip(WORKERS, ports, strict=True):
        env = {
            **base_env,
            "CHURNWATCH_BROKER": broker.bootstrap,
            "CHURNWATCH_APP_ID": settings.app_id,
            "CHURNWATCH_TOPIC_PREFIX": settings.topic_prefix,
            "CHURNWATCH_PARTITIONS": str(PARTITIONS),
            "CHURNWATCH_DATA_DIR": str(tmp_path / name),
            "CHURNWATCH_LOG_LEVEL": "info",
        }
        cmd = [sys.executable, "-m", "streams.cli", "worker"]
        cmd += ["--metrics-port", str(port), "--no-create-topics"]
        with (tmp_path / f"{name}.log").open("wb") as log:
            workers.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    procs.extend(workers)

    prom_port = free_port()
    config = prometheus_files(deploy_dir, tmp_path, ports)
    with (tmp_path / "prometheus.log").open("wb") as prom_log:
        procs.append(
            subprocess.Popen(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                stdout=prom_log,
                stderr=subprocess.STDOUT,
            )
        )
    assert wait_for_port("127.0.0.1", prom_port, 20), (tmp_path / "prometheus.log").read_text()
    api = PromAPI(prom_port)
    wait(lambda: api.get("/api/v1/status/config"), bool, 20, "Prometheus to answer")
    rules = [r["name"] for g in api.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert "ChurnwatchWorkerDown" in rules and len(rules) >= 11

    # both workers are scraped, and each exports churnwatch metrics
    up = 'up{job="churnwatch"}'
    all_up = dict.fromkeys(WORKERS, 1.0)
    wait(lambda: api.by_worker(up), all_up.__eq__, 45, "both workers up")
    series = wait(
        lambda: api.by_worker('count by (worker) ({__name__=~"churnwatch_.+"})'),
        lambda v: set(v) == set(WORKERS),
        15,
        "churnwatch metrics from both workers",
    )
    assert all(n >= 5 for n in series.values()), series
    assert set(api.by_worker("process_resident_memory_bytes")) == set(WORKERS)

    # scale-out: the consumer group spreads the input partitions over both workers
    inputs = PARTITIONS  # partition numbers, each owned by one worker
    wait(
        lambda: api.by_worker("churnwatch_partitions_assigned"),
        lambda v: set(v) == set(WORKERS) and min(v.values()) > 0 and sum(v.values()) == inputs,
        30,
        "the partitions spread over both workers",
    )

    # every dashboard query runs on the live server
    for board in (deploy_dir / "grafana" / "dashboards").glob("*.json"):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel.get("targets", []):
                api.query(re.sub(r"\$__\w+", "1m", target["expr"]))
    assert not api.firing("ChurnwatchWorkerDown")

    # kill -9 of worker-2: Prometheus sees it down and the rule fires for it alone
    workers[1].kill()
    workers[1].wait(5)
    wait(lambda: api.by_worker(up), lambda v: v.get("worker-2") == 0.0, 15, "down")
    fired = wait(
        lambda: api.firing("ChurnwatchWorkerDown"), bool, 20, "ChurnwatchWorkerDown firing"
    )
    assert [(a["worker"], a["severity"], a["team"]) for a in fired] == [
        ("worker-2", "critical", "sre")
    ]
    assert workers[0].poll() is None, "worker-1 should still run"
    assert api.by_worker(up)["worker-1"] == 1.0
