"""Evaluation metrics against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from evaluation import metrics

pytestmark = pytest.mark.unit


def brute_auc(labels: list[bool], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def brute_ap(labels: list[bool], scores: list[float]) -> float:
    """Average precision from its definition: one threshold per distinct score."""
    n_pos = sum(labels)
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        chosen = [y for y, s in zip(labels, scores, strict=True) if s >= t]
        recall = sum(chosen) / n_pos
        total += (recall - prev_recall) * sum(chosen) / len(chosen)
        prev_recall = recall
    return total


def test_roc_auc_hand_computed_with_a_tie() -> None:
    # positives 0.9, 0.3, 0.5; negatives 0.9, 0.1: (0.5 + 1) + (0 + 1) + (0 + 1) = 3.5 of 6
    assert metrics.roc_auc([1, 0, 1, 0, 1], [0.9, 0.9, 0.3, 0.1, 0.5]) == pytest.approx(3.5 / 6)
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_and_average_precision_match_brute_force_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    labels = (rng.random(n) < rng.uniform(0.1, 0.7)).tolist()
    if all(labels) or not any(labels):
        labels[0] = not labels[0]
    scores = np.round(rng.normal(size=n) + 0.8 * np.asarray(labels), 1).tolist()  # many ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(brute_auc(labels, scores))
    assert metrics.average_precision(labels, scores) == pytest.approx(brute_ap(labels, scores))


def test_average_precision_without_ties_is_mean_precision_at_each_positive() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.3
    scores = rng.random(200) + 0.5 * labels
    order = np.argsort(-scores)
    hits = np.cumsum(labels[order])
    at_positives = [hits[k] / (k + 1) for k in range(200) if labels[order][k]]
    assert metrics.average_precision(labels, scores) == pytest.approx(np.mean(at_positives))


def test_average_precision_hand_cases() -> None:
    assert metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(
        0.5 * 1 + 0.5 * (2 / 3)
    )
    assert metrics.average_precision([0, 1, 1], [0.1, 0.8, 0.9]) == 1.0
    # all tied: one threshold, precision = prevalence
    assert metrics.average_precision([0, 1, 0, 0], [0.3] * 4) == pytest.approx(0.25)
    assert math.isnan(metrics.average_precision([0, 0], [0.2, 0.4]))


def test_undefined_cases_are_nan_and_bad_input_raises() -> None:
    assert math.isnan(metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(metrics.roc_auc([], []))
    assert math.isnan(metrics.brier([], []))
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 1], [0.1])
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 1], [0.1, math.nan])
    with pytest.raises(ValueError):
        metrics.reliability([0, 1], [0.5, 1.5])


def test_brier_score() -> None:
    assert metrics.brier([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0]) == 0.0
    assert metrics.brier([1, 0], [0.0, 1.0]) == 1.0
    assert metrics.brier([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.25)
    assert metrics.brier([1, 0, 1], [0.8, 0.1, 0.4]) == pytest.approx((0.04 + 0.01 + 0.36) / 3)


def test_reliability_bins_and_expected_calibration_error_known_cases() -> None:
    # 0.3 predicted for ten customers, three churn: perfectly calibrated
    assert metrics.expected_calibration_error([1] * 3 + [0] * 7, [0.3] * 10) == pytest.approx(0)
    # 0.9 predicted, half churn: gap 0.4
    assert metrics.expected_calibration_error([1, 0] * 5, [0.9] * 10) == pytest.approx(0.4)
    # two bins: 4 customers at 0.05 (none churn, gap 0.05), 1 at 0.95 (churns, gap 0.05),
    # 5 at 0.55 (1 churns: gap 0.35): (4 * 0.05 + 1 * 0.05 + 5 * 0.35) / 10
    labels = [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    probs = [0.05] * 4 + [0.95] + [0.55] * 5
    assert metrics.expected_calibration_error(labels, probs) == pytest.approx(0.2)
    table = metrics.reliability(labels, probs)
    assert [(b.lower, b.size) for b in table] == [(0.0, 4), (0.5, 5), (0.9, 1)]
    assert table[1].observed_rate == pytest.approx(0.2)
    edge = metrics.reliability([1, 0], [1.0, 0.0])
    assert [(b.lower, b.size) for b in edge] == [(0.0, 1), (0.9, 1)]


def test_gains_curve() -> None:
    labels = [True] * 20 + [False] * 80
    perfect = metrics.gains(labels, list(range(100, 0, -1)), points=10)
    assert perfect[0] == (0.0, 0.0)
    assert perfect[2] == (0.2, 1.0)
    assert perfect[-1] == (1.0, 1.0)
    rng = np.random.default_rng(0)
    curve = metrics.gains(rng.random(500) < 0.2, rng.random(500), points=20)
    ys = [y for _, y in curve]
    assert ys == sorted(ys)
    assert curve[-1] == (1.0, 1.0)


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    return labels, rng.normal(size=n) + 1.0 * labels


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (200, 5000):
        labels, scores = _noisy(n, n)
        iv = metrics.bootstrap(metrics.roc_auc, labels, scores, metrics.resamples(n, 200, 1))
        assert iv.low <= iv.value <= iv.high
        assert iv.value == pytest.approx(metrics.roc_auc(labels, scores))
        widths.append(iv.high - iv.low)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(25) = 1/5 in theory


def test_bootstrap_is_seeded() -> None:
    labels, scores = _noisy(300, 5)
    a = metrics.bootstrap(
        metrics.brier, labels, 1 / (1 + np.exp(-scores)), metrics.resamples(300, 50, 9)
    )
    b = metrics.bootstrap(
        metrics.brier, labels, 1 / (1 + np.exp(-scores)), metrics.resamples(300, 50, 9)
    )
    c = metrics.bootstrap(
        metrics.brier, labels, 1 / (1 + np.exp(-scores)), metrics.resamples(300, 50, 10)
    )
    assert a == b
    assert a != c


def test_paired_difference() -> None:
    labels, good = _noisy(800, 2)
    noise = np.random.default_rng(7).normal(size=800)
    plan = metrics.resamples(800, 200, 0)
    same = metrics.paired_difference(metrics.roc_auc, labels, good, good, plan)
    assert same == (0.0, 0.0, 0.0)
    better = metrics.paired_difference(metrics.roc_auc, labels, good, noise, plan)
    assert better.value == pytest.approx(
        metrics.roc_auc(labels, good) - metrics.roc_auc(labels, noise)
    )
    assert 0 < better.low <= better.value <= better.high


def test_bootstrap_with_no_rows_or_one_class_gives_nan_intervals() -> None:
    iv = metrics.bootstrap(metrics.roc_auc, [True] * 5, [0.1] * 5, metrics.resamples(5, 20, 0))
    assert all(math.isnan(v) for v in iv)
