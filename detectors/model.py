"""The shard's learned state: global churn classifier, calibration, priors, quality.

One :class:`ShardModel` per partition. It learns from delayed labels on
feature snapshots (see :mod:`detectors.engine`) and scores before it learns
(progressive validation). The score blends rules and model on the log-odds
scale; the blend is explicit:

    z = (1 - w) * rule_logit + w * model_logit
    w = model_max_weight * clip((labels - model_min_labels) / model_ramp_labels, 0, 1)

then :class:`~detectors.calibration.PlattCalibrator` maps ``z`` to the
probability reported as ``risk_score``. With few labels (50 customers) the
rules carry the score; with millions the model does.
"""

from __future__ import annotations

import math
import pickle  # noqa: S403 - only our own checkpoints, never untrusted input
from typing import Any

from river import linear_model, metrics, optim, preprocessing, stats

from detectors.calibration import PlattCalibrator, sigmoid
from detectors.config import EngineConfig
from detectors.estimators import RunningVar, mean, variance
from detectors.profile import FEATURES, Population

PRIOR_SIGMA = 1.0
PRIOR_WEIGHT = 20.0
"""Pseudo-observations behind the configured gap prior before customers' first gaps take over."""


class Quality:
    """Progressive validation of one scorer: ROC AUC, log loss, Brier score."""

    def __init__(self) -> None:
        self.auc = metrics.ROCAUC(n_thresholds=50)
        self.log_loss = metrics.LogLoss()
        self.brier = stats.Mean()

    def update(self, y: int, p: float) -> None:
        self.auc.update(bool(y), {True: p, False: 1.0 - p})
        self.log_loss.update(bool(y), {True: p, False: 1.0 - p})
        self.brier.update((p - y) ** 2)

    def as_dict(self) -> dict[str, float]:
        return {
            "roc_auc": float(self.auc.get()),
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
        self.calibrator = PlattCalibrator(config.calibration_rate)
        self.labels = 0
        self.positives = 0
        self.quality = Quality()
        self.rule_quality = Quality()
        self.first_gaps = (
            PRIOR_WEIGHT,
            math.log(config.prior_gap_days),
            PRIOR_SIGMA**2 * (PRIOR_WEIGHT - 1),
        )
        self.value_quantile = stats.Quantile(config.value_tier_quantile)
        self.values_seen = 0
        self._var = RunningVar()

    # population priors ---------------------------------------------------------

    def population(self) -> Population:
        hv = self.value_quantile.get()
        return Population(
            gap_mu=mean(self.first_gaps),
            gap_var=max(variance(self.first_gaps), 0.05),
            high_value=hv if hv is not None and self.values_seen > 20 else math.inf,
        )

    def observe_first_gap(self, log_gap_days: float) -> None:
        self.first_gaps = self._var.update(self.first_gaps, log_gap_days)

    def observe_value(self, value: float) -> None:
        self.value_quantile.update(value)
        self.values_seen += 1

    # scoring and learning ------------------------------------------------------

    @property
    def model_weight(self) -> float:
        c = self.cfg
        ramp = (self.labels - c.model_min_labels) / c.model_ramp_labels
        return c.model_max_weight * min(max(ramp, 0.0), 1.0)

    def _model_logit(self, x: list[float]) -> float:
        proba = self.classifier.predict_proba_one(dict(zip(FEATURES, x, strict=True)))
        p = min(max(proba.get(True, 0.5), 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    def blended_logit(self, x: list[float], rule_logit: float) -> float:
        w = self.model_weight
        if w == 0.0:
            return rule_logit
        return (1.0 - w) * rule_logit + w * self._model_logit(x)

    def score(self, x: list[float], rule_logit: float) -> float:
        """Calibrated churn probability for a feature vector and its rule score."""
        return self.calibrator.predict(self.blended_logit(x, rule_logit))

    def learn(self, x: list[float], rule_logit: float, y: int) -> None:
        """Score (for the quality metrics) then learn one labelled snapshot."""
        z = self.blended_logit(x, rule_logit)
        self.quality.update(y, self.calibrator.predict(z))
        self.rule_quality.update(y, sigmoid(rule_logit))
        self.calibrator.learn(z, y)
        self.classifier.learn_one(dict(zip(FEATURES, x, strict=True)), bool(y))
        self.labels += 1
        self.positives += y

    @property
    def version(self) -> str:
        """Names the model that scored: rules alone, or the blend and its label count."""
        if self.model_weight == 0.0:
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
        model.cfg = config
        return model
