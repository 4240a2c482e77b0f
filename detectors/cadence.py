"""Personal cadence: how overdue is a customer against their own rhythm?

Gaps between a customer's orders are modelled as log-normal. The customer's
own running mean and variance of log-gaps are shrunk towards a population
prior (learned online from customers' first gaps), so one-time buyers and new
customers get the population's expectation and regular customers their own.

A customer may also have left for good. With a beta-geometric drop-out prior
(each purchase cycle ends the relationship with probability ``p``, smaller the
more often the customer came back), the probability of *no purchase in the
next H days* after a silence of ``t`` days is

    P = (p + (1 - p) S(t + H)) / (p + (1 - p) S(t))

where ``S`` is the survival function of the personal gap distribution. It is
the rule-based churn probability the engine starts from before its model has
learned anything, and a feature for that model after.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from detectors.estimators import VarState, variance

SQRT2 = math.sqrt(2.0)
MIN_SIGMA = 0.3
"""Floor on the log-gap spread: nobody is perfectly regular."""
DROPOUT_A, DROPOUT_B = 1.0, 3.0
"""Beta prior of the drop-out chance per purchase cycle (mean 0.25 before any return)."""
TYPICAL_RETURNS = 2
"""Returns of the customer the configured churn rate describes (drop-out chance 1/6)."""
MAX_CHURN_PRIOR = 0.5
MULTIPLE_SLACK = 0.02
"""A multiple of the usual gap counts as reached this much early: the usual gap moves a
little (the population prior learns) between scheduling a look and taking it."""


class Cadence(NamedTuple):
    """A customer's expected rhythm: log-gap mean and spread, and drop-out chance per cycle."""

    mu: float
    sigma: float
    dropout: float
    own_gaps: int
    pop_mu: float = 0.0
    pop_sigma: float = 1.0
    irregular: float = 0.0
    """Share of gaps that follow the population's broad rhythm, not the customer's own
    (vacations, a project, a move): it keeps a short pause of a regular customer from
    reading as a departure."""

    @property
    def usual_gap_days(self) -> float:
        """Median gap between orders, in days."""
        return math.exp(self.mu)


def cadence(
    gaps: VarState,
    prior_mu: float,
    prior_var: float,
    prior_strength: float,
    dropout_a: float = DROPOUT_A,
    dropout_b: float = DROPOUT_B,
    irregular: float = 0.1,
) -> Cadence:
    """Posterior cadence from a customer's own log-gaps and the population prior.

    Each gap is a return visit, so the number of gaps also lowers the drop-out chance.

    >>> c = cadence((0.0, 0.0, 0.0), math.log(30), 1.0, 2.0)
    >>> round(c.usual_gap_days), round(c.sigma, 2), c.dropout
    (30, 1.0, 0.25)
    >>> c = cadence((10.0, math.log(7), 0.5), math.log(30), 1.0, 2.0)
    >>> round(c.usual_gap_days), round(c.dropout, 3)
    (7, 0.071)
    """
    n, m = gaps[0], gaps[1]
    # the prior weighs as ``prior_strength`` gaps of the population's spread: against a
    # customer whose own gaps are regular (3 at least, to know) it weighs that much less
    own_var = max(variance(gaps), MIN_SIGMA**2) if n >= 3 else prior_var
    k = prior_strength * min(own_var / prior_var, 1.0)
    mu = (n * m + k * prior_mu) / (n + k)
    spread = (n - 1) * variance(gaps) if n > 1 else 0.0
    var = (spread + k * prior_var + (n * k / (n + k)) * (m - prior_mu) ** 2) / (n + k)
    dropout = dropout_a / (dropout_a + dropout_b + n)
    return Cadence(
        mu,
        max(math.sqrt(var), MIN_SIGMA),
        dropout,
        int(n),
        prior_mu,
        max(math.sqrt(prior_var), MIN_SIGMA),
        irregular if n else 0.0,
    )


