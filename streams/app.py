"""The Faust app: ``create_app(settings)`` wires topics, tables, the agent and the timers.

One agent reads every input topic (and, with ``clock="wall"``, the tick
topic) as raw bytes and hands batches of records to :class:`streams.pipeline.Pipeline`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types import Message as FaustMessage

from streams.kafka import client_options, faust_credentials
from streams.metrics import Metrics
from streams.pipeline import DEFAULT_TYPES, Pipeline, PipelineConfig, Record
from streams.privacy import Pseudonymiser
from streams.settings import Settings
from streams.tables import LocalStore, StateInconsistent, guard_changelog
from streams.topics import STATE_TABLE, input_roles

log = logging.getLogger(__name__)
ACK_LOCK: Any = getattr(faust_consumer, "ack_lock", None) or contextlib.nullcontext()
"""faust's lock around acknowledgements, where the installed faust has one."""

RAW = {"key_serializer": "raw", "value_serializer": "raw"}


def patch_fetch_wait(ms: int) -> None:
    """Lower the consumer fetch wait that faust-streaming 0.15.3 hard-codes to 1500 ms.

    ``AIOKafkaConsumerThread._create_worker_consumer`` passes
    ``fetch_max_wait_ms=1500`` to aiokafka; the fetcher reads the consumer's
    ``_fetch_max_wait_ms`` when it starts, so we set it on the new consumer.
    """
    cls: Any = faust_aiokafka.AIOKafkaConsumerThread
    cls.churnwatch_fetch_wait_ms = ms
    if getattr(cls, "churnwatch_patched", False):
        return
    original = cls._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = cls.churnwatch_fetch_wait_ms
        return consumer

    cls._create_worker_consumer = create
    cls.churnwatch_patched = True


def raw_table(
    app: faust.App, name: str, changelog: str, partitions: int, options: dict[str, Any]
) -> Any:
    """A table of str keys and bytes values, stored and changelogged as raw bytes.

    Faust 0.15.3 derives a table's serializers from its key/value *types* and
    falls back to JSON (a ``schema`` does not change that), also for the
    changelog topic it makes: binary values are then written fine but fail to
    decode on recovery. So we pass a raw changelog topic and override both.
    """
    schema = faust.Schema(key_type=str, value_type=bytes, **RAW)
    topic = app.topic(
        changelog,
        schema=schema,
        partitions=partitions,
        compacting=True,
        deleting=False,
        acks=False,
        internal=True,
    )
    table = app.Table(
        name,
        partitions=partitions,
        schema=schema,
        key_type=str,
        value_type=bytes,
        changelog_topic=topic,
        options=options,
    )
    table.key_serializer = table.value_serializer = "raw"
    return table


def acknowledge_sealed(app: faust.App, pipeline: Pipeline) -> None:
    """Make faust's commit bookkeeping agree with the checkpoints.

    faust commits a partition up to the first hole in its list of acknowledged
    offsets. Two things break that list: records the pipeline read from the broker
    itself (:meth:`Pipeline._fill`: faust never delivered them), and faust 0.15.3's
    own bookkeeping when its post-recovery seek races a commit: offsets then sit in
    the list twice or below the committed offset, and the partition's commits creep
    forward one offset per commit interval, or stall. Offsets up to a checkpoint are
    durable, so every one of them may be acknowledged; the list is cleaned of repeats
    and of offsets already committed.
    """
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", None)
    lists = getattr(consumer, "_acked", None)
    index = getattr(consumer, "_acked_index", None)
    if committed is None or lists is None or index is None:
        return
    assigned = consumer.assignment()
    for (topic, partition), sealed in pipeline.sealed_offsets().items():
        tp = TP(topic, partition)
        start = committed.get(tp)
        if start is None or tp not in assigned:
            continue
        with ACK_LOCK:
            acked = lists.get(tp)
            if acked:
                clean = sorted({offset for offset in acked if offset >= start})
                if clean != acked:
                    acked[:] = clean
                    index[tp].intersection_update(clean)
            done = index.get(tp, ())
            todo = [offset for offset in range(start, sealed + 1) if offset not in done]
            for offset in todo:
                message = FaustMessage(topic, partition, offset, 0.0, 0, [], None, None, None)
                consumer.ack(message)


def wall_ms() -> int:
    return int(time.time() * 1000)


