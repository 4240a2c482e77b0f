"""Population drift: is the model still looking at the world it learned from?

Three streams per shard, each watched by River's ADWIN (adaptive windowing:
it keeps a window of recent values and cuts it where two sub-windows' means
differ more than chance allows):

* ``score``: the risk scores the shard computes, fed as means of
  :data:`SCORE_BLOCK` consecutive scores (one detector update per block keeps
  the per-event cost negligible and smooths the one-customer noise);
* ``order_value``: log order value of each purchase (a key feature: price
  changes, a new product mix, a currency mix-up upstream);
* ``label_rate``: each delayed label (1 = no purchase within the horizon), so a
  change in the churn rate itself shows.

A detection increments ``detections[signal]`` and records when it happened;
the worker exports them as ``churnwatch_drift_detected_total{signal}``. The
monitor is part of the shard's model checkpoint, so replay and a restarted
worker see the same detections.
"""

from __future__ import annotations

import math

from river import drift

SIGNALS = ("score", "order_value", "label_rate")
SCORE_BLOCK = 64
DELTA = 0.002
"""ADWIN's confidence: smaller detects fewer, surer changes."""


class DriftMonitor:
    """ADWIN detectors over the shard's scores, order values and labels.

    >>> m = DriftMonitor()
    >>> for i in range(4000):
    ...     m.label(1 if (i < 2000 and i % 10 == 0) or (i >= 2000 and i % 2 == 0) else 0, i)
    >>> m.detections["label_rate"] >= 1, m.detections["score"]
    (True, 0)
    """

    def __init__(self) -> None:
        self.detectors = {name: drift.ADWIN(delta=DELTA) for name in SIGNALS}
        self.detections = dict.fromkeys(SIGNALS, 0)
        self.last_detected = dict.fromkeys(SIGNALS, 0)
        self._block_sum = 0.0
        self._block_n = 0

    def _update(self, name: str, x: float, now: int) -> None:
        detector = self.detectors[name]
        detector.update(x)
        if detector.drift_detected:
            self.detections[name] += 1
            self.last_detected[name] = now

    def score(self, p: float, now: int) -> None:
        self._block_sum += p
        self._block_n += 1
        if self._block_n >= SCORE_BLOCK:
            self._update("score", self._block_sum / self._block_n, now)
            self._block_sum, self._block_n = 0.0, 0

    def order_value(self, value: float, now: int) -> None:
        if value > 0:
            self._update("order_value", math.log1p(value), now)

    def label(self, y: float, now: int) -> None:
        self._update("label_rate", float(y), now)

    def mean(self, name: str) -> float:
        """The detector's current window mean (for dashboards)."""
        return float(self.detectors[name].estimation)
