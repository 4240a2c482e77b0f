"""The worker on a real broker: same alerts as replay, dead letters, metrics, simulator."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_worker_equals_replay(stack, events_file: Path, kit) -> None:
    """The file on ``customer-events`` with 3 partitions gives replay's alerts (event clock)."""
    expected = kit.replay_alerts(events_file, partitions=3)
    assert len(expected) > 50
    stack.create_topics()
    stack.start_worker("--clock", "event")
    stack.produce(events_file.read_bytes().splitlines())
    got = stack.alerts(len(expected), timeout=90)
    assert len(got) == len(expected)
    assert kit.comparable(got) == kit.comparable(expected)
    assert all(a["emitted_at"] != a["as_of"] for a in got)


POISON = [
    (b"not json at all", "not_json"),
    (b'{"event_type":"order","customer_id":"c1"}', "missing_field"),
    (b"[1, 2, 3]", "not_object"),
    (
        b'{"event_id":"x","event_type":"fax","customer_id":"c1","ts":"2024-01-01T00:00:00Z"}',
        "unknown_event_type",
    ),
    (
        b'{"event_id":"x","event_type":"visit","customer_id":"c1","ts":"1970-01-01T00:00:00Z"}',
        "ts_out_of_range",
    ),
]


def test_dead_letters_and_metrics(stack, events_file: Path, kit) -> None:
    """Poison records land in the DLQ with reason and origin; good ones flow; /metrics counts."""
    port = kit.free_port()
    good = events_file.read_bytes().splitlines()[:1500]
    records = list(good)
    for i, (raw, _) in enumerate(POISON):
        records.insert(100 + i * 200, raw)
    records.append(good[-1])  # a redelivered event: dropped as a duplicate
    stack.create_topics()
    stack.start_worker("--clock", "event", "--metrics-port", str(port))
    stack.produce(records)

    dead = stack.collect("dlq", lambda got: len(got) >= len(POISON), timeout=90)
    reasons = sorted(h["churnwatch.reason"].decode() for _, _, h, _ in dead)
    assert reasons == sorted(r for _, r in POISON)
    for _, value, headers, _ in dead:
        assert headers["churnwatch.topic"].decode() == stack.settings.topic("events")
        assert int(headers["churnwatch.offset"]) >= 0
        assert headers["churnwatch.detail"]
        assert value in {raw for raw, _ in POISON}

    def processed() -> bool:
        text = kit.scrape(port)
        done = kit.metric(text, "churnwatch_events_total", outcome="processed") >= len(good)
        return done and kit.metric(text, "churnwatch_customers_tracked") > 0  # 2 s gauge timer

    assert kit.wait_for(processed, timeout=60)
    text = kit.scrape(port)
    assert kit.metric(text, "churnwatch_events_total", outcome="processed") == len(good)
    assert kit.metric(text, "churnwatch_events_total", outcome="duplicate") == 1
    assert kit.metric(text, "churnwatch_events_total", outcome="rejected") == len(POISON)
    assert kit.metric(text, "churnwatch_dlq_total", reason="not_json") == 1
    assert kit.metric(text, "churnwatch_alerts_total") > 0
    assert kit.metric(text, "churnwatch_event_processing_seconds_count") == len(good) + 1
    assert kit.metric(text, "churnwatch_customers_tracked") > 0
    assert "churnwatch_model_quality" in text
    assert "churnwatch_consumer_lag" in text
    assert "customer_id" not in text


def test_simulator_to_alerts_wall_clock(stack, kit) -> None:
    """``churnwatch simulate --to kafka`` into a live (wall clock) worker gives alerts."""
    stack.create_topics()
    stack.start_worker("--clock", "wall")
    sim = stack.run("simulate", "--to", "kafka", "--customers", "60", "--days", "200")
    assert sim.returncode == 0, sim.stderr
    got = stack.alerts(1, timeout=90)
    assert got, "no alert arrived"
    alert = got[0]
    for field in (
        "alert_id",
        "customer_id",
        "kind",
        "risk_level",
        "risk_score",
        "reasons",
        "actions",
        "value_at_risk",
        "emitted_at",
        "as_of",
    ):
        assert field in alert
    assert alert["schema_version"] == 1


def test_worker_refuses_mismatched_partitions(stack) -> None:
    """Topics with 3 partitions and a worker told 2: it exits with a clear message."""
    stack.create_topics()
    proc = stack.run("worker", "--partitions", "2", "--no-create-topics", timeout=60)
    assert proc.returncode != 0
    assert "not co-partitioned" in proc.stderr + proc.stdout


def test_topics_create(stack) -> None:
    out = stack.run("topics", "create", "--partitions", "3")
    assert out.returncode == 0, out.stderr
    assert "created" in out.stderr
    again = stack.run("topics", "create", "--partitions", "3")
    assert "created" not in again.stderr
    assert json.dumps(stack.settings.topic("events"))[1:-1] in again.stderr


def test_a_silent_regular_is_raised_by_the_live_clock(stack) -> None:
    """A regular whose last order was 2.3 usual gaps ago, among customers still buying: the
    live worker's clock tick, not an event, opens the case at medium or above, with the
    reason quoting the customer's own cadence."""
    rng = random.Random(3)
    now_ms = int(time.time() * 1000)
    day = 86_400_000
    records: list[tuple[int, bytes]] = []

    def order(cid: str, ts: int, i: int) -> None:
        event = {
            "event_id": f"{cid}-{i}",
            "event_type": "order",
            "customer_id": cid,
            "ts": ts,
            "order_id": f"{cid}-o{i}",
            "amount": round(rng.uniform(20, 80), 2),
        }
        records.append((ts, json.dumps(event).encode()))

    last = now_ms - int(2.3 * 30 * day)
    for i in range(12):  # monthly for a year, then silence
        order("regular", last - (11 - i) * int(30 * day * rng.uniform(0.94, 1.06)), i)
    for k in range(20):  # others who keep buying up to a few days ago
        gap = rng.choice([7, 14, 30])
        t, i = now_ms - 400 * day, 0
        while t < now_ms - 3 * day:
            order(f"p{k}", t, i)
            t, i = t + int(gap * day * rng.uniform(0.7, 1.3)), i + 1
    records.sort()
    stack.create_topics()
    stack.start_worker("--clock", "wall")
    stack.produce([r for _, r in records])
    got = stack.collect(
        "alerts",
        lambda recs: any(json.loads(r[1])["customer_id"] == "regular" for r in recs),
        timeout=90,
    )
    mine = [a for a in (json.loads(r[1]) for r in got) if a["customer_id"] == "regular"]
    assert mine, "the silent regular was never warned"
    alert = mine[0]
    assert alert["kind"] == "opened" and alert["risk_level"] in ("medium", "high", "critical")
    assert alert["trigger"] == "sweep", "raised by the clock, not by an event"
    assert alert["reasons"][0]["code"] == "order_overdue"
    usual = re.search(r"usually every (\d+) days", alert["reasons"][0]["message"])
    assert usual and 24 <= int(usual[1]) <= 34, alert["reasons"][0]["message"]
    assert alert["expected_back"] < alert["as_of"] < alert["act_by"]  # RFC 3339 sorts