def pseudonymiser(settings: Settings) -> Pseudonymiser | None:
    key = settings.pseudonymise_key
    return Pseudonymiser(key.get_secret_value().encode()) if key is not None else None


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    """A Faust app for ``settings``; its :class:`Pipeline` is ``app.pipeline``."""
    patch_fetch_wait(settings.fetch_wait_ms)
    n = settings.partitions
    metrics = metrics or Metrics()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b}" for b in settings.bootstrap()],
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=n,
        topic_allow_declare=False,
        topic_disable_leader=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(settings.session_timeout_s / 5, 0.5),
        broker_commit_interval=settings.commit_interval_s,
        table_standby_replicas=0,
        producer_max_batch_size=settings.producer_batch_bytes,
        # a checkpoint is one message: room for the states, the model and the headers
        producer_max_request_size=max(1_048_576, settings.checkpoint_bytes + 262_144),
        web_enabled=settings.web_port is not None,
        web_host="127.0.0.1",
        web_port=settings.web_port or 6066,
        autodiscover=False,
    )
    mb = 1024 * 1024
    rocksdb = {
        "write_buffer_size": settings.rocksdb_write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mb * mb,
        "block_cache_compressed_size": settings.rocksdb_block_cache_mb * mb // 4,
    }
    options = rocksdb if settings.store.startswith("rocksdb") else {}
    state_table = raw_table(app, STATE_TABLE, settings.changelog(STATE_TABLE), n, options)
    ticks = app.topic(settings.topic("ticks"), partitions=n, **RAW)

    alerts_topic, dlq_topic = settings.topic("alerts"), settings.topic("dlq")
    changelog_topic = settings.changelog(STATE_TABLE)

    class Sink:
        """Sends straight through the app's aiokafka producer (Faust's per-message buffer
        and futures cost more than our per-event work). Each call enqueues the record and
        returns a future that resolves on the broker's ack; records to one partition keep
        their order."""

        async def alert(self, key: bytes, value: bytes) -> Any:
            return await app.producer._ensure_producer().send(alerts_topic, value, key=key)

        async def dead_letter(self, key: bytes | None, value: bytes | None, headers: Any) -> Any:
            producer = app.producer._ensure_producer()
            return await producer.send(dlq_topic, value, key=key, headers=list(headers.items()))

        async def changelog(self, partition: int, key: str, value: bytes | None) -> Any:
            producer = app.producer._ensure_producer()
            return await producer.send(
                changelog_topic, value, key=key.encode(), partition=partition
            )

    async def refetch(topic: str, partition: int, start: int, end: int) -> list[Record]:
        """The records of ``topic[partition]`` in ``[start, end)``, by a consumer of its own."""
        reader = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        await reader.start()
        out: list[Record] = []
        try:
            tp = TopicPartition(topic, partition)
            reader.assign([tp])
            reader.seek(tp, start)
            deadline = time.monotonic() + 60
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cannot read {topic}[{partition}] {start}..{end - 1}")
                batch = await reader.getmany(tp, timeout_ms=500)
                for m in batch.get(tp, []):
                    if m.offset >= end:
                        return out
                    out.append(Record(topic, partition, m.offset, m.key, m.value, m.timestamp))
        finally:
            await reader.stop()

    input_types = {
        settings.topic(role): DEFAULT_TYPES.get(role, "outcome") for role in input_roles(settings)
    }
    local = LocalStore(state_table)
    pipeline = Pipeline(
        PipelineConfig(
            partitions=n,
            clock=settings.clock,
            input_types=input_types,
            ticks_topic=settings.topic("ticks"),
            checkpoint_bytes=settings.checkpoint_bytes,
        ),
        settings.engine_config(),
        settings.playbook(),
        local,
        Sink(),
        metrics,
        wall_ms,
        publish=pseudonymiser(settings),
        refetch=refetch,
    )
    guard_changelog(state_table, local, pipeline.stale_changelog)
    sources = list(input_types)
    if settings.clock == "wall":
        sources.append(settings.topic("ticks"))
    channel = app.topic(*sources, partitions=n, **RAW)

    @app.agent(channel, name="churnwatch.process")
    async def process(stream: Any) -> None:
        # A batch's records are acked (and so committed) only after its checkpoint is
        # acknowledged: take_events acks when the body returns.
        async for events in stream.take_events(
            settings.batch_records, within=settings.batch_wait_s
        ):
            batch = []
            for event in events:
                m = event.message
                stamp = int(m.timestamp * 1000) if m.timestamp else None
                batch.append(Record(m.topic, m.partition, m.offset, m.key, m.value, stamp))
            try:
                await pipeline.handle_batch(batch)
            except StateInconsistent as exc:
                log.critical("stopping: %s", exc)
                await app.crash(exc)
                raise
            except Exception as exc:
                # a batch that cannot be made durable must stop the worker, not stall it:
                # its records are not acked, so a restarted worker processes them again
                log.critical("cannot checkpoint a batch, stopping: %r", exc)
                await app.crash(exc)
                raise

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        metrics.rebalances.inc()
        metrics.partitions_assigned.set(
            len({tp.partition for tp in assigned if tp.topic in input_types})
        )

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        await pipeline.revoke({tp.partition for tp in revoked if tp.topic in input_types})

    if settings.clock == "wall":

        @app.timer(interval=settings.tick_interval_s, name="churnwatch.tick")
        async def tick() -> None:
            now = str(wall_ms()).encode()
            for tp in app.consumer.assignment():
                if tp.topic == settings.topic("ticks"):
                    await ticks.send(value=now, partition=tp.partition)

    @app.timer(interval=2.0, name="churnwatch.metrics")
    async def refresh() -> None:
        try:
            acknowledge_sealed(app, pipeline)
        except Exception as exc:  # noqa: BLE001 - faust internals: never stop the worker
            log.warning("cannot acknowledge checkpointed offsets: %r", exc)
        pipeline.refresh_metrics()
        for tp in app.consumer.assignment():
            if tp.topic not in input_types:
                continue
            last = pipeline.last_offsets.get((tp.topic, tp.partition))
            try:
                high = app.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not known before the first fetch
                high = None
            if high is not None and last is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(high - last - 1, 0))

    app.pipeline = pipeline  # type: ignore[attr-defined]
    app.metrics = metrics  # type: ignore[attr-defined]
    return app
