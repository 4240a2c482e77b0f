"""Online calibration: turn a score on the log-odds scale into a probability.

River has no calibrator, so this is online Platt scaling: ``p = sigmoid(a z + b)``
with ``a`` and ``b`` fitted by stochastic gradient descent on log loss as
labels arrive. It starts as the identity (``a = 1, b = 0``), so an already
calibrated input passes through unchanged until labels say otherwise.
"""

from __future__ import annotations

import math


def sigmoid(z: float) -> float:
    """Numerically safe logistic function.

    >>> sigmoid(0.0), round(sigmoid(40.0), 6), round(sigmoid(-40.0), 6)
    (0.5, 1.0, 0.0)
    """
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class PlattCalibrator:
    """Online Platt scaling with a decaying learning rate.

    >>> cal = PlattCalibrator(rate=0.05)
    >>> cal.predict(0.0)
    0.5
    >>> for _ in range(2000):
    ...     cal.learn(0.0, 1); cal.learn(0.0, 1); cal.learn(0.0, 0)
    >>> round(cal.predict(0.0), 1)
    0.7
    """

    def __init__(self, rate: float = 0.01) -> None:
        self.a = 1.0
        self.b = 0.0
        self.n = 0
        self.rate = rate

    def predict(self, z: float) -> float:
        return sigmoid(self.a * z + self.b)

    def learn(self, z: float, y: int) -> None:
        err = self.predict(z) - y
        self.n += 1
        step = self.rate / math.sqrt(1.0 + self.n / 1000.0)
        self.a -= step * err * z
        self.b -= step * err
        self.a = min(max(self.a, 0.05), 5.0)
