"""Invariants of scoring, levels, cadence, sweeps, the due index and the partitioner."""

from __future__ import annotations

import json
import math
import random
import warnings

import msgspec
import pytest
from cw_strategies import DAY, HOUR, T0, ev, feed, histories
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from detectors import (
    LEVELS,
    CustomerState,
    DecodeError,
    EngineConfig,
    Event,
    Shard,
    decode_event,
    partition_for,
)
from detectors.alerts import rfc3339
from detectors.cadence import Cadence, p_no_purchase
from detectors.ingest import new_state
from detectors.model import ShardModel
from detectors.profile import FEATURES, Population, profile
from detectors.reasons import CADENCE_CODES, CATEGORIES, MAX_SIGNAL_PUSH, Reason, rule_logit
from detectors.schedule import DueIndex

with warnings.catch_warnings():  # kafka-python's import-time DeprecationWarnings
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import murmur2 as kafka_murmur2

pytestmark = pytest.mark.unit

LAPSE = EngineConfig(risk_target="lapse")
"""Silence alone raises the score only for the ``lapse`` target."""


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# risk scores -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    histories(customer_id="a"),
    histories(customer_id="b"),
    histories(customer_id="c"),
    st.lists(st.integers(0, 900 * DAY), max_size=4),
)
def test_risk_scores_stay_in_the_unit_interval(
    a: list[Event], b: list[Event], c: list[Event], later: list[int]
) -> None:
    shard = Shard()
    events = sorted(a + b + c, key=lambda e: e.ts)
    alerts = feed(shard, events)
    end = int(events[-1].ts)
    for t in sorted(later):
        alerts += shard.advance(end + t)
    for alert in alerts:
        assert 0.0 <= alert.risk_score <= 1.0
        assert alert.risk_level in LEVELS and alert.previous_level in LEVELS
        assert math.isfinite(alert.customer_value) and alert.customer_value >= 0
        assert 0 <= alert.value_at_risk <= alert.customer_value + 0.01
    for key in shard.customers():
        assert 0.0 <= shard.store[key].score <= 1.0
        for t in (0, *later):
            assessment = shard.assess(key, end + t)
            assert assessment is not None
            assert 0.0 <= assessment.score <= 1.0
            assert all(math.isfinite(x) for x in assessment.features)


def test_extreme_but_valid_amounts_never_break_the_shard() -> None:
    """Amounts near the top of the float range are finite and >= 0, so the contract admits
    them. Either the decoder rejects them (the dead-letter path) or the engine copes; what
    must never happen is a crash, or a poisoned shard that fails for every other customer."""
    huge = 1e308
    raws = [
        ("big", 0, "o1", huge, "paid"),
        ("big", DAY, "o2", huge, "paid"),
        ("big", 40 * DAY, "o1", huge, "refunded"),
        ("big", 41 * DAY, "o2", huge, "refunded"),
        ("big", 42 * DAY, "o3", 5.0, "paid"),
        ("small", 43 * DAY, "s1", 10.0, "paid"),
        ("small", 73 * DAY, "s2", 12.0, "paid"),
    ]
    shard = Shard()
    alerts = []
    for i, (cid, t, oid, amount, status) in enumerate(raws):
        obj = {"event_id": f"e{i}", "event_type": "order", "customer_id": cid, "ts": T0 + t}
        obj |= {"order_id": oid, "amount": amount, "status": status}
        try:
            event = decode_event(json.dumps(obj).encode())
        except DecodeError:
            continue  # rejected up front: fine
        try:
            alerts += feed(shard, [event])
        except BaseException as exc:  # River's Rust panics are BaseExceptions
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"event {i} ({cid}, {status} {amount}) raised {type(exc).__name__}")
    assessment = shard.assess("small", T0 + 80 * DAY)
    assert assessment is not None
    assert 0.0 <= assessment.score <= 1.0
    assert math.isfinite(assessment.profile.value)
    for alert in alerts:
        assert math.isfinite(alert.customer_value) and math.isfinite(alert.value_at_risk)


# levels and hysteresis ---------------------------------------------------------------------


