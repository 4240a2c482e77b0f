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
``churnwatch.offset``, ``churnwatch.timestamp`` (epoch ms) - all UTF-8. Logs carry
only this metadata, never a payload or a customer id.

Every input record is accounted for in its partition's *ledger* (processed,
duplicate, dead_lettered), which travels in the checkpoint with the offsets: it
counts each offset once however often the record was delivered, so after any
crash or rebalance ``sum(ledger) == records in the partition`` once the
partition is caught up. Records at or below the checkpoint's offsets
(redeliveries) are skipped and counted apart (``redelivered``) in
``churnwatch_records_total``.

The checkpoint's offsets also reveal a *skipped* record: input offsets are
dense, so a record beyond the last applied offset + 1 means the consumer never
delivered the ones between (faust 0.15.3 can drop fetched records when its
post-recovery seek races the fetcher, e.g. when a worker restarts under load).
The ``refetch`` callback then reads the missing records from the broker and they
are applied first, in order (``refetched`` in ``churnwatch_records_total``); a
hole the broker confirms (compaction, transaction markers) is stepped over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import Counter
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
from detectors.comeback import GROUP_LABELS, GROUPS, ComebackRate
from detectors.events import event_type
from detectors.labels import LABEL_COUNTS
from detectors.model import ShardModel
from streams.metrics import Metrics
from streams.tables import (
    CHECKPOINT_VERSION,
    Checkpoint,
    LocalStore,
    PartitionStore,
    StateInconsistent,
    checkpoint_key,
    decode_checkpoint,
    encode_checkpoint,
    fence_key,
)

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 2048
"""A customer's serialised state stays below this (a property test checks it)."""
LEDGER_OUTCOMES = ("processed", "duplicate", "dead_lettered")
DEFAULT_TYPES = {
    "events": None,
    "orders": "order",
    "visits": "visit",
    "tickets": "ticket",
    "actions": "action",
}


class Sink(Protocol):
    """Where records go. Each call enqueues one record (records to one partition keep
    their order) and returns an awaitable that resolves on the broker's ack."""

    async def alert(self, key: bytes, value: bytes) -> Awaitable[Any]: ...

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: dict[str, bytes]
    ) -> Awaitable[Any]: ...

    async def changelog(self, partition: int, key: str, value: bytes | None) -> Awaitable[Any]:
        """``None``: a tombstone. The awaitable resolves to the record's metadata (with
        ``.offset``)."""
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
    ledger: Counter[str] = field(default_factory=Counter)
    """Input records of this partition's whole history by outcome (see the module doc)."""
    sealed: dict[str, int] = field(default_factory=dict)
    """Per topic, the last offset of an acknowledged checkpoint (durable)."""

    def applied(self, topic: str) -> int:
        return self.offsets.get(topic, -1)


