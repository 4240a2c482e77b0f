"""What the worker does with a batch of records: decode, route to the partition's shard,
send, checkpoint.

No Faust here: the agent hands over batches of :class:`Record`, the app wires
the table's local store and a :class:`Sink` (alerts, dead letters, changelog).
One engine :class:`~detectors.Shard` per partition, rebuilt from the newest
checkpoint when the partition is assigned (see :mod:`streams.tables`).

A batch ends with :meth:`Pipeline.seal`: its alerts and dead letters are sent
and acknowledged, then each touched partition's checkpoint and changed states
go to the changelog and are acknowledged; only then does the agent ack the
input records (Faust commits acked offsets). A crash anywhere re-runs the
batch from the last checkpoint, which gives the same alerts with the same ids.

Dead-letter envelope (contract): the DLQ message keeps the original key and
value bytes; headers ``churnwatch.reason`` (a :data:`detectors.REASONS` code,
``wrong_partition``, ``bad_tick`` or ``engine_error``), ``churnwatch.detail``
(a sentence), ``churnwatch.topic``, ``churnwatch.partition``,
``churnwatch.offset``, ``churnwatch.timestamp`` (epoch ms) - all UTF-8.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from detectors import (
    LEVELS,
    Alert,
    DecodeError,
    EngineConfig,
    Playbook,
    Shard,
    decode_event,
    encode_alert,
    partition_for,
)
from detectors.alerts import rfc3339
from detectors.model import ShardModel
from streams.metrics import Metrics
from streams.tables import (
    CHECKPOINT_VERSION,
    Checkpoint,
    LocalStore,
    PartitionStore,
    checkpoint_key,
    decode_checkpoint,
    encode_checkpoint,
    fence_key,
)

log = logging.getLogger(__name__)

DEFAULT_TYPES = {"events": None, "orders": "order", "visits": "visit", "tickets": "ticket"}


class Sink(Protocol):
    """Where records go. Each call enqueues one record (records to one partition keep
    their order) and returns an awaitable that resolves on the broker's ack."""

    async def alert(self, key: bytes, value: bytes) -> Awaitable[Any]: ...

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: dict[str, bytes]
    ) -> Awaitable[Any]: ...

    async def changelog(self, partition: int, key: str, value: bytes) -> Awaitable[Any]:
        """The awaitable resolves to the record's metadata (with ``.offset``)."""
        ...


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    partitions: int
    clock: str  # "wall" | "event"
    input_types: dict[str, str | None]
    """Input topic name -> default event type (``None``: the combined topic)."""
    ticks_topic: str
    checkpoint_bytes: int = 512 * 1024
    """Seal early once the changed states reach this size: a checkpoint is one Kafka
    message, which brokers cap at 1 MB by default."""
    sweep_step: int = 1000
    """Customers re-evaluated between checks of the checkpoint size during a sweep."""


@dataclass
class Partition:
    """A shard, its store and what the next checkpoint must carry."""

    shard: Shard
    store: PartitionStore
    offsets: dict[str, int]
    alerts: list[tuple[Alert, int | None]] = field(default_factory=list)
    dead: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = field(default_factory=list)
    changed: bool = False
    reported: dict[str, int] = field(default_factory=dict)

    def applied(self, topic: str) -> int:
        return self.offsets.get(topic, -1)


