"""``churnwatch evaluate`` end to end on a small simulated population."""

from __future__ import annotations

import csv
import json
import os
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detectors import EngineConfig, Playbook, decode_event
from streams.cli import app
from streams.replay import RejectsWriter, make_engine, replay
from streams.simulate import SimConfig, generate, write_events, write_truth

pytestmark = pytest.mark.unit

CUTOFFS = ("2024-07-01", "2024-10-01")
PARTITIONS = 2


def _evaluate(events: Path, truth: Path, out: Path, *extra: str) -> str:
    """``churnwatch evaluate`` at the test's cutoffs and partitions, without the
    environment's settings; returns the terminal output."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CHURNWATCH_")]:
            mp.delenv(key)
        result = CliRunner().invoke(
            app,
            [
                "evaluate",
                "--events",
                str(events),
                "--truth",
                str(truth),
                "--cutoffs",
                ",".join(CUTOFFS),
                "--out",
                str(out),
                "--partitions",
                str(PARTITIONS),
                "--no-progress",
                *extra,
            ],
            env={"COLUMNS": "200", "NO_COLOR": "1"},
        )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("evaluate")
    events, truth = generate(SimConfig(customers=300, days=365, seed=5))
    write_events(d / "events.jsonl", events)
    write_truth(d / "truth.csv", truth)
    output = _evaluate(
        d / "events.jsonl",
        d / "truth.csv",
        d / "out",
        *("--json", str(d / "copy.json"), "--bootstrap", "30", "--seed", "3"),
    )
    return d, output


def _report(d: Path) -> dict:
    return json.loads((d / "out" / "report.json").read_text(encoding="utf-8"))


def test_report_files_are_written(run: tuple[Path, str]) -> None:
    d, _ = run
    png = (d / "out" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 50_000  # four drawn panels, not an empty canvas
    assert json.loads((d / "copy.json").read_text()) == _report(d)


def test_report_has_every_section(run: tuple[Path, str]) -> None:
    d, _ = run
    r = _report(d)
    assert r["cutoffs"] == list(CUTOFFS)
    assert r["horizon_days"] == EngineConfig().horizon_days
    assert r["bootstrap"] == {"resamples": 30, "seed": 3, "level": 0.95}
    for entry in r["ranking"]:
        assert entry["churners"] > 0
        for name in ("churnwatch", "recency", "relative_recency", "bgnbd"):
            s = entry["scores"][name]
            for metric in ("roc_auc", "pr_auc"):
                e = s[metric]
                assert 0 <= e["low"] <= e["value"] <= e["high"] <= 1
            if name != "churnwatch":
                margin = s["margin"]["roc_auc"]
                assert margin["value"] == pytest.approx(
                    entry["scores"]["churnwatch"]["roc_auc"]["value"] - s["roc_auc"]["value"],
                    abs=2e-4,
                )
        for name in ("churnwatch", "bgnbd"):
            assert 0 <= entry["scores"][name]["ece"] <= 1
            assert 0 <= entry["scores"][name]["brier"]["value"] <= 1
        bins = entry["scores"]["churnwatch"]["reliability"]
        assert sum(b["count"] for b in bins) == entry["customers"]
    pooled = r["calibration"]["pooled"]
    assert pooled["rows"] == sum(e["customers"] for e in r["ranking"])
    assert 0 <= pooled["ece"] <= 1
    alerts = r["alerts"]
    assert set(alerts["levels"]) == {"medium", "high", "critical", "high_or_critical", "any"}
    for row in alerts["levels"].values():
        for key in ("precision", "recall", "recall_by_chance", "resolved_share"):
            assert row[key] is None or 0 <= row[key] <= 1
        assert row["stayers_per_1000_per_week"] <= row["per_1000_per_week"] * 10
    assert alerts["levels"]["any"]["alerts"] >= alerts["levels"]["high_or_critical"]["alerts"]
    assert alerts["by_cause"]
    assert alerts["weekly"]
    # the retention ledger: every case opened is in the summary (all treated by default)
    retention = r["retention"]
    opened = sum(v["treated"] + v["control"] for v in retention["opened"].values())
    decided = next(row for row in retention["by_level"] if row["group"] == "all")
    assert 0 < decided["treated"]["cases"] <= opened
    assert decided["control"]["cases"] == 0, "no control group unless configured"
    assert r["recovery_window_days"] == EngineConfig().recovery_window_days
    learning = r["learning"]
    assert learning["risk_target"] == EngineConfig().risk_target == "lapse"
    assert learning["labels"]["0"] > 0 and learning["labels"]["1"] > 0
    gone = learning["counted_gone_by_silence"]
    assert [g["returns_before"] for g in gone] == ["0", "1", "2", "3", "4", "5+"]
    for g in gone:
        assert 0 <= g["came_back"] <= g["customers"]
        if g["customers"]:
            assert g["came_back_share"] == pytest.approx(g["came_back"] / g["customers"], abs=1e-4)


def test_judged_customers_match_the_events_and_truth(run: tuple[Path, str]) -> None:
    """Recount who is judged at each cutoff straight from the files."""
    d, _ = run
    first_seen: dict[str, int] = {}
    for line in (d / "events.jsonl").read_bytes().splitlines():
        e = decode_event(line)
        first_seen.setdefault(e.customer_id, e.ts)
    with (d / "truth.csv").open(encoding="utf-8") as fh:
        churn = {row["customer_id"]: row["churn_date"] for row in csv.DictReader(fh)}
    for entry in _report(d)["ranking"]:
        cut = date.fromisoformat(entry["cutoff"])
        cut_ms = entry["cutoff_ms"]
        judged = [
            c
            for c, ts in first_seen.items()
            if ts <= cut_ms and not (churn[c] and date.fromisoformat(churn[c]) <= cut)
        ]
        churners = [
            c for c in judged if churn[c] and 0 < (date.fromisoformat(churn[c]) - cut).days <= 90
        ]
        assert (entry["customers"], entry["churners"]) == (len(judged), len(churners))


def test_one_pass_gives_the_alerts_of_a_plain_replay(run: tuple[Path, str]) -> None:
    d, _ = run
    events = d / "events.jsonl"
    last = decode_event(events.read_bytes().splitlines()[-1]).ts
    engine = make_engine(EngineConfig(), Playbook(), PARTITIONS)
    alerts: list = []
    replay(events, engine, alerts.append, rejects=RejectsWriter(None), until=last)
    r = _report(d)
    assert r["alerts"]["total"] == len(alerts)
    raised = sum(1 for a in alerts if a.kind in ("opened", "escalated"))
    weekly = sum(w["medium"] + w["high"] + w["critical"] for w in r["alerts"]["weekly"])
    assert weekly == raised


def test_terminal_tables(run: tuple[Path, str]) -> None:
    _, output = run
    for text in (
        "Cutoff 2024-07-01",
        "ROC AUC",
        "BG/NBD",
        "recency/gap",
        "Calibration",
        "cause",
        "model (lapse target) learned",
    ):
        assert text in output


def test_events_grouped_by_customer_are_evaluated_in_time_order(
    run: tuple[Path, str], tmp_path: Path
) -> None:
    """An export grouped by customer gives the report of the same events in time order."""
    d, _ = run
    lines = (d / "events.jsonl").read_bytes().splitlines()
    cid = [json.loads(line)["customer_id"] for line in lines]
    ts = [decode_event(line).ts for line in lines]
    grouped = tmp_path / "grouped" / "events.jsonl"
    in_order = tmp_path / "in_order" / "events.jsonl"
    for path, order in (
        (grouped, sorted(range(len(lines)), key=lambda i: cid[i])),
        (in_order, sorted(range(len(lines)), key=lambda i: (ts[i], cid[i]))),
    ):
        path.parent.mkdir()
        path.write_bytes(b"".join(lines[i] + b"\n" for i in order))
    output = _evaluate(grouped, d / "truth.csv", tmp_path / "out_grouped", "--bootstrap", "0")
    assert "lines are earlier than a line before them; evaluating a time-sorted copy" in output
    reference = _evaluate(in_order, d / "truth.csv", tmp_path / "out_in_order", "--bootstrap", "0")
    assert "time-sorted copy" not in reference
    got = json.loads((tmp_path / "out_grouped" / "report.json").read_text(encoding="utf-8"))
    want = json.loads((tmp_path / "out_in_order" / "report.json").read_text(encoding="utf-8"))
    assert got["data"].pop("late_lines") > 100
    assert want["data"].pop("late_lines") == 0
    assert got == want
