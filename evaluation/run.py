"""The evaluation's shell: read the truth, replay the events once, collect, report.

One pass over the events file: before the first event after a cutoff, every shard's clock
moves to the cutoff (the sweeps due by then run, as they would on the next event anyway)
and every customer seen so far is scored as of the cutoff. All alerts are kept.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from detectors import LEVELS, Alert, ChurnwatchError, DecodeError, Engine, decode_event
from detectors.comeback import GROUP_LABELS, GROUPS, ComebackRate
from detectors.events import Order
from detectors.labels import LABEL_COUNTS
from evaluation.alert_quality import DAY_MS, AlertRecord
from evaluation.baselines import History
from evaluation.evaluate import Collection, Truth, evaluate
from evaluation.retention import ledger_counts, summarize
from streams.ordering import in_time_order
from streams.replay import RejectsWriter, ReplayStats, progress_bar, read_events


class EvaluationError(ChurnwatchError):
    """Unusable evaluation input (truth file, cutoffs, empty events)."""


def _day_ms(text: str) -> int:
    d = date.fromisoformat(text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def read_truth(path: Path) -> Truth:
    """``customer_id,churn_date[,cause]`` with a header; an empty churn date means no churn."""
    churn: dict[str, int | None] = {}
    cause: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        if not {"customer_id", "churn_date"} <= fields:
            raise EvaluationError(f"{path}: the header needs customer_id and churn_date")
        for lineno, row in enumerate(reader, start=2):
            cid = (row.get("customer_id") or "").strip()
            if not cid:
                raise EvaluationError(f"{path}:{lineno}: empty customer_id")
            text = (row.get("churn_date") or "").strip()
            try:
                churn[cid] = _day_ms(text[:10]) if text else None
            except ValueError:
                raise EvaluationError(
                    f"{path}:{lineno}: churn_date {text!r} is not a date"
                ) from None
            cause[cid] = (row.get("cause") or "").strip() if text else ""
    if not churn:
        raise EvaluationError(f"{path}: no customers")
    return Truth(churn, cause)


def _first_ts(lines: list[bytes]) -> int | None:
    for line in lines:
        try:
            ts = decode_event(line.strip()).ts
        except DecodeError:
            continue
        if isinstance(ts, int):
            return ts
    return None


def time_range(path: Path, chunk: int = 1 << 20) -> tuple[int, int]:
    """Event time of the first and of the last decodable line of a time-sorted file
    (:func:`streams.ordering.in_time_order` makes one)."""
    with path.open("rb") as fh:
        head = fh.read(chunk)
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - chunk))
        tail = fh.read()
    first = _first_ts([line for line in head.splitlines() if line.strip()])
    last = _first_ts([line for line in reversed(tail.splitlines()) if line.strip()])
    if first is None or last is None:
        raise EvaluationError(f"{path}: no valid event found at its start or end")
    return first, last


def default_cutoffs(first_ts: int, last_ts: int, horizon_days: float) -> list[int]:
    """Quarter starts from two horizons after the first event while the horizon after the
    cutoff still ends within the data.

    >>> [datetime.fromtimestamp(c / 1000, UTC).date().isoformat()
    ...  for c in default_cutoffs(_day_ms("2024-01-01"), _day_ms("2025-06-23"), 90)]
    ['2024-07-01', '2024-10-01', '2025-01-01']
    """
    horizon_ms = int(horizon_days * DAY_MS)
    earliest = datetime.fromtimestamp((first_ts + 2 * horizon_ms) / 1000, UTC)
    year, month = earliest.year, earliest.month
    if (earliest.day, earliest.hour, earliest.minute, earliest.second) != (1, 0, 0, 0):
        month += 1
    month = 3 * math.ceil((month - 1) / 3) + 1  # January, April, July or October
    out = []
    while True:
        year += (month - 1) // 12
        month = (month - 1) % 12 + 1
        cut = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        if cut + horizon_ms > last_ts:
            break
        out.append(cut)
        month += 3
    return out


@dataclass
class _Customer:
    first_seen: int
    occasions: list[int]


def collect(
    path: Path, engine: Engine, cutoffs: list[int], show_progress: bool = False
) -> Collection:
    """Replay ``path`` through ``engine`` once, scoring everyone at each cutoff."""
    cuts = sorted(set(cutoffs))
    stats = ReplayStats()
    alerts: list[AlertRecord] = []
    risk: list[dict[str, float]] = []
    people: dict[str, _Customer] = {}
    first_ts: int | None = None
    last_ts = 0

    def keep(batch: list[Alert]) -> None:
        for a in batch:
            ts = datetime.fromisoformat(a.as_of.replace("Z", "+00:00"))
            ms = int(ts.timestamp() * 1000)
            alerts.append(AlertRecord(a.customer_id, a.kind, LEVELS.index(a.risk_level), ms))

    def snapshot(cut: int) -> None:
        keep(engine.advance_all(cut))
        scores: dict[str, float] = {}
        for shard in engine.shards:
            for key in shard.customers():
                assessed = shard.assess(key, cut)
                if assessed is not None:
                    scores[key] = assessed.score
        risk.append(scores)

    bar, advance = progress_bar(path, show_progress)
    nxt = 0
    try:
        if bar is not None:
            bar.start()
        for event in read_events(path, stats, RejectsWriter(None), progress=advance):
            ts = event.ts
            if not isinstance(ts, int):  # the decoder normalises ts
                continue
            while nxt < len(cuts) and ts > cuts[nxt]:
                snapshot(cuts[nxt])
                nxt += 1
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = max(last_ts, ts)
            person = people.get(event.customer_id)
            if person is None:
                person = people[event.customer_id] = _Customer(ts, [])
            person.first_seen = min(person.first_seen, ts)
            if isinstance(event, Order) and event.status == "paid":
                _add_occasion(person.occasions, ts)
            keep(engine.feed(event))
        while nxt < len(cuts):
            snapshot(cuts[nxt])
            nxt += 1
        keep(engine.advance_all(last_ts))
    finally:
        if bar is not None:
            bar.stop()
    if first_ts is None:
        raise EvaluationError(f"{path}: no valid events")
    return Collection(
        cutoffs=cuts,
        risk=risk,
        histories={cid: History(p.first_seen, p.occasions) for cid, p in people.items()},
        alerts=alerts,
        first_ts=first_ts,
        last_ts=last_ts,
        events=stats.events,
        rejected=sum(stats.rejected.values()),
    )


def _add_occasion(occasions: list[int], ts: int) -> None:
    """Keep the first paid order of each UTC day, in time order."""
    day = ts // DAY_MS
    if not occasions or occasions[-1] // DAY_MS < day:
        occasions.append(ts)
        return
    i = bisect.bisect_left([o // DAY_MS for o in occasions], day)
    if i < len(occasions) and occasions[i] // DAY_MS == day:
        occasions[i] = min(occasions[i], ts)
    else:
        occasions.insert(i, ts)


def learning_summary(engine: Engine) -> dict[str, Any]:
    """What the model learned from, over every shard: labels, and how often the customers
    silence counted gone came back, by the returns they had made before."""
    labels = {k: sum(shard.counts[f"labels_{k}"] for shard in engine.shards) for k in LABEL_COUNTS}
    rate = ComebackRate.pooled(shard.model.comeback for shard in engine.shards)
    return {
        "risk_target": engine.cfg.risk_target,
        "labels": labels,
        "counted_gone_by_silence": [
            {
                "returns_before": GROUP_LABELS[g],
                "customers": int(rate.confirmations[g]),
                "came_back": int(rate.returns[g]),
                "came_back_share": None
                if (share := rate.came_back_share(g)) is None
                else round(share, 4),
            }
            for g in range(GROUPS)
        ],
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def run_evaluation(
    events: Path,
    truth_file: Path,
    engine: Engine,
    *,
    cutoffs: list[int] | None = None,
    out_dir: Path = Path("evaluation-report"),
    json_path: Path | None = None,
    draws: int = 200,
    seed: int = 0,
    console: Console | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Truth + one replay -> ``report.json`` and ``report.png`` in ``out_dir``, tables."""
    from evaluation.console import print_report
    from evaluation.report import render

    truth = read_truth(truth_file)
    horizon = engine.cfg.horizon_days
    with in_time_order(events) as (ordered, late):
        if late and console is not None:
            console.print(
                f"{events.name}: {late:,} lines are earlier than a line before them; "
                "evaluating a time-sorted copy"
            )
        if cutoffs is None:
            first, last = time_range(ordered)
            cutoffs = default_cutoffs(first, last, horizon)
            if not cutoffs:
                raise EvaluationError(
                    f"{events}: too short for a default cutoff (two horizons of history and "
                    "one after); pass --cutoffs"
                )
        collection = collect(ordered, engine, cutoffs, show_progress=show_progress)
    report = evaluate(collection, truth, horizon, draws=draws, seed=seed)
    report["data"]["late_lines"] = late
    report["recovery_window_days"] = engine.cfg.recovery_window_days
    report["retention"] = summarize(ledger_counts(engine))
    report["learning"] = learning_summary(engine)
    report["data"]["events_file"] = events.name
    report["data"]["truth_file"] = truth_file.name
    report["data"]["partitions"] = engine.partitions
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(report, out_dir / "report.json")
    render(report, out_dir / "report.png")
    if json_path is not None:
        if str(json_path) == "-":
            sys.stdout.write(json.dumps(report, indent=1, allow_nan=False) + "\n")
        else:
            write_json(report, json_path)
    if console is not None:
        print_report(report, console)
    return report
