"""``churnwatch forward``: every alert to an HTTP endpoint (a webhook), for tools that do
not read Kafka.

A consumer group reads the alert topic with manual commits. Each record is a
delivery, queued per customer (:class:`~streams.webhook.KeyedQueue`): one
delivery at a time per customer, ``concurrency`` at once overall. A delivery
POSTs the alert bytes, signed (:func:`~streams.webhook.sign`), retrying
timeouts, connection errors, 429 and 5xx with exponential backoff and jitter
(or the receiver's ``Retry-After``); other statuses, and retryable failures
after ``max_retries`` retries, go to the webhook dead-letter topic.

A delivery is settled once the receiver acknowledged it (2xx) and that is
recorded on the compacted acks topic, or once it is dead-lettered and that
is recorded there too. Offsets are committed up to the contiguous settled
prefix of each partition (:class:`~streams.webhook.OffsetTracker`). At start,
and before taking over partitions, the forwarder reads the acks topic
(:class:`SettledReader`), so an alert id acknowledged before a crash or by
another instance of the group is not posted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from detectors import ChurnwatchError, ConfigError
from streams.kafka import client_options, leaves_group_on_stop, set_leave_group_on_stop
from streams.metrics import LATENCY_BUCKETS
from streams.settings import Settings
from streams.topics import create_topics
from streams.webhook import (
    ALERT_ID_HEADER,
    ATTEMPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KeyedQueue,
    OffsetTracker,
    SettledLog,
    alert_identity,
    decide,
    parse_retry_after,
    retry_wait,
    sign,
    url_host,
)

log = logging.getLogger(__name__)

USER_AGENT = "churnwatch-webhook/1"
POLL_MS = 100


class ForwardError(ChurnwatchError):
    """The forwarder cannot go on: its settled record or dead letters cannot be written."""


class ForwardMetrics:
    """The forwarder's metrics, on their own registry (pass a fresh one in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "churnwatch_webhook_"
        self.posts = Counter(
            p + "posts",
            "HTTP attempts by outcome: ok (2xx), retry (429, 5xx, timeout, connection error), "
            "rejected (any other status).",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            p + "latency_seconds",
            "Duration of one HTTP attempt, until the response status or the failure.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dlq = Counter(p + "dlq", "Alerts dead-lettered by reason.", ["reason"], registry=r)
        self.inflight = Gauge(
            p + "inflight", "Alerts being delivered (posting or waiting to retry).", registry=r
        )
        self.skipped = Counter(
            p + "skipped",
            "Records not posted because already settled (acked: alert id acknowledged before; "
            "dead: this record was dead-lettered before).",
            ["why"],
            registry=r,
        )
        for outcome in ("ok", "retry", "rejected"):
            self.posts.labels(outcome)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record of the alert topic to deliver."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes
    alert_id: str | None
    customer: str
    """The ordering key: the record key (the customer id), else the alert's customer_id."""

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.tp.topic, self.tp.partition, self.offset)


def make_delivery(
    tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None
) -> Delivery:
    alert_id, customer_id = alert_identity(value)
    customer = key.decode("utf-8", "replace") if key else customer_id
    return Delivery(
        tp, offset, key, value or b"", alert_id, customer or f"#{tp.partition}/{offset}"
    )


@dataclass(frozen=True, slots=True)
class Result:
    """How a delivery ended: ``ack``, ``rejected`` or ``retries_exhausted``."""

    outcome: str
    status: int | None
    attempts: int
    error: str = ""


