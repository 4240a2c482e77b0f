"""Prometheus: config and rules pass promtool, every rule is unit-tested both ways, rules only
name metrics a worker exports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy

TEAMS = {"sre", "business"}
SEVERITIES = {"critical", "warning", "info"}


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_promtool_checks_the_rules(promtool: str, deploy_dir: Path) -> None:
    rules = deploy_dir / "prometheus" / "alerts.yml"
    res = run(promtool, "check", "rules", str(rules))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str, deploy_dir: Path) -> None:
    tests = sorted((deploy_dir / "prometheus" / "tests").glob("*.yml"))
    assert tests, "no promtool rule tests in deploy/prometheus/tests/"
    res = run(promtool, "test", "rules", *map(str, tests))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAILED" not in res.stdout + res.stderr


def test_promtool_checks_the_config(promtool: str, deploy_dir: Path) -> None:
    res = run(promtool, "check", "config", str(deploy_dir / "prometheus" / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The checks above can fail: a rule with a syntax error is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    assert run(promtool, "check", "rules", str(bad)).returncode != 0


def test_config_loads_the_rule_files_and_scrapes_the_workers(deploy_dir: Path) -> None:
    config = yaml.safe_load((deploy_dir / "prometheus" / "prometheus.yml").read_text())
    for name in config["rule_files"]:
        assert (deploy_dir / "prometheus" / name).is_file(), name
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["churnwatch"]["static_configs"] for t in sc["targets"]]
    assert len(targets) >= 2
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_every_rule_has_team_severity_and_text(alert_rules: list[dict]) -> None:
    assert len(alert_rules) >= 11
    for rule in alert_rules:
        name = rule["alert"]
        assert rule["labels"]["team"] in TEAMS, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{name}: no {key}"


def test_the_rule_set_covers_the_runbook(alert_rules: list[dict]) -> None:
    """The SRE and business alerts the deployment promises, by the metrics they watch."""
    by_metric = {
        'up{job="churnwatch"}': "sre",
        "churnwatch_events_total": "sre",
        "churnwatch_consumer_lag": "sre",
        "churnwatch_dlq_total": "sre",
        "churnwatch_event_processing_seconds_bucket": "sre",
        "churnwatch_sweep_backlog_seconds": "sre",
        "churnwatch_rebalances_total": "sre",
        "churnwatch_customers_at_risk": "business",
        "churnwatch_value_at_risk": "business",
        'metric="auc"': "business",
        'metric="brier"': "business",
        "churnwatch_cases_total": "business",
        "churnwatch_retention_actions_total": "business",
        "churnwatch_retention_action_links_total": "business",
    }
    for needle, team in by_metric.items():
        assert any(
            needle in rule["expr"] and rule["labels"]["team"] == team for rule in alert_rules
        ), f"no {team} rule on {needle}"
    worker_down = [r for r in alert_rules if "up{" in r["expr"]]
    assert worker_down and all("== 0" in r["expr"] for r in worker_down)


def test_drift_rule_watches_the_exported_drift_metric(alert_rules: list[dict]) -> None:
    """The business drift rule reads the worker's ADWIN detections, by signal."""
    drift = [r for r in alert_rules if "drift" in r["alert"].lower()]
    assert drift and all("churnwatch_drift_detected_total" in r["expr"] for r in drift)
    assert all(r["labels"]["team"] == "business" and "signal" in r["expr"] for r in drift)


def test_rules_only_name_exported_metrics(alert_rules: list[dict], exported, metric_names) -> None:
    known = exported | {"up"}
    for rule in alert_rules:
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        unknown = names - known
        assert not unknown, f"{rule['alert']} names metrics no worker exports: {sorted(unknown)}"


def test_every_rule_has_a_firing_and_a_quiet_test_case(
    alert_rules: list[dict], deploy_dir: Path
) -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in (deploy_dir / "prometheus" / "tests").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules}
    assert not names - fires, f"rules never shown firing: {sorted(names - fires)}"
    assert not names - quiet, f"rules never shown quiet: {sorted(names - quiet)}"
