"""Partial defection (shared DOMAIN page): a customer who keeps buying but spends half as
much per month is at risk before any silence."""

from __future__ import annotations

import pytest
from cw_strategies import DAY, T0, ev

from detectors import EngineConfig, Shard

pytestmark = pytest.mark.unit


def _buy(shard: Shard, key: str, plan: list[tuple[float, float]]) -> None:
    for i, (day, amount) in enumerate(plan):
        t = T0 + int(day * DAY)
        shard.advance(t)
        shard.process(ev("order", key, t, f"{key}-{i}", order_id=f"{key}-o{i}", amount=amount))


def _plan(halve_from: float | None, fewer: bool, smaller: bool) -> list[tuple[float, float]]:
    """Every 10 days for 700 days at 60; from ``halve_from`` every 25 days and/or at 25."""
    plan, day = [], 0.0
    while day <= 700:
        late = halve_from is not None and day >= halve_from
        plan.append((day, 25.0 if late and smaller else 60.0))
        day += 25.0 if late and fewer else 10.0
    return plan


@pytest.mark.parametrize(("fewer", "smaller"), [(True, False), (False, True), (True, True)])
def test_spend_per_month_halved_is_a_reason_and_raises_the_score(
    fewer: bool, smaller: bool
) -> None:
    shard = Shard(EngineConfig())
    _buy(shard, "steady", _plan(None, False, False))
    _buy(shard, "halving", _plan(560, fewer, smaller))
    assert shard.store["halving"].n_orders >= 4
    plan = _plan(560, fewer, smaller)
    now = T0 + int((plan[-1][0] + 2) * DAY)  # two days after the last order: no silence
    steady, halving = shard.assess("steady", now), shard.assess("halving", now)
    assert steady is not None and halving is not None
    assert halving.profile.overdue < 1.5
    codes = [r.code for r in halving.reasons]
    # smaller baskets alone: the basket reason; fewer orders (with or without): spend
    assert ("basket_declining" if smaller and not fewer else "spend_halved") in codes, codes
    assert not {"spend_halved", "basket_declining"} & {r.code for r in steady.reasons}
    assert "order_overdue" not in codes
    for reason in halving.reasons:
        if reason.code == "spend_halved":
            assert reason.category == "engagement" and "per month" in reason.message
    assert halving.score > steady.score
