"""Service recovery (shared DOMAIN page): the risk is in the complaint that is ignored,
slow or reopened, not in the complaint itself."""

from __future__ import annotations

import pytest
from cw_strategies import DAY, HOUR, T0, ev

from detectors import EngineConfig, Shard

pytestmark = pytest.mark.unit


def _customer(shard: Shard, key: str, respond_after_h: float, satisfaction: int) -> None:
    """Monthly orders for a year, a quality complaint on day 330, answered after
    ``respond_after_h`` hours and resolved a day later with ``satisfaction``."""
    events = [
        ev("order", key, T0 + d * DAY, f"{key}-o{d}", order_id=f"{key}-o{d}", amount=50.0)
        for d in range(0, 331, 30)
    ]
    opened = T0 + 331 * DAY
    events += [
        ev(
            "ticket",
            key,
            opened,
            f"{key}-t1",
            ticket_id="t1",
            status="opened",
            category="quality",
            severity="high",
        ),
        ev(
            "ticket",
            key,
            opened + int(respond_after_h * HOUR),
            f"{key}-t2",
            ticket_id="t1",
            status="responded",
        ),
        ev(
            "ticket",
            key,
            opened + int((respond_after_h + 24) * HOUR),
            f"{key}-t3",
            ticket_id="t1",
            status="resolved",
            satisfaction=satisfaction,
        ),
    ]
    for e in events:
        shard.advance(e.ts)
        shard.process(e)


def test_a_complaint_answered_fast_and_resolved_well_leaves_no_lasting_risk() -> None:
    shard = Shard(EngineConfig())
    _customer(shard, "recovered", respond_after_h=2, satisfaction=5)
    _customer(shard, "ignored", respond_after_h=80, satisfaction=2)
    now = T0 + 338 * DAY
    recovered, ignored = shard.assess("recovered", now), shard.assess("ignored", now)
    assert recovered is not None and ignored is not None
    assert not [r for r in recovered.reasons if r.category in ("service", "product")]
    codes = {r.code for r in ignored.reasons}
    assert {"quality_complaint", "low_satisfaction"} <= codes, codes
    assert ignored.score > recovered.score
    # no alert whose only reasons were resolved: the recovered customer has none open
    assert not shard.store["recovered"].alert_open


def test_a_slow_answer_is_not_a_recovery_even_when_rated_well() -> None:
    shard = Shard(EngineConfig())
    _customer(shard, "slow", respond_after_h=80, satisfaction=5)
    slow = shard.assess("slow", T0 + 338 * DAY)
    assert slow is not None and "quality_complaint" in {r.code for r in slow.reasons}
