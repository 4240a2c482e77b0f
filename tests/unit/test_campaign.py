"""The simulated campaign closes the loop: alerts cause actions, actions win a known share
of customers back, and the ledger's treated-vs-control uplift finds that effect."""

from __future__ import annotations

import json
import time

import pytest

from detectors import Engine, EngineConfig, decode_event
from evaluation.retention import ledger_counts, summarize
from streams.campaign import CampaignConfig, CampaignResult, close_windows, run_campaign
from streams.simulate import SimConfig

pytestmark = pytest.mark.unit

HALF = EngineConfig(
    risk_target="lapse", control_share=dict.fromkeys(("medium", "high", "critical"), 0.5)
)


def campaign(customers: int, days: int, seed: int, effect: float) -> CampaignResult:
    cfg = CampaignConfig(sim=SimConfig(customers=customers, days=days, seed=seed), effect=effect)
    return run_campaign(cfg, lambda: Engine(HALF, partitions=2))


def all_levels(result: CampaignResult) -> dict:
    report = summarize(ledger_counts(result.engine), result.known_effect())
    return next(r for r in report["by_level"] if r["group"] == "all")


def test_the_uplift_estimate_finds_the_effect_the_campaign_put_in() -> None:
    started = time.monotonic()
    result = campaign(1000, 400, seed=5, effect=0.3)
    elapsed = time.monotonic() - started
    row = all_levels(result)
    treated, control, uplift = row["treated"], row["control"], row["uplift"]
    known = row["known_effect"]
    # a real experiment: hundreds of cases in each arm, actions reached many treated cases
    assert treated["cases"] > 400 and control["cases"] > 400
    assert sum(result.reached.values()) > 200
    won_back = sum(result.caused.values())
    would_not = sum(result.reached.values()) - sum(result.natural.values())
    assert 0.15 * would_not < won_back < 0.35 * would_not  # the 30 % of those who had room
    assert 0.05 < known < 0.3
    # the estimate: clearly positive, and its interval holds the true effect
    assert uplift["low"] > 0
    assert uplift["low"] <= known <= uplift["high"]
    assert abs(uplift["value"] - known) < 0.05
    assert elapsed < 60, f"the campaign took {elapsed:.0f} s"


def test_without_an_effect_there_is_no_uplift() -> None:
    result = campaign(500, 300, seed=11, effect=0.0)
    row = all_levels(result)
    assert sum(result.caused.values()) == 0
    assert row["known_effect"] == 0.0
    assert sum(result.reached.values()) > 50, "actions were still sent and delivered"
    assert row["uplift"]["low"] <= 0.0 <= row["uplift"]["high"]


def test_the_campaign_is_deterministic_and_its_events_replay_to_the_same_ledger() -> None:
    first = campaign(300, 250, seed=2, effect=0.5)
    again = campaign(300, 250, seed=2, effect=0.5)
    assert first.events == again.events
    assert ledger_counts(first.engine) == ledger_counts(again.engine)
    assert sum(first.caused.values()) > 0

    # only treated cases are acted on, one report per step, and every report links
    actions = [e for e in first.events if e["event_type"] == "action"]
    assert actions and all("event_id" not in e for e in actions)
    treated_alerts = {a.alert_id for a in first.alerts if a.treatment == "treated"}
    assert {e["alert_id"] for e in actions} <= treated_alerts
    counts = ledger_counts(first.engine)
    assert counts.links["linked"] == len(actions)
    assert counts.links["control"] == 0

    # the events the engine saw, replayed without the campaign's hourly ticks
    engine = Engine(HALF, partitions=2)
    alerts = [a for e in first.events for a in engine.feed(decode_event(json.dumps(e).encode()))]
    last = int(decode_event(json.dumps(first.events[-1]).encode()).ts)
    alerts += engine.advance_all(last)
    close_windows(engine, last)
    assert ledger_counts(engine) == counts
    assert sorted(a.alert_id for a in alerts) == sorted(a.alert_id for a in first.alerts)
