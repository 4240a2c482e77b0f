"""Pareto/NBD: likelihood against quadrature, fit on simulated customers, predictions
against independent draws of the model's story."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import gammaln

from evaluation import pareto_nbd as pn

pytestmark = pytest.mark.unit

TRUE = pn.ParetoNBD(r=0.55, alpha=75.0, s=0.6, beta=80.0)  # days: CDNOW's scale


def _quad_log_likelihood(p: pn.ParetoNBD, x: float, t_x: float, T: float) -> float:
    """From first principles: alive at T, or dead at some u in (t_x, T] with no purchase
    after t_x; the rate and the drop-out rate integrated out (Gamma mixtures)."""
    r, alpha, s, beta = p
    head = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    c = -(r + x) * math.log(alpha + t_x) - (s + 1) * math.log(beta + t_x)

    def scaled(u: float) -> float:
        return math.exp(-(r + x) * math.log(alpha + u) - (s + 1) * math.log(beta + u) - c)

    died = quad(scaled, t_x, T, epsabs=0, epsrel=1e-12, limit=200)[0]
    alive = -(r + x) * math.log(alpha + T) - s * math.log(beta + T)
    if died == 0:
        return float(head + alive)
    return float(head + np.logaddexp(alive, math.log(s) + c + math.log(died)))


@pytest.mark.parametrize(
    "params",
    [
        pn.ParetoNBD(0.55, 10.58, 0.61, 11.67),  # alpha < beta
        pn.ParetoNBD(0.55, 11.67, 0.61, 10.58),  # alpha > beta
        pn.ParetoNBD(2.0, 3.0, 0.4, 3.0),  # alpha = beta
        pn.ParetoNBD(10.465, 7.98565181e-03, 3.0516, 2.820),  # far apart
    ],
)
def test_log_likelihood_matches_quadrature(params: pn.ParetoNBD) -> None:
    cases = [(0, 0, 38.86), (2, 30.43, 38.86), (25, 10, 38), (1, 1, 50), (3, 7, 7), (400, 5, 6)]
    x, t_x, T = (np.array(c, dtype=np.float64) for c in zip(*cases, strict=True))
    got = pn.log_likelihood(params, x, t_x, T)
    want = [_quad_log_likelihood(params, *c) for c in cases]
    assert np.all(np.isfinite(got))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_log_likelihood_is_continuous_where_alpha_meets_beta() -> None:
    x, t_x, T = np.array([0.0, 4.0]), np.array([0.0, 20.0]), np.array([30.0, 30.0])
    at = pn.log_likelihood(pn.ParetoNBD(0.5, 12.0, 0.7, 12.0), x, t_x, T)
    for beta in (12.0 - 1e-7, 12.0 + 1e-7):
        near = pn.log_likelihood(pn.ParetoNBD(0.5, 12.0, 0.7, beta), x, t_x, T)
        assert near == pytest.approx(at, abs=1e-6)


def test_fit_recovers_the_parameters_of_simulated_customers() -> None:
    rng = np.random.default_rng(2024)
    T = rng.uniform(180, 270, 20_000)
    x, t_x = pn.simulate(TRUE, T, rng)
    fit = pn.fit(x, t_x, T)
    assert fit.converged
    assert fit.customers == 20_000
    got = fit.params
    assert got.r == pytest.approx(TRUE.r, rel=0.1)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.15)
    assert got.s == pytest.approx(TRUE.s, rel=0.3)
    assert got.beta == pytest.approx(TRUE.beta, rel=0.4)
    assert got.r / got.alpha == pytest.approx(TRUE.r / TRUE.alpha, rel=0.05)  # mean rate
    assert got.s / got.beta == pytest.approx(TRUE.s / TRUE.beta, rel=0.15)  # mean drop-out
    ll = lambda p: float(np.mean(pn.log_likelihood(p, x, t_x, T)))  # noqa: E731
    assert fit.log_likelihood == pytest.approx(ll(got))
    assert ll(got) >= ll(TRUE) > ll(pn.ParetoNBD(2.0, 20.0, 0.3, 500.0))


Story = dict[str, np.ndarray]


def _story(n: int, T: np.ndarray, horizon: float, rng: np.random.Generator) -> Story:
    """Purchase by purchase, apart from :func:`pn.simulate`: (x, t_x) up to T, alive at T,
    and purchases in (T, T + horizon]."""
    lam = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    death = rng.exponential(1 / rng.gamma(TRUE.s, 1 / TRUE.beta, n))
    x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = rng.exponential(1 / lam[i])
        while t < min(death[i], T[i] + horizon):
            if t <= T[i]:
                x[i] += 1
                t_x[i] = t
            else:
                later[i] += 1
            t += rng.exponential(1 / lam[i])
    return {"x": x, "t_x": t_x, "T": T, "alive": death > T, "later": later}


def test_predictions_match_customers_drawn_from_the_model() -> None:
    rng = np.random.default_rng(7)
    n, horizon = 20_000, 90.0
    d = _story(n, rng.uniform(60, 300, n), horizon, rng)
    h = (d["x"], d["t_x"], d["T"])
    alive = pn.p_alive(TRUE, *h)
    quiet = pn.p_no_purchase(TRUE, *h, horizon)
    expected = pn.expected_purchases(TRUE, *h, horizon)
    assert np.all((alive >= 0) & (alive <= 1) & (quiet >= 0) & (quiet <= 1))
    assert np.all(quiet >= 1 - alive - 1e-12)  # the dead buy nothing
    for group in (d["x"] == 0, d["x"] > 0, d["x"] >= 3):
        k = int(group.sum())
        assert abs(alive[group].mean() - d["alive"][group].mean()) < 4 * math.sqrt(0.25 / k)
        observed = (d["later"][group] == 0).mean()
        assert abs(quiet[group].mean() - observed) < 4 * math.sqrt(0.25 / k)
        spread = d["later"][group].std() / math.sqrt(k)
        assert abs(expected[group].mean() - d["later"][group].mean()) < 4 * spread


def test_expected_purchases_is_continuous_at_s_equal_one() -> None:
    x, t_x, T = np.array([3.0]), np.array([50.0]), np.array([80.0])
    at = pn.expected_purchases(pn.ParetoNBD(0.5, 30.0, 1.0, 60.0), x, t_x, T, 120.0)
    near = pn.expected_purchases(pn.ParetoNBD(0.5, 30.0, 1.0 + 1e-6, 60.0), x, t_x, T, 120.0)
    assert near == pytest.approx(at, rel=1e-5)


def test_fit_of_no_customers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no customers"):
        pn.fit(np.zeros(0), np.zeros(0), np.zeros(0))
