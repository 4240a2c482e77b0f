"""The scoring core stays pure: no transport, metrics or CLI imports; no clocks, env or files."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

FORBIDDEN_MODULES = {
    "faust",
    "kafka",
    "aiokafka",
    "prometheus_client",
    "mode",
    "streams",
    "typer",
    "rich",
    "pydantic",
    "pydantic_settings",
    "rocksdict",
    "click",
}
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import detectors
for info in pkgutil.iter_modules(detectors.__path__):
    importlib.import_module("detectors." + info.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_detectors_pulls_in_no_transport_metrics_or_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        cwd=tmp_path,  # not the repo: a local folder must not shadow anything
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert "detectors" in loaded and "river" in loaded and "msgspec" in loaded
    assert not loaded & FORBIDDEN_MODULES, sorted(loaded & FORBIDDEN_MODULES)


CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}
CLOCK_OWNERS = {"datetime", "date", "time", "dt"}


def _sources(repo_root: Path) -> list[Path]:
    files = sorted((repo_root / "detectors").glob("*.py"))
    assert len(files) >= 10
    return files


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            found.append(f"{where} imports from time")
        if isinstance(node, ast.Import) and any(a.name == "time" for a in node.names):
            found.append(f"{where} imports time")
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in CLOCK_CALLS
                and isinstance(func.value, ast.Name)
                and func.value.id in CLOCK_OWNERS
            ):
                found.append(f"{where} calls {func.value.id}.{func.attr}()")
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"{where} opens a file")
            if isinstance(func, ast.Attribute) and func.attr == "getenv":
                found.append(f"{where} reads the environment")
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append(f"{where} reads the environment")
    return found


def test_detectors_never_read_a_clock_the_environment_or_files(repo_root: Path) -> None:
    problems = [v for path in _sources(repo_root) for v in _violations(path)]
    assert problems == []


def test_the_source_scan_would_catch_a_clock(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\nfrom datetime import datetime\n"
        "def f():\n    return datetime.now(), time.time(), open('x')\n",
        encoding="utf-8",
    )
    found = _violations(bad)
    assert any("datetime.now" in v for v in found)
    assert any("time.time" in v for v in found)
    assert any("opens a file" in v for v in found)


def test_grep_finds_no_wall_clock_calls(repo_root: Path) -> None:
    for path in _sources(repo_root):
        text = path.read_text(encoding="utf-8")
        for needle in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today("):
            assert needle not in text, f"{path.name} mentions {needle}"
