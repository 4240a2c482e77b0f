"""The worker's checkpoint protocol, without Kafka: a crash at any point of the changelog
recovers to exactly the states and alerts of an uninterrupted run.

The pipeline runs over an in-memory sink: alerts go to a list, changelog records to an
append-only log with offsets. A "crash" keeps only a prefix of that log (what the broker
had acknowledged), rebuilds the local store from it as Faust's recovery does (newest value
per key), and redelivers every input record from the start, as if no offset had been
committed. The recovered worker must end with the same customer states, model and alert
ids as the run that never crashed, and every alert sent twice must be identical apart
from ``emitted_at``.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from cw_strategies import histories
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import EngineConfig, Event, Playbook, partition_for
from detectors.profile import FEATURES
from streams.metrics import Metrics
from streams.pipeline import Pipeline, PipelineConfig, Record
from streams.tables import (
    DELETED,
    Checkpoint,
    LocalStore,
    checkpoint_key,
    decode_checkpoint,
    encode_checkpoint,
    is_customer_key,
)

pytestmark = pytest.mark.unit

PARTITIONS = 2
CHECKPOINT_BYTES = 1024
PROBES = [([0.0] * len(FEATURES), 0.0), ([0.5 * (i % 5) for i in range(len(FEATURES))], 1.5)]
TOPIC = "customer-events"


class MemorySink:
    """Alerts and changelog records kept in order; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.alerts: list[tuple[int, bytes]] = []
        """(changelog length when sent, alert): a crash keeps those sent before the cut."""
        self.log: list[tuple[int, str, bytes]] = []

    def _done(self, value: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(value)
        return fut

    async def alert(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        self.alerts.append((len(self.log), value))
        return self._done(None)

    async def dead_letter(self, key: Any, value: Any, headers: Any) -> asyncio.Future[Any]:
        return self._done(None)

    async def changelog(self, partition: int, key: str, value: bytes) -> asyncio.Future[Any]:
        self.log.append((partition, key, value))
        return self._done(SimpleNamespace(offset=len(self.log) - 1))


def memory_local(data: dict[str, bytes]) -> LocalStore:
    return LocalStore(SimpleNamespace(data=SimpleNamespace(data=data)))


def make_pipeline(data: dict[str, bytes], sink: MemorySink, cfg: EngineConfig) -> Pipeline:
    pcfg = PipelineConfig(
        partitions=PARTITIONS,
        clock="event",
        input_types={TOPIC: None},
        ticks_topic="ticks",
        checkpoint_bytes=CHECKPOINT_BYTES,  # small: checkpoints inside batches and sweeps
        sweep_step=3,
    )
    return Pipeline(pcfg, cfg, Playbook(), memory_local(data), sink, Metrics(), lambda: 0)


def records(events: list[Event]) -> list[Record]:
    """Events as Kafka records: each partition's records numbered from 0, in time order."""
    out, next_offset = [], [0] * PARTITIONS
    for event in sorted(events, key=lambda e: e.ts):
        p = partition_for(event.customer_id, PARTITIONS)
        value = msgspec.json.encode(event)
        out.append(Record(TOPIC, p, next_offset[p], event.customer_id.encode(), value))
        next_offset[p] += 1
    return out


async def run(pipeline: Pipeline, recs: list[Record], batch: int) -> None:
    for i in range(0, len(recs), batch):
        await pipeline.handle_batch(recs[i : i + batch])


def customers(data: dict[str, bytes], pipeline: Pipeline) -> dict[str, bytes]:
    """Every customer's state bytes: the local store overlaid with any unsealed change."""
    out = {k: v for k, v in data.items() if is_customer_key(k)}
    for part in pipeline.parts.values():
        for key, raw in part.store.dirty.items():
            if raw == DELETED:
                out.pop(key, None)
            else:
                out[key] = raw
    return out


def comparable(raw: bytes) -> str:
    alert = json.loads(raw)
    alert.pop("emitted_at", None)
    return json.dumps(alert, sort_keys=True)


@settings(max_examples=40, deadline=None)
@given(
    histories(customer_id="a", max_events=25),
    histories(customer_id="b", max_events=25),
    histories(customer_id="c", max_events=25),
    st.integers(1, 7),
    st.floats(0, 1),
    st.sampled_from([{}, {"horizon_days": 10, "expire_after_days": 20}]),
)
def test_a_crash_anywhere_recovers_to_the_uninterrupted_run(
    a: list[Event], b: list[Event], c: list[Event], batch: int, cut: float, short: dict[str, Any]
) -> None:
    """Also with a short horizon and state expiry, so that customers are deleted (tombstones)
    and come back."""
    # the engine's own de-duplication would hide a replay
    cfg = EngineConfig.from_mapping({"dedupe_window": 0, **short})
    recs = records(a + b + c)

    async def scenario() -> None:
        clean_data: dict[str, bytes] = {}
        clean_sink = MemorySink()
        clean = make_pipeline(clean_data, clean_sink, cfg)
        await run(clean, recs, batch)

        # crash: the broker kept a prefix of the changelog; the local store is rebuilt from it
        first_sink = MemorySink()
        await run(make_pipeline({}, first_sink, cfg), recs, batch)
        for _, key, value in first_sink.log:  # a checkpoint is one Kafka message: bounded
            if key.startswith("\x00checkpoint"):
                states = decode_checkpoint(value).states
                sizes = [len(k) + len(v) for k, v in states]
                # the budget, overshot by at most the one state that crossed it
                assert sum(sizes) <= CHECKPOINT_BYTES + max(sizes, default=0), sizes
        cut_at = int(cut * len(first_sink.log))
        kept = first_sink.log[:cut_at]
        recovered: dict[str, bytes] = {}
        for _, key, value in kept:  # newest value per key; a tombstone deletes
            if value is None:
                recovered.pop(key, None)
            else:
                recovered[key] = value
        second_sink = MemorySink()
        second = make_pipeline(recovered, second_sink, cfg)
        await run(second, recs, batch)  # every record redelivered

        assert customers(recovered, second) == customers(clean_data, clean)
        for p in range(PARTITIONS):
            got, want = second.partition(p), clean.partition(p)
            assert got.shard.model.labels == want.shard.model.labels
            for x, rule in PROBES:
                assert got.shard.model.score(x, rule) == want.shard.model.score(x, rule)
            assert got.offsets == want.offsets
        clean_alerts = {json.loads(x)["alert_id"]: comparable(x) for _, x in clean_sink.alerts}
        before_crash = [x for at, x in first_sink.alerts if at <= cut_at]
        sent = before_crash + [x for _, x in second_sink.alerts]
        seen: dict[str, str] = {}
        for raw in sent:
            alert_id = json.loads(raw)["alert_id"]
            assert seen.setdefault(alert_id, comparable(raw)) == comparable(raw), (
                "duplicate differs"
            )
        assert seen == clean_alerts

    asyncio.run(scenario())


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.text(max_size=8), st.integers(-1, 2**40)), max_size=5),
    st.integers(0, 2**50),
    st.binary(max_size=64),
    st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=64)), max_size=8),
)
def test_checkpoint_round_trips(
    offsets: list[tuple[str, int]], clock: int, model: bytes, states: list[tuple[str, bytes]]
) -> None:
    ckpt = Checkpoint(1, offsets, clock, model, states)
    data = encode_checkpoint(ckpt)
    assert decode_checkpoint(data) == ckpt
    assert encode_checkpoint(decode_checkpoint(data)) == data


