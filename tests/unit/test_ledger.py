"""The retention ledger: control groups, cases, action reports, outcomes at the window."""

from __future__ import annotations

import json
from datetime import datetime

import msgspec
import pytest
from cw_strategies import DAY, HOUR, T0, ev, feed
from prometheus_client import CollectorRegistry

from detectors import (
    Alert,
    ConfigError,
    CustomerState,
    DecodeError,
    Engine,
    EngineConfig,
    Event,
    Shard,
    decode_alert,
    decode_event,
    encode_alert,
)
from detectors.events import RetentionAction, event_type
from detectors.ledger import (
    ACTION_CODES,
    OUTCOMES,
    action_code,
    control_draw,
    in_control,
    mask_codes,
)
from streams.metrics import Metrics

pytestmark = pytest.mark.unit

STEPS: dict[str, float] = {"medium": 0.45, "high": 0.8, "critical": 0.9}
"""Levels at which the silent monthly customer here opens a case at medium and escalates it
later, so a case is followed through its levels (with the default levels a perfectly
regular customer silent for twice their gap opens straight at high)."""
LAPSE = EngineConfig(**STEPS)

EVERY_LEVEL = ("medium", "high", "critical")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def action(cid: str, alert_id: str, ts: int, name: str, status: str, /, **extra: object) -> Event:
    obj = {
        "event_type": "action",
        "customer_id": cid,
        "alert_id": alert_id,
        "ts": ts,
        "action": name,
        "status": status,
    }
    obj.update(extra)
    return decode_event(json.dumps(obj).encode())


def monthly(cid: str, n: int = 8, start: float = 0.0) -> list[Event]:
    """``n`` paid orders 30 days apart from day ``start``, then nothing."""
    return [
        ev(
            "order",
            cid,
            T0 + int((start + 30 * i) * DAY),
            f"{cid}-o{i}",
            order_id=f"{cid}-o{i}",
            amount=60.0,
        )
        for i in range(n)
    ]


def silent(shard: Shard, cid: str = "m", until_day: float = 400) -> list[Alert]:
    """A monthly customer who goes silent after day 210: sweeps open and escalate a case."""
    alerts = feed(shard, monthly(cid))
    return alerts + shard.advance(T0 + int(until_day * DAY))


def opened(alerts: list[Alert]) -> Alert:
    return next(a for a in alerts if a.kind == "opened")


def cases(shard: Shard) -> dict[tuple[str, str, str, str], int]:
    return dict(shard.ledger.counts.cases)


# control groups ------------------------------------------------------------------------


def test_assignment_is_a_keyed_hash_of_the_customer() -> None:
    ids = [f"c{i:05d}" for i in range(4000)]
    draws = [control_draw(cid, "spring-2025") for cid in ids]
    assert draws == [control_draw(cid, "spring-2025") for cid in ids], "deterministic"
    assert all(0.0 <= d < 1.0 for d in draws)
    other = [control_draw(cid, "autumn-2025") for cid in ids]
    assert sum(a != b for a, b in zip(draws, other, strict=True)) > 3990, "the salt reshuffles"
    held = sum(in_control(cid, "spring-2025", 0.1) for cid in ids)
    assert 330 <= held <= 470  # 400 expected; about 4.9 standard deviations either side
    # nested in the share: held out at 5 % means held out at 10 % too
    small = {cid for cid in ids if in_control(cid, "spring-2025", 0.05)}
    assert small <= {cid for cid in ids if in_control(cid, "spring-2025", 0.1)}
    assert not any(in_control(cid, "spring-2025", 0.0) for cid in ids)


def test_engine_assigns_each_case_by_the_hash_and_the_opening_level() -> None:
    cfg = EngineConfig(**STEPS, control_share=dict.fromkeys(EVERY_LEVEL, 0.5), experiment_salt="s1")
    engine = Engine(cfg, partitions=2)
    events = sorted((e for i in range(60) for e in monthly(f"c{i}", 6)), key=lambda e: e.ts)
    alerts = [a for e in events for a in engine.feed(e)]
    alerts += engine.advance_all(T0 + 400 * DAY)
    first = {}
    for a in alerts:
        if a.kind == "opened":
            first.setdefault(a.customer_id, a.treatment)
    assert len(first) == 60
    for cid, arm in first.items():
        assert arm == ("control" if in_control(cid, "s1", 0.5) else "treated")
    assert {"control", "treated"} == set(first.values())


