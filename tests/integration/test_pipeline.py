"""The worker on a real broker: same alerts as replay, dead letters, metrics, simulator."""

from __future__ import annotations

import json
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