@st.composite
def level_configs(draw: st.DrawFn) -> EngineConfig:
    cuts = draw(st.lists(st.floats(0.05, 0.99), min_size=3, max_size=3, unique=True).map(sorted))
    assume(cuts[1] - cuts[0] > 1e-6 and cuts[2] - cuts[1] > 1e-6)
    hysteresis = draw(st.floats(0.0, cuts[0] * 0.99))
    return EngineConfig(medium=cuts[0], high=cuts[1], critical=cuts[2], hysteresis=hysteresis)


scores = st.floats(0.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(level_configs() | st.just(EngineConfig()), scores, scores, st.integers(0, 3))
@example(EngineConfig(), 0.5, 0.5, 0)
@example(EngineConfig(), 0.38, 0.379999, 1)
def test_level_is_monotone_in_score_with_hysteresis(
    cfg: EngineConfig, s1: float, s2: float, current: int
) -> None:
    lo, hi = sorted((s1, s2))
    assert cfg.level_of(lo, current) <= cfg.level_of(hi, current)
    thresholds = (0.0, *cfg.thresholds)
    for score in (lo, hi):
        level = cfg.level_of(score, current)
        assert 0 <= level <= 3
        if level > current:  # entering a higher level needs its full threshold
            assert score >= thresholds[level]
        if current >= 1:  # leaving the current level needs the score below t - hysteresis
            stays = score >= thresholds[current] - cfg.hysteresis
            assert (level >= current) == stays
        if current == 0:  # no hysteresis from the bottom
            assert level == sum(score >= t for t in thresholds[1:])


# the rule score ----------------------------------------------------------------------------

ALL_CODES = sorted(
    {
        *CADENCE_CODES,
        "ticket_unanswered",
        "price_complaint",
        "returns_cancels",
        "not_converting",
        "high_value",
    }
)
reasons = st.builds(
    Reason,
    code=st.sampled_from(ALL_CODES),
    category=st.sampled_from(CATEGORIES),
    message=st.just("m"),
    weight=st.floats(0.0, 12.0),
)
BASE_PROFILE = profile(
    new_state(T0), T0 + 30 * DAY, EngineConfig(), Population(math.log(45), 1.0, math.inf)
)


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 1 - 1e-6), st.lists(reasons, max_size=8), reasons)
def test_adding_a_reason_never_lowers_the_rule_score(
    p: float, found: list[Reason], extra: Reason
) -> None:
    prof = BASE_PROFILE._replace(p_prior=p)
    before = rule_logit(prof, found)
    after = rule_logit(prof, [*found, extra])
    assert after >= before
    assert logit(p) - 1e-9 <= before <= logit(p) + MAX_SIGNAL_PUSH + 1e-9
    assert rule_logit(prof, []) == pytest.approx(logit(p))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 400),
    st.integers(0, 2**32),
    st.floats(-20, 20),
    st.floats(-20, 20),
)
def test_risk_score_is_monotone_in_the_rule_score(
    n_labels: int, seed: int, z1: float, z2: float
) -> None:
    """With or without the global model's share, a higher rule score never lowers risk."""
    cfg = EngineConfig(model_min_labels=50)
    model = ShardModel(cfg)
    rng = random.Random(seed)
    for _ in range(n_labels):
        x = [rng.gauss(0, 1) for _ in FEATURES]
        model.learn(x, rng.gauss(0, 2), rng.random() < 0.4)
    x = [rng.gauss(0, 1) for _ in FEATURES]
    lo, hi = sorted((z1, z2))
    assert 0.0 <= model.score(x, lo) <= model.score(x, hi) <= 1.0


# personal cadence --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 1e5),
    st.floats(1, 3650),
    st.floats(math.log(0.04), math.log(3000)),
    st.floats(0.3, 5.0),
    st.floats(1e-4, 1.0),
)
def test_p_no_purchase_is_a_probability(
    silence: float, horizon: float, mu: float, sigma: float, dropout: float
) -> None:
    p = p_no_purchase(silence, horizon, Cadence(mu, sigma, dropout, 3))
    assert 0.0 < p < 1.0


