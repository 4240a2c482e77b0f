"""The ``churn`` risk target: labels ask "does the relationship end within the horizon?"."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from cw_strategies import DAY, T0, ev

from detectors import EngineConfig, Playbook, Shard
from detectors.comeback import ComebackRate
from detectors.ingest import new_state
from detectors.labels import ChurnLabels, LapseLabels, confirm_ms
from detectors.model import ShardModel
from detectors.profile import FEATURES
from detectors.state import Snapshot
from evaluation.evaluate import Truth, evaluate
from evaluation.run import _day_ms, collect
from streams.replay import make_engine
from streams.simulate import SimConfig, generate, write_events

pytestmark = pytest.mark.unit

CHURN = {"risk_target": "churn", "horizon_days": 30, "snapshot_interval_days": 10}


def orders(shard: Shard, key: str, days: list[int]) -> None:
    for i, d in enumerate(days):
        t = T0 + d * DAY
        shard.advance(t)
        shard.process(ev("order", key, t, f"{key}{i}", order_id=f"{key}o{i}", amount=40.0))


def learned(shard: Shard) -> Counter[int]:
    return Counter({0: shard.counts["labels_0"], 1: shard.counts["labels_1"]})


def test_the_policy_follows_the_setting() -> None:
    assert isinstance(Shard(EngineConfig(risk_target="churn")).labels, ChurnLabels)
    assert isinstance(Shard(EngineConfig(risk_target="lapse")).labels, LapseLabels)
    assert isinstance(Shard(EngineConfig()).labels, LapseLabels)


def test_before_any_label_customers_who_came_back_less_often_score_higher() -> None:
    shard = Shard(EngineConfig.from_mapping({**CHURN, "model_min_labels": 10**6}))
    orders(shard, "once", [0, 30])
    orders(shard, "loyal", list(range(0, 31, 3)))
    now = T0 + 31 * DAY
    once, loyal = shard.assess("once", now), shard.assess("loyal", now)
    assert once.profile.p_prior > EngineConfig().prior_churn_rate > loyal.profile.p_prior
    assert once.score > loyal.score


def test_snapshots_come_at_grid_points_not_at_purchases() -> None:
    shard = Shard(EngineConfig.from_mapping(CHURN))
    orders(shard, "a", [0, 3, 6, 9, 12])
    state = shard.store["a"]
    assert [(s.ts - state.first_ts) // DAY for s in state.snapshots] == [10]


def test_a_customer_who_keeps_buying_teaches_zeros() -> None:
    shard = Shard(EngineConfig.from_mapping(CHURN))
    orders(shard, "a", list(range(0, 200, 5)))
    got = learned(shard)
    assert got[0] >= 10 and got[1] == 0


def test_a_customer_who_stops_teaches_ones_for_the_horizon_before_the_stop_only() -> None:
    cfg = EngineConfig.from_mapping(CHURN)
    shard = Shard(cfg)
    days = list(range(0, 100, 5))  # last order on day 95
    orders(shard, "a", days)
    before = learned(shard)
    pending = [s.ts for s in shard.store["a"].snapshots]
    assert pending, "snapshots wait for the outcome"
    churn = T0 + 95 * DAY + DAY
    shard.advance(T0 + 400 * DAY)
    after = learned(shard) - before
    horizon = cfg.horizon_ms
    ones = sum(1 for t in pending if t < churn <= t + horizon)
    left_already = sum(1 for t in pending if churn <= t)
    assert after[1] == ones and ones >= 1
    assert after[0] == len(pending) - ones - left_already
    assert not shard.store["a"].snapshots


def test_a_customer_counted_gone_by_silence_who_buys_again_is_relabelled_in_the_shard() -> None:
    shard = Shard(EngineConfig.from_mapping(CHURN))
    orders(shard, "a", list(range(0, 100, 5)))
    shard.advance(T0 + 400 * DAY)  # silent long enough: counted gone, ones learned
    ones = shard.counts["labels_1"]
    assert ones >= 1 and len(shard.store["a"].provisional) == ones
    back = T0 + 401 * DAY
    shard.process(ev("order", "a", back, "a-back", order_id="a-back", amount=40.0))
    assert shard.counts["labels_relabelled"] == ones and not shard.store["a"].provisional


def test_the_silence_that_confirms_a_departure_scales_with_the_rhythm() -> None:
    cfg = EngineConfig(risk_target="churn")
    shard = Shard(cfg)
    orders(shard, "w", list(range(0, 120, 7)))
    orders(shard, "q", [0, 90, 180, 270])
    weekly = confirm_ms(cfg, shard._cadence(shard.store["w"]))
    quarterly = confirm_ms(cfg, shard._cadence(shard.store["q"]))
    assert weekly == cfg.horizon_ms < quarterly <= cfg.expire_ms


def test_an_explicit_churned_outcome_decides_the_labels() -> None:
    shard = Shard(EngineConfig.from_mapping(CHURN))
    orders(shard, "a", list(range(0, 60, 5)))
    pending = len(shard.store["a"].snapshots)
    before = learned(shard)
    t = T0 + 61 * DAY
    shard.advance(t)
    shard.process(ev("outcome", "a", t, "out", outcome="churned"))
    assert (learned(shard) - before)[1] == pending > 0


def test_a_snapshot_after_the_departure_teaches_nothing() -> None:
    cfg = EngineConfig.from_mapping(CHURN)
    shard = Shard(cfg)
    got: list[int] = []
    policy = ChurnLabels(cfg, lambda snap, y: got.append(y), shard._cadence, print, ComebackRate)
    state = new_state(T0)
    state.snapshots = (Snapshot(T0 + 10 * DAY, b"", 0.0), Snapshot(T0 + 40 * DAY, b"", 0.0))
    policy.gone(state, T0 + 20 * DAY)
    assert got == [1] and state.snapshots == ()


def test_a_customer_counted_gone_who_comes_back_has_the_ones_learned_over() -> None:
    cfg = EngineConfig.from_mapping(CHURN)
    shard = Shard(cfg)
    got: list[tuple[str, float]] = []
    rate = ComebackRate()
    policy = ChurnLabels(
        cfg,
        lambda snap, y: got.append(("learn", y)),
        shard._cadence,
        lambda snap, delta: got.append(("relabel", delta)),
        lambda: rate,
    )
    state = new_state(T0)
    snaps = (Snapshot(T0 + 10 * DAY, b"", 0.0), Snapshot(T0 + 20 * DAY, b"", 0.0))
    state.snapshots = snaps
    policy.gone(state, T0 + 25 * DAY, 0.7, group=2)  # silence: soft ones, kept
    assert got == [("learn", 0.7), ("learn", 0.7)] and state.provisional == snaps
    assert rate.confirmations[2] == 1
    policy.on_purchase(state, T0 + 200 * DAY)  # came back: learned over as 0
    assert got[2:] == [("relabel", -0.7), ("relabel", -0.7)]
    assert state.provisional == () and rate.returns[2] == 1
    state.snapshots = snaps  # gone for good: an explicit outcome makes them whole ones
    policy.gone(state, T0 + 25 * DAY, 0.6, group=2)
    policy.on_outcome(state, 1, T0 + 300 * DAY)
    assert got[6:] == [("relabel", pytest.approx(0.4))] * 2
    assert state.provisional == () and rate.returns[2] == 1


def test_silence_labels_weigh_less_in_groups_whose_customers_came_back() -> None:
    """The first silence confirmations of a group use the cadence model's P(gone); as
    customers of that group come back after one, its labels soften."""
    shard = Shard(EngineConfig.from_mapping(CHURN))
    weights: list[float] = []
    learn = shard._learn
    shard.labels.learn = lambda snap, y: (weights.append(y), learn(snap, y))[1]
    for i in range(60):
        orders(shard, f"c{i}", [0, 5, 10, 15, 20])
    shard.advance(T0 + 200 * DAY)  # all silent: counted gone
    first = [w for w in weights if w > 0]
    for i in range(60):  # every one comes back
        t = T0 + (201 + i) * DAY
        shard.process(ev("order", f"c{i}", t, f"c{i}-back", order_id=f"c{i}-back", amount=40.0))
    weights.clear()
    for i in range(60):
        orders(shard, f"d{i}", [300, 305, 310, 315, 320])
    shard.advance(T0 + 600 * DAY)
    later = [w for w in weights if w > 0]
    assert first and later and max(later) < 0.7 * min(first)
    assert shard.model.comeback.returns[4] == 60


def test_learning_over_a_label_moves_the_model_towards_the_new_one() -> None:
    cfg = EngineConfig.from_mapping({**CHURN, "model_min_labels": 0})
    one, over = ShardModel(cfg), ShardModel(cfg)
    rng = random.Random(3)
    rows = [[rng.gauss(0, 1) for _ in FEATURES] for _ in range(300)]
    for x in rows:
        for model in (one, over):
            model.learn(x, -2.0, 1)
    for x in rows:
        over.relabel(x, -2.0, -1.0)
    x = rows[0]
    assert over.score(x, -2.0) < one.score(x, -2.0)
    assert over.positives == 0 and one.positives == len(rows)


def test_churn_scores_are_calibrated_where_lapse_scores_are_not(tmp_path: Path) -> None:
    """On simulated customers the churn target's risk_score is close to the observed rate
    of leaving within the horizon; the lapse target's (no purchase within it) is not."""
    events, truth = generate(SimConfig(customers=800, days=450, seed=17))
    path = tmp_path / "events.jsonl"
    write_events(path, events)
    judged = Truth(
        {t.customer_id: _day_ms(t.churn_date.isoformat()) if t.churn_date else None for t in truth},
        {t.customer_id: t.cause for t in truth},
    )
    cuts = [_day_ms("2024-07-01"), _day_ms("2024-10-01")]
    ece = {}
    for target in ("churn", "lapse"):
        engine = make_engine(EngineConfig(risk_target=target), Playbook(), 1)
        report = evaluate(collect(path, engine, cuts), judged, 90.0, draws=0, seed=0)
        ece[target] = report["calibration"]["pooled"]["ece"]
    assert ece["churn"] < 0.1 < ece["lapse"]
