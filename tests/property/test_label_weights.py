"""Soft silence labels of the ``churn`` target: whatever happens, every snapshot's learned
label ends up a proper one, and what a return takes back is exactly what silence gave."""

from __future__ import annotations

from collections import defaultdict

import pytest
from cw_strategies import DAY, T0
from hypothesis import given
from hypothesis import strategies as st

from detectors import CustomerState, EngineConfig, Shard
from detectors.comeback import GROUPS, MIN_SHARE, ComebackRate
from detectors.ingest import new_state
from detectors.labels import ChurnLabels
from detectors.state import Snapshot

pytestmark = pytest.mark.unit

CFG = EngineConfig.from_mapping({"risk_target": "churn", "horizon_days": 30})

ops = st.lists(
    st.one_of(
        st.tuples(st.just("snapshot"), st.integers(0, 3)),
        st.tuples(st.just("silence"), st.floats(0.01, 1.0), st.integers(0, GROUPS - 1)),
        st.tuples(st.just("purchase")),
        st.tuples(st.just("churned")),
        st.tuples(st.just("expire")),
    ),
    max_size=40,
)


@given(ops)
def test_every_snapshot_nets_a_label_between_0_and_1_and_a_return_nets_0(
    steps: list[tuple],
) -> None:
    net: dict[int, float] = defaultdict(float)
    rate = ComebackRate()

    def learn(snap: Snapshot, y: float) -> None:
        assert 0.0 <= y <= 1.0
        net[snap.ts] += y

    def relabel(snap: Snapshot, delta: float) -> None:
        net[snap.ts] += delta

    shard = Shard(CFG)
    policy = ChurnLabels(CFG, learn, shard._cadence, relabel, lambda: rate)
    state: CustomerState = new_state(T0)
    t = T0
    for step in steps:
        t += 7 * DAY
        kind = step[0]
        if kind == "snapshot":
            for i in range(step[1]):
                state.snapshots = (*state.snapshots, Snapshot(t + i, b"", 0.0))
        elif kind == "silence":
            before, churn = state.provisional, t + DAY
            ones = tuple(s for s in state.snapshots if s.ts < churn <= s.ts + CFG.horizon_ms)
            policy.gone(state, churn, step[1], step[2])
            assert state.provisional == (*before, *ones) and not state.snapshots
            assert all(net[s.ts] == pytest.approx(step[1]) for s in state.provisional)
        elif kind == "purchase":
            back = state.provisional
            policy.on_purchase(state, t)
            assert all(net[s.ts] == pytest.approx(0.0, abs=1e-9) for s in back)
        elif kind == "churned":
            kept = state.provisional
            policy.on_outcome(state, 1, t)
            assert all(net[s.ts] == pytest.approx(1.0) for s in kept)
        else:
            policy.on_expire(state)
        assert all(-1e-9 <= v <= 1.0 + 1e-9 for v in net.values())
    assert sum(rate.returns) <= sum(rate.confirmations)


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, GROUPS - 1)), max_size=200),
    st.floats(0.0, 1.0),
)
def test_the_gone_share_stays_a_probability_and_falls_with_returns(
    seen: list[tuple[bool, int]], prior: float
) -> None:
    rate = ComebackRate()
    for back, group in seen:
        before = rate.gone_share(group, prior)
        if back:
            rate.came_back(group)
            assert rate.gone_share(group, prior) <= before
        else:
            rate.confirmed(group)
        assert MIN_SHARE <= rate.gone_share(group, prior) <= 1.0
