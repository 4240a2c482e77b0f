"""State expiry and population drift on a real broker: tombstones, expired alerts, metrics."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from detectors import partition_for
from streams.feed import read_topic
from streams.topics import STATE_TABLE

pytestmark = pytest.mark.integration

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01
SHORT = {"horizon_days": 10, "expire_after_days": 20, "risk_target": "lapse"}
"""Silence opens an alert (``lapse``), so the expiry closes it with an ``expired`` alert."""


def order(cid: str, ts: int, i: int, amount: float = 40.0) -> bytes:
    return json.dumps(
        {
            "event_id": f"{cid}-{i}",
            "event_type": "order",
            "customer_id": cid,
            "ts": ts,
            "order_id": f"{cid}-o{i}",
            "amount": amount,
        }
    ).encode()


def same_partition(cid: str, n: int, partitions: int = 3) -> list[str]:
    want = partition_for(cid, partitions)
    found, i = [], 0
    while len(found) < n:
        other = f"later{i}"
        if partition_for(other, partitions) == want:
            found.append(other)
        i += 1
    return found


def changelog(stack, timeout: float = 20) -> list[tuple[bytes | None, bytes | None]]:
    topic = stack.settings.changelog(STATE_TABLE)

    async def run() -> list[tuple[bytes | None, bytes | None]]:
        return [(k, v) async for k, v, _, _ in read_topic(stack.settings, topic, idle_timeout=3)]

    return asyncio.run(asyncio.wait_for(run(), timeout))


def test_a_silent_customer_expires_with_a_tombstone_and_comes_back(
    stack, tmp_path: Path, kit
) -> None:
    gone = "gone"
    records = [order(gone, T0 + i * 3 * DAY, i) for i in range(6)]
    last = T0 + 15 * DAY
    later = same_partition(gone, 5)
    records += [order(c, last + (25 + k) * DAY, 0) for k, c in enumerate(later)]
    records.append(order(gone, last + 40 * DAY, 99))  # back: starts again from the prior
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    expected = kit.replay_alerts(path, partitions=3, engine=SHORT)
    assert any(a["kind"] == "expired" and a["customer_id"] == gone for a in expected)

    port = kit.free_port()
    env = {f"CHURNWATCH_ENGINE__{k.upper()}": str(v) for k, v in SHORT.items()}
    stack.create_topics()
    stack.start_worker("--clock", "event", "--metrics-port", str(port), **env)
    # the return comes after the expiry is checkpointed, so the tombstone is not collapsed
    # with the new state inside one batch
    stack.produce(records[:-1])
    expired = [a for a in expected if a["kind"] == "expired"]
    stack.collect("alerts", lambda got: any(b'"expired"' in r[1] for r in got), timeout=60)
    stack.produce(records[-1:])
    got = stack.alerts(len(expected), timeout=90)
    assert kit.comparable(got) == kit.comparable(expected)
    assert expired

    assert kit.wait_for(
        lambda: kit.metric(kit.scrape(port), "churnwatch_customers_expired_total") >= 1, 30
    )
    values = [v for k, v in changelog(stack) if k == gone.encode()]
    assert None in values, "no tombstone for the expired customer"
    assert values[-1] is not None, "the returning customer has state again"


def test_a_price_shift_is_detected_as_drift(stack, kit) -> None:
    rng = random.Random(3)
    records = []
    for i in range(4000):
        cid = f"c{rng.randrange(400)}"
        amount = rng.uniform(20, 40) if i < 2000 else rng.uniform(200, 400)
        records.append(order(cid, T0 + i * 3_600_000, i, round(amount, 2)))
    port = kit.free_port()
    stack.create_topics()
    stack.start_worker("--clock", "event", "--metrics-port", str(port))
    stack.produce(records)

    def detected() -> bool:
        text = kit.scrape(port)
        done = kit.metric(text, "churnwatch_events_total")
        drift = kit.metric(text, "churnwatch_drift_detected_total", signal="order_value")
        return done >= len(records) and drift >= 1

    assert kit.wait_for(detected, 90), kit.scrape(port)[-3000:]
    text = kit.scrape(port)
    assert kit.metric(text, "churnwatch_drift_detected_total", signal="label_rate") == 0
