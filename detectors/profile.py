"""A customer's derived numbers at one moment, and the model's feature vector from them."""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

from detectors.cadence import (
    Cadence,
    cadence,
    churn_prior,
    own_survival,
    p_gone,
    p_no_purchase,
    survival,
)
from detectors.calibration import logit
from detectors.config import DAY_MS, HOUR_MS, EngineConfig
from detectors.estimators import decay, mean
from detectors.ingest import net_value
from detectors.state import ORDER_LONG_DAYS, ORDER_SHORT_DAYS, CustomerState


class Population(NamedTuple):
    """What the shard knows of all its customers, used as priors."""

    gap_mu: float
    gap_var: float
    high_value: float
    """12-month spend above which a customer is high value."""


class Profile(NamedTuple):
    """Numbers derived from a state at ``now``; every detector and feature reads these."""

    now: int
    silence_days: float
    """Days since the last order (since first seen for a customer who never ordered)."""
    cadence: Cadence
    overdue: float
    survival: float
    p_cadence: float
    p_cadence_fresh: float
    """The same probability right after a purchase: the customer's baseline."""
    rhythm: bool
    """The customer has a rhythm of their own (``rhythm_min_gaps`` gaps between orders)."""
    rhythm_rare: bool
    """... and the silence is rare by it (own survival below ``rhythm_rare``)."""
    gone_push: float
    """How far the silence moved the log-odds that the customer has left (BG/NBD's
    P(dead), :func:`~detectors.cadence.p_gone`), for an overdue customer; 0 otherwise."""
    p_label: float
    """``p_cadence`` over the model's label horizon (``EngineConfig.label_days``): the rule
    score and the features speak of the event the model learns."""
    p_prior: float
    """The rules' starting probability of the risk target: ``p_cadence`` for ``lapse``;
    for ``churn`` the configured share of customers who leave within a horizon, scaled
    by the customer's drop-out chance (:func:`~detectors.cadence.churn_prior`)."""
    expected_back: int
    """When the customer was expected to order again: the last order (first sight for one
    who never ordered) plus the usual gap, epoch ms."""
    act_by: int
    """The last order plus ``overdue_high`` usual gaps: when silence alone makes the case
    high, the last moment a retention action is still likely in time, epoch ms."""
    value: float
    high_value: bool
    tenure_days: float
    visit_silence_days: float
    visit_ratio: float
    """Recent visit rate over the long-run rate (1: steady, <1: thinning out)."""
    spend_change: float
    """Recent basket over the usual basket, minus one."""
    spend_fell: bool
    recent_orders: float
    """Paid orders lately (decayed count, ``ORDER_SHORT_DAYS`` half-life)."""
    order_rate_trend: float
    """Log of the recent order rate over the long-run rate (< 0: buying less often)."""
    unpaid_overdue: int
    open_count: int
    oldest_open_days: float
    unanswered: int
    """Open tickets past the response SLA without a first response."""
    unresolved_severe: int
    complaints_service: float
    complaints_price: float
    complaints_product: float
    returns: float
    cancels: float
    reopened: float


def customer_cadence(s: CustomerState, cfg: EngineConfig, pop: Population) -> Cadence:
    """The customer's purchase rhythm: own gaps shrunk towards the population's."""
    return cadence(
        s.order_gap, pop.gap_mu, pop.gap_var, cfg.prior_strength, irregular=cfg.irregular_gaps
    )