@st.composite
def customer_cadences(draw: st.DrawFn) -> Cadence:
    """Cadences a customer can have: a usual gap of a day to 400 days, a log-gap spread from
    the floor up, and at most twenty years of their own gaps (drop-out chance 1 / (4 + n))."""
    gap = draw(st.floats(1.0, 400.0))
    n = draw(st.integers(0, min(200, int(20 * 365 / gap))))
    return Cadence(math.log(gap), draw(st.floats(0.3, 2.5)), 1.0 / (4.0 + n), n)


@settings(max_examples=300, deadline=None)
@given(customer_cadences(), st.floats(30.0, 365.0), st.floats(1.5, 20.0), st.floats(0.0, 10.0))
def test_p_no_purchase_rises_with_silence_once_overdue(
    c: Cadence, horizon: float, r1: float, dr: float
) -> None:
    """From 1.5x the usual gap on (where the engine starts to call a customer overdue) more
    silence never means less risk. Before that it may dip: a regular customer whose next
    order is just due is less likely to stay away for the whole horizon than one who bought
    yesterday, which the log-normal gap model says on purpose."""
    gap = c.usual_gap_days
    p1 = p_no_purchase(r1 * gap, horizon, c)
    p2 = p_no_purchase((r1 + dr) * gap, horizon, c)
    assert p2 >= p1 - 1e-12


def test_p_no_purchase_tends_to_one_in_long_silence() -> None:
    c = Cadence(math.log(30), 0.5, 0.1, 5)
    assert p_no_purchase(3650, 90, c) > 0.99
    assert p_no_purchase(0, 90, c) < 0.5


# sweeps ------------------------------------------------------------------------------------

BOOKKEEPING = (
    "level",
    "level_ts",
    "last_alert_ts",
    "alert_seq",
    "alert_open",
    "score",
    "checkpoint",
    "checkpoint_ts",
    "next_due",
    "snapshots",
    "case",
)
"""The only state a sweep may change: the alert lifecycle (and its ledger case), the
schedule, training snapshots."""


@settings(max_examples=200, deadline=None)
@given(histories())
def test_a_sweep_scores_a_quiet_customer_as_assess_does_at_the_same_time(
    events: list[Event],
) -> None:
    shard = Shard()
    feed(shard, events)
    key = events[0].customer_id
    due = shard.due.due_at(key)
    assume(due > 0)
    assume(due - shard.store[key].last_ts < shard.cfg.expire_ms)  # not the expiry sweep
    pre = shard.store[key].to_bytes()
    assert shard.store[key].next_due == due

    # nothing happens before the customer is due (but the ledger may decide an alert case
    # whose recovery window ended: that is not an evaluation)
    assert shard.advance(due - 1) == []
    case = CustomerState.from_bytes(pre).case
    assert msgspec.structs.replace(shard.store[key], case=case).to_bytes() == pre

    alerts = shard.advance(due)
    post = shard.store[key]
    # the sweep labels expired snapshots first, which may teach the model; score the
    # pre-sweep state with that same model, at the time the sweep evaluated
    reference = Shard(shard.cfg, store={key: CustomerState.from_bytes(pre)}, model=shard.model)
    expected = reference.assess(key, due)
    assert expected is not None
    assert post.score == round(expected.score, 6)
    assert len(alerts) <= 1
    for alert in alerts:
        assert alert.trigger == "sweep"
        assert alert.as_of == rfc3339(due)
        assert alert.risk_score == round(expected.score, 4)
        if alert.kind != "resolved":
            assert [r.code for r in alert.reasons] == [r.code for r in expected.reasons]
    # what the customer did is untouched: only the bookkeeping moved
    untouched = msgspec.structs.replace(
        post, **{f: getattr(CustomerState.from_bytes(pre), f) for f in BOOKKEEPING}
    )
    assert untouched.to_bytes() == pre
    assert post.next_due == 0 or post.next_due > due


def _monthly(cid: str, n: int = 8) -> list[Event]:
    return [
        ev(
            "order",
            cid,
            T0 + i * 30 * DAY + (i % 3) * HOUR,
            f"{cid}-{i}",
            order_id=f"o{i}",
            amount=60,
        )
        for i in range(n)
    ]


