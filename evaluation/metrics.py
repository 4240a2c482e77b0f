"""Scores against outcomes: ROC AUC, average precision, Brier score, reliability, bootstrap.

Every function takes ``labels`` (true for the event, here: churns within the horizon) and
``scores`` (higher = riskier) as equal-length sequences and returns plain floats. A metric
that is undefined on the data (one class only, no rows) is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = Sequence[float] | Sequence[bool] | npt.NDArray[np.generic]


def _arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[BoolArray, FloatArray]:
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-d and of equal length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y, s


def average_ranks(values: ArrayLike) -> FloatArray:
    """1-based ranks, ties sharing their average rank.

    >>> average_ranks([0.5, 0.1, 0.5, 0.9]).tolist()
    [2.5, 1.0, 2.5, 4.0]
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    order = np.argsort(v, kind="mergesort")
    ordered = v[order]
    first = np.empty(n, dtype=bool)
    if n:
        first[0] = True
        first[1:] = ordered[1:] != ordered[:-1]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Probability that a random positive scores above a random negative (ties count half).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = _arrays(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve as a step sum: sum over thresholds of
    (recall gained) x (precision there); tied scores form one threshold.

    >>> average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8333333333333333
    """
    y, s = _arrays(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    ordered = s[order]
    last = np.ones(s.size, dtype=bool)  # last row of each run of equal scores
    last[:-1] = ordered[:-1] != ordered[1:]
    tp = np.cumsum(y[order])[last]
    seen = np.arange(1, s.size + 1)[last]
    precision = tp / seen
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def brier(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome.

    >>> round(brier([0, 1], [0.2, 0.6]), 6)
    0.1
    """
    y, p = _arrays(labels, probabilities)
    if y.size == 0:
        return math.nan
    return float(np.mean((p - y) ** 2))


class ReliabilityBin(NamedTuple):
    lower: float
    upper: float
    mean_predicted: float
    observed_rate: float
    size: int
    """Predictions in the bin."""


def reliability(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins on [0, 1]: mean predicted probability, observed rate and count.

    Empty bins are left out; a probability of exactly 1 falls in the last bin.

    >>> table = reliability([0, 1, 1], [0.1, 0.1, 0.9])
    >>> [(b.mean_predicted, b.observed_rate, b.size) for b in table]
    [(0.1, 0.5, 2), (0.9, 1.0, 1)]
    """
    y, p = _arrays(labels, probabilities)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n:
            out.append(
                ReliabilityBin(
                    b / bins,
                    (b + 1) / bins,
                    float(p[mask].mean()),
                    float(y[mask].mean()),
                    n,
                )
            )
    return out


def expected_calibration_error(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = 10
) -> float:
    """Count-weighted mean gap between predicted and observed rate over :func:`reliability` bins.

    >>> round(expected_calibration_error([0, 1, 0, 1], [0.9, 0.9, 0.9, 0.9]), 6)
    0.4
    """
    table = reliability(labels, probabilities, bins)
    total = sum(b.size for b in table)
    if not total:
        return math.nan
    return sum(b.size * abs(b.observed_rate - b.mean_predicted) for b in table) / total


def gains(labels: ArrayLike, scores: ArrayLike, points: int = 100) -> list[tuple[float, float]]:
    """Cumulative gains: (share of customers contacted riskiest first, share of positives
    among them), at ``points`` + 1 evenly spaced contact shares from 0 to 1.

    >>> gains([1, 0, 0, 1], [0.9, 0.8, 0.1, 0.7], points=4)
    [(0.0, 0.0), (0.25, 0.5), (0.5, 0.5), (0.75, 1.0), (1.0, 1.0)]
    """
    y, s = _arrays(labels, scores)
    n_pos = int(y.sum())
    if y.size == 0 or n_pos == 0:
        return []
    captured = np.concatenate([[0], np.cumsum(y[np.argsort(-s, kind="mergesort")])])
    out = []
    for i in range(points + 1):
        share = i / points
        k = round(share * y.size)
        out.append((share, float(captured[k] / n_pos)))
    return out


class Interval(NamedTuple):
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float


Metric = Callable[[BoolArray, FloatArray], float]


def resamples(n: int, draws: int, seed: int | Sequence[int]) -> npt.NDArray[np.intp]:
    """``draws`` rows of ``n`` indices drawn with replacement (a seeded bootstrap plan)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(draws, n)) if n else np.zeros((draws, 0), dtype=np.intp)


def bootstrap(
    metric: Metric,
    labels: ArrayLike,
    scores: ArrayLike,
    plan: npt.NDArray[np.intp],
    level: float = 0.95,
) -> Interval:
    """``metric`` on all rows, with the percentile interval over the resampled rows of ``plan``.

    Resamples where the metric is undefined (one class only) are dropped.

    >>> y = [0, 1] * 50
    >>> iv = bootstrap(roc_auc, y, [0.2 * v + 0.1 * (i % 7) for i, v in enumerate(y)],
    ...                resamples(100, 200, 0))
    >>> iv.low <= iv.value <= iv.high
    True
    """
    y, s = _arrays(labels, scores)
    point = metric(y, s)
    values = np.array([metric(y[idx], s[idx]) for idx in plan], dtype=np.float64)
    return Interval(point, *_percentiles(values, level))


def paired_difference(
    metric: Metric,
    labels: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    plan: npt.NDArray[np.intp],
    level: float = 0.95,
) -> Interval:
    """``metric(a) - metric(b)`` on the same rows, with a paired bootstrap interval."""
    y, a = _arrays(labels, scores_a)
    _, b = _arrays(labels, scores_b)
    point = metric(y, a) - metric(y, b)
    values = np.array(
        [metric(y[idx], a[idx]) - metric(y[idx], b[idx]) for idx in plan], dtype=np.float64
    )
    return Interval(point, *_percentiles(values, level))


def _percentiles(values: FloatArray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile); all ``nan`` for no values.

    >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    (2.0, 3.0, 4.0)
    """
    if not len(values):
        return math.nan, math.nan, math.nan
    q1, q2, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2.0)


def wilson(successes: int, trials: int, level: float = 0.95) -> Interval:
    """A proportion with its Wilson score interval (good for small counts and rates near
    0 or 1); ``nan`` for no trials.

    >>> iv = wilson(81, 263)
    >>> round(iv.value, 4), round(iv.low, 4), round(iv.high, 4)
    (0.308, 0.2553, 0.3662)
    """
    if trials <= 0:
        return Interval(math.nan, math.nan, math.nan)
    if not 0 <= successes <= trials:
        raise ValueError("successes must lie in 0..trials")
    z = _z(level)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / trials + z2n / (4.0 * trials)) / (1.0 + z2n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def rate_difference(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, level: float = 0.95
) -> Interval:
    """Difference of two independent proportions, a - b, with Newcombe's hybrid score
    interval (built from the two Wilson intervals); ``nan`` when either has no trials.

    Newcombe's (1998) worked example, 56/70 against 48/80:

    >>> iv = rate_difference(56, 70, 48, 80)
    >>> round(iv.value, 4), round(iv.low, 4), round(iv.high, 4)
    (0.2, 0.0524, 0.3339)
    """
    a = wilson(successes_a, trials_a, level)
    b = wilson(successes_b, trials_b, level)
    if math.isnan(a.value) or math.isnan(b.value):
        return Interval(math.nan, math.nan, math.nan)
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Interval(d, low, high)