@pytest.mark.parametrize(
    ("share", "arm"),
    [({"medium": 1.0}, "control"), ({"high": 1.0, "critical": 1.0}, "treated")],
)
def test_the_group_holds_for_the_whole_case(share: dict[str, float], arm: str) -> None:
    """The group is drawn with the opening level's share and escalation never switches it,
    whatever the higher levels' shares say."""
    shard = Shard(EngineConfig(**STEPS, control_share=share))
    alerts = silent(shard)
    kinds = [a.kind for a in alerts]
    assert kinds[0] == "opened" and alerts[0].risk_level == "medium"
    assert "escalated" in kinds
    assert {a.treatment for a in alerts} == {arm}
    assert shard.store["m"].case is not None and shard.store["m"].case.control == (arm == "control")


def test_no_control_share_means_everyone_is_treated() -> None:
    shard = Shard(LAPSE)
    alerts = silent(shard)
    assert alerts and {a.treatment for a in alerts} == {"treated"}
    assert shard.ledger.counts.opened[("treated", "medium")] == 1


def test_control_share_is_validated() -> None:
    assert EngineConfig.from_mapping({"control_share": {"high": "0.2"}}).control_share_at(2) == 0.2
    with pytest.raises(ConfigError):
        EngineConfig.from_mapping({"control_share": {"low": 0.1}})
    with pytest.raises(ConfigError):
        EngineConfig.from_mapping({"control_share": {"high": 1.5}})
    with pytest.raises(ConfigError):
        EngineConfig.from_mapping({"experiment_salt": ""})


# outcomes ------------------------------------------------------------------------------


def test_a_purchase_inside_the_window_recovers_the_case() -> None:
    shard = Shard(LAPSE)
    t0 = ms(opened(silent(shard, until_day=290)).as_of)
    end = t0 + shard.cfg.recovery_window_ms
    feed(shard, [ev("order", "m", end - HOUR, "back", order_id="back", amount=50.0)])
    assert cases(shard) == {("treated", "medium", "engagement", "recovered"): 1}


@pytest.mark.parametrize("sweep_first", [True, False])
def test_a_purchase_after_the_window_comes_too_late(sweep_first: bool) -> None:
    """Decided at the window's end, whether a sweep gets there first or the late order."""
    shard = Shard(LAPSE)
    t0 = ms(opened(silent(shard, until_day=290)).as_of)
    end = t0 + shard.cfg.recovery_window_ms
    late = ev("order", "m", end + HOUR, "late", order_id="late", amount=50.0)
    if sweep_first:
        feed(shard, [late])
    else:
        shard.process(late)
    # silent since day 210, alerted weeks later: a whole horizon without a purchase by the end
    assert cases(shard) == {("treated", "medium", "engagement", "churned"): 1}


def test_the_window_end_is_decided_by_the_sweep_at_its_end_not_before() -> None:
    shard = Shard(LAPSE)
    t0 = ms(opened(silent(shard, until_day=290)).as_of)
    end = t0 + shard.cfg.recovery_window_ms
    shard.advance(end)
    assert cases(shard) == {}
    assert shard.store["m"].case is not None and shard.store["m"].case.outcome == 0
    shard.advance(end + 1)
    assert cases(shard) == {("treated", "medium", "engagement", "churned"): 1}
    assert OUTCOMES[shard.store["m"].case.outcome - 1] == "churned"
    shard.advance(end + 400 * DAY)
    assert sum(cases(shard).values()) == 1, "a case is decided once"


def test_still_at_risk_when_the_window_ends_within_a_horizon_of_the_last_purchase() -> None:
    """Alerted for an unanswered complaint days after an order; no purchase in the window,
    but the last one is less than a horizon old at its end."""
    shard = Shard(LAPSE)
    events = monthly("s", 8)
    last = int(events[-1].ts)
    complaint = {"category": "technical", "severity": "medium"}
    events += [
        ev("ticket", "s", last + DAY, "s-t0", ticket_id="t0", status="opened", **complaint),
        ev(
            "ticket",
            "s",
            last + 2 * DAY,
            "s-t0r",
            ticket_id="t0",
            status="resolved",
            satisfaction=2,
        ),
        ev(
            "ticket",
            "s",
            last + 3 * DAY,
            "s-t1",
            ticket_id="t1",
            status="opened",
            severity="high",
            category="service",
        ),
    ]
    alerts = feed(shard, events) + shard.advance(last + 10 * DAY)
    case_open = opened(alerts)
    assert case_open.reasons[0].category == "service"
    t0 = ms(case_open.as_of)
    shard.advance(t0 + shard.cfg.recovery_window_ms + 1)
    silence = t0 + shard.cfg.recovery_window_ms - last
    assert silence < shard.cfg.horizon_ms
    assert cases(shard) == {("treated", "medium", "service", "still_at_risk"): 1}


