"""The engine's frozen configuration: every tunable in one validated object."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from detectors.errors import ConfigError

Positive = Annotated[float, msgspec.Meta(gt=0)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MAX_LABEL_HORIZON_DAYS = 90.0


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the scoring engine. Durations are in days unless named otherwise.

    >>> EngineConfig().horizon_days
    90.0
    >>> EngineConfig.from_mapping({"horizon_days": 60}).snapshot_interval_ms // DAY_MS
    20
    """

    horizon_days: Positive = 90.0
    """Churn horizon of ``risk_score`` (see ``risk_target``)."""
    risk_target: Literal["churn", "lapse"] = "lapse"
    """What ``risk_score`` is the probability of, and what the model learns
    (:mod:`detectors.labels`). ``lapse`` (default): no purchase within the horizon unless
    someone acts; leading signals raise it before any silence, and silence past the
    customer's own rhythm raises it too. ``churn``: the relationship ends (the last order
    is placed) within the horizon, asked only of customers who have not left yet; silence
    is a reason but not by itself an alarm."""
    label_horizon_days: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """``lapse`` target: the horizon the model learns from (a snapshot's label is known this
    long after it). 0: the horizon, at most ``MAX_LABEL_HORIZON_DAYS``, so labels arrive
    within a season even for a long horizon; the learned probability is carried to the
    horizon asked by the customer's own cadence (:func:`detectors.cadence.p_no_purchase`)."""
    prior_churn_rate: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.1
    """``churn`` target: share of typical customers (who came back twice) expected to leave
    within a horizon; the rules start from it, higher for customers who came back less
    often, lower for loyal ones, until labels teach the calibration the real rate."""
    churn_confirm_gaps: Positive = 4.0
    """``churn`` target: a customer silent for this many usual gaps (at least a horizon, at
    most ``expire_after_days``) counts as gone for the model's labels, the churn date
    being the day after the last order. One who comes back later has those labels learned
    over as 0."""

    # risk levels: thresholds on the calibrated score, entered at >=, left below (t - hysteresis)
    medium: Share | None = None
    high: Share | None = None
    critical: Share | None = None
    """Unset: the risk target's defaults (:data:`LEVEL_DEFAULTS`)."""
    hysteresis: Share = 0.05
    evidence_medium: float = 0.3
    evidence_high: float = 0.8
    evidence_critical: float = 1.5
    """Least total log-odds push of the reasons behind a level: risk that is only the
    customer's usual rhythm (a yearly buyer quiet for a month) raises no alarm."""
    cooldown_days: Positive = 7.0
    """Least time between two alerts of one customer, except escalation to critical
    and resolution on a returning order."""
    value_tier_quantile: Share = 0.9
    """Customers above this quantile of 12-month spend count as high value."""

    # personal cadence
    prior_gap_days: Positive = 45.0
    """Starting population prior of the gap between orders (learned online after)."""
    prior_strength: Positive = 2.0
    """How many gaps the population prior weighs against a customer's own."""
    irregular_gaps: Share = 0.1
    """Share of a customer's gaps that follow no personal rhythm (vacations and the like)."""
    sweep_overdue_ratios: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
    """Re-evaluate a silent customer when silence reaches these multiples of the usual gap."""
    overdue_medium: Positive = 2.0
    overdue_high: Positive = 3.0
    """A customer with a rhythm of their own (``rhythm_min_gaps``) silent this many usual
    gaps is at least at medium, and at high, whatever the score: the field rule "at risk
    after twice the usual gap". Re-evaluated at exactly these multiples."""
    rhythm_min_gaps: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Gaps between orders before a customer's rhythm counts as their own."""
    rhythm_rare: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.05
    """The silence must also be rarer than this among the customer's own gaps (log-normal):
    a seasonal or irregular buyer, whose history holds long gaps, is not alarmed at the
    multiple that alarms a regular."""
    min_sweep_interval_days: Positive = 1.0
    """Least time between two cadence checkpoints of one customer."""
    max_sweep_interval_days: Positive = 14.0
    """A customer with open issues is re-evaluated at least this often."""
    inactive_after_days: Positive = 730.0
    """Silent this long: no more sweeps (the customer is gone)."""
    expire_after_days: Annotated[float, msgspec.Meta(ge=0)] = 1095.0
    """Silent this long (no event of any kind): the customer gets a final churned outcome
    and their state is dropped, so state tracks live customers; one who comes back later
    starts again from the population prior. 0: keep every state forever."""

    # learning
    snapshot_interval_days: float = 0.0
    """Training snapshots of every customer, active or silent, this often (0: horizon / 3),
    so the model learns from the same mix of customers it scores."""
    max_pending_snapshots: Annotated[int, msgspec.Meta(ge=1, le=8)] = 4
    model_min_labels: Annotated[int, msgspec.Meta(ge=0)] = 500
    """Labels the global model learns from before its output enters the blend."""
    learn: bool = True
    """False: score with the model as it is and learn nothing (a frozen model; quality
    metrics still update)."""
    learning_rate: Positive = 0.02
    calibration_rate: Positive = 0.05
    """AdaGrad rate of the stacker that blends and calibrates rules and model."""

    # service and engagement signals
    response_sla_hours: Positive = 48.0
    unpaid_after_days: Positive = 3.0
    signal_half_life_days: Positive = 60.0
    """Half-life of complaint, return and cancellation counts."""
    visit_short_days: Positive = 14.0
    visit_long_days: Positive = 90.0

    # hygiene
    dedupe_window: Annotated[int, msgspec.Meta(ge=0, le=64)] = 16
    max_open_tickets: Annotated[int, msgspec.Meta(ge=1, le=32)] = 8

    # retention experiment (detectors.ledger)
    recovery_window_days: Positive = 60.0
    """An alert case is *recovered* when the customer buys again within this many days of
    its opening; without a purchase by then it is *churned* or *still at risk*."""
    control_share: dict[Literal["medium", "high", "critical"], Share] = msgspec.field(
        default_factory=dict
    )
    """Share of the cases opening at each level held out as a control group (their alerts
    say ``"treatment": "control"``: no retention action). A level left out holds out
    nobody; off by default, as holding customers back is a business decision."""
    experiment_salt: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] = "churnwatch"
    """Key of the hash that assigns customers to the control group; a new salt reshuffles."""

    def __post_init__(self) -> None:
        medium, high, critical = self.thresholds
        if not medium < high < critical:
            raise ConfigError(
                f"levels must satisfy medium < high < critical, got {medium}, {high}, "
                f"{critical} (unset ones are the {self.risk_target} target's defaults)"
            )
        if self.hysteresis >= medium:
            raise ConfigError("hysteresis must be below the medium threshold")
        if not self.sweep_overdue_ratios or list(self.sweep_overdue_ratios) != sorted(
            self.sweep_overdue_ratios
        ):
            raise ConfigError("sweep_overdue_ratios must be a non-empty ascending list")
        if not self.overdue_medium < self.overdue_high:
            raise ConfigError("overdue_medium must be below overdue_high")
        if 0 < self.expire_after_days < 2 * self.horizon_days:
            raise ConfigError("expire_after_days must be 0 (never) or at least twice the horizon")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EngineConfig:
        """Validate a mapping (from TOML, env, flags) into a config; :class:`ConfigError` if bad."""
        try:
            return msgspec.convert(data, cls, strict=False)
        except (msgspec.ValidationError, TypeError) as exc:
            raise ConfigError(f"invalid engine setting: {exc}") from None

    @property
    def expire_ms(self) -> int:
        return int(self.expire_after_days * DAY_MS)

    @property
    def recovery_window_ms(self) -> int:
        return int(self.recovery_window_days * DAY_MS)

    def control_share_at(self, level: int) -> float:
        """The control share of cases opening at ``level`` (0..3).

        >>> EngineConfig(control_share={"high": 0.1}).control_share_at(2)
        0.1
        """
        name: Any = LEVELS[level]
        return float(self.control_share.get(name, 0.0))

    @property
    def overdue_ladder(self) -> tuple[float, ...]:
        """Multiples of the usual gap at which a silent customer is looked at again.

        >>> EngineConfig(sweep_overdue_ratios=(1.5, 4.0)).overdue_ladder
        (1.5, 2.0, 3.0, 4.0)
        """
        return tuple(sorted({*self.sweep_overdue_ratios, self.overdue_medium, self.overdue_high}))

    @property
    def horizon_ms(self) -> int:
        return int(self.horizon_days * DAY_MS)

    @property
    def label_days(self) -> float:
        """The horizon of the model's labels (see ``label_horizon_days``).

        >>> EngineConfig().label_days, EngineConfig(horizon_days=273).label_days
        (90.0, 90.0)
        >>> EngineConfig(risk_target="churn", horizon_days=273).label_days
        273
        """
        if self.risk_target == "churn":
            return self.horizon_days
        return self.label_horizon_days or min(self.horizon_days, MAX_LABEL_HORIZON_DAYS)

    @property
    def label_horizon_ms(self) -> int:
        return int(self.label_days * DAY_MS)

    @property
    def snapshot_interval_ms(self) -> int:
        days = self.snapshot_interval_days or self.label_days / 3
        return int(days * DAY_MS)

    @property
    def thresholds(self) -> tuple[float, float, float]:
        """Scores at which medium, high and critical begin: the settings, else the target's.

        >>> EngineConfig(risk_target="churn").thresholds, EngineConfig(high=0.6).thresholds
        ((0.17, 0.25, 0.38), (0.5, 0.6, 0.85))
        """
        medium, high, critical = LEVEL_DEFAULTS[self.risk_target]
        return (
            medium if self.medium is None else self.medium,
            high if self.high is None else self.high,
            critical if self.critical is None else self.critical,
        )

    def evidence_level(self, evidence: float) -> int:
        """The highest level the reasons' total push supports.

        >>> EngineConfig().evidence_level(1.0)
        2
        """
        needs = (self.evidence_medium, self.evidence_high, self.evidence_critical)
        return sum(1 for n in needs if evidence >= n)

    def level_of(self, score: float, current: int) -> int:
        """Risk level 0..3 for ``score``, with hysteresis around the current level.

        >>> c = EngineConfig(risk_target="lapse")
        >>> c.level_of(0.72, 0), c.level_of(0.66, 2), c.level_of(0.64, 2)
        (2, 2, 1)
        """
        level = 0
        for i, t in enumerate(self.thresholds, start=1):
            if score >= (t - self.hysteresis if i <= current else t):
                level = i
        return level


LEVELS = ("low", "medium", "high", "critical")
LEVEL_DEFAULTS: dict[str, tuple[float, float, float]] = {
    "churn": (0.17, 0.25, 0.38),
    "lapse": (0.5, 0.7, 0.85),
}
"""Default medium, high and critical thresholds per risk target. A ``churn`` probability
has a base rate near 0.1, so a score of 0.25 already means a customer several times as
likely to leave as most; ``lapse`` counts every customer past their rhythm, so it needs more."""
