"""Alerts out: the contract, the lifecycle transitions and deterministic ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from detectors.config import LEVELS, EngineConfig
from detectors.playbook import Action
from detectors.reasons import Reason
from detectors.state import CustomerState

SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("6f1c2a4e-9a53-4b0e-8f53-3c1f8d0c2b7a")
KINDS = ("opened", "escalated", "deescalated", "resolved", "expired")


class Alert(msgspec.Struct, kw_only=True):
    """One risk alert (the ``churn-alerts`` value)."""

    schema_version: int = SCHEMA_VERSION
    alert_id: str
    customer_id: str
    kind: str
    risk_level: str
    previous_level: str
    risk_score: float
    as_of: str
    emitted_at: str
    reasons: list[Reason]
    actions: list[Action]
    customer_value: float
    value_at_risk: float
    model_version: str
    trigger: str
    treatment: str = "treated"
    """The case's experiment arm: ``treated``, or ``control`` (held out: take no retention
    action). Added to schema 1 with a default, so alerts written before it decode."""
    expected_back: str | None = None
    """When the customer was expected to order again: the last order plus their usual gap
    (RFC 3339). Added to schema 1 with a default; none on ``expired``."""
    act_by: str | None = None
    """The last moment a retention action is still likely in time: the last order plus
    ``overdue_high`` usual gaps, when silence alone makes the case high (RFC 3339)."""


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string.

    >>> rfc3339(1704153600000)
    '2024-01-02T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def alert_id(customer_id: str, seq: int, kind: str, level: int, as_of_ms: int) -> str:
    """The same transition always gets the same id.

    >>> alert_id("c1", 1, "opened", 2, 0) == alert_id("c1", 1, "opened", 2, 0)
    True
    """
    return str(uuid.uuid5(_NAMESPACE, f"{customer_id}/{seq}/{kind}/{level}/{as_of_ms}"))


def transition(
    s: CustomerState,
    score: float,
    evidence: float,
    now: int,
    recovered: bool,
    cfg: EngineConfig,
    floor: int = 0,
) -> tuple[str | None, int]:
    """Decide the alert kind (or none) and the new level.

    Levels move with hysteresis (:meth:`EngineConfig.level_of`) and are capped
    by the evidence: the total log-odds push of the reasons behind the score
    (:meth:`EngineConfig.evidence_level`), so a customer whose risk is high
    only because they always buy rarely is not alarmed about. ``floor`` is the least
    level the customer's own rhythm asks for (a regular silent for twice their usual
    gap, :func:`~detectors.cadence.rhythm_level`), whatever the score. An alert opens
    only with at least one reason behind it. Escalations go out at
    once. A case is resolved only when the customer recovers (orders again,
    or an explicit "retained" outcome) and the risk is back to low; without
    that it steps down no lower than medium, and only after the cooldown
    since the last alert. A resolved customer is not re-opened within the
    cooldown.

    >>> from detectors.ingest import new_state
    >>> cfg = EngineConfig()
    >>> s = new_state(0)
    >>> transition(s, 0.75, 1.0, 1, False, cfg)
    ('opened', 2)
    >>> transition(s, 0.75, 0.4, 1, False, cfg)
    ('opened', 1)
    >>> transition(s, 0.75, 0.0, 1, False, cfg)
    (None, 0)
    """
    target = max(min(cfg.level_of(score, s.level), cfg.evidence_level(evidence)), floor)
    cooled = not s.last_alert_ts or now - s.last_alert_ts >= cfg.cooldown_days * 86_400_000
    if not s.alert_open:
        if target >= 1 and cooled:
            return "opened", target
        return None, 0
    if target > s.level:
        return "escalated", target
    if target == 0 and recovered:
        return "resolved", 0
    target = max(target, 1)
    if target < s.level and (cooled or recovered):
        return "deescalated", target
    return None, s.level


def make_alert(
    *,
    customer_id: str,
    seq: int,
    kind: str,
    level: int,
    previous: int,
    score: float,
    as_of: int,
    reasons: list[Reason],
    actions: list[Action],
    value: float,
    model_version: str,
    trigger: str,
    treatment: str = "treated",
    expected_back: int = 0,
    act_by: int = 0,
) -> Alert:
    """Assemble an alert; ``emitted_at`` starts as ``as_of`` and the sender may overwrite it."""
    stamp = rfc3339(as_of)
    return Alert(
        alert_id=alert_id(customer_id, seq, kind, level, as_of),
        customer_id=customer_id,
        kind=kind,
        risk_level=LEVELS[level],
        previous_level=LEVELS[previous],
        risk_score=round(score, 4),
        as_of=stamp,
        emitted_at=stamp,
        reasons=reasons,
        actions=actions,
        customer_value=round(value, 2),
        value_at_risk=round(value * score, 2),
        model_version=model_version,
        trigger=trigger,
        treatment=treatment,
        expected_back=rfc3339(expected_back) if expected_back else None,
        act_by=rfc3339(act_by) if act_by else None,
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


def encode_alert(alert: Alert) -> bytes:
    return _encoder.encode(alert)


def decode_alert(data: bytes) -> Alert:
    return _decoder.decode(data)
