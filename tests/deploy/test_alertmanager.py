"""Alertmanager: a valid config that routes every rule by its team label."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def config_path(deploy_dir: Path) -> Path:
    return deploy_dir / "alertmanager" / "alertmanager.yml"


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_routes_name_existing_receivers(config_path: Path) -> None:
    config = yaml.safe_load(config_path.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        assert route["receiver"] in receivers, route
    for team in ("sre", "business"):
        assert any(f'team="{team}"' in r.get("matchers", []) for r in routes), team


def test_prometheus_sends_to_the_compose_alertmanager(deploy_dir: Path, compose: dict) -> None:
    config = yaml.safe_load((deploy_dir / "prometheus" / "prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in compose["services"]


def test_amtool_accepts_the_config(amtool: str, config_path: Path) -> None:
    res = amtool_run(amtool, "check-config", str(config_path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_reaches_its_team(
    amtool: str, config_path: Path, alert_rules: list[dict]
) -> None:
    expected = {"sre": {"sre", "sre-page"}, "business": {"business"}}
    for rule in alert_rules:
        labels = [f"{k}={v}" for k, v in rule["labels"].items()]
        res = amtool_run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config_path}",
            f"alertname={rule['alert']}",
            *labels,
        )
        assert res.returncode == 0, res.stderr
        receivers = set(res.stdout.strip().split(","))
        assert receivers <= expected[rule["labels"]["team"]], (rule["alert"], receivers)
        assert receivers, rule["alert"]