@pytest.mark.parametrize(("said", "outcome"), [("churned", "churned"), ("retained", "recovered")])
def test_an_explicit_outcome_inside_the_window_decides(said: str, outcome: str) -> None:
    shard = Shard(LAPSE)
    t0 = ms(opened(silent(shard, until_day=290)).as_of)
    feed(shard, [ev("outcome", "m", t0 + 5 * DAY, "o1", outcome=said)])
    assert cases(shard) == {("treated", "medium", "engagement", outcome): 1}


def test_one_jump_of_the_clock_counts_as_many_small_ticks() -> None:
    cfg = EngineConfig(**STEPS, control_share=dict.fromkeys(EVERY_LEVEL, 0.3))
    events = sorted(
        (e for i in range(30) for e in monthly(f"c{i}", 5 + i % 4, start=i % 7)),
        key=lambda e: e.ts,
    )
    jump, ticks = Shard(cfg), Shard(cfg)
    feed(jump, events)
    feed(ticks, events)
    end = int(events[-1].ts) + 500 * DAY
    jump.advance(end)
    for t in range(int(events[-1].ts), end + DAY, DAY):
        ticks.advance(min(t, end))
    assert jump.ledger.counts == ticks.ledger.counts
    assert sum(jump.ledger.counts.cases.values()) >= 30


# action reports --------------------------------------------------------------------------


def test_action_reports_decode_with_a_derived_event_id() -> None:
    a = action("m", "a-1", T0, "targeted_offer", "delivered")
    assert isinstance(a, RetentionAction) and event_type(a) == "action"
    assert a.event_id == "a-1/targeted_offer/delivered"
    b = action("m", "a-1", T0, "targeted_offer", "delivered", event_id="mine-7")
    assert b.event_id == "mine-7"
    for bad in ({"status": "opened"}, {"alert_id": ""}, {"event_id": ""}, {"action": ""}):
        with pytest.raises(DecodeError) as err:
            action("m", "a-1", T0, "x", "sent", **bad)
        assert err.value.reason == "bad_value"
    raw = b'{"event_type":"action","customer_id":"m","ts":0,"action":"x","status":"sent"}'
    with pytest.raises(DecodeError) as err:
        decode_event(raw)
    assert err.value.reason in ("missing_field", "ts_out_of_range")
    raw = b'{"customer_id":"m","ts":1704067200000,"action":"x","status":"sent"}'
    with pytest.raises(DecodeError) as err:
        decode_event(raw, default_type="action")
    assert err.value.reason == "missing_field"


def test_actions_link_to_the_case_by_alert_id() -> None:
    shard = Shard(LAPSE)
    alerts = silent(shard)
    first, later = alerts[0], alerts[1]
    t = ms(later.as_of) + DAY
    before = shard.counts["customers"]
    reports = [
        action("m", first.alert_id, t, "we_miss_you_message", "sent"),
        action("m", first.alert_id, t + HOUR, "we_miss_you_message", "delivered"),
        action("m", later.alert_id, t + HOUR, "price_match", "failed"),
        action("m", later.alert_id, t + HOUR, "a_free_pony", "delivered"),
        action("m", "not-an-alert-of-this-case", t, "targeted_offer", "sent"),
        action("stranger", first.alert_id, t, "targeted_offer", "sent"),
        action("m", first.alert_id, t, "we_miss_you_message", "sent"),  # redelivered
    ]
    assert feed(shard, reports) == []
    counts = shard.ledger.counts
    assert dict(counts.links) == {"linked": 4, "unmatched": 1, "unknown_customer": 1}
    assert counts.actions[("we_miss_you_message", "sent")] == 1
    assert counts.actions[("we_miss_you_message", "delivered")] == 1
    assert counts.actions[("price_match", "failed")] == 1
    assert counts.actions[("other", "delivered")] == 1
    assert shard.counts["duplicates"] == 1
    assert shard.counts["customers"] == before and "stranger" not in shard.store
    case = shard.store["m"].case
    assert case is not None
    assert mask_codes(case.actions) == ["we_miss_you_message", "other"], "failed ones not taken"
    assert case.reports == 4
    assert "we_miss_you_message" in mask_codes(case.recommended)
    # reports are not customer behaviour: no evaluation, no activity
    assert shard.store["m"].last_ts == int(monthly("m")[-1].ts)


