"""State expiry: customers silent past ``expire_after_days`` are closed and dropped."""

from __future__ import annotations

import pytest
from cw_strategies import DAY, T0, ev

from detectors import ConfigError, EngineConfig, Shard

pytestmark = pytest.mark.unit

SHORT = {"horizon_days": 10, "expire_after_days": 30, "risk_target": "lapse"}
"""Silence opens the alerts here: the ``lapse`` target."""


def regular_customer(shard: Shard, key: str = "a", orders: int = 6) -> int:
    t = T0
    for i in range(orders):
        t = T0 + i * 3 * DAY
        shard.advance(t)
        shard.process(ev("order", key, t, f"{key}{i}", order_id=f"o{i}", amount=40.0))
    return t


def test_a_silent_customer_is_closed_and_dropped_then_starts_again() -> None:
    shard = Shard(EngineConfig.from_mapping(SHORT))
    last = regular_customer(shard)
    alerts = shard.advance(last + 29 * DAY)
    assert "a" in shard.store and shard.store["a"].alert_open
    alerts = shard.advance(last + 31 * DAY)
    assert [a.kind for a in alerts][-1:] == ["expired"]
    assert "a" not in shard.store and "a" not in shard.open_alerts
    assert shard.counts["expired"] == 1 and shard.tracked == 0
    back = last + 40 * DAY
    shard.process(ev("order", "a", back, "back", order_id="o-back", amount=40.0))
    state = shard.store["a"]
    assert state.first_ts == back and state.alert_seq == 0 and shard.tracked == 1


def test_expiry_learns_the_pending_labels_as_churned() -> None:
    shard = Shard(EngineConfig.from_mapping(SHORT))
    last = regular_customer(shard, orders=2)
    pending = len(shard.store["a"].snapshots)
    learned = shard.counts["labels_1"] + shard.counts["labels_0"]
    shard.advance(last + 31 * DAY)
    assert shard.counts["labels_1"] + shard.counts["labels_0"] >= learned + pending


def test_no_expiry_when_disabled() -> None:
    shard = Shard(EngineConfig.from_mapping({**SHORT, "expire_after_days": 0}))
    last = regular_customer(shard)
    shard.advance(last + 3000 * DAY)
    assert "a" in shard.store and shard.counts["expired"] == 0


def test_expiry_must_outlast_the_labels() -> None:
    with pytest.raises(ConfigError):
        EngineConfig.from_mapping({"horizon_days": 90, "expire_after_days": 100})


def test_the_churn_target_drops_a_silent_customer_too() -> None:
    shard = Shard(EngineConfig.from_mapping({**SHORT, "risk_target": "churn"}))
    last = regular_customer(shard)
    shard.advance(last + 31 * DAY)
    assert "a" not in shard.store and shard.counts["expired"] == 1 and shard.tracked == 0
