"""The Pareto/NBD model (Schmittlein, Morrison and Colombo, 1987), fitted with scipy.

Each customer buys at a Poisson rate ``lam`` ~ Gamma(r, alpha) while alive, and lives for
an exponential time of rate ``mu`` ~ Gamma(s, beta), both unseen. A customer is summarised
by ``x`` (repeat purchases), ``t_x`` (time of the last purchase) and ``T`` (time observed),
all times counted from the first purchase, in days here as in :mod:`evaluation.btyd`.

The likelihood follows Fader and Hardie, "A Note on Deriving the Pareto/NBD Model and
Related Expressions" (2005)::

    L = G(r + x) alpha^r beta^s / G(r)
        * [ (alpha + T)^-(r + x) (beta + T)^-s + s / (r + s + x) * A0 ]

with ``A0`` a difference of two Gauss hypergeometric terms. Here ``s / (r + s + x) * A0``
is computed as ``s * (I(t_x) - I(T))``, where ``I(t)`` is the integral from ``t`` to
infinity of ``(alpha + u)^-(r + x) (beta + u)^-(s + 1)`` (the density of dying at ``u``
with no purchase after ``t_x``), in logs throughout. ``I`` uses Euler's transformation
``2F1(a, b; a + 1; z) = (1 - z)^(1 - b) 2F1(1, a + 1 - b; a + 1; z)``, whose series has
positive terms, so it neither overflows for large ``x`` nor for a far-off ``alpha`` and
``beta`` met during the fit.

P(no purchase in (T, T + t]) is the likelihood of the same history observed until
``T + t`` over that until ``T``: the paths with no purchase in between.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

FloatArray = npt.NDArray[np.float64]
_LOG_BOUNDS = (-9.0, 9.0)


class ParetoNBD(NamedTuple):
    """Fitted parameters: ``r``, ``alpha`` (purchase rate) and ``s``, ``beta`` (drop-out)."""

    r: float
    alpha: float
    s: float
    beta: float


class Fit(NamedTuple):
    params: ParetoNBD
    log_likelihood: float
    """Mean log-likelihood per customer at the optimum."""
    converged: bool
    customers: int


def _arrays(*values: FloatArray) -> tuple[FloatArray, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


def _log_tail(params: ParetoNBD, x: FloatArray, t: FloatArray) -> FloatArray:
    """log I(t): log of the integral over (t, inf) of (alpha+u)^-(r+x) (beta+u)^-(s+1) du.

    >>> p = ParetoNBD(0.5, 3.0, 0.7, 3.0)  # alpha = beta: I(t) = (3 + t)^-(r+s+x) / (r+s+x)
    >>> v = _log_tail(p, np.array([2.0]), np.array([1.0]))
    >>> bool(abs(v[0] - (-3.2 * math.log(4.0) - math.log(3.2))) < 1e-12)
    True
    """
    r, alpha, s, beta = params
    a = r + s + x
    if alpha >= beta:  # expand around alpha: the factor left over is (beta + u)^-(s + 1)
        top, b = alpha, np.full_like(x, s + 1.0)
    else:  # expand around beta: the factor left over is (alpha + u)^-(r + x)
        top, b = beta, r + x
    z = abs(alpha - beta) / (top + t)
    log_f = (1.0 - b) * np.log1p(-z) + np.log(hyp2f1(1.0, a + 1.0 - b, a + 1.0, z))
    return np.asarray(log_f - a * np.log(top + t) - np.log(a), dtype=np.float64)


def _log_minus(log_a: FloatArray, log_b: FloatArray) -> FloatArray:
    """log(exp(log_a) - exp(log_b)) for log_a >= log_b (-inf where they are equal)."""
    d = np.minimum(log_b - log_a, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(log_a + np.log(-np.expm1(d)), dtype=np.float64)


def _log_terms(
    params: ParetoNBD, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The two terms of the likelihood's bracket, in logs: alive at T, and died in (t_x, T]."""
    r, alpha, s, beta = params
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    died = math.log(s) + _log_minus(_log_tail(params, x, t_x), _log_tail(params, x, T))
    return np.asarray(alive, dtype=np.float64), died


