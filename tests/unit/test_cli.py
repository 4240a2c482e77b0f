"""The ``churnwatch`` console script end to end: simulate, replay, rejects, strict, score."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detectors import LEVELS, decode_alert, decode_event

pytestmark = pytest.mark.unit

SCRIPT = Path(sys.executable).with_name("churnwatch")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "streams.cli"]
AS_OF = "2024-07-01T00:00:00Z"
AS_OF_MS = 1_719_792_000_000
# (line number, payload, reason) injected into a copy of the simulated file
BAD_LINES = [
    (2, b"this is not json", "not_json"),
    (5, b'{"event_id":"x1","event_type":"fax","customer_id":"c1","ts":1719792000000}', None),
    (9, b"[1, 2, 3]", "not_object"),
    (
        14,
        b'{"event_id":"x2","event_type":"order","customer_id":"c1","ts":1719792000000,'
        b'"order_id":"o","amount":NaN}',
        "nan_or_inf",
    ),
    (20, b"", None),  # a blank line is skipped, not rejected
    (25, b'{"event_id":"x3","event_type":"visit","customer_id":"c1","ts":1719792000}', None),
]
EXPECTED_REJECTS = [
    (2, "not_json"),
    (5, "unknown_event_type"),
    (9, "not_object"),
    (14, "nan_or_inf"),
    (25, "ts_out_of_range"),
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return env


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated events file and a copy of it with bad lines injected."""
    d = tmp_path_factory.mktemp("cli")
    done = _finish(
        _start(
            ["simulate", "--out", "events.jsonl", "--truth", "truth.csv", "--customers", "150"]
            + ["--days", "365"],
            d,
        )
    )
    assert done.returncode == 0, done.stderr
    lines = (d / "events.jsonl").read_bytes().splitlines()
    for lineno, payload, _ in BAD_LINES:
        lines.insert(lineno - 1, payload)
    (d / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return d


RUNS = {
    "replay_a": ["replay", "events.jsonl", "--alerts-out", "a.jsonl", "--no-progress"],
    "replay_b": ["replay", "events.jsonl", "--alerts-out", "b.jsonl", "--no-progress"],
    "p1": ["replay", "events.jsonl", "--alerts-out", "p1.jsonl", "--partitions", "1"],
    "p3": ["replay", "events.jsonl", "--alerts-out", "p3.jsonl", "--partitions", "3"],
    "bad": ["replay", "bad.jsonl", "--alerts-out", "bad-alerts.jsonl", "--rejects", "rej.jsonl"],
    "strict": ["replay", "bad.jsonl", "--alerts-out", "strict.jsonl", "--strict"],
    "score_a": ["score", "events.jsonl", "--as-of", AS_OF, "--out", "scores-a.csv"],
    "score_b": ["score", "events.jsonl", "--as-of", AS_OF, "--out", "scores-b.csv"],
    "score_churn": ["score", "events.jsonl", "--as-of", AS_OF, "--out", "scores-churn.csv"]
    + ["--risk-target", "churn"],
    "bad_target": ["score", "events.jsonl", "--as-of", AS_OF, "--risk-target", "soon"],
}


@pytest.fixture(scope="module")
def runs(work: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every command at once (they are independent): the suite stays fast on two cores."""
    procs = {name: _start(args, work) for name, args in RUNS.items()}
    return {name: _finish(proc) for name, proc in procs.items()}


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}"


def _customers(path: Path, until_ms: int | None = None) -> set[str]:
    out = set()
    for line in path.read_bytes().splitlines():
        event = decode_event(line)
        if until_ms is None or event.ts <= until_ms:
            out.add(event.customer_id)
    return out


def test_simulate_writes_events_and_truth(work: Path) -> None:
    assert len(_customers(work / "events.jsonl")) > 100
    with (work / "truth.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 150
    assert set(rows[0]) >= {"customer_id", "churn_date", "cause"}


def test_replay_twice_gives_byte_identical_alerts(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    _ok(runs["replay_a"])
    _ok(runs["replay_b"])
    first, second = (work / "a.jsonl").read_bytes(), (work / "b.jsonl").read_bytes()
    assert first == second
    alerts = [decode_alert(line) for line in first.splitlines()]
    assert len(alerts) > 10
    assert {a.kind for a in alerts} >= {"opened", "escalated"}


@pytest.mark.parametrize("name", ["p1", "p3"])
def test_any_partition_count_runs_and_alerts_only_known_customers(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]], name: str
) -> None:
    _ok(runs[name])
    known = _customers(work / "events.jsonl")
    alerts = [decode_alert(line) for line in (work / f"{name}.jsonl").read_bytes().splitlines()]
    assert alerts
    assert {a.customer_id for a in alerts} <= known


def test_bad_lines_are_listed_counted_and_skipped(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    done = runs["bad"]
    _ok(done)
    records = [json.loads(line) for line in (work / "rej.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in records] == EXPECTED_REJECTS
    injected = {n: p for n, p, _ in BAD_LINES}
    for r in records:
        assert r["raw"].encode() == injected[r["line"]]
        assert r["detail"]
    summary = re.sub(r"\s+", " ", done.stderr)
    assert re.search(r"lines rejected 5\b", summary), done.stderr
    for reason in ("not_json", "unknown_event_type", "not_object", "nan_or_inf"):
        assert f"{reason} 1" in summary
    # the good lines were processed exactly as in the clean file (same default partitions)
    assert (work / "bad-alerts.jsonl").read_bytes() == (work / "a.jsonl").read_bytes()


def test_strict_stops_at_the_first_bad_line_with_its_number(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    done = runs["strict"]
    assert done.returncode != 0
    message = re.sub(r"\s+", " ", done.stderr)
    assert "bad.jsonl:2:" in message, done.stderr
    assert "not_json" in message
    assert "Traceback" not in done.stderr


def _scores(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_score_as_of_writes_one_row_per_customer_seen_by_then(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    _ok(runs["score_a"])
    _ok(runs["score_b"])
    assert (work / "scores-a.csv").read_bytes() == (work / "scores-b.csv").read_bytes()
    header, rows = _scores(work / "scores-a.csv")
    assert header[:3] == ["customer_id", "risk_score", "risk_level"]
    ids = [r["customer_id"] for r in rows]
    assert len(ids) == len(set(ids))
    expected = _customers(work / "events.jsonl", until_ms=AS_OF_MS)
    assert expected != _customers(work / "events.jsonl"), "the cut-off must matter"
    assert set(ids) == expected
    scores = [float(r["risk_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {r["risk_level"] for r in rows} <= set(LEVELS)
    assert scores == sorted(scores, reverse=True), "riskiest first"


def test_risk_target_flag_changes_what_the_score_means(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    _ok(runs["score_a"])
    _ok(runs["score_churn"])
    _, lapse = _scores(work / "scores-a.csv")  # the default target
    _, churn = _scores(work / "scores-churn.csv")
    assert {r["customer_id"] for r in lapse} == {r["customer_id"] for r in churn}
    mean = {
        name: sum(float(r["risk_score"]) for r in rows) / len(rows)
        for name, rows in (("lapse", lapse), ("churn", churn))
    }
    # churn within the horizon is a rarer event than no purchase within it
    assert mean["churn"] < mean["lapse"]
    bad = runs["bad_target"]
    assert bad.returncode == 2 and "risk_target" in bad.stderr
