"""The local store never goes back to older customer states than the changelog holds, and
a restored partition that does not match its checkpoint stops the worker.

Reduced from ``make soak`` seed 1 (4 min, RocksDB): a worker kept a partition across a
rebalance and restored some customers as they were at its previous recovery. Faust's table
recovery holds over the changelog records that arrive after it has declared itself done
(the rest of the broker's last batch: the embedded broker reports the end of a partition
as its last batch's base offset + 1) and writes them into the local store at the start of
its next recovery, over the states the worker wrote in between. The first test plays that
write against a real faust table on RocksDB; the second shows what a restore finds when a
store went wrong anyway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from faust.types import Message

from detectors import EngineConfig, Playbook, partition_for
from detectors.events import Visit
from streams.app import create_app
from streams.metrics import Metrics
from streams.pipeline import Pipeline, PipelineConfig, Record
from streams.settings import Settings
from streams.tables import (
    LocalStore,
    StateInconsistent,
    checkpoint_key,
    decode_checkpoint,
)

pytestmark = pytest.mark.unit

TOPIC = "customer-events"


def changelog_event(topic: str, partition: int, offset: int, key: str, value: bytes) -> Any:
    message = Message(topic, partition, offset, 0.0, 0, [], key.encode(), value, None)
    return SimpleNamespace(message=message, key=key, value=value)


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_a_held_over_changelog_record_does_not_overwrite_a_newer_state(
    tmp_path: Path, store: str
) -> None:
    metrics = Metrics()
    app = create_app(Settings(store=store, data_dir=tmp_path, partitions=3), metrics)
    local: LocalStore = app.pipeline.local  # type: ignore[attr-defined]
    table = local.table
    topic = table.changelog_topic.get_topic_name()
    # the recovery applied the changelog up to offset 7, then the worker checkpointed
    table.apply_changelog_batch([changelog_event(topic, 1, 7, "c1", b"v1")])
    local.put_many(1, [(checkpoint_key(1), b"ckpt"), ("c1", b"v2")], 8)
    # the next recovery flushes what it held over from the first one, then reads on
    table.apply_changelog_batch(
        [changelog_event(topic, 1, 6, "c1", b"v0"), changelog_event(topic, 1, 9, "c2", b"w")]
    )
    assert local.get(1, "c1") == b"v2"
    assert local.get(1, "c2") == b"w"
    stale = metrics.registry.get_sample_value(
        "churnwatch_state_inconsistencies_total", {"check": "stale_changelog"}
    )
    assert stale == 1


class Sink:
    def __init__(self) -> None:
        self.log: list[tuple[int, str, bytes | None]] = []

    def _done(self, value: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(value)
        return fut

    async def alert(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        return self._done(None)

    async def dead_letter(self, key: Any, value: Any, headers: Any) -> asyncio.Future[Any]:
        return self._done(None)

    async def changelog(self, partition: int, key: str, value: bytes | None) -> Any:
        self.log.append((partition, key, value))
        return self._done(SimpleNamespace(offset=len(self.log) - 1))


def visits(customers: list[str], start: int, partitions: int) -> list[Record]:
    out, offsets = [], dict.fromkeys(range(partitions), start)
    for i, cid in enumerate(customers):
        p = partition_for(cid, partitions)
        ts = 1_700_000_000_000 + (start + i) * 3_600_000
        event = Visit(event_id=f"{cid}-{start}-{i}", customer_id=cid, ts=ts)
        out.append(Record(TOPIC, p, offsets[p], cid.encode(), msgspec.json.encode(event)))
        offsets[p] += 1
    return out


async def test_a_restored_partition_that_does_not_match_its_checkpoint_stops_the_worker() -> None:
    data: dict[str, bytes] = {}
    local = LocalStore(SimpleNamespace(data=SimpleNamespace(data=data)))
    metrics = Metrics()
    cfg = PipelineConfig(partitions=1, clock="event", input_types={TOPIC: None}, ticks_topic="t")
    pipeline = Pipeline(cfg, EngineConfig(), Playbook(), local, Sink(), metrics, lambda: 0)
    customers = [f"c{i}" for i in range(5)]
    await pipeline.handle_batch(visits(customers, 0, 1))
    ckpt = decode_checkpoint(data[checkpoint_key(0)])
    assert ckpt.digest is not None
    # a clean restore (the partition comes back to this worker) passes the check
    await pipeline.revoke({0})
    await pipeline.handle_batch(visits(customers, 5, 1))
    await pipeline.revoke({0})
    # c0 changes, then c1 (the newest checkpoint carries only c1), then c0 goes back to
    # its older state in the local store, as the held-over changelog records did
    old = data["c0"]
    await pipeline.handle_batch(visits(["c0"], 10, 1))
    await pipeline.handle_batch(visits(["c1"], 11, 1))
    data["c0"] = old
    await pipeline.revoke({0})
    with pytest.raises(StateInconsistent):
        await pipeline.handle_batch(visits(["c2"], 12, 1))
    mismatch = metrics.registry.get_sample_value(
        "churnwatch_state_inconsistencies_total", {"check": "restore_mismatch"}
    )
    assert mismatch == 1
    assert not data, "the local copy is wiped, to be rebuilt from the changelog"
