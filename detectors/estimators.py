"""Per-customer River estimators whose state is stored as plain numbers.

A customer's running statistics live in :class:`~detectors.state.CustomerState`
as small tuples. To update one, its numbers are loaded into a River estimator
owned by the engine (one per shard, reused for every customer), River updates
it, and the new numbers are read back. No per-event allocation of estimators
and nothing pickled.
"""

from __future__ import annotations

import math

from river import drift, stats

VarState = tuple[float, float, float]
DriftState = tuple[float, float, float, float, float, float]


class RunningVar:
    """Welford mean and variance (``river.stats.Var``) over a stored ``(n, mean, M2)``.

    >>> rv = RunningVar()
    >>> s = (0.0, 0.0, 0.0)
    >>> for x in (1.0, 2.0, 3.0):
    ...     s = rv.update(s, x)
    >>> s, mean(s), variance(s)
    ((3.0, 2.0, 2.0), 2.0, 1.0)
    """

    def __init__(self) -> None:
        self._var = stats.Var(ddof=1)

    def update(self, state: VarState, x: float) -> VarState:
        var = self._var
        m = var.mean
        m.n, m._mean, var._S = state
        var.update(x)
        return (float(m.n), float(m._mean), float(var._S))


def mean(state: VarState) -> float:
    return state[1]


def variance(state: VarState) -> float:
    """Sample variance; 0 with fewer than two observations."""
    n = state[0]
    return state[2] / (n - 1) if n > 1 else 0.0


class SpendDrift:
    """Page-Hinkley test (``river.drift.PageHinkley``) for a fall in a customer's basket value.

    It watches log(1 + amount) and fires when the level drops by about
    ``threshold`` log-units in total beyond the tolerance ``delta`` per order.

    >>> d = SpendDrift()
    >>> s, fired = SpendDrift.EMPTY, []
    >>> for amount in [100.0] * 6 + [30.0] * 6:
    ...     s, hit = d.update(s, math.log1p(amount))
    ...     fired.append(hit)
    >>> fired.index(True)
    8
    """

    EMPTY: DriftState = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def __init__(self, delta: float = 0.05, threshold: float = 2.0, min_orders: int = 4) -> None:
        self._ph = drift.PageHinkley(
            min_instances=min_orders, delta=delta, threshold=threshold, mode="down"
        )

    def update(self, state: DriftState, x: float) -> tuple[DriftState, bool]:
        """Feed one value; return the new state and whether a fall was detected.

        After a detection the state restarts, so the next level becomes the new baseline.
        """
        ph = self._ph
        ph._reset()
        n, m, inc, dec, min_inc, max_dec = state
        if n > 0:
            ph._x_mean = stats.Mean._from_state(n, m)
            ph._sum_increase, ph._sum_decrease = inc, dec
            ph._min_increase = min_inc
            ph._max_decrease = max_dec  # type: ignore[assignment]
        ph.update(x)
        if ph.drift_detected:
            return self.EMPTY, True
        xm = ph._x_mean
        new = (float(xm.n), float(xm._mean), ph._sum_increase, ph._sum_decrease)
        return (*new, ph._min_increase, ph._max_decrease), False


def decay(value: float, elapsed_ms: int, half_life_ms: float) -> float:
    """Exponential decay of a counter over ``elapsed_ms``.

    >>> decay(4.0, 10, 10)
    2.0
    """
    if elapsed_ms <= 0 or value == 0.0:
        return value
    return value * math.exp(-math.log(2) * elapsed_ms / half_life_ms)