def survival(days: float, c: Cadence) -> float:
    """P(next gap > ``days``): the customer's log-normal rhythm, mixed with the population's.

    >>> c = Cadence(math.log(30), 0.5, 0.1, 5)
    >>> round(survival(30, c), 3), survival(0, c)
    (0.5, 1.0)
    """
    if days <= 0:
        return 1.0
    log_days = math.log(days)
    own = 0.5 * math.erfc((log_days - c.mu) / (c.sigma * SQRT2))
    if not c.irregular:
        return own
    broad = 0.5 * math.erfc((log_days - c.pop_mu) / (c.pop_sigma * SQRT2))
    return (1.0 - c.irregular) * own + c.irregular * broad


def p_no_purchase(silence_days: float, horizon_days: float, c: Cadence) -> float:
    """Probability of no purchase in the next ``horizon_days`` after ``silence_days`` of silence.

    >>> c = Cadence(math.log(30), 0.5, 0.1, 5)
    >>> [round(p_no_purchase(t, 90, c), 2) for t in (0, 30, 90, 180)]
    [0.11, 0.19, 0.89, 1.0]
    """
    p = c.dropout
    s_now = survival(silence_days, c)
    s_later = survival(silence_days + horizon_days, c)
    num = p + (1.0 - p) * s_later
    den = p + (1.0 - p) * s_now
    return min(max(num / den, 1e-6), 1.0 - 1e-6)


def p_gone(silence_days: float, c: Cadence) -> float:
    """P(the customer has dropped out | silent for ``silence_days``): BG/NBD's P(dead).

    >>> c = Cadence(math.log(30), 0.5, 0.1, 5)
    >>> [round(p_gone(t, c), 2) for t in (0, 30, 120)]
    [0.1, 0.18, 0.98]
    """
    p = c.dropout
    return p / (p + (1.0 - p) * survival(silence_days, c))


def churn_prior(dropout: float, base_rate: float) -> float:
    """P(the relationship ends within the horizon) before any label has been seen.

    ``base_rate`` is the share of a typical customer (one who came back twice); others
    are scaled by their drop-out chance per purchase cycle, which falls with every return
    (the beta-geometric part of BG/NBD): the fewer returns, the likelier the end.

    >>> [round(churn_prior(1 / (4 + n), 0.1), 3) for n in (0, 2, 10)]
    [0.15, 0.1, 0.043]
    """
    typical = DROPOUT_A / (DROPOUT_A + DROPOUT_B + TYPICAL_RETURNS)
    return min(base_rate * dropout / typical, MAX_CHURN_PRIOR)


def own_survival(days: float, gaps: VarState) -> float:
    """P(a gap longer than ``days``) by the customer's own log-gaps alone (``gaps``: their
    running state; spread at least ``MIN_SIGMA``), without the population's prior.

    >>> regular = (10.0, math.log(30), 9 * 0.1**2)
    >>> round(own_survival(30, regular), 2), round(own_survival(60, regular), 3)
    (0.5, 0.01)
    """
    if days <= 0:
        return 1.0
    sigma = max(math.sqrt(variance(gaps)), MIN_SIGMA)
    return 0.5 * math.erfc((math.log(days) - gaps[1]) / (sigma * SQRT2))


def rhythm_level(
    silence_days: float,
    usual_gap_days: float,
    rare: bool,
    multiples: tuple[float, ...],
) -> int:
    """How many of ``multiples`` of the usual gap the silence has passed, when the silence is
    ``rare`` by the customer's own rhythm (:func:`own_survival` below ``rhythm_rare`` with
    ``rhythm_min_gaps`` gaps known); 0 otherwise. A customer whose history holds long gaps
    as well as short ones (seasonal, irregular) has a wide spread and is not alarmed at the
    multiple that alarms a regular.

    >>> [rhythm_level(d, 30, True, (2.0, 3.0)) for d in (45, 60, 90)]
    [0, 1, 2]
    >>> rhythm_level(90, 30, False, (2.0, 3.0))
    0
    """
    if not rare:
        return 0
    ratio = silence_days / usual_gap_days + MULTIPLE_SLACK
    return sum(1 for m in multiples if ratio >= m)
