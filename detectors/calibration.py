"""Online calibration and blending: rule and model log-odds in, a probability out.

River has no calibrator, so this is a small online logistic regression over
``(rule_logit, model_logit)`` (stacking, the two-input form of Platt scaling),
fitted with AdaGrad on log loss as labels arrive. It starts as the rules alone
(weights ``(1, 0)``, bias 0): with no labels the score *is* the rule
probability, which the cadence model makes calibrated by construction. As
labels come, it learns how far to trust the model, and corrects the
calibration of both.
"""

from __future__ import annotations

import math

MIN_RULE_WEIGHT = 0.05
CLIP = 8.0
"""Inputs are clipped to +-CLIP log-odds while learning, for stable steps."""


def sigmoid(z: float) -> float:
    """Numerically safe logistic function.

    >>> sigmoid(0.0), round(sigmoid(40.0), 6), round(sigmoid(-40.0), 6)
    (0.5, 1.0, 0.0)
    """
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit(p: float) -> float:
    """Log-odds of a probability, kept finite (``p`` clipped to 1e-9 .. 1 - 1e-9).

    >>> logit(0.5), round(logit(0.9), 3), logit(1.0) < 21
    (0.0, 2.197, True)
    """
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


class Stacker:
    """Online logistic regression over rule and model log-odds, starting at the rules.

    >>> st = Stacker(rate=0.1)
    >>> round(st.predict(1.0, 3.0), 3)
    0.731
    >>> for _ in range(3000):  # the model is right, the rules are noise
    ...     st.learn(0.0, 2.0, 1); st.learn(0.0, -2.0, 0)
    >>> st.predict(0.0, 2.0) > 0.85, st.predict(0.0, -2.0) < 0.15
    (True, True)
    """

    def __init__(self, rate: float = 0.05) -> None:
        self.w_rule = 1.0
        self.w_model = 0.0
        self.bias = 0.0
        self.rate = rate
        self._g2 = [1.0, 1.0, 1.0]

    def logit(self, rule: float, model: float) -> float:
        return self.w_rule * rule + self.w_model * model + self.bias

    def predict(self, rule: float, model: float) -> float:
        return sigmoid(self.logit(rule, model))

    def learn(self, rule: float, model: float, y: float, weight: float = 1.0) -> None:
        """One AdaGrad step on the log loss of ``y``; ``weight`` -1 takes a step back."""
        r = min(max(rule, -CLIP), CLIP)
        m = min(max(model, -CLIP), CLIP)
        err = weight * (sigmoid(self.w_rule * r + self.w_model * m + self.bias) - y)
        grads = (err * r, err * m, err)
        g2 = self._g2
        for i, g in enumerate(grads):
            g2[i] += g * g
        # the rules' weight stays positive: a reason must never lower the risk
        self.w_rule = max(self.w_rule - self.rate * grads[0] / math.sqrt(g2[0]), MIN_RULE_WEIGHT)
        self.w_model -= self.rate * grads[1] / math.sqrt(g2[1])
        self.bias -= self.rate * grads[2] / math.sqrt(g2[2])
