"""`churnwatch alerts tail` and `churnwatch demo` against the embedded broker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def top_category(alert: dict[str, object]) -> str:
    reasons = alert["reasons"]
    assert isinstance(reasons, list)
    return str(reasons[0]["category"]) if reasons else "none"


def test_alerts_tail_filters_by_level_and_category(stack, events_file: Path, kit) -> None:
    alerts = kit.replay_alerts(events_file, partitions=3)
    stack.create_topics()
    stack.produce([json.dumps(a).encode() for a in alerts], topic=stack.settings.topic("alerts"))
    levels = {"high", "critical"}
    categories = sorted({top_category(a) for a in alerts if a["risk_level"] in levels})
    assert categories, "the sample has no high or critical alert"
    category = categories[0]

    def tail(*args: str) -> list[dict[str, object]]:
        out = stack.run(
            "alerts", "tail", "--from-beginning", "--json", "--idle-timeout", "3", *args
        )
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    got = tail("--level", "high", "--level", "critical", "--category", category)
    want = {
        a["alert_id"] for a in alerts if a["risk_level"] in levels and top_category(a) == category
    }
    assert {a["alert_id"] for a in got} == want
    assert len(tail()) == len(alerts)


def test_demo_runs_end_to_end(tmp_path: Path, kit) -> None:
    port = kit.free_port()
    cmd = [sys.executable, "-m", "streams.cli", "demo", "--customers", "80", "--days", "200"]
    cmd += ["--rate", "0", "--duration", "120", "--metrics-port", str(port)]
    cmd += ["--workdir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    done = re.search(r"done: ([\d,]+) events sent, ([\d,]+) processed, ([\d,]+) alerts", out.stdout)
    assert done, out.stdout[-2000:]
    sent, processed, alerts = (int(g.replace(",", "")) for g in done.groups())
    assert sent > 0 and processed == sent, done.group(0)
    assert alerts > 0, done.group(0)