def test_advance_leaves_no_customer_due_at_or_before_the_clock() -> None:
    """``advance(now)`` re-evaluates every customer due by ``now``: afterwards nobody is due
    in the past, however far the clock jumped (a worker back from a pause, ``--until``)."""
    shard = Shard()
    feed(shard, _monthly("m"))
    now = T0 + 700 * DAY
    shard.advance(now)
    due = shard.due.next_due()
    assert due == 0 or due > now, f"still due at {rfc3339(due)} after advancing to {rfc3339(now)}"


def test_one_clock_jump_gives_the_same_alerts_as_daily_ticks() -> None:
    """Sweeps are on event time: the alerts must not depend on how often the clock ticks."""
    events = _monthly("m")
    end = int(events[-1].ts) + 300 * DAY

    ticked = Shard(LAPSE)
    daily = feed(ticked, events)
    t = int(events[-1].ts)
    while t < end:
        t += DAY
        daily += ticked.advance(min(t, end))

    jumped = Shard(LAPSE)
    once = feed(jumped, events) + jumped.advance(end)

    def summary(alerts: list) -> list[tuple]:
        return [(a.kind, a.risk_level, a.as_of, [r.code for r in a.reasons]) for a in alerts]

    assert any(a.kind == "opened" for a in daily)  # the silence is seen at all
    assert summary(once) == summary(daily)


def test_a_cadence_checkpoint_that_reaches_a_level_opens_the_alert_there() -> None:
    """One order, then silence. Sweeps come at multiples of the usual gap
    (``sweep_overdue_ratios``). At the first such checkpoint whose score already reaches a
    level, the alert must open right there, explained by the overdue reason: that is what
    the checkpoint is for (not one ratio later). Silence alone raises the score only
    for the ``lapse`` target."""
    cfg = LAPSE
    shard = Shard(cfg)
    feed(shard, [ev("order", "once", T0, "e1", order_id="o1", amount=45)])
    for _ in range(100):
        due = shard.due.due_at("once")
        assert due, "a silent one-time buyer keeps being swept"
        at_due = shard.assess("once", due)
        assert at_due is not None
        overdue = at_due.profile.overdue
        checkpoint = any(abs(overdue - r) < 1e-6 for r in cfg.sweep_overdue_ratios)
        alerts = shard.advance(due)
        if checkpoint and at_due.score >= cfg.thresholds[0]:
            break
        assert alerts == [], f"an alert before any checkpoint reached a level ({overdue:.3f}x)"
    else:
        pytest.fail("no checkpoint ever reached a level")
    assert [a.kind for a in alerts] == ["opened"], (
        f"checkpoint {overdue!r}x scored {at_due.score:.3f} (medium is {cfg.thresholds[0]}) "
        f"but opened nothing; reasons there: {[r.code for r in at_due.reasons]}"
    )
    assert "no_second_order" in [r.code for r in alerts[0].reasons]


# the due index ------------------------------------------------------------------------------

keys = st.sampled_from("abcdefgh")
times = st.one_of(
    st.integers(-2 * HOUR, 60 * HOUR),
    st.integers(-1, 60).map(lambda h: h * HOUR),
    st.integers(0, 60).map(lambda h: h * HOUR - 1),
    st.integers(0, 60).map(lambda h: h * HOUR + 1),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), keys, times),
        st.tuples(st.just("pop"), st.just(""), times),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_due_index_matches_a_brute_force_model(ops: list[tuple[str, str, int]]) -> None:
    index = DueIndex()
    model: dict[str, int] = {}
    for op, key, t in ops:
        if op == "schedule":
            index.schedule(key, t)
            if t > 0:
                model[key] = t
            else:
                model.pop(key, None)
        else:
            due = sorted((d, k) for k, d in model.items() if d <= t)
            assert index.pop_due(t) == [k for _, k in due]
            for _, k in due:
                del model[k]
        assert len(index) == len(model)
        assert index.next_due() == min(model.values(), default=0)
        for k in "abcdefgh":
            assert index.due_at(k) == model.get(k, 0)


# the partitioner ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=64), st.integers(1, 256))
@example("customer-1", 4)
@example("", 3)
@example("Grüße-ü€", 12)
def test_partition_for_matches_kafkas_default_partitioner(key: str, partitions: int) -> None:
    expected = (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % partitions
    assert partition_for(key, partitions) == expected
