"""Grafana: provisioning, dashboards on the provisioned datasource, and PromQL that only names
metrics a worker exports (and parses)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy

SRE_METRICS = {
    "churnwatch_events_total",
    "churnwatch_dlq_total",
    "churnwatch_event_processing_seconds_bucket",
    "churnwatch_event_to_alert_seconds_bucket",
    "churnwatch_consumer_lag",
    "churnwatch_sweep_seconds_bucket",
    "churnwatch_sweep_backlog_seconds",
    "churnwatch_rebalances_total",
    "churnwatch_partitions_assigned",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}
BUSINESS_METRICS = {
    "churnwatch_cases_total",
    "churnwatch_cases_opened_total",
    "churnwatch_retention_actions_total",
    "churnwatch_retention_action_links_total",
    "churnwatch_alerts_total",
    "churnwatch_customers_at_risk",
    "churnwatch_value_at_risk",
    "churnwatch_labels_total",
    "churnwatch_model_quality",
    "churnwatch_silence_comeback_ratio",
}


def panels(board: dict) -> Iterator[dict]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def expressions(board: dict) -> Iterator[tuple[str, str]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


@pytest.fixture(scope="module")
def datasource(deploy_dir: Path) -> dict:
    path = deploy_dir / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    return ds


def test_datasource_is_the_compose_prometheus(datasource: dict, compose: dict) -> None:
    assert datasource["type"] == "prometheus"
    assert datasource["uid"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090" in str(compose["services"]["prometheus"]["ports"])


def test_dashboard_provider_reads_the_mounted_folder(deploy_dir: Path, compose: dict) -> None:
    path = deploy_dir / "grafana" / "provisioning" / "dashboards" / "churnwatch.yml"
    (provider,) = yaml.safe_load(path.read_text())["providers"]
    assert provider["type"] == "file"
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_two_dashboards_with_unique_ids(dashboards: dict[str, dict]) -> None:
    assert set(dashboards) == {"churnwatch-sre.json", "churnwatch-business.json"}
    uids = [b["uid"] for b in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for board in dashboards.values():
        ids = [p["id"] for p in panels(board)]
        assert len(set(ids)) == len(ids), board["title"]


def test_every_query_uses_the_provisioned_datasource(
    dashboards: dict[str, dict], datasource: dict
) -> None:
    for board in dashboards.values():
        assert not board.get("templating", {}).get("list"), "no template variables"
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{panel['title']}: no query"
            for ds in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert ds == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]


def test_dashboards_only_name_exported_metrics(
    dashboards: dict[str, dict], exported, metric_names
) -> None:
    known = exported | {"up"}
    for board in dashboards.values():
        for title, expr in expressions(board):
            names = metric_names(expr)
            assert names, f"{title}: no metric in {expr!r}"
            assert names <= known, f"{title}: not exported: {sorted(names - known)}"


@pytest.mark.parametrize(
    ("name", "wanted"),
    [("churnwatch-sre.json", SRE_METRICS), ("churnwatch-business.json", BUSINESS_METRICS)],
)
def test_dashboards_show_what_they_promise(
    dashboards: dict[str, dict], metric_names, name: str, wanted: set[str]
) -> None:
    shown = set().union(*(metric_names(e) for _, e in expressions(dashboards[name])))
    assert not wanted - shown, f"{name} misses {sorted(wanted - shown)}"


def test_model_quality_panels_cover_auc_brier_and_log_loss(dashboards: dict[str, dict]) -> None:
    exprs = " ".join(e for _, e in expressions(dashboards["churnwatch-business.json"]))
    for metric in ("auc", "brier", "log_loss"):
        assert f'metric="{metric}"' in exprs


def test_business_dashboard_shows_recovery_treated_vs_control(dashboards: dict[str, dict]) -> None:
    exprs = [
        e
        for _, e in expressions(dashboards["churnwatch-business.json"])
        if "churnwatch_cases_total" in e and 'outcome="recovered"' in e
    ]
    for arm in ("treated", "control"):
        assert any(f'treatment="{arm}"' in e for e in exprs), f"no recovery rate of {arm} cases"


def test_metric_scanner_catches_unknown_names(exported, metric_names) -> None:
    assert metric_names('sum by (level) (churnwatch_customers_at_risk{level="high"})') == {
        "churnwatch_customers_at_risk"
    }
    assert not metric_names("rate(churnwatch_alert_total[5m])") <= exported
    with pytest.raises(ValueError, match="unknown PromQL function"):
        metric_names("histogram_quantil(0.9, x)")
    assert {
        "churnwatch_events_total",
        "churnwatch_event_processing_seconds_bucket",
        "churnwatch_event_processing_seconds_count",
        "churnwatch_consumer_lag",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= exported


def test_dashboard_queries_parse(
    dashboards: dict[str, dict], promtool: str, tmp_path: Path
) -> None:
    """promtool parses every query (as recording rules), Grafana's $__ variables replaced."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for i, (_, expr) in enumerate(
            e for board in dashboards.values() for e in expressions(board)
        )
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
