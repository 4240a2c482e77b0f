"""Deploy checks: external tools, the metric names a worker exports, a PromQL name scanner."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics

# Every PromQL function and aggregation operator (Prometheus 2.x/3.x). A name followed by
# "(" that is not in here is an error, so a typo cannot pass as a metric name either.
PROMQL_FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase info irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year start end
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio
    """.split()
)
PROMQL_KEYWORDS = frozenset(
    "by without on ignoring group_left group_right offset bool and or unless atan2 inf nan".split()
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def exported_metric_names() -> set[str]:
    """Every sample name a worker's /metrics can show (labelled metrics included before use)."""
    registry = CollectorRegistry()
    Metrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (Grafana ``$variables`` allowed).

    >>> sorted(promql_metric_names(
    ...     'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"y|z"}[$__rate_interval])))'
    ...     ' / on (job) group_left b offset 1h > bool 1e3'))
    ['a_bucket', 'b']
    """
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            if word.lower() not in PROMQL_FUNCTIONS:
                raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
        elif word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def require_tool(name: str, package: str) -> str:
    """Path of ``name``; missing: a failure in CI (``CI`` set), a skip elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not on PATH (Debian: apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_tool("prometheus", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_tool("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def exported() -> set[str]:
    return exported_metric_names()


@pytest.fixture(scope="session")
def metric_names() -> Callable[[str], set[str]]:
    """The PromQL name scanner (test modules are imported with importlib: no conftest imports)."""
    return promql_metric_names


@pytest.fixture(scope="session")
def deploy_dir(repo_root: Path) -> Path:
    return repo_root / "deploy"


@pytest.fixture(scope="session")
def alert_rules(deploy_dir: Path) -> list[dict]:
    doc = yaml.safe_load((deploy_dir / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def compose(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def dashboards(deploy_dir: Path) -> dict[str, dict]:
    folder = deploy_dir / "grafana" / "dashboards"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
