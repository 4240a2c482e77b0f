"""The shard's learned state: global churn classifier, calibration, priors, quality.

One :class:`ShardModel` per partition. It learns from delayed labels on
feature snapshots (see :mod:`detectors.engine`) and scores before it learns
(progressive validation). The blend is explicit:

    risk_score = sigmoid(a * rule_logit + b * model_logit + c)

with ``(a, b, c)`` learned online by :class:`~detectors.calibration.Stacker`
from ``(1, 0, 0)``, and ``model_logit`` held at 0 until the classifier has
seen ``model_min_labels`` labels. With few labels (50 customers) the rules
carry the score; with many, the stacker weighs the model by how well it
actually predicts, and calibrates both.
"""

from __future__ import annotations

import math
import pickle  # noqa: S403 - only our own checkpoints, never untrusted input
from typing import Any

from river import linear_model, metrics, optim, preprocessing, stats

from detectors.calibration import Stacker, sigmoid
from detectors.comeback import ComebackRate
from detectors.config import EngineConfig
from detectors.drift import DriftMonitor
from detectors.estimators import RunningVar, mean, variance
from detectors.profile import FEATURES, Population

REFOLD_EVERY = 32
"""Scoring uses the classifier as of at most this many labels ago (a cheap, exact snapshot)."""
MAX_LOGIT = 8.0
"""The model's log-odds are clipped to about 0.0003 .. 0.9997."""
SCALED_CLIP = 4.0
"""Standardised features are clipped: a rare flag (an unpaid order) has a tiny spread,
and unclipped it would swing the model's output from 0 to 1 on its own."""
PRIOR_SIGMA = 1.0
PRIOR_WEIGHT = 20.0
"""Pseudo-observations behind the configured gap prior before customers' first gaps take over."""


class BinnedAUC:
    """ROC AUC from score histograms per class: O(1) per update, exact to the bin width.

    River's ``metrics.ROCAUC`` updates one confusion matrix per threshold on
    every label; with labels arriving at event rate that is the hot spot.

    >>> auc = BinnedAUC()
    >>> for p, y in [(0.9, 1), (0.8, 1), (0.3, 0), (0.85, 0)]:
    ...     auc.update(y, p)
    >>> auc.get()
    0.75
    """

    def __init__(self, bins: int = 1000) -> None:
        self.bins = bins
        self.pos = [0.0] * bins
        self.neg = [0.0] * bins

    def update(self, y: float, p: float) -> None:
        """One score ``p`` of class ``y``; a soft label counts to both classes in part."""
        b = min(int(p * self.bins), self.bins - 1)
        self.pos[b] += y
        self.neg[b] += 1.0 - y

    def get(self) -> float:
        n_pos, n_neg = sum(self.pos), sum(self.neg)
        if not n_pos or not n_neg:
            return 0.5
        below = 0.0
        area = 0.0
        for pos, neg in zip(self.pos, self.neg, strict=True):
            area += pos * (below + 0.5 * neg)
            below += neg
        return area / (n_pos * n_neg)


class Quality:
    """Progressive validation of one scorer: ROC AUC, log loss, Brier score."""

    def __init__(self) -> None:
        self.auc = BinnedAUC()
        self.log_loss = metrics.LogLoss()
        self.brier = stats.Mean()

    def update(self, y: float, p: float) -> None:
        self.auc.update(y, p)
        probs = {True: p, False: 1.0 - p}
        if y > 0.0:
            self.log_loss.update(True, probs, w=y)
        if y < 1.0:
            self.log_loss.update(False, probs, w=1.0 - y)
        self.brier.update((p - y) ** 2)

    def as_dict(self) -> dict[str, float]:
        return {
            "roc_auc": self.auc.get(),
            "log_loss": float(self.log_loss.get()),
            "brier": float(self.brier.get()),
        }