def test_an_action_on_a_control_case_is_flagged() -> None:
    shard = Shard(EngineConfig(**STEPS, control_share={"medium": 1.0}))
    alerts = silent(shard)
    feed(shard, [action("m", alerts[0].alert_id, ms(alerts[0].as_of) + DAY, "x", "sent")])
    assert dict(shard.ledger.counts.links) == {"control": 1}


def test_action_codes_are_a_bounded_set() -> None:
    assert ACTION_CODES[-1] == "other" and len(ACTION_CODES) == len(set(ACTION_CODES)) <= 63
    assert action_code("service_recovery_call") == "service_recovery_call"
    assert action_code("anything else") == "other"


def test_recommended_actions_by_outcome_are_counted() -> None:
    shard = Shard(LAPSE)
    silent(shard)
    by_action = shard.ledger.counts.by_action
    assert by_action[("we_miss_you_message", "treated", "churned")] == 1
    assert all(arm == "treated" and out == "churned" for _, arm, out in by_action)


# contract and state ----------------------------------------------------------------------


def test_alerts_carry_the_treatment_and_old_alerts_decode_as_treated() -> None:
    shard = Shard(LAPSE)
    alert = silent(shard)[0]
    obj = json.loads(encode_alert(alert))
    assert obj["treatment"] == "treated" and obj["schema_version"] == 1
    del obj["treatment"]
    old = decode_alert(json.dumps(obj).encode())
    assert old.treatment == "treated"
    assert msgspec.structs.replace(old, treatment="treated") == alert


def test_a_state_stored_before_the_ledger_still_loads() -> None:
    shard = Shard(LAPSE)
    silent(shard)
    state = shard.store["m"]
    assert state.case is not None
    fields = msgspec.msgpack.decode(state.to_bytes())
    n_case = fields.index(msgspec.msgpack.decode(msgspec.msgpack.encode(state.case)))
    old = msgspec.msgpack.encode(fields[:n_case])  # the array up to the case, not from it
    back = CustomerState.from_bytes(old)
    assert back.case is None
    later = {"orders_short": back.orders_short, "orders_long": back.orders_long}
    assert later == {"orders_short": 0.0, "orders_long": 0.0}  # fields added after: defaults
    assert (
        msgspec.structs.replace(
            back,
            case=state.case,
            orders_short=state.orders_short,
            orders_long=state.orders_long,
            gap_trend=state.gap_trend,
        )
        == state
    )


def test_a_copy_of_the_state_does_not_share_the_case() -> None:
    shard = Shard(LAPSE)
    alerts = silent(shard)
    copy = msgspec.structs.replace(shard.store["m"])
    frozen = copy.to_bytes()
    feed(shard, [action("m", alerts[0].alert_id, ms(alerts[0].as_of) + DAY, "x", "sent")])
    assert copy.to_bytes() == frozen
    assert shard.store["m"].to_bytes() != frozen


def test_the_worker_exports_ledger_deltas_once() -> None:
    shard = Shard(EngineConfig(**STEPS, control_share={"medium": 1.0}))
    alerts = silent(shard)
    feed(shard, [action("m", alerts[0].alert_id, ms(alerts[0].as_of) + DAY, "x", "sent")])
    registry = CollectorRegistry()
    m = Metrics(registry)
    reported: dict[str, int] = {}
    m.export_ledger(shard.ledger.counts, reported)
    m.export_ledger(shard.ledger.counts, reported)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    labels = {"treatment": "control", "level": "medium", "category": "engagement"}
    assert value("churnwatch_cases_total", **labels, outcome="churned") == 1
    assert value("churnwatch_cases_opened_total", treatment="control", level="medium") == 1
    assert value("churnwatch_cases_opened_total", treatment="treated", level="high") == 0
    assert value("churnwatch_retention_actions_total", action="other", status="sent") == 1
    assert value("churnwatch_retention_action_links_total", link="control") == 1
    assert value("churnwatch_retention_action_links_total", link="linked") == 0
    assert (
        value(
            "churnwatch_case_actions_total",
            action="we_miss_you_message",
            treatment="control",
            outcome="churned",
        )
        == 1
    )