class SettledReader:
    """Tails the acks topic into a :class:`SettledLog` (this group's entries only)."""

    def __init__(self, settings: Settings, group: str, settled: SettledLog) -> None:
        self.settings = settings
        self.topic = settings.topic("webhook_acks")
        self.group = group
        self.settled = settled
        self.consumer: AIOKafkaConsumer | None = None
        self.tps: list[TopicPartition] = []
        self.task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        consumer = self.consumer = AIOKafkaConsumer(
            **client_options(self.settings), enable_auto_commit=False
        )
        await consumer.start()
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            raise ForwardError(f"topic {self.topic} has no partitions")
        self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(self.tps)
        await consumer.seek_to_beginning(*self.tps)
        self.task = asyncio.create_task(self._tail())

    async def sync(self, timeout: float = 120.0) -> None:
        """Return once everything written to the topic before the call has been read."""
        if self.task is None:
            raise ForwardError("the acks reader is not running")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        done, _ = await asyncio.wait(
            {waiter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in done:
            return
        waiter.cancel()
        if self.task in done:
            raise ForwardError(f"reading {self.topic} failed: {self.task.exception()!r}")
        raise ForwardError(f"could not read {self.topic} within {timeout:.0f} s")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    def apply(self, value: bytes | None) -> None:
        try:
            entry = json.loads(value) if value else None
        except ValueError:
            return
        if not isinstance(entry, dict) or entry.get("group") != self.group:
            return
        at = entry.get("at")
        at = at if isinstance(at, int) else int(time.time() * 1000)
        if entry.get("outcome") == "acked" and isinstance(entry.get("alert_id"), str):
            self.settled.ack(entry["alert_id"], at)
        elif entry.get("outcome") == "dead":
            pos = (entry.get("topic"), entry.get("partition"), entry.get("offset"))
            if isinstance(pos[0], str) and isinstance(pos[1], int) and isinstance(pos[2], int):
                self.settled.dead((pos[0], pos[1], pos[2]), at)

    async def _tail(self) -> None:
        assert self.consumer is not None  # noqa: S101 - set by start()
        consumer = self.consumer
        while True:
            waiters, self._waiters = self._waiters, []
            target = await consumer.end_offsets(self.tps) if waiters else None
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    for m in messages:
                        self.apply(m.value)
                self.settled.prune(int(time.time() * 1000))
                if target is None:
                    break
                positions = {tp: await consumer.position(tp) for tp in self.tps}
                if all(positions[tp] >= end for tp, end in target.items()):
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)
                    break


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.forwarder.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.forwarder.on_assigned(set(assigned))


class Forwarder:
    """The alert topic to one webhook URL. ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        metrics: ForwardMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        w = settings.webhook
        if not w.url:
            raise ConfigError("no webhook URL: pass --url or set CHURNWATCH_WEBHOOK__URL")
        if not w.url.startswith(("http://", "https://")) or not url_host(w.url):
            raise ConfigError("the webhook URL must be http:// or https:// with a host")
        if w.secret is None or not w.secret.get_secret_value():
            raise ConfigError(
                "no signing secret: set CHURNWATCH_WEBHOOK__SECRET or name the variable "
                "that holds it with --secret-env NAME"
            )
        self.settings = settings
        self.w = w
        self.url = w.url
        self.host = url_host(w.url)
        self._secret = w.secret.get_secret_value().encode()
        self.group = w.group or f"{settings.app_id}-webhook"
        self.topic = settings.topic("alerts")
        self.dlq_topic = settings.topic("webhook_dlq")
        self.acks_topic = settings.topic("webhook_acks")
        self.metrics = metrics
        self.clock = clock
        self.settled = SettledLog(int(w.dedupe_days * 86_400_000), w.dedupe_max_ids)
        self.queue: KeyedQueue[str, Delivery] = KeyedQueue(w.concurrency)
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.running: dict[asyncio.Task[None], Delivery] = {}
        self.fatal: BaseException | None = None
        self.stopping = False
        self.reader = SettledReader(settings, self.group, self.settled)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None

    # -- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await create_topics(s, only={self.topic, self.dlq_topic, self.acks_topic})
        set_leave_group_on_stop(await leaves_group_on_stop(s))
        opts = client_options(s)
        self.producer = AIOKafkaProducer(**opts, acks="all", linger_ms=1)
        session_ms = int(s.session_timeout_s * 1000)
        self.consumer = AIOKafkaConsumer(
            **opts,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=self.w.start,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 3),
        )
        timeout = aiohttp.ClientTimeout(total=self.w.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.w.concurrency)
        try:
            await self.producer.start()
            await self.reader.start()
            await self.reader.sync()
            log.info(
                "forwarding %s to %s as group %s (%d settled entries known)",
                self.topic,
                self.host,
                self.group,
                len(self.settled),
            )
            self.consumer.subscribe([self.topic], listener=_Rebalance(self))
            await self.consumer.start()
            async with aiohttp.ClientSession(
                timeout=timeout, connector=connector, headers={"User-Agent": USER_AGENT}
            ) as self.session:
                try:
                    await self._loop(stop)
                finally:
                    await self._drain()
                    await self._commit()
        finally:
            await self.consumer.stop()
            await self.reader.stop()
            await self.producer.stop()
        if self.fatal is not None:
            raise ForwardError(f"stopped: {self.fatal}") from self.fatal

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None  # noqa: S101
        consumer = self.consumer
        last_commit = time.monotonic()
        while not stop.is_set() and self.fatal is None:
            buffered = sum(t.pending for t in self.trackers.values())
            assigned = consumer.assignment()
            if buffered >= self.w.max_buffered:
                consumer.pause(*assigned)
            else:
                consumer.resume(*assigned)
            batch = await consumer.getmany(
                timeout_ms=POLL_MS, max_records=max(1, self.w.max_buffered - buffered)
            )
            for tp, messages in batch.items():
                for m in messages:
                    self._accept(tp, m.offset, m.key, m.value)
            self._dispatch()
            if time.monotonic() - last_commit >= self.settings.commit_interval_s:
                await self._commit()
                last_commit = time.monotonic()

    def _accept(
        self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        tracker = self.trackers.setdefault(tp, OffsetTracker())
        try:
            tracker.add(offset)
        except ValueError:  # the consumer moved back (offset reset): start over
            log.warning("%s[%d] moved back to offset %d", tp.topic, tp.partition, offset)
            tracker = self.trackers[tp] = OffsetTracker()
            tracker.add(offset)
        delivery = make_delivery(tp, offset, key, value)
        self.queue.push(delivery.customer, delivery)

    def _dispatch(self) -> None:
        if self.stopping or self.fatal is not None:
            return
        for delivery in self.queue.take_all():
            task = asyncio.create_task(self._settle(delivery))
            self.running[task] = delivery
            task.add_done_callback(self._on_done)
        self.metrics.inflight.set(len(self.running))

    def _on_done(self, task: asyncio.Task[None]) -> None:
        delivery = self.running.pop(task)
        self.queue.finish(delivery.customer)
        self.metrics.inflight.set(len(self.running))
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if self.fatal is None:
                self.fatal = exc
            return
        tracker = self.trackers.get(delivery.tp)
        if tracker is not None:
            tracker.done(delivery.offset)
        self._dispatch()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        assert self.consumer is not None  # noqa: S101
        offsets = {
            tp: t.committable
            for tp, t in self.trackers.items()
            if t.committable is not None
            and t.committable != self.committed.get(tp)
            and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # e.g. a rebalance under way
            log.warning("commit failed (will retry): %r", exc)
            return
        self.committed.update(offsets)

    async def _drain(self) -> None:
        """Stop starting deliveries; give those under way ``shutdown_grace_s`` to finish."""
        self.stopping = True
        self.queue.drop(lambda d: False)
        tasks = list(self.running)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.w.shutdown_grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- rebalances -------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish what is under way on ``revoked`` partitions, commit them, forget them."""
        self.queue.drop(lambda d: d.tp not in revoked)
        tasks = [t for t, d in self.running.items() if d.tp in revoked]
        if tasks:
            await asyncio.wait(tasks)
        await self._commit(only=revoked)
        for tp in revoked:
            self.trackers.pop(tp, None)
            self.committed.pop(tp, None)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Catch up with the acks topic: another instance may have settled alerts of these.

        A failure stops the forwarder (the consumer would only log it and go on).
        """
        try:
            await self.reader.sync()
        except ForwardError as exc:
            if self.fatal is None:
                self.fatal = exc

    # -- one delivery -----------------------------------------------------------------

    async def _settle(self, d: Delivery) -> None:
        if d.alert_id is None:
            await self._dead_letter(d, Result("not_an_alert", None, 0))
            return
        if d.alert_id in self.settled:
            self.metrics.skipped.labels("acked").inc()
            return
        if self.settled.is_dead(d.position):
            self.metrics.skipped.labels("dead").inc()
            return
        result = await self.deliver(d)
        if result.outcome == "ack":
            await self._record(d, "acked", result)
            self.settled.ack(d.alert_id, self._now_ms())
        else:
            await self._dead_letter(d, result)

    async def deliver(self, d: Delivery) -> Result:
        """POST until acknowledged, rejected or out of retries (needs :attr:`session`)."""
        attempt = 0
        while True:
            attempt += 1
            status, retry_after, error = await self.post(d, attempt)
            decision = decide(status)
            if decision == "ack":
                return Result("ack", status, attempt)
            if decision == "reject":
                return Result("rejected", status, attempt, error)
            if attempt > self.w.max_retries:
                return Result("retries_exhausted", status, attempt, error)
            wait = retry_wait(
                attempt,
                retry_after,
                base_s=self.w.backoff_base_s,
                cap_s=self.w.backoff_max_s,
                retry_after_max_s=self.w.retry_after_max_s,
            )
            log.info(
                "alert %s: attempt %d failed (%s); next in %.2f s",
                d.alert_id,
                attempt,
                status or error,
                wait,
            )
            await asyncio.sleep(wait)

    async def post(self, d: Delivery, attempt: int) -> tuple[int | None, float | None, str]:
        """One HTTP attempt: ``(status or None, Retry-After seconds or None, error)``."""
        assert self.session is not None and d.alert_id is not None  # noqa: S101
        ts = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            ALERT_ID_HEADER: d.alert_id,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, d.value),
            ATTEMPT_HEADER: str(attempt),
        }
        started = time.monotonic()
        status: int | None = None
        retry_after: float | None = None
        error = ""
        try:
            async with self.session.post(
                self.url, data=d.value, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.clock())
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:  # the message may quote the URL: class name only
            error = f"connection error ({type(exc).__name__})"
        self.metrics.latency.observe(time.monotonic() - started)
        outcome = {"ack": "ok", "retry": "retry", "reject": "rejected"}[decide(status)]
        self.metrics.posts.labels(outcome).inc()
        return status, retry_after, error

    # -- the record of what is settled, and dead letters --------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _record(self, d: Delivery, outcome: str, result: Result) -> None:
        """Write the settled entry (acked by alert id, dead by record position)."""
        if outcome == "acked":
            key = f"ack/{self.group}/{d.alert_id}"
        else:
            key = f"dead/{self.group}/{d.tp.topic}/{d.tp.partition}/{d.offset}"
        entry = {
            "group": self.group,
            "outcome": outcome,
            "alert_id": d.alert_id,
            "topic": d.tp.topic,
            "partition": d.tp.partition,
            "offset": d.offset,
            "status": result.status,
            "attempts": result.attempts,
            "at": self._now_ms(),
        }
        value = json.dumps(entry, separators=(",", ":")).encode()
        await self._send(self.acks_topic, key.encode(), value, [])

    async def _dead_letter(self, d: Delivery, result: Result) -> None:
        headers = [
            ("churnwatch.reason", result.outcome),
            ("churnwatch.status", "" if result.status is None else str(result.status)),
            ("churnwatch.attempts", str(result.attempts)),
            ("churnwatch.error", result.error),
            ("churnwatch.url_host", self.host),
            ("churnwatch.alert_id", d.alert_id or ""),
            ("churnwatch.topic", d.tp.topic),
            ("churnwatch.partition", str(d.tp.partition)),
            ("churnwatch.offset", str(d.offset)),
            ("churnwatch.failed_at", str(self._now_ms())),
        ]
        encoded = [(k, v.encode()) for k, v in headers]
        await self._send(self.dlq_topic, d.key, d.value, encoded)
        self.metrics.dlq.labels(result.outcome).inc()
        log.warning(
            "alert %s dead-lettered: %s (status %s, %d attempts%s)",
            d.alert_id,
            result.outcome,
            result.status,
            result.attempts,
            f", {result.error}" if result.error else "",
        )
        await self._record(d, "dead", result)
        self.settled.dead(d.position, self._now_ms())

    async def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        assert self.producer is not None  # noqa: S101
        try:
            await self.producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as exc:
            raise ForwardError(f"cannot write to {topic}: {exc!r}") from exc


def run_forward(settings: Settings, metrics: ForwardMetrics | None = None) -> int:
    """Run until SIGINT/SIGTERM; 0 after a clean stop, 1 when the forwarder had to stop.

    Raises :class:`~detectors.ConfigError` for a missing URL or secret.
    """
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    metrics = metrics or ForwardMetrics()
    forwarder = Forwarder(settings, metrics)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await forwarder.run(stop)

    try:
        asyncio.run(main())
    except ForwardError as exc:
        log.error("%s", exc)
        return 1
    return 0
