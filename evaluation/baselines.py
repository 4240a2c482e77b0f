"""Simple scores to beat, from each customer's purchase history before a cutoff.

* ``recency``: days since the last purchase;
* ``relative_recency``: that over the customer's own median gap between purchases, with the
  population's median gap for customers who bought fewer than twice;
* ``bgnbd``: P(no purchase within the horizon) under a BG/NBD model fitted at the cutoff
  (:mod:`evaluation.btyd`).

A purchase occasion is a calendar day (UTC) with at least one paid order. A customer seen
before the cutoff who never bought is timed from when they were first seen.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from evaluation import btyd
from evaluation.metrics import BoolArray, FloatArray

DAY_MS = 86_400_000
NAMES = ("recency", "relative_recency", "bgnbd")
"""The baselines, in report order."""


class History(NamedTuple):
    """What the baselines know of one customer: when first seen, and purchase occasions."""

    first_seen: int
    occasions: Sequence[int]
    """Epoch ms of the first paid order of each purchase day, ascending."""


class RFM(NamedTuple):
    """Per-customer summaries at a cutoff; times in days."""

    x: FloatArray
    """Repeat purchase occasions (occasions minus one; 0 for customers who never bought)."""
    t_x: FloatArray
    """From the first to the last purchase."""
    T: FloatArray
    """From the first purchase (or first sight) to the cutoff."""
    recency: FloatArray
    """From the last purchase (or first sight) to the cutoff."""
    typical_gap: FloatArray
    """Median gap between purchase occasions (``nan`` below two occasions)."""
    buyer: BoolArray


def rfm(histories: Sequence[History], cutoff: int) -> RFM:
    """Summaries from the occasions at or before ``cutoff`` (epoch ms).

    >>> r = rfm([History(0, [0, 10 * DAY_MS, 30 * DAY_MS]), History(5 * DAY_MS, [])], 40 * DAY_MS)
    >>> r.x.tolist(), r.t_x.tolist(), r.T.tolist(), r.recency.tolist(), r.typical_gap.tolist()
    ([2.0, 0.0], [30.0, 0.0], [40.0, 35.0], [10.0, 35.0], [15.0, nan])
    """
    n = len(histories)
    x, t_x, T, recency = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    gap = np.full(n, math.nan)
    buyer = np.zeros(n, dtype=bool)
    for i, h in enumerate(histories):
        k = bisect.bisect_right(h.occasions, cutoff)
        if k == 0:
            T[i] = recency[i] = max(0.0, (cutoff - h.first_seen) / DAY_MS)
            continue
        first, last = h.occasions[0], h.occasions[k - 1]
        buyer[i] = True
        x[i] = k - 1
        t_x[i] = (last - first) / DAY_MS
        T[i] = (cutoff - first) / DAY_MS
        recency[i] = (cutoff - last) / DAY_MS
        if k >= 2:
            gaps = np.diff(np.asarray(h.occasions[:k], dtype=np.float64)) / DAY_MS
            gap[i] = max(1.0, float(np.median(gaps)))
    return RFM(x, t_x, T, recency, gap, buyer)


def population_gap(r: RFM) -> float:
    """Median of the repeat buyers' own typical gaps (``nan`` when there are none)."""
    gaps = r.typical_gap[np.isfinite(r.typical_gap)]
    return float(np.median(gaps)) if gaps.size else math.nan


def relative_recency(r: RFM, fallback_gap: float) -> FloatArray:
    """Days since the last purchase over the customer's typical gap (``fallback_gap`` if none).

    >>> r = rfm([History(0, [0, 10 * DAY_MS]), History(0, [0])], 40 * DAY_MS)
    >>> relative_recency(r, 20.0).tolist()
    [3.0, 2.0]
    """
    fallback = fallback_gap if math.isfinite(fallback_gap) and fallback_gap > 0 else 1.0
    gap = np.where(np.isfinite(r.typical_gap), r.typical_gap, fallback)
    return np.asarray(r.recency / gap, dtype=np.float64)


class Baselines(NamedTuple):
    scores: dict[str, FloatArray]
    """Each baseline's score per customer (higher = riskier), in the input order."""
    population_gap: float
    bgnbd: btyd.Fit | None
    """The BG/NBD fit on every buyer seen by the cutoff (``None`` without buyers)."""


def baselines(histories: Sequence[History], cutoff: int, horizon_days: float) -> Baselines:
    """Every baseline's score at ``cutoff`` for each of ``histories``.

    The population gap and the BG/NBD model come from all of ``histories``, so pass every
    customer seen by the cutoff, not only those being scored: nothing after the cutoff is
    used, so no outcome leaks in.
    """
    r = rfm(histories, cutoff)
    pop = population_gap(r)
    scores = {"recency": r.recency, "relative_recency": relative_recency(r, pop)}
    fit = None
    if r.buyer.any():
        b = r.buyer
        fit = btyd.fit(r.x[b], r.t_x[b], r.T[b])
        scores["bgnbd"] = btyd.p_no_purchase(fit.params, r.x, r.t_x, r.T, horizon_days)
    else:
        scores["bgnbd"] = np.full(len(histories), 0.5)
    return Baselines(scores, pop, fit)