Refetch = Callable[[str, int, int, int], Awaitable[list["Record"]]]
"""``refetch(topic, partition, start, end)``: the records of ``topic[partition]`` with
offsets in ``[start, end)``, read from the broker (none: a hole in the log). The transport
acknowledges them for commit once the batch is sealed."""


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
        publish: Callable[[Alert], Alert] | None = None,
        refetch: Refetch | None = None,
    ) -> None:
        """``publish`` turns an alert into what leaves the pipeline (e.g. pseudonymised,
        :class:`streams.privacy.Pseudonymiser`); by default the alert itself. ``refetch``:
        see :data:`Refetch` (``None``: records are applied as delivered)."""
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
        self.publish = publish
        self.refetch = refetch
        self._events: dict[tuple[str, str], Any] = {}
        self._records: dict[tuple[int, str], Any] = {}

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
            offsets, clock, ledger = dict(ckpt.offsets), ckpt.clock, Counter(ckpt.ledger)
            self._verify(store, ckpt)
        else:
            model, offsets, clock, ledger = ShardModel(self.engine_cfg), {}, 0, Counter()
            store.verify(None)
        shard = Shard(self.engine_cfg, self.playbook, store=store, model=model)
        shard.clock = clock
        part = self.parts[p] = Partition(
            shard, store, offsets, changed=bool(store.dirty), ledger=ledger, sealed=dict(offsets)
        )
        # detections restored with the model were exported by the worker that made them
        part.reported = {f"drift_{k}": v for k, v in model.drift.detections.items()}
        log.info(
            "partition %d: %d customers, model labels %d, offsets %s",
            p,
            shard.known,
            model.labels,
            offsets,
        )
        return part

    def _verify(self, store: PartitionStore, ckpt: Checkpoint) -> None:
        """Check the restored partition against its checkpoint's digest. On a mismatch the
        local copy is wiped (the next recovery reads the whole changelog) and
        :class:`StateInconsistent` stops the worker: never go on with wrong state."""
        try:
            store.verify(ckpt.digest)
        except StateInconsistent as exc:
            p = store.partition
            self.m.inconsistencies.labels("restore_mismatch").inc()
            log.critical(
                "%s at input offsets %s; wiping the local copy of partition %d, which is "
                "rebuilt from the changelog when the worker starts again",
                exc,
                ckpt.offsets,
                p,
            )
            self.local.wipe(p, self.cfg.partitions)
            raise

    def stale_changelog(self, dropped: Counter[int]) -> None:
        """Faust tried to write changelog records older than the local store (see
        :func:`streams.tables.guard_changelog`): they were dropped; say so."""
        for p, n in sorted(dropped.items()):
            self.m.inconsistencies.labels("stale_changelog").inc(n)
            log.warning(
                "partition %d: dropped %d changelog records older than the local store "
                "(held over by the table recovery from an earlier round)",
                p,
                n,
            )

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
            if rec.topic != self.cfg.ticks_topic:
                self._record(rec.partition, "redelivered")
            return
        if rec.offset > part.applied(rec.topic) + 1 > 0 and rec.topic != self.cfg.ticks_topic:
            await self._fill(part, rec)
        if rec.topic == self.cfg.ticks_topic:
            await self._tick(part, rec)
            return
        default_type = self.cfg.input_types.get(rec.topic)
        try:
            event = decode_event(rec.value or b"", default_type)
        except DecodeError as exc:
            self._dead_letter(part, rec, exc.reason, exc.detail, default_type or "unknown")
            return
        etype = event_type(event)
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
            # metadata and the code path only: the message may quote the record
            log.error(
                "engine failed on %s[%d]@%d: %s\n%s",
                rec.topic,
                rec.partition,
                rec.offset,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            self._dead_letter(part, rec, "engine_error", f"{type(exc).__name__}: {exc}", etype)
            return
        part.alerts.extend((a, rec.timestamp_ms) for a in alerts)
        outcome = "duplicate" if shard.counts["duplicates"] > dups else "processed"
        self._applied(part, rec, outcome)
        self.processed += 1
        self._count(etype, outcome)
        self.m.processing.observe(time.perf_counter() - started)
        if part.store.dirty_bytes >= self.cfg.checkpoint_bytes:
            await self.seal()

    async def _fill(self, part: Partition, rec: Record) -> None:
        """Apply the records between the last applied one and ``rec``, which the consumer
        never delivered, read from the broker (see the module doc)."""
        if self.refetch is None:
            return
        start = part.applied(rec.topic) + 1
        where = f"{rec.topic}[{rec.partition}] {start}..{rec.offset - 1}"
        missing = await self.refetch(rec.topic, rec.partition, start, rec.offset)
        if not missing:
            log.warning("offsets %s are not in the log (compaction or transactions)", where)
            return
        log.warning("records %s were not delivered; read %d from the broker", where, len(missing))
        for m in missing:
            self._record(m.partition, "refetched")
            await self.handle(m)

    def _applied(self, part: Partition, rec: Record, outcome: str | None = None) -> None:
        """The record is in the partition's next checkpoint (and its ledger, for inputs)."""
        part.offsets[rec.topic] = rec.offset
        part.changed = True
        if outcome is not None and rec.topic != self.cfg.ticks_topic:
            part.ledger[outcome] += 1
            self._record(rec.partition, outcome)

    def _record(self, partition: int, outcome: str) -> None:
        child = self._records.get((partition, outcome))
        if child is None:
            child = self.m.records.labels(str(partition), outcome)
            self._records[(partition, outcome)] = child
        child.inc()

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
            log.error(
                "sweep failed on partition %d: %s\n%s",
                rec.partition,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
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
            # a step may change at most as many states as still fit in the checkpoint, so
            # a full one is sealed first: the record that follows the sweep then adds at
            # most one state beyond the budget
            if part.store.dirty_bytes + MAX_STATE_BYTES >= self.cfg.checkpoint_bytes and (
                part.store.dirty_bytes
            ):
                await self.seal()
            room = (self.cfg.checkpoint_bytes - part.store.dirty_bytes) // MAX_STATE_BYTES
            alerts = shard.advance(now, limit=max(1, min(self.cfg.sweep_step, room)))
            part.alerts.extend((a, None) for a in alerts)
            part.changed = True  # the clock moved: the next checkpoint must carry it
            if not shard.behind:
                break
        n = shard.counts["swept"] - swept
        if n:
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
        self._applied(part, rec, "dead_lettered")
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
                if self.publish is not None:
                    alert = self.publish(alert)
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
                dict(part.ledger),
                part.store.digest,
            )
            head = (checkpoint_key(p), encode_checkpoint(ckpt))
            futures = [await self.sink.changelog(p, *head)]
            for key, value in states:  # a deleted customer: a tombstone
                futures.append(await self.sink.changelog(p, key, value or None))
            written.append((p, part, [head, *states], futures, ckpt.offsets))
            part.changed = False
        for p, part, states, futures, offsets in written:
            meta = await asyncio.gather(*futures)
            part.sealed = dict(offsets)
            # the local store is now as new as the checkpoint's offset; recording no more
            # than that re-reads this checkpoint's states on restart, which is harmless, and
            # stays below a broker's end offset even where it reports the last batch's base
            offset = getattr(meta[0], "offset", -1)
            self.local.put_many(p, states, offset if offset >= 0 else None)
            self.m.checkpoints.inc()

    def sealed_offsets(self) -> dict[tuple[str, int], int]:
        """``(topic, partition) -> offset``: input records up to ``offset`` are checkpointed."""
        return {
            (topic, p): offset
            for p, part in self.parts.items()
            for topic, offset in part.sealed.items()
            if topic != self.cfg.ticks_topic
        }

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
            for label in LABEL_COUNTS:
                key = f"labels_{label}"
                delta = counts[key] - part.reported.get(key, 0)
                if delta > 0:
                    self.m.labels.labels(label).inc(delta)
                    part.reported[key] = counts[key]
            delta = counts["expired"] - part.reported.get("expired", 0)
            if delta > 0:
                self.m.expired.inc(delta)
                part.reported["expired"] = counts["expired"]
            drift = part.shard.model.drift.detections
            for signal, n in drift.items():
                key = f"drift_{signal}"
                if n > part.reported.get(key, 0):
                    self.m.drift.labels(signal).inc(n - part.reported.get(key, 0))
                part.reported[key] = n
            self.m.export_ledger(part.shard.ledger.counts, part.reported)
            q = part.shard.model.metrics()
            for name, metric in (
                ("auc", "roc_auc"),
                ("log_loss", "log_loss"),
                ("brier", "brier"),
                ("weight", "model_weight"),
            ):
                self.m.model.labels(str(p), name).set(float(q[metric]))
            self.m.model_labels.labels(str(p)).set(q["labels"])
            for outcome in LEDGER_OUTCOMES:
                self.m.partition_records.labels(str(p), outcome).set(part.ledger[outcome])
        for i, level in enumerate(LEVELS[1:], start=1):
            self.m.at_risk.labels(level).set(by_level[i])
        rate = ComebackRate.pooled(part.shard.model.comeback for part in self.parts.values())
        for group in range(GROUPS):
            if (share := rate.came_back_share(group)) is not None:
                self.m.comeback.labels(GROUP_LABELS[group]).set(round(share, 4))
        self.m.value_at_risk.set(round(var, 2))
