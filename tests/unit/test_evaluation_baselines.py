"""Baselines: RFM summaries, relative recency, and the BG/NBD model (fit, probabilities)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import btyd
from evaluation.baselines import DAY_MS, History, baselines, relative_recency, rfm
from evaluation.metrics import expected_calibration_error

pytestmark = pytest.mark.unit

TRUE = btyd.BGNBD(r=0.5, alpha=20.0, a=1.2, b=4.0)  # days: a purchase every ~40 days


def test_bgnbd_fit_recovers_the_parameters_of_simulated_customers() -> None:
    rng = np.random.default_rng(2024)
    T = rng.uniform(180, 540, 20_000)
    x, t_x = btyd.simulate(TRUE, T, rng)
    fit = btyd.fit(x, t_x, T)
    assert fit.converged
    assert fit.customers == 20_000
    got = fit.params
    assert got.r == pytest.approx(TRUE.r, rel=0.1)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.15)
    assert got.a == pytest.approx(TRUE.a, rel=0.2)
    assert got.b == pytest.approx(TRUE.b, rel=0.25)
    assert got.a / (got.a + got.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.1)
    # the optimum beats the truth on this sample, and the truth beats a far-off guess
    ll = lambda p: float(np.mean(btyd.log_likelihood(p, x, t_x, T)))  # noqa: E731
    assert fit.log_likelihood == pytest.approx(ll(got))
    assert ll(got) >= ll(TRUE) > ll(btyd.BGNBD(2.0, 5.0, 0.3, 0.5))


def _purchases(params: btyd.BGNBD, end: np.ndarray, rng: np.random.Generator) -> list[list[float]]:
    """Repeat purchase times up to ``end``: an independent draw of the model's story."""
    lam = rng.gamma(params.r, 1 / params.alpha, end.size)
    p = rng.beta(params.a, params.b, end.size)
    out = []
    for i in range(end.size):
        times, t = [], 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > end[i]:
                break
            times.append(t)
            if rng.random() < p[i]:
                break
        out.append(times)
    return out


def test_p_no_purchase_is_calibrated_on_customers_drawn_from_the_model() -> None:
    rng = np.random.default_rng(7)
    n, horizon = 20_000, 90.0
    T = rng.uniform(60, 400, n)
    paths = _purchases(TRUE, T + horizon, rng)
    x = np.array([sum(1 for t in ts if t <= T[i]) for i, ts in enumerate(paths)], dtype=float)
    t_x = np.array([max([t for t in ts if t <= T[i]], default=0.0) for i, ts in enumerate(paths)])
    quiet = np.array([not any(T[i] < t for t in ts) for i, ts in enumerate(paths)])
    p = btyd.p_no_purchase(TRUE, x, t_x, T, horizon)
    assert np.all((p >= 0) & (p <= 1))
    assert p.mean() == pytest.approx(quiet.mean(), abs=0.015)
    assert expected_calibration_error(quiet, p) < 0.03
    # and the expected count matches the simulated count
    bought = np.array([sum(1 for t in ts if T[i] < t) for i, ts in enumerate(paths)])
    assert btyd.expected_purchases(TRUE, x, t_x, T, horizon).mean() == pytest.approx(
        bought.mean(), rel=0.08
    )


def test_one_time_buyers_are_ranked_by_their_silence_not_called_alive() -> None:
    p = TRUE
    zeros = np.zeros(4)
    silence = np.array([10.0, 60.0, 200.0, 500.0])
    assert np.all(btyd.p_alive(p, zeros, zeros, silence) == 1.0)  # the model's blind spot
    risk = btyd.p_no_purchase(p, zeros, zeros, silence, 90.0)
    assert np.all(np.diff(risk) > 0)
    # a regular buyer who bought yesterday is safer than a one-time buyer silent for a year
    regular = btyd.p_no_purchase(p, np.array([12.0]), np.array([359.0]), np.array([360.0]), 90.0)
    lapsed = btyd.p_no_purchase(p, np.array([12.0]), np.array([100.0]), np.array([360.0]), 90.0)
    assert regular[0] < risk[2] < risk[3]
    assert regular[0] < lapsed[0]
    # the expected count falls with the silence for one-time buyers too
    expected = btyd.expected_purchases(p, zeros, zeros, silence, 90.0)
    assert np.all(np.diff(expected) < 0)


def test_rfm_summaries_at_a_cutoff() -> None:
    d = DAY_MS
    hist = [
        History(0, [0, 10 * d, 30 * d, 50 * d]),  # the last occasion is after the cutoff
        History(5 * d, []),  # seen, never bought
        History(2 * d, [20 * d]),  # one purchase
    ]
    r = rfm(hist, 40 * d)
    assert r.x.tolist() == [2.0, 0.0, 0.0]
    assert r.t_x.tolist() == [30.0, 0.0, 0.0]
    assert r.T.tolist() == [40.0, 35.0, 20.0]
    assert r.recency.tolist() == [10.0, 35.0, 20.0]
    assert r.typical_gap[0] == 15.0
    assert math.isnan(r.typical_gap[1]) and math.isnan(r.typical_gap[2])
    assert r.buyer.tolist() == [True, False, True]
    rel = relative_recency(r, 25.0)
    assert rel.tolist() == pytest.approx([10 / 15, 35 / 25, 20 / 25])


def test_baselines_fit_on_everyone_seen_and_score_in_input_order() -> None:
    rng = np.random.default_rng(1)
    d = DAY_MS
    hist = []
    for _ in range(300):
        gap = float(rng.uniform(10, 60))
        start = float(rng.uniform(0, 100))
        n = int(rng.integers(1, 8))
        hist.append(History(int(start * d), [int((start + k * gap) * d) for k in range(n)]))
    cutoff = 400 * d
    out = baselines(hist, cutoff, 90.0)
    assert set(out.scores) == {"recency", "relative_recency", "bgnbd"}
    for values in out.scores.values():
        assert values.shape == (300,)
        assert np.all(np.isfinite(values))
    assert np.all((out.scores["bgnbd"] >= 0) & (out.scores["bgnbd"] <= 1))
    assert out.bgnbd is not None and out.bgnbd.customers == 300
    assert 10 <= out.population_gap <= 60
    # reversing or shuffling the input reorders the scores and nothing else: the model is
    # fitted in a canonical order, so its parameters are the same to the last bit
    for order in (np.arange(300)[::-1], rng.permutation(300)):
        again = baselines([hist[i] for i in order], cutoff, 90.0)
        assert again.bgnbd == out.bgnbd
        assert again.population_gap == out.population_gap
        for name, values in out.scores.items():
            np.testing.assert_array_equal(again.scores[name], values[order], err_msg=name)


def test_bgnbd_fit_is_the_same_to_the_last_bit_in_any_order_of_the_customers() -> None:
    rng = np.random.default_rng(11)
    T = rng.uniform(30, 400, 3000)
    x, t_x = btyd.simulate(TRUE, T, rng)
    want = btyd.fit(x, t_x, T)
    for _ in range(3):
        order = rng.permutation(T.size)
        assert btyd.fit(x[order], t_x[order], T[order]) == want
