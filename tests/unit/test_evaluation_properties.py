"""Invariants of the evaluation metrics over arbitrary data (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation import metrics

pytestmark = pytest.mark.unit

scores_st = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
probs_st = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def labelled(draw: st.DrawFn, values: st.SearchStrategy[float] = scores_st) -> tuple:
    n = draw(st.integers(min_value=2, max_value=60))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    labels[0], labels[1] = True, False  # both classes present
    scores = draw(st.lists(values, min_size=n, max_size=n))
    return labels, scores


@settings(max_examples=150)
@given(labelled())
def test_auc_lies_in_unit_interval_and_flips_with_the_score(data: tuple) -> None:
    labels, scores = data
    auc = metrics.roc_auc(labels, scores)
    assert 0.0 <= auc <= 1.0
    assert metrics.roc_auc(labels, [-s for s in scores]) == pytest.approx(1.0 - auc)


@settings(max_examples=100)
@given(labelled(st.integers(min_value=-1000, max_value=1000).map(float)))
def test_auc_without_ties_flips_exactly(data: tuple) -> None:
    labels, scores = data
    scores = [s + i * 1e-3 for i, s in enumerate(scores)]  # integers made distinct
    assert len(set(scores)) == len(scores)
    assert metrics.roc_auc(labels, scores) + metrics.roc_auc(
        labels, [-s for s in scores]
    ) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=100)
@given(labelled())
def test_rankings_depend_only_on_order(data: tuple) -> None:
    labels, scores = data
    squashed = np.tanh(np.asarray(scores) / 1e6) * 3 + 7  # strictly increasing map
    if len(set(squashed.tolist())) < len(set(scores)):
        return  # the map merged two floats: not order-preserving at this precision
    assert metrics.roc_auc(labels, squashed) == pytest.approx(metrics.roc_auc(labels, scores))
    assert metrics.average_precision(labels, squashed) == pytest.approx(
        metrics.average_precision(labels, scores)
    )


@settings(max_examples=150)
@given(labelled(probs_st))
def test_calibration_and_brier_lie_in_unit_interval(data: tuple) -> None:
    labels, probs = data
    ece = metrics.expected_calibration_error(labels, probs)
    assert 0.0 <= ece <= 1.0
    assert 0.0 <= metrics.brier(labels, probs) <= 1.0
    table = metrics.reliability(labels, probs)
    assert sum(b.size for b in table) == len(probs)
    for b in table:
        assert b.lower - 1e-12 <= b.mean_predicted <= b.upper + 1e-12
        assert 0.0 <= b.observed_rate <= 1.0


@settings(max_examples=100)
@given(labelled())
def test_average_precision_is_in_unit_interval_and_one_for_a_perfect_ranking(data: tuple) -> None:
    labels, scores = data
    ap = metrics.average_precision(labels, scores)
    assert 0.0 < ap <= 1.0
    assert metrics.average_precision(labels, [float(y) for y in labels]) == 1.0
