"""From what a replay collected and the ground truth to the report (a JSON-ready dict).

At each cutoff the customers judged are those seen by the cutoff and not churned by it
(a churn date at or before the cutoff); the label is "churns within the horizon after the
cutoff": cutoff < churn <= cutoff + horizon. Customers missing from the truth are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation import metrics
from evaluation.alert_quality import (
    DAY_MS,
    AlertRecord,
    People,
    alert_quality,
    iso_date,
    weekly_counts,
)
from evaluation.baselines import History, baselines

SCORES = ("churnwatch", "recency", "relative_recency", "bgnbd")
"""Every score the report compares, churnwatch first."""
PROBABILITIES = ("churnwatch", "bgnbd")
"""Scores that are probabilities, so Brier score and calibration apply."""
SCORE_LABELS = {
    "churnwatch": "churnwatch risk",
    "recency": "recency (days since last order)",
    "relative_recency": "recency / usual gap",
    "bgnbd": "BG/NBD P(no purchase in horizon)",
}


@dataclass
class Truth:
    churn: dict[str, int | None]
    """Churn time (epoch ms of the churn date, 00:00 UTC) or ``None``."""
    cause: dict[str, str]


@dataclass
class Collection:
    """What one replay over the events gathered."""

    cutoffs: list[int]
    risk: list[dict[str, float]]
    """Per cutoff: every customer seen by then, with risk_score as of the cutoff."""
    histories: dict[str, History]
    alerts: list[AlertRecord]
    first_ts: int
    last_ts: int
    events: int = 0
    rejected: int = 0


def _estimate(iv: metrics.Interval) -> dict[str, float | None]:
    return {"value": _num(iv.value), "low": _num(iv.low), "high": _num(iv.high)}


def _num(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 4)


def _bins(table: Sequence[metrics.ReliabilityBin]) -> list[dict[str, float | int]]:
    return [
        {
            "lower": b.lower,
            "upper": b.upper,
            "mean_predicted": round(b.mean_predicted, 4),
            "observed_rate": round(b.observed_rate, 4),
            "count": b.size,
        }
        for b in table
    ]


def score_cutoff(
    cutoff: int,
    risk: Mapping[str, float],
    histories: Mapping[str, History],
    truth: Truth,
    horizon_days: float,
    draws: int,
    seed: int | Sequence[int],
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Ranking and calibration figures at one cutoff; also the labels and churnwatch scores."""
    horizon_ms = int(horizon_days * DAY_MS)
    judged = sorted(
        cid
        for cid in risk
        if cid in truth.churn and not ((t := truth.churn[cid]) is not None and t <= cutoff)
    )
    labels = np.array(
        [
            (t := truth.churn[cid]) is not None and cutoff < t <= cutoff + horizon_ms
            for cid in judged
        ],
        dtype=bool,
    )
    seen = sorted(cid for cid, h in histories.items() if h.first_seen <= cutoff)
    base = baselines([histories[cid] for cid in seen], cutoff, horizon_days)
    where = {cid: i for i, cid in enumerate(seen)}
    pick = np.array([where[cid] for cid in judged], dtype=np.intp)
    scores = {"churnwatch": np.array([risk[cid] for cid in judged], dtype=np.float64)}
    for name, values in base.scores.items():
        scores[name] = values[pick] if pick.size else np.zeros(0)
    plan = metrics.resamples(len(judged), draws, seed)
    entry: dict[str, Any] = {
        "cutoff": iso_date(cutoff),
        "cutoff_ms": cutoff,
        "customers": len(judged),
        "churners": int(labels.sum()),
        "churn_rate": _num(float(labels.mean())) if labels.size else None,
        "scores": {},
    }
    main = scores["churnwatch"]
    for name in SCORES:
        s = scores[name]
        result: dict[str, Any] = {
            "roc_auc": _estimate(metrics.bootstrap(metrics.roc_auc, labels, s, plan)),
            "pr_auc": _estimate(metrics.bootstrap(metrics.average_precision, labels, s, plan)),
        }
        if name in PROBABILITIES:
            result["brier"] = _estimate(metrics.bootstrap(metrics.brier, labels, s, plan))
            result["ece"] = _num(metrics.expected_calibration_error(labels, s))
            result["reliability"] = _bins(metrics.reliability(labels, s))
        if name != "churnwatch":
            result["margin"] = {
                "roc_auc": _estimate(
                    metrics.paired_difference(metrics.roc_auc, labels, main, s, plan)
                ),
                "pr_auc": _estimate(
                    metrics.paired_difference(metrics.average_precision, labels, main, s, plan)
                ),
            }
        curve = metrics.gains(labels, s, points=50)
        result["gains"] = [[round(x, 4), round(y, 4)] for x, y in curve]
        result["top_decile_capture"] = _num(_capture(curve, 0.1))
        entry["scores"][name] = result
    if base.bgnbd is not None:
        entry["bgnbd_fit"] = {
            **{k: round(v, 5) for k, v in base.bgnbd.params._asdict().items()},
            "customers": base.bgnbd.customers,
            "converged": base.bgnbd.converged,
        }
    entry["population_gap_days"] = _num(base.population_gap)
    return entry, labels, main