class ShardModel:
    """Global classifier, calibrator, population priors and quality metrics of one shard."""

    def __init__(self, config: EngineConfig) -> None:
        self.cfg = config
        self.classifier = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(config.learning_rate), l2=1e-4
        )
        self.stacker = Stacker(config.calibration_rate)
        self.drift = DriftMonitor()
        self.labels = 0
        self.positives = 0.0
        self.comeback = ComebackRate()
        """How often customers counted gone by silence came back (the weight of its labels)."""
        self.quality = Quality()
        self.rule_quality = Quality()
        self.first_gaps = (
            PRIOR_WEIGHT,
            math.log(config.prior_gap_days),
            PRIOR_SIGMA**2 * (PRIOR_WEIGHT - 1),
        )
        self.value_quantile = stats.Quantile(config.value_tier_quantile)
        self.values_seen = 0
        self._population: Population | None = None
        self._linear: tuple[list[float], list[float], list[float], float] | None = None
        self._folded_at = 0
        self._var = RunningVar()

    # population priors ---------------------------------------------------------

    def population(self) -> Population:
        """Priors for cadence and value tiers (cached until the next observation)."""
        if self._population is None:
            self._population = self._compute_population()
        return self._population

    def _compute_population(self) -> Population:
        hv = self.value_quantile.get()
        return Population(
            gap_mu=mean(self.first_gaps),
            gap_var=max(variance(self.first_gaps), 0.05),
            high_value=hv if hv is not None and self.values_seen > 20 else math.inf,
        )

    def observe_first_gap(self, log_gap_days: float) -> None:
        self.first_gaps = self._var.update(self.first_gaps, log_gap_days)
        self._population = None

    def observe_value(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.value_quantile.update(value)
        self.values_seen += 1
        self._population = None

    # scoring and learning ------------------------------------------------------

    @property
    def model_active(self) -> bool:
        return self.labels >= self.cfg.model_min_labels

    @property
    def model_weight(self) -> float:
        """The stacker's weight on the model's log-odds (0 while the model is inactive)."""
        return self.stacker.w_model if self.model_active else 0.0

    def _model_logit(self, x: list[float]) -> float:
        """The classifier's log-odds on the clipped, standardised features, without the dicts.

        The scaler's means and spreads and the weights are read once every
        ``REFOLD_EVERY`` labels.
        """
        if self._linear is None or self.labels - self._folded_at >= REFOLD_EVERY:
            self._linear = self._fold()
            self._folded_at = self.labels
        means, inv_sd, weights, bias = self._linear
        z = bias
        for v, m, k, w in zip(x, means, inv_sd, weights, strict=True):
            s = (v - m) * k
            z += w * (SCALED_CLIP if s > SCALED_CLIP else -SCALED_CLIP if s < -SCALED_CLIP else s)
        return min(max(z, -MAX_LOGIT), MAX_LOGIT)

    def _fold(self) -> tuple[list[float], list[float], list[float], float]:
        scaler, lr = self.classifier["StandardScaler"], self.classifier["LogisticRegression"]
        means = [float(scaler.means.get(n, 0.0)) for n in FEATURES]
        inv_sd = [1.0 / var**0.5 if (var := scaler.vars.get(n, 0.0)) else 0.0 for n in FEATURES]
        weights = [float(lr._weights.get(n, 0.0)) for n in FEATURES]
        return means, inv_sd, weights, float(lr.intercept)

    def model_logit(self, x: list[float]) -> float:
        return self._model_logit(x) if self.model_active else 0.0

    def score(self, x: list[float], rule_logit: float) -> float:
        """Calibrated churn probability for a feature vector and its rule score."""
        return self.stacker.predict(rule_logit, self.model_logit(x))

    def learn(self, x: list[float], rule_logit: float, y: float) -> None:
        """Score (for the quality metrics) then learn one labelled snapshot.

        ``y`` between 0 and 1 is a soft label: a 1 with weight ``y`` and a 0 with the
        rest (the log loss's gradient is the same). With ``learn = false`` in the
        config only the quality metrics move.
        """
        m = self.model_logit(x)
        self.quality.update(y, self.stacker.predict(rule_logit, m))
        self.rule_quality.update(y, sigmoid(rule_logit))
        if not self.cfg.learn:
            return
        self.stacker.learn(rule_logit, m, y)
        # the pipeline's own learn_one, minus its generic dispatch: scale, then fit
        row = dict(zip(FEATURES, x, strict=True))
        self.classifier["StandardScaler"].learn_one(row)
        scaled = self._scaled(row)
        lr = self.classifier["LogisticRegression"]
        if 0.0 < y < 1.0:
            lr.learn_one(scaled, True, w=y)
            lr.learn_one(scaled, False, w=1.0 - y)
        else:
            lr.learn_one(scaled, bool(y))
        self.labels += 1
        self.positives += y

    def relabel(self, x: list[float], rule_logit: float, delta: float) -> None:
        """Move a learned snapshot's label by ``delta`` (-0.8: a 0.8 turned out 0): a
        step on the 1 with weight ``delta`` and on the 0 with ``-delta``. The quality
        metrics keep what they scored; the scaler has seen the features already."""
        if not self.cfg.learn or not delta:
            return
        m = self.model_logit(x)
        self.stacker.learn(rule_logit, m, 1, weight=delta)
        self.stacker.learn(rule_logit, m, 0, weight=-delta)
        scaled = self._scaled(dict(zip(FEATURES, x, strict=True)))
        lr = self.classifier["LogisticRegression"]
        lr.learn_one(scaled, True, w=delta)
        lr.learn_one(scaled, False, w=-delta)
        self.positives += delta

    def _scaled(self, row: dict[str, float]) -> dict[str, float]:
        """Standardised features, clipped to +-``SCALED_CLIP``."""
        scaled = self.classifier["StandardScaler"].transform_one(row)
        return {k: min(max(v, -SCALED_CLIP), SCALED_CLIP) for k, v in scaled.items()}

    @property
    def version(self) -> str:
        """Names the model that scored: rules alone, or the blend and its label count."""
        if not self.model_active:
            return "rules-v1"
        return f"blend-v1+{self.labels // 1000}k"

    def metrics(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "positives": self.positives,
            "model_weight": self.model_weight,
            **self.quality.as_dict(),
            "rules": self.rule_quality.as_dict(),
        }

    # checkpoints ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Checkpoint (for a changelogged table or a file); not for per-event use."""
        return pickle.dumps(self.__dict__, protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes, config: EngineConfig) -> ShardModel:
        model = cls(config)
        model.__dict__.update(pickle.loads(data))  # noqa: S301 - our own checkpoint
        if not isinstance(model.__dict__.get("drift"), DriftMonitor):  # older checkpoints
            model.drift = DriftMonitor()
        model.cfg = config
        return model