def profile(s: CustomerState, now: int, cfg: EngineConfig, pop: Population) -> Profile:
    """Derive a customer's profile as of ``now`` (read-only on ``s``)."""
    since = s.last_order_ts or s.first_ts
    silence = max(now - since, 0) / DAY_MS
    c = customer_cadence(s, cfg, pop)
    p = p_no_purchase(silence, cfg.horizon_days, c)
    overdue = silence / c.usual_gap_days
    # the baseline right after a purchase only matters to an overdue customer's reason
    p0 = p_no_purchase(0.0, cfg.horizon_days, c) if overdue >= 1.0 else p
    label_days = cfg.label_days
    rhythm = s.order_gap[0] >= cfg.rhythm_min_gaps
    p_label = p if label_days == cfg.horizon_days else p_no_purchase(silence, label_days, c)
    value = net_value(s, now)
    dt = now - s.signals_ts
    f = decay(1.0, dt, cfg.signal_half_life_days * DAY_MS)
    short = decay(s.visits_short, dt, cfg.visit_short_days * DAY_MS) / cfg.visit_short_days
    long_ = decay(s.visits_long, dt, cfg.visit_long_days * DAY_MS) / cfg.visit_long_days
    sla = cfg.response_sla_hours * HOUR_MS
    unanswered = severe = 0
    oldest = 0.0
    for t in s.open_tickets:
        age = now - t.opened_ts
        oldest = max(oldest, age / DAY_MS)
        if not t.responded_ts and age > sla:
            unanswered += 1
        if t.severity >= 2 and age > sla:
            severe += 1
    unpaid_after = cfg.unpaid_after_days * DAY_MS
    o_short = decay(s.orders_short, dt, ORDER_SHORT_DAYS * DAY_MS)
    o_long = decay(s.orders_long, dt, ORDER_LONG_DAYS * DAY_MS)
    return Profile(
        now=now,
        silence_days=silence,
        cadence=c,
        overdue=overdue,
        survival=survival(silence, c),
        p_cadence=p,
        p_cadence_fresh=p0,
        rhythm=rhythm,
        rhythm_rare=rhythm and own_survival(silence, s.order_gap) <= cfg.rhythm_rare,
        gone_push=logit(p_gone(silence, c)) - logit(c.dropout) if overdue >= 1.0 else 0.0,
        p_label=p_label,
        p_prior=churn_prior(c.dropout, cfg.prior_churn_rate)
        if cfg.risk_target == "churn"
        else p_label,
        expected_back=since + round(c.usual_gap_days * DAY_MS),
        act_by=since + round(cfg.overdue_high * c.usual_gap_days * DAY_MS),
        value=value,
        high_value=value > 0 and value >= pop.high_value,
        tenure_days=max(now - s.first_ts, 0) / DAY_MS,
        visit_silence_days=max(now - (s.last_visit_ts or s.first_ts), 0) / DAY_MS,
        visit_ratio=(short + 1e-3) / (long_ + 1e-3) if s.n_visits >= 3 else 1.0,
        spend_change=math.expm1(s.spend_recent - mean(s.spend)) if s.n_orders >= 3 else 0.0,
        spend_fell=bool(s.spend_drift_ts) and now - s.spend_drift_ts < cfg.horizon_ms,
        recent_orders=o_short,
        order_rate_trend=math.log(
            (o_short / ORDER_SHORT_DAYS + 1e-3) / (o_long / ORDER_LONG_DAYS + 1e-3)
        )
        if s.n_orders >= 2
        else 0.0,
        unpaid_overdue=sum(1 for _, ts in s.unpaid if now - ts > unpaid_after),
        open_count=len(s.open_tickets),
        oldest_open_days=oldest,
        unanswered=unanswered,
        unresolved_severe=severe,
        complaints_service=s.complaints_service * f,
        complaints_price=s.complaints_price * f,
        complaints_product=s.complaints_product * f,
        returns=s.returns * f,
        cancels=s.cancels * f,
        reopened=s.reopened * f,
    )


FEATURES = (
    "cadence_logit",
    "log_survival",
    "log_silence",
    "log_overdue",
    "log_orders",
    "own_gaps",
    "log_tenure",
    "log_value",
    "high_value",
    "spend_change",
    "spend_fell",
    "discount_share",
    "visit_trend",
    "log_visit_silence",
    "visits_since_order",
    "carts_since_order",
    "inquiries_since_order",
    "unpaid",
    "cancels",
    "returns",
    "open_tickets",
    "log_oldest_open",
    "unanswered",
    "unresolved_severe",
    "reopened",
    "complaints_service",
    "complaints_price",
    "complaints_product",
    "dissatisfaction",
    "sentiment",
    "log_response_hours",
    "log_recent_orders",
    "order_rate_trend",
    "gap_trend",
    "log_basket",
    "rule_logit",
)
"""Names of the global model's inputs, in the order of :func:`features`."""


def features(s: CustomerState, p: Profile) -> list[float]:
    """The model's feature vector (ordered as :data:`FEATURES`)."""
    return [
        logit(p.p_label),
        math.log(max(p.survival, 1e-9)),
        math.log1p(p.silence_days),
        math.log(max(p.overdue, 1e-3)),
        math.log1p(s.n_orders),
        min(p.cadence.own_gaps, 20) / 20.0,
        math.log1p(p.tenure_days),
        math.log1p(p.value),
        1.0 if p.high_value else 0.0,
        max(min(p.spend_change, 3.0), -1.0),
        1.0 if p.spend_fell else 0.0,
        s.discount_share,
        math.log(p.visit_ratio),
        math.log1p(p.visit_silence_days),
        math.log1p(s.visits_since_order),
        math.log1p(s.carts_since_order),
        math.log1p(s.inquiries_since_order),
        float(p.unpaid_overdue),
        p.cancels,
        p.returns,
        float(p.open_count),
        math.log1p(p.oldest_open_days),
        float(p.unanswered),
        float(p.unresolved_severe),
        p.reopened,
        p.complaints_service,
        p.complaints_price,
        p.complaints_product,
        (3.0 - s.satisfaction) / 2.0 if s.satisfaction else 0.0,
        s.sentiment,
        math.log1p(s.response_hours),
        math.log1p(p.recent_orders),
        p.order_rate_trend,
        max(min(s.gap_trend, 3.0), -3.0),
        mean(s.spend),
        0.0,
    ]


HALF_MAX = 65_000.0


def pack(values: list[float]) -> bytes:
    """Features as packed float16 (3 significant digits), the compact form of snapshots.

    >>> unpack(pack([0.5, -2.0, 1e9]))[:3]
    [0.5, -2.0, 64992.0]
    """
    clipped = [HALF_MAX if v > HALF_MAX else -HALF_MAX if v < -HALF_MAX else v for v in values]
    return struct.pack(f"<{len(clipped)}e", *clipped)


def unpack(data: bytes) -> list[float]:
    """Inverse of :func:`pack`; snapshots taken before features were added get zeros.

    >>> len(unpack(pack([1.0]))) == len(FEATURES)
    True
    """
    values = list(struct.unpack(f"<{len(data) // 2}e", data))
    return values + [0.0] * (len(FEATURES) - len(values))
