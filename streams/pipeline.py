"""What the worker does with one record: decode, route to the partition's shard, send.

No Faust here: the agent hands over a :class:`Record`, the app wires the
tables and the two sinks (alerts and dead letters). One engine
:class:`~detectors.Shard` per partition, built lazily from the tables after
they are recovered, dropped on revocation.

Dead-letter envelope (contract): the DLQ message keeps the original key and
value bytes; headers ``churnwatch.reason`` (a :data:`detectors.REASONS` code,
``wrong_partition`` or ``engine_error``), ``churnwatch.detail`` (a sentence),
``churnwatch.topic``, ``churnwatch.partition``, ``churnwatch.offset``,
``churnwatch.timestamp`` (epoch ms) - all UTF-8.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass

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
from streams.metrics import Metrics
from streams.tables import TableStore, load_model, model_key

log = logging.getLogger(__name__)

AlertSink = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
"""Sends (key, value) alerts and returns once the broker acknowledged them."""
DlqSink = Callable[[bytes | None, bytes | None, dict[str, bytes]], Awaitable[None]]
ModelWriter = Callable[[int, str, bytes, bool], None]
"""(partition, key, checkpoint, inside_stream) -> write to the model table."""

DEFAULT_TYPES = {"events": None, "orders": "order", "visits": "visit", "tickets": "ticket"}


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
    checkpoint_labels: int = 500
    checkpoint_seconds: float = 5.0


class Partition:
    """A shard with its checkpoint progress."""

    def __init__(self, shard: Shard, store: TableStore) -> None:
        self.shard = shard
        self.store = store
        self.ckpt_labels = self.labels
        self.ckpt_time = time.monotonic()
        self.ckpt_events = 0
        self.reported: dict[str, int] = {}

    @property
    def labels(self) -> int:
        return self.shard.counts["labels_0"] + self.shard.counts["labels_1"]


class Pipeline:
    def __init__(
        self,
        cfg: PipelineConfig,
        engine_cfg: EngineConfig,
        playbook: Playbook,
        state_table: MutableMapping[str, bytes],
        model_table: MutableMapping[str, bytes],
        send_alerts: AlertSink,
        send_dlq: DlqSink,
        write_model: ModelWriter,
        metrics: Metrics,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.cfg = cfg
        self.engine_cfg = engine_cfg
        self.playbook = playbook
        self.state_table = state_table
        self.model_table = model_table
        self.send_alerts = send_alerts
        self.send_dlq = send_dlq
        self.write_model = write_model
        self.m = metrics
        self.wall_ms = wall_ms
        self.parts: dict[int, Partition] = {}
        self.sources = {topic: i for i, topic in enumerate(sorted(cfg.input_types))}
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.processed = 0

    # partitions ------------------------------------------------------------------

    def partition(self, p: int) -> Partition:
        part = self.parts.get(p)
        if part is None:
            store = TableStore(self.state_table, p, self.cfg.partitions, len(self.sources))
            model = load_model(self.model_table, p, self.engine_cfg)
            shard = Shard(self.engine_cfg, self.playbook, store=store, model=model)
            part = self.parts[p] = Partition(shard, store)
            log.info("partition %d: %d customers, model labels %d", p, shard.known, model.labels)
        return part

    def revoke(self, partitions: set[int]) -> None:
        """Checkpoint and drop the shards of revoked partitions (outside the stream)."""
        for p in partitions:
            part = self.parts.pop(p, None)
            if part is not None:
                self.checkpoint(p, part, in_stream=False)

    def checkpoint(self, p: int, part: Partition, in_stream: bool = True) -> None:
        self.write_model(p, model_key(p), part.shard.model.to_bytes(), in_stream)
        part.ckpt_labels = part.labels
        part.ckpt_time = time.monotonic()
        part.ckpt_events = 0
        self.m.checkpoints.inc()

    def _maybe_checkpoint(self, p: int, part: Partition) -> None:
        part.ckpt_events += 1
        if part.labels - part.ckpt_labels >= self.cfg.checkpoint_labels or (
            time.monotonic() - part.ckpt_time >= self.cfg.checkpoint_seconds
        ):
            self.checkpoint(p, part)

    # records -----------------------------------------------------------------------

    async def handle(self, rec: Record) -> None:
        """Process one record; never raises for a bad record (it is dead-lettered)."""
        started = time.perf_counter()
        self.last_offsets[(rec.topic, rec.partition)] = rec.offset
        if rec.topic == self.cfg.ticks_topic:
            await self._tick(rec)
            return
        default_type = self.cfg.input_types.get(rec.topic)
        try:
            event = decode_event(rec.value or b"", default_type)
        except DecodeError as exc:
            await self._dead_letter(rec, exc.reason, exc.detail, default_type or "unknown")
            return
        etype = type(event).__name__.lower()
        if partition_for(event.customer_id, self.cfg.partitions) != rec.partition:
            detail = (
                f"customer {event.customer_id!r} belongs to partition "
                f"{partition_for(event.customer_id, self.cfg.partitions)} (key the record "
                "by customer id with the default partitioner)"
            )
            await self._dead_letter(rec, "wrong_partition", detail, etype)
            return
        part = self.partition(rec.partition)
        shard = part.shard
        dups = shard.counts["duplicates"]
        source = self.sources[rec.topic]
        try:
            if self.cfg.clock == "event":
                assert isinstance(event.ts, int)  # noqa: S101 - decode_event normalises ts
                await self._sweep(part, event.ts, rec)
            if part.store.applied(event.customer_id, source) >= rec.offset:
                self.m.events.labels(etype, "redelivered").inc()
                part.store.discard()
                return
            alerts = shard.process(event)
            part.store.mark(event.customer_id, source, rec.offset)
        except Exception as exc:  # noqa: BLE001 - never lose a record silently
            part.store.discard()
            log.exception("engine failed on %s[%d]@%d", rec.topic, rec.partition, rec.offset)
            await self._dead_letter(rec, "engine_error", f"{type(exc).__name__}: {exc}", etype)
            return
        await self._emit(part, alerts, rec)
        part.store.flush()
        self._maybe_checkpoint(rec.partition, part)
        self.processed += 1
        outcome = "duplicate" if shard.counts["duplicates"] > dups else "processed"
        self.m.events.labels(etype, outcome).inc()
        self.m.processing.observe(time.perf_counter() - started)

    async def _tick(self, rec: Record) -> None:
        try:
            now = int(rec.value or b"0")
        except ValueError:
            await self._dead_letter(rec, "bad_tick", "tick value is not epoch ms", "tick")
            return
        part = self.partition(rec.partition)
        try:
            await self._sweep(part, now, rec)
        except Exception as exc:  # noqa: BLE001
            part.store.discard()
            log.exception("sweep failed on partition %d", rec.partition)
            await self._dead_letter(rec, "engine_error", f"{type(exc).__name__}: {exc}", "tick")
            return
        self._maybe_checkpoint(rec.partition, part)

    async def _sweep(self, part: Partition, now: int, rec: Record) -> None:
        """Advance the shard's clock; alerts out and states written before returning."""
        started = time.perf_counter()
        swept = part.shard.counts["swept"]
        alerts = part.shard.advance(now)
        n = part.shard.counts["swept"] - swept
        if n:
            self.m.swept.inc(n)
            self.m.sweep.observe(time.perf_counter() - started)
        if alerts:
            await self._emit(part, alerts, rec)
        part.store.flush()

    async def _emit(self, part: Partition, alerts: list[Alert], rec: Record) -> None:
        if not alerts:
            return
        now = self.wall_ms()
        stamp = rfc3339(now)
        batch = []
        for alert in alerts:
            alert.emitted_at = stamp
            batch.append((alert.customer_id.encode(), encode_alert(alert)))
            category = alert.reasons[0].category if alert.reasons else "none"
            self.m.alerts.labels(alert.kind, alert.risk_level, category).inc()
        await self.send_alerts(batch)
        if rec.timestamp_ms:
            self.m.alert_latency.observe(max(now - rec.timestamp_ms, 0) / 1000)

    async def _dead_letter(self, rec: Record, reason: str, detail: str, etype: str) -> None:
        headers = {
            "churnwatch.reason": reason.encode(),
            "churnwatch.detail": detail[:1000].encode(),
            "churnwatch.topic": rec.topic.encode(),
            "churnwatch.partition": str(rec.partition).encode(),
            "churnwatch.offset": str(rec.offset).encode(),
            "churnwatch.timestamp": str(rec.timestamp_ms or 0).encode(),
        }
        await self.send_dlq(rec.key, rec.value, headers)
        self.m.dlq.labels(reason).inc()
        outcome = "error" if reason == "engine_error" else "rejected"
        self.m.events.labels(etype, outcome).inc()

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