def log_likelihood(params: ParetoNBD, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """Each customer's log-likelihood of (x, t_x, T) under ``params``.

    >>> ll = log_likelihood(ParetoNBD(0.55, 10.58, 0.61, 11.67), np.array([0.0, 2.0]),
    ...                     np.array([0.0, 30.43]), np.array([38.86, 38.86]))
    >>> [round(float(v), 3) for v in ll]
    [-0.517, -9.562]
    """
    r, alpha, s, beta = params
    x, t_x, T = _arrays(x, t_x, T)
    head = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    alive, died = _log_terms(params, x, t_x, T)
    return np.asarray(head + np.logaddexp(alive, died), dtype=np.float64)


def fit(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    start: ParetoNBD | None = None,
) -> Fit:
    """Maximum likelihood over log-parameters (L-BFGS-B; each kept within e^-9..e^9).

    >>> rng = np.random.default_rng(0)
    >>> T = rng.uniform(100, 300, 4000)
    >>> x, t_x = simulate(ParetoNBD(0.6, 40.0, 0.8, 120.0), T, rng)
    >>> f = fit(x, t_x, T)
    >>> f.converged and 0.4 < f.params.r < 0.9
    True
    """
    x, t_x, T = _arrays(x, t_x, T)
    if x.size == 0:
        raise ValueError("no customers to fit")
    if start is None:
        rate = (x.sum() + 1.0) / (T.sum() + 1.0)
        start = ParetoNBD(1.0, 1.0 / rate, 1.0, float(np.mean(T)))
    theta0 = np.log(np.asarray(start, dtype=np.float64))

    def objective(theta: FloatArray) -> float:
        with np.errstate(all="ignore"):
            ll = log_likelihood(ParetoNBD(*np.exp(theta)), x, t_x, T)
        value = -float(np.mean(ll))
        return value if math.isfinite(value) else 1e12

    result = minimize(objective, theta0, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * 4)
    params = ParetoNBD(*(float(v) for v in np.exp(result.x)))
    return Fit(params, -float(result.fun), bool(result.success), int(x.size))


def p_alive(params: ParetoNBD, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """P(still alive at T | x, t_x, T): the likelihood's alive term over the whole.

    >>> p = p_alive(ParetoNBD(0.55, 10.58, 0.61, 11.67), np.array([2.0, 2.0]),
    ...             np.array([30.0, 5.0]), np.array([38.86, 38.86]))
    >>> bool(p[0] > p[1])
    True
    """
    x, t_x, T = _arrays(x, t_x, T)
    alive, died = _log_terms(params, x, t_x, T)
    return np.asarray(np.exp(alive - np.logaddexp(alive, died)), dtype=np.float64)


def expected_purchases(
    params: ParetoNBD,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    horizon: float,
) -> FloatArray:
    """E[purchases in (T, T + horizon] | x, t_x, T].

    Given alive at T, the rate's posterior is Gamma(r + x, alpha + T) and the drop-out
    rate's Gamma(s, beta + T), so the expectation is (r + x) / (alpha + T) times the
    expected time alive in the horizon, (beta + T) / (s - 1) * (1 - ((beta + T) /
    (beta + T + horizon)) ** (s - 1)) (its limit log(1 + horizon / (beta + T)) at s = 1).

    >>> e = expected_purchases(ParetoNBD(0.55, 10.58, 0.61, 11.67), np.array([2.0, 0.0]),
    ...                        np.array([30.43, 0.0]), np.array([38.86, 38.86]), 39.0)
    >>> bool(e[0] > e[1] > 0)
    True
    """
    r, alpha, s, beta = params
    x, t_x, T = _arrays(x, t_x, T)
    log_stretch = np.log1p(horizon / (beta + T))
    k = 1.0 - s
    if abs(k) < 1e-9:
        time_alive = (beta + T) * log_stretch
    else:
        time_alive = (beta + T) * np.expm1(k * log_stretch) / k
    rate = (r + x) / (alpha + T)
    return np.asarray(rate * time_alive * p_alive(params, x, t_x, T), dtype=np.float64)


def p_no_purchase(
    params: ParetoNBD,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    horizon: float,
) -> FloatArray:
    """P(no purchase in (T, T + horizon] | x, t_x, T) = L(x, t_x, T + horizon) / L(x, t_x, T).

    >>> p = p_no_purchase(ParetoNBD(0.5, 20.0, 0.6, 200.0), np.zeros(3), np.zeros(3),
    ...                   np.array([10.0, 100.0, 400.0]), 90.0)
    >>> bool(0 < p[0] < p[1] < p[2] < 1)
    True
    """
    x, t_x, T = _arrays(x, t_x, T)
    later = log_likelihood(params, x, t_x, T + horizon)
    now = log_likelihood(params, x, t_x, T)
    return np.asarray(np.minimum(np.exp(later - now), 1.0), dtype=np.float64)


def simulate(
    params: ParetoNBD,
    T: FloatArray,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Draw (x, t_x) for customers observed for ``T`` after their first purchase."""
    x, t_x, _ = simulate_with_holdout(params, T, 0.0, rng)
    return x, t_x


def simulate_with_holdout(
    params: ParetoNBD,
    T: FloatArray,
    horizon: float,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw (x, t_x) up to ``T`` and the count of purchases in (T, T + horizon].

    A Poisson process's count over the time alive is Poisson, and its times given the
    count are uniform on that time, so the last of ``x`` is the time alive times the
    largest of ``x`` uniforms.
    """
    r, alpha, s, beta = params
    T = np.asarray(T, dtype=np.float64)
    lam = rng.gamma(r, 1.0 / alpha, T.size)
    lifetime = rng.exponential(1.0 / rng.gamma(s, 1.0 / beta, T.size))
    seen = np.minimum(lifetime, T)
    x = rng.poisson(lam * seen).astype(np.float64)
    with np.errstate(divide="ignore"):
        t_x = np.where(x > 0, seen * rng.random(T.size) ** (1.0 / np.maximum(x, 1.0)), 0.0)
    after = np.clip(lifetime - T, 0.0, horizon)
    later = rng.poisson(lam * after).astype(np.float64)
    return x, np.asarray(t_x, dtype=np.float64), later