class Pipeline:
    def __init__(
        self,
        cfg: PipelineConfig,
        engine_cfg: EngineConfig,
        playbook: Playbook,
        local: LocalStore,
        sink: Sink,
        metrics: Metrics,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.cfg = cfg
        self.engine_cfg = engine_cfg
        self.playbook = playbook
        self.local = local
        self.sink = sink
        self.m = metrics
        self.wall_ms = wall_ms
        self.parts: dict[int, Partition] = {}
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.processed = 0
        self._events: dict[tuple[str, str], Any] = {}

    # partitions ------------------------------------------------------------------

    def partition(self, p: int) -> Partition:
        """The partition's shard, restored from its newest checkpoint on first use."""
        part = self.parts.get(p)
        if part is not None:
            return part
        store = PartitionStore(self.local, p, self.cfg.partitions)
        raw = self.local.get(p, checkpoint_key(p))
        if raw:
            ckpt = decode_checkpoint(raw)
            model = ShardModel.from_bytes(ckpt.model, self.engine_cfg)
            # the checkpoint's states may not have reached their own keys yet: they are
            # re-written with the next checkpoint
            store.restore(ckpt.states)
            offsets, clock = dict(ckpt.offsets), ckpt.clock
        else:
            model, offsets, clock = ShardModel(self.engine_cfg), {}, 0
        shard = Shard(self.engine_cfg, self.playbook, store=store, model=model)
        shard.clock = clock
        part = self.parts[p] = Partition(shard, store, offsets, changed=bool(store.dirty))
        log.info(
            "partition %d: %d customers, model labels %d, offsets %s",
            p,
            shard.known,
            model.labels,
            offsets,
        )
        return part

    async def revoke(self, partitions: set[int]) -> None:
        """Drop the shards of revoked partitions, ending each changelog with a fence record.

        Faust waits for in-flight batches (so every change is checkpointed) before it
        revokes. The fence makes the last checkpoint readable by a broker that reports a
        partition's end as its last batch's base offset + 1.
        """
        fences = []
        for p in partitions:
            if self.parts.pop(p, None) is not None:
                fences.append(await self.sink.changelog(p, fence_key(p), b"1"))
            self.m.forget_partition(p)
        if fences:
            await asyncio.gather(*fences)

    # records -----------------------------------------------------------------------

    async def handle_batch(self, records: list[Record]) -> None:
        """Process records in order, then seal: nothing returns before it is durable."""
        for rec in records:
            await self.handle(rec)
        await self.seal()

    async def handle(self, rec: Record) -> None:
        """Process one record into its partition's pending checkpoint; never raises for a
        bad record (it is dead-lettered)."""
        started = time.perf_counter()
        self.last_offsets[(rec.topic, rec.partition)] = rec.offset
        part = self.partition(rec.partition)
        if rec.offset <= part.applied(rec.topic):
            self._count("record", "redelivered")
            return
        if rec.topic == self.cfg.ticks_topic:
            await self._tick(part, rec)
            return
        default_type = self.cfg.input_types.get(rec.topic)
        try:
            event = decode_event(rec.value or b"", default_type)
        except DecodeError as exc:
            self._dead_letter(part, rec, exc.reason, exc.detail, default_type or "unknown")
            return
        etype = type(event).__name__.lower()
        owner = partition_for(event.customer_id, self.cfg.partitions)
        if owner != rec.partition:
            detail = (
                f"customer {event.customer_id!r} belongs to partition {owner} "
                "(key the record by customer id with the default partitioner)"
            )
            self._dead_letter(part, rec, "wrong_partition", detail, etype)
            return
        shard = part.shard
        if self.cfg.clock == "event":
            assert isinstance(event.ts, int)  # noqa: S101 - decode_event normalises ts
            await self._sweep(part, event.ts)
        dups = shard.counts["duplicates"]
        try:
            alerts = shard.process(event)
        except Exception as exc:  # noqa: BLE001 - never lose a record silently
            log.exception("engine failed on %s[%d]@%d", rec.topic, rec.partition, rec.offset)
            self._dead_letter(part, rec, "engine_error", f"{type(exc).__name__}: {exc}", etype)
            return
        part.alerts.extend((a, rec.timestamp_ms) for a in alerts)
        self._applied(part, rec)
        self.processed += 1
        self._count(etype, "duplicate" if shard.counts["duplicates"] > dups else "processed")
        self.m.processing.observe(time.perf_counter() - started)
        if part.store.dirty_bytes >= self.cfg.checkpoint_bytes:
            await self.seal()

    def _applied(self, part: Partition, rec: Record) -> None:
        part.offsets[rec.topic] = rec.offset
        part.changed = True

    def _count(self, etype: str, outcome: str) -> None:
        child = self._events.get((etype, outcome))
        if child is None:
            child = self._events[(etype, outcome)] = self.m.events.labels(etype, outcome)
        child.inc()

    async def _tick(self, part: Partition, rec: Record) -> None:
        try:
            now = int(rec.value or b"0")
        except ValueError:
            self._dead_letter(part, rec, "bad_tick", "tick value is not epoch ms", "tick")
            return
        try:
            await self._sweep(part, now)
        except Exception as exc:  # noqa: BLE001
            log.exception("sweep failed on partition %d", rec.partition)
            self._dead_letter(part, rec, "engine_error", f"{type(exc).__name__}: {exc}", "tick")
            return
        self._applied(part, rec)

    async def _sweep(self, part: Partition, now: int) -> None:
        """Advance the shard's clock in steps, sealing when the checkpoint grows large."""
        shard = part.shard
        if now <= shard.clock and not shard.behind:
            return
        started = time.perf_counter()
        swept = shard.counts["swept"]
        while True:
            alerts = shard.advance(now, limit=self.cfg.sweep_step)
            part.alerts.extend((a, None) for a in alerts)
            if not shard.behind:
                break
            if part.store.dirty_bytes >= self.cfg.checkpoint_bytes:
                await self.seal()
        n = shard.counts["swept"] - swept
        if n:
            part.changed = True
            self.m.swept.inc(n)
            self.m.sweep.observe(time.perf_counter() - started)

    def _dead_letter(
        self, part: Partition, rec: Record, reason: str, detail: str, etype: str
    ) -> None:
        headers = {
            "churnwatch.reason": reason.encode(),
            "churnwatch.detail": detail[:1000].encode(),
            "churnwatch.topic": rec.topic.encode(),
            "churnwatch.partition": str(rec.partition).encode(),
            "churnwatch.offset": str(rec.offset).encode(),
            "churnwatch.timestamp": str(rec.timestamp_ms or 0).encode(),
        }
        part.dead.append((rec.key, rec.value, headers))
        self._applied(part, rec)
        self.m.dlq.labels(reason).inc()
        self._count(etype, "error" if reason == "engine_error" else "rejected")

    # checkpoints -------------------------------------------------------------------

    async def seal(self) -> None:
        """Send the pending alerts and dead letters, then checkpoint every changed partition."""
        parts = [(p, part) for p, part in self.parts.items() if part.changed]
        if not parts:
            return
        now = self.wall_ms()
        stamp = rfc3339(now)
        sends = []
        stamps = []
        for _, part in parts:
            for alert, rec_ts in part.alerts:
                alert.emitted_at = stamp
                key, value = alert.customer_id.encode(), encode_alert(alert)
                sends.append(await self.sink.alert(key, value))
                category = alert.reasons[0].category if alert.reasons else "none"
                self.m.alerts.labels(alert.kind, alert.risk_level, category).inc()
                if rec_ts:
                    stamps.append(rec_ts)
            for dead in part.dead:
                sends.append(await self.sink.dead_letter(*dead))
            part.alerts.clear()
            part.dead.clear()
        if sends:
            await asyncio.gather(*sends)
        for rec_ts in stamps:
            self.m.alert_latency.observe(max(now - rec_ts, 0) / 1000)
        written = []
        for p, part in parts:
            states = part.store.take_dirty()
            ckpt = Checkpoint(
                CHECKPOINT_VERSION,
                sorted(part.offsets.items()),
                part.shard.clock,
                part.shard.model.to_bytes(),
                states,
            )
            head = (checkpoint_key(p), encode_checkpoint(ckpt))
            futures = [await self.sink.changelog(p, *head)]
            for key, value in states:
                futures.append(await self.sink.changelog(p, key, value))
            written.append((p, part, [head, *states], futures))
            part.changed = False
        for p, _part, states, futures in written:
            meta = await asyncio.gather(*futures)
            # the local store is now as new as the checkpoint's offset; recording no more
            # than that re-reads this checkpoint's states on restart, which is harmless, and
            # stays below a broker's end offset even where it reports the last batch's base
            offset = getattr(meta[0], "offset", -1)
            self.local.put_many(p, states, offset if offset >= 0 else None)
            self.m.checkpoints.inc()

    # gauges --------------------------------------------------------------------------

    def refresh_metrics(self) -> None:
        """Gauges and counters derived from the shards (called by a timer)."""
        by_level = [0] * len(LEVELS)
        var = 0.0
        for p, part in self.parts.items():
            for level, v in part.shard.open_alerts.values():
                by_level[level] += 1
                var += v
            counts = part.shard.counts
            self.m.customers.labels(str(p)).set(part.shard.tracked)
            first_due = part.shard.due.next_due()
            now = self.wall_ms() if self.cfg.clock == "wall" else part.shard.clock
            behind = now - first_due if first_due else 0
            self.m.sweep_backlog.labels(str(p)).set(max(behind, 0) / 1000)
            for label in ("0", "1"):
                key = f"labels_{label}"
                delta = counts[key] - part.reported.get(key, 0)
                if delta > 0:
                    self.m.labels.labels(label).inc(delta)
                    part.reported[key] = counts[key]
            q = part.shard.model.metrics()
            for name, metric in (
                ("auc", "roc_auc"),
                ("log_loss", "log_loss"),
                ("brier", "brier"),
                ("weight", "model_weight"),
            ):
                self.m.model.labels(str(p), name).set(float(q[metric]))
            self.m.model_labels.labels(str(p)).set(q["labels"])
        for i, level in enumerate(LEVELS[1:], start=1):
            self.m.at_risk.labels(level).set(by_level[i])
        self.m.value_at_risk.set(round(var, 2))