def _capture(curve: Sequence[tuple[float, float]], share: float) -> float:
    for x, y in curve:
        if x >= share - 1e-9:
            return y
    return math.nan


def evaluate(
    collection: Collection,
    truth: Truth,
    horizon_days: float,
    draws: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole report: ranking per cutoff, calibration, alert quality, weekly alerts."""
    horizon_ms = int(horizon_days * DAY_MS)
    ranking = []
    pooled_y, pooled_p = [], []
    for i, (cutoff, risk) in enumerate(zip(collection.cutoffs, collection.risk, strict=True)):
        entry, labels, main = score_cutoff(
            cutoff, risk, collection.histories, truth, horizon_days, draws, (seed, i)
        )
        entry["labels_complete"] = cutoff + horizon_ms <= collection.last_ts
        ranking.append(entry)
        pooled_y.append(labels)
        pooled_p.append(main)
    y = np.concatenate(pooled_y) if pooled_y else np.zeros(0, dtype=bool)
    p = np.concatenate(pooled_p) if pooled_p else np.zeros(0)
    window_start = min(collection.cutoffs) if collection.cutoffs else collection.first_ts
    people = People(
        churn=truth.churn,
        cause=truth.cause,
        first_seen={cid: h.first_seen for cid, h in collection.histories.items()},
        first_purchase={
            cid: (h.occasions[0] if h.occasions else None)
            for cid, h in collection.histories.items()
        },
    )
    in_truth = sum(1 for cid in collection.histories if cid in truth.churn)
    return {
        "report": "churnwatch-evaluation",
        "version": 1,
        "horizon_days": horizon_days,
        "bootstrap": {"resamples": draws, "seed": seed, "level": 0.95},
        "data": {
            "first_event": iso_date(collection.first_ts),
            "last_event": iso_date(collection.last_ts),
            "events": collection.events,
            "rejected": collection.rejected,
            "customers": len(collection.histories),
            "customers_in_truth": in_truth,
            "customers_not_in_truth": len(collection.histories) - in_truth,
        },
        "cutoffs": [iso_date(c) for c in collection.cutoffs],
        "ranking": ranking,
        "calibration": {
            "pooled": {
                "ece": _num(metrics.expected_calibration_error(y, p)) if y.size else None,
                "brier": _num(metrics.brier(y, p)) if y.size else None,
                "reliability": _bins(metrics.reliability(y, p)) if y.size else [],
                "rows": int(y.size),
            },
            "per_cutoff": [
                {"cutoff": r["cutoff"], "ece": r["scores"]["churnwatch"]["ece"]} for r in ranking
            ],
        },
        "alerts": {
            **alert_quality(
                collection.alerts, people, window_start, collection.last_ts, horizon_ms
            ),
            "weekly": weekly_counts(collection.alerts, collection.first_ts, collection.last_ts),
            "total": len(collection.alerts),
        },
    }
