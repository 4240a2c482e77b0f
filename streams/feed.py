"""Put events on Kafka (``churnwatch simulate --to kafka``) and read alerts back.

Producer and reader use plain aiokafka: records are keyed by customer id and
placed with Kafka's murmur2 partitioner (computed here, so the partition is
right whatever client default applies). The reader assigns partitions
explicitly (no consumer group), which works on every broker, tansu included.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors import partition_for
from streams.kafka import client_options
from streams.settings import Settings

Progress = Callable[[int], None]


def event_key(raw: bytes | dict[str, Any]) -> str | None:
    """The customer id of an event (``None`` when the record is not a JSON object with one)."""
    if isinstance(raw, dict):
        cid = raw.get("customer_id")
    else:
        try:
            cid = json.loads(raw).get("customer_id")
        except (ValueError, AttributeError):
            return None
    return cid if isinstance(cid, str) else None


async def produce(
    settings: Settings,
    records: Iterable[bytes],
    *,
    topic: str | None = None,
    rate: float = 0.0,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send JSON records keyed by customer id; ``rate`` events/s (0: as fast as possible)."""
    topic = topic or settings.topic("events")
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=5, acks="all")
    await producer.start()
    n = 0
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    try:
        for raw in records:
            if stop is not None and stop.is_set():
                break
            cid = event_key(raw)
            key = cid.encode() if cid is not None else None
            part = partition_for(cid, settings.partitions) if cid is not None else 0
            pending.append(await producer.send(topic, raw, key=key, partition=part))
            n += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if rate > 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0.01:
                    await producer.flush()
                    await asyncio.sleep(ahead)
            if progress is not None and n % 500 == 0:
                progress(n)
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    if progress is not None:
        progress(n)
    return n


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout: float | None = None,
) -> AsyncIterator[tuple[bytes | None, bytes | None, dict[str, bytes], int]]:
    """Yield ``(key, value, headers, partition)`` from every partition of ``topic``.

    Stops after ``idle_timeout`` seconds without a record (``None``: never).
    """
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        idle_since = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                    return
                continue
            idle_since = time.monotonic()
            for tp, messages in batch.items():
                for m in messages:
                    yield m.key, m.value, dict(m.headers or ()), tp.partition
    finally:
        await consumer.stop()


def send_events(
    settings: Settings,
    events: list[dict[str, Any]],
    *,
    rate: float = 0.0,
    speed: float = 0.0,
    console: Any = None,
) -> int:
    """Send simulated events; ``speed`` paces them by their timestamps, ``rate`` per second."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def records() -> Iterable[bytes]:
        first = _epoch(events[0]["ts"]) if events else 0.0
        started = time.monotonic()
        for e in events:
            if speed > 0:
                ahead = (_epoch(e["ts"]) - first) / speed - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead, 5.0))  # the producer sends in the background
            yield encode(e).encode()

    show = console is not None and getattr(console, "is_terminal", False)
    with Progress(
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("events", total=len(events))
        return asyncio.run(
            produce(
                settings,
                records(),
                rate=rate,
                progress=lambda n: bar.update(task, completed=n),
            )
        )


def _epoch(ts: str | int) -> float:
    if isinstance(ts, int):
        return ts / 1000
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