def test_checkpoint_key_is_not_a_customer() -> None:
    assert not is_customer_key(checkpoint_key(3))
    assert is_customer_key("c-3")


def test_a_sweep_of_many_customers_is_split_into_bounded_checkpoints() -> None:
    """One record that brings many customers due seals as often as the budget requires."""
    day = 86_400_000
    t0 = 1_704_067_200_000
    raw = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "event_type": "order",
                "customer_id": f"c{i}",
                "ts": t0 + i,
                "order_id": f"o{i}",
                "amount": 30.0,
            }
        ).encode()
        for i in range(60)
    ]
    raw.append(
        raw[0].replace(b'"e0"', b'"late"').replace(str(t0).encode(), str(t0 + 400 * day).encode())
    )
    recs = [Record(TOPIC, 0, i, None, value) for i, value in enumerate(raw)]
    sink = MemorySink()
    pcfg = PipelineConfig(
        partitions=1,
        clock="event",
        input_types={TOPIC: None},
        ticks_topic="ticks",
        checkpoint_bytes=4096,
    )
    pipe = Pipeline(pcfg, EngineConfig(), Playbook(), memory_local({}), sink, Metrics(), lambda: 0)
    asyncio.run(pipe.handle_batch(recs))
    sizes = [
        [len(k) + len(v) for k, v in decode_checkpoint(value).states]
        for _, key, value in sink.log
        if key.startswith("\x00checkpoint")
    ]
    assert len(sizes) > 3, "the sweep of 60 customers needs several checkpoints"
    for s in sizes:
        assert sum(s) <= 4096 + max(s, default=0), s
