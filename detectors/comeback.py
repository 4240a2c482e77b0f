"""How often a customer that silence counted gone really was: the weight of a silence label.

The ``churn`` target counts a customer gone after a long silence (see
:mod:`detectors.labels`). Silence is often wrong: in CDNOW's log (a real CD retailer) 48 %
of the customers it counted gone bought again later, 41 % of those who had come back once
before and 55 % of those who had come back five times or more. A label from silence is
therefore soft: it teaches ``1`` with the weight :meth:`ComebackRate.gone_share` and
``0`` with the rest.

The share is learned from the stream itself, per group of customers (how many times
they had come back before the silence): confirmations counted, returns counted. It
starts from the cadence model's own estimate (:func:`detectors.cadence.p_gone`) with
``PRIOR_STRENGTH`` pseudo-confirmations. Returns that have not happened yet read as
departures, so early in a stream the share leans to the hard label, and it comes down
as returns are seen.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUPS = 6
"""Customers are grouped by the returns they had made: 0, 1, ..., 5 or more."""
GROUP_LABELS = ("0", "1", "2", "3", "4", "5+")
PRIOR_STRENGTH = 20.0
MIN_SHARE = 0.05


def group_of(returns: int) -> int:
    """The group of a customer with ``returns`` gaps between orders.

    >>> [group_of(n) for n in (0, 3, 5, 40)]
    [0, 3, 5, 5]
    """
    return min(max(returns, 0), GROUPS - 1)


class ComebackRate:
    """Counts of silence confirmations and of customers who came back after one, per group.

    >>> rate = ComebackRate()
    >>> rate.gone_share(2, 0.8)
    0.8
    >>> for _ in range(80):
    ...     rate.confirmed(2)
    >>> for _ in range(40):
    ...     rate.came_back(2)
    >>> round(rate.gone_share(2, 0.8), 2)
    0.56
    """

    def __init__(self) -> None:
        self.confirmations = [0.0] * GROUPS
        self.returns = [0.0] * GROUPS

    def gone_share(self, group: int, prior: float) -> float:
        """P(a customer of ``group`` counted gone by silence does not come back)."""
        n = self.confirmations[group]
        gone = max(n - self.returns[group], 0.0)
        share = (gone + PRIOR_STRENGTH * prior) / (n + PRIOR_STRENGTH)
        return min(max(share, MIN_SHARE), 1.0)

    def confirmed(self, group: int) -> None:
        self.confirmations[group] += 1.0

    def came_back(self, group: int) -> None:
        self.returns[group] += 1.0

    def came_back_share(self, group: int) -> float | None:
        """The share of the group's customers counted gone who came back (None: none yet)."""
        n = self.confirmations[group]
        return self.returns[group] / n if n else None

    @classmethod
    def pooled(cls, rates: Iterable[ComebackRate]) -> ComebackRate:
        """The counts of several shards added up (for metrics and reports).

        >>> a, b = ComebackRate(), ComebackRate()
        >>> a.confirmed(1); b.confirmed(1); b.came_back(1)
        >>> ComebackRate.pooled([a, b]).came_back_share(1)
        0.5
        """
        total = cls()
        for rate in rates:
            for g in range(GROUPS):
                total.confirmations[g] += rate.confirmations[g]
                total.returns[g] += rate.returns[g]
        return total
