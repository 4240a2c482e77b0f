"""``churnwatch report``: the retention ledger of a simulated campaign and of an events file,
as JSON, PNG and tables; and the summary's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from detectors.ledger import LedgerCounts
from evaluation.retention import has_cases, summarize

pytestmark = pytest.mark.unit

SCRIPT = Path(sys.executable).with_name("churnwatch")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "streams.cli"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _report_of_events(
    events: str, out: str, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``churnwatch report --events`` with every window closed and half the cases control."""
    res = _run(
        [
            "report",
            "--events",
            events,
            "--close-windows",
            "--control-share",
            "0.5",
            "--partitions",
            "2",
            "--out",
            out,
            "--no-progress",
        ],
        cwd,
    )
    assert res.returncode == 0, res.stderr
    return res, json.loads((cwd / out / "report.json").read_text())


def test_summary_rates_intervals_and_open_cases() -> None:
    counts = LedgerCounts(
        opened=Counter({("treated", "high"): 110, ("control", "high"): 40}),
        cases=Counter(
            {
                ("treated", "high", "service", "recovered"): 60,
                ("treated", "high", "service", "churned"): 30,
                ("treated", "high", "price", "still_at_risk"): 10,
                ("control", "high", "service", "recovered"): 12,
                ("control", "high", "service", "churned"): 28,
            }
        ),
        by_action=Counter({("price_match", "treated", "recovered"): 5}),
        actions=Counter({("price_match", "sent"): 7, ("price_match", "failed"): 2}),
        links=Counter({"linked": 9}),
    )
    s = summarize(counts, {"high": 0.25, "all": 0.25})
    high = next(r for r in s["by_level"] if r["group"] == "high")
    assert high["treated"]["cases"] == 100 and high["treated"]["recovered"] == 60
    assert high["control"]["cases"] == 40 and high["control"]["rate"]["value"] == 0.3
    assert high["uplift"]["value"] == pytest.approx(0.3)
    assert high["uplift"]["low"] < 0.3 < high["uplift"]["high"]
    assert high["treated"]["rate"]["low"] < 0.6 < high["treated"]["rate"]["high"]
    assert high["known_effect"] == 0.25
    assert [r["group"] for r in s["by_level"]] == ["high", "all"]
    assert {r["group"] for r in s["by_category"]} == {"service", "price"}
    price = next(r for r in s["by_category"] if r["group"] == "price")
    assert price["control"]["cases"] == 0 and price["uplift"]["value"] is None
    assert s["opened"]["high"]["open"] == {"treated": 10, "control": 0}
    assert s["opened"]["high"]["control_share"] == pytest.approx(40 / 150, abs=1e-4)
    assert s["action_reports"] == {"price_match": {"sent": 7, "delivered": 0, "failed": 2}}
    assert has_cases(s) and not has_cases(summarize(LedgerCounts()))
    json.dumps(s, allow_nan=False)


def test_report_of_a_campaign_and_of_its_events_agree(tmp_path: Path) -> None:
    args = ["--customers", "250", "--days", "240", "--seed", "4", "--partitions", "2"]
    sim = _run(
        [
            "report",
            "--simulate-campaign",
            *args,
            "--out",
            "sim",
            "--events-out",
            "campaign.jsonl",
            "--json",
            "-",
        ],
        tmp_path,
    )
    assert sim.returncode == 0, sim.stderr
    report = json.loads(sim.stdout)
    assert report == json.loads((tmp_path / "sim" / "report.json").read_text())
    png = (tmp_path / "sim" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert report["campaign"]["effect"] == 0.3
    assert report["control_share"] == {"medium": 0.5, "high": 0.5, "critical": 0.5}
    levels = {r["group"]: r for r in report["retention"]["by_level"]}
    assert "known_effect" in levels["all"]
    assert "Recovered within 60 days" in sim.stderr  # the tables went to stderr

    replayed, again = _report_of_events("campaign.jsonl", "replayed", tmp_path)
    for row in report["retention"]["by_level"]:
        row.pop("known_effect")
    assert again["retention"] == report["retention"]
    assert again["data"]["closed_windows"] is True
    assert again["data"]["late_lines"] == 0
    assert "uplift" in replayed.stdout

    # the same events exported grouped by customer: replayed in time order all the same
    lines = (tmp_path / "campaign.jsonl").read_bytes().splitlines()
    grouped = sorted(lines, key=lambda line: json.loads(line)["customer_id"])
    (tmp_path / "grouped.jsonl").write_bytes(b"".join(line + b"\n" for line in grouped))
    regrouped, third = _report_of_events("grouped.jsonl", "grouped", tmp_path)
    assert "lines were earlier than a line before them; replayed a time-sorted copy" in (
        regrouped.stderr
    )
    assert third["data"]["late_lines"] > 100
    assert third["retention"] == again["retention"]


def test_report_needs_exactly_one_source(tmp_path: Path) -> None:
    res = _run(["report"], tmp_path)
    assert res.returncode != 0
    assert "--events" in res.stderr
