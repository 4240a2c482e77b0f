"""`churnwatch forward` on the embedded broker against a local HTTP receiver: retries, a
rejected alert in the dead-letter topic, order per customer, signatures, duplicates, and
a kill -9 mid-stream after which no acknowledged alert is posted again and none is lost."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors import partition_for
from streams.feed import read_topic
from streams.kafka import client_options
from streams.webhook import verify

pytestmark = pytest.mark.integration

SECRET = "whsec-integration-7f3a"  # noqa: S105 - a test key
CLI = [sys.executable, "-m", "streams.cli"]


class Receiver:
    """Records every request; answers by a per-alert script; optionally slow."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.fail_503: Counter[str] = Counter()  # alert id -> 503s still to give
        self.throttle: set[str] = set()  # answered once with 429 and Retry-After: 1
        self.reject: set[str] = set()  # always 400
        self.slow: dict[str, float] = {}
        self.delay = 0.0
        self.inflight = 0
        self.max_inflight = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/churn?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                started = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, headers = receiver.answer(body, dict(self.headers), started)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def answer(
        self, body: bytes, headers: dict[str, str], started: float
    ) -> tuple[int, dict[str, str]]:
        alert = json.loads(body)
        aid = alert["alert_id"]
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            delay = self.delay + self.slow.get(aid, 0.0)
            extra: dict[str, str] = {}
            if aid in self.reject:
                status = 400
            elif self.fail_503[aid] > 0:
                self.fail_503[aid] -= 1
                status = 503
            elif aid in self.throttle:
                self.throttle.discard(aid)
                status, extra = 429, {"Retry-After": "1"}
            else:
                status = 200
        time.sleep(delay)
        ts, sig = headers.get("X-Churnwatch-Timestamp"), headers.get("X-Churnwatch-Signature")
        independent = (
            "sha256="
            + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        )
        with self.lock:
            self.inflight -= 1
            self.requests.append(
                {
                    "alert_id": aid,
                    "header_id": headers.get("X-Churnwatch-Alert-Id"),
                    "customer": alert["customer_id"],
                    "seq": alert["seq"],
                    "status": status,
                    "start": started,
                    "end": time.monotonic(),
                    "content_type": headers.get("Content-Type"),
                    "signed": sig == independent
                    and verify(SECRET.encode(), body, ts, sig, now=time.time()),
                }
            )
        return status, extra

    def ok(self, since: float = 0.0) -> Counter[str]:
        with self.lock:
            return Counter(
                r["alert_id"] for r in self.requests if r["status"] == 200 and r["start"] >= since
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted(self.requests, key=lambda r: r["start"])

    def close(self) -> None:
        self.server.shutdown()


def alert(seq: int, customer: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "alert_id": f"alert-{seq:03d}",
        "customer_id": customer,
        "kind": "opened",
        "risk_level": "high",
        "previous_level": "low",
        "risk_score": 0.75,
        "as_of": "2024-09-14T08:00:00.000Z",
        "emitted_at": "2024-09-14T08:00:00.000Z",
        "reasons": [],
        "actions": [],
        "seq": seq,
    }


def wait_until(check, timeout: float, what: str, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


def read_all(settings, topic: str, idle: float = 2.0) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        return [rec async for rec in read_topic(settings, topic, idle_timeout=idle)]

    return asyncio.run(run())


def committed(settings, group: str, topic: str) -> dict[int, int | None]:
    async def run() -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(**client_options(settings), group_id=group)
        await consumer.start()
        try:
            return {
                p: await consumer.committed(TopicPartition(topic, p))
                for p in range(settings.partitions)
            }
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_forward_delivers_once_in_order_and_survives_kill_9(stack, tmp_path: Path, kit) -> None:
    settings = stack.settings
    stack.create_topics()
    group = f"{settings.app_id}-hooks"
    receiver = Receiver()
    procs: list[subprocess.Popen[bytes]] = []

    def start_forwarder(n: int, **env: str) -> subprocess.Popen[bytes]:
        args = ["forward", "--url", receiver.url, "--secret-env", "HOOK_SECRET"]
        args += ["--group", group, "--max-retries", "4", "--timeout", "5", "--concurrency", "4"]
        args += ["--metrics-port", str(env.pop("port"))] if "port" in env else []
        log = (tmp_path / f"forward-{n}.log").open("wb")
        proc = subprocess.Popen(
            [*CLI, *args],
            env={
                **stack.env,
                "HOOK_SECRET": SECRET,
                "CHURNWATCH_SESSION_TIMEOUT_S": "6",
                "CHURNWATCH_WEBHOOK__BACKOFF_BASE_S": "0.05",
                "CHURNWATCH_WEBHOOK__BACKOFF_MAX_S": "0.3",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    def logs() -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("forward-*.log")))

    try:
        # -- phase 1: retries, a rejected alert, a duplicate, one busy customer ------------
        phase1 = [alert(i, "c-busy") for i in range(8)]
        phase1 += [alert(8 + i, f"c-{i % 6}") for i in range(18)]
        duplicate = phase1[12]
        records = [*phase1, duplicate]
        receiver.fail_503.update({"alert-001": 2, "alert-004": 3, "alert-010": 1, "alert-017": 2})
        receiver.throttle.add("alert-014")
        receiver.reject.add("alert-005")  # c-busy's sixth alert: the seventh must still go out
        receiver.slow.update({"alert-002": 0.4, "alert-009": 0.4, "alert-020": 0.4})
        stack.produce([json.dumps(a).encode() for a in records], topic=settings.topic("alerts"))

        # nothing is committed before the kill: the restart must rely on the acks topic
        first = start_forwarder(1, CHURNWATCH_COMMIT_INTERVAL_S="3600")
        want = {a["alert_id"] for a in phase1} - receiver.reject
        wait_until(lambda: set(receiver.ok()) >= want, 40, "phase 1 deliveries", logs)
        dead = stack.collect("webhook_dlq", lambda got: len(got) >= 1, timeout=20)
        assert first.poll() is None, logs()

        requests = receiver.snapshot()
        assert receiver.ok() == Counter(dict.fromkeys(want, 1))  # exactly once each
        assert Counter(r["alert_id"] for r in requests) == {
            **dict.fromkeys(want, 1),
            "alert-001": 3,
            "alert-004": 4,
            "alert-010": 2,
            "alert-014": 2,
            "alert-017": 3,
            "alert-005": 1,
        }
        assert all(r["signed"] for r in requests)
        assert all(r["header_id"] == r["alert_id"] for r in requests)
        assert all(r["content_type"] == "application/json" for r in requests)
        throttled = [r for r in requests if r["alert_id"] == "alert-014"]
        assert throttled[1]["start"] - throttled[0]["end"] >= 0.9  # Retry-After: 1

        by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in requests:
            by_customer[r["customer"]].append(r)
        for customer, rs in by_customer.items():
            for before, after in zip(rs, rs[1:], strict=False):
                assert after["start"] >= before["end"], f"{customer}: overlapping posts"
            order = [r["seq"] for r in rs]
            first_tries = sorted(set(order), key=order.index)
            assert first_tries == sorted(first_tries), f"{customer}: {order}"
        assert [r["seq"] for r in by_customer["c-busy"] if r["status"] == 200] == [
            0,
            1,
            2,
            3,
            4,
            6,
            7,
        ]
        assert 2 <= receiver.max_inflight <= 4

        assert len(dead) == 1
        key, value, headers, _ = dead[0]
        assert (key, json.loads(value)) == (b"c-busy", phase1[5])
        assert headers["churnwatch.reason"] == b"rejected"
        assert headers["churnwatch.status"] == b"400"
        assert headers["churnwatch.attempts"] == b"1"
        assert headers["churnwatch.url_host"] == receiver.url.split("/")[2].encode()
        assert headers["churnwatch.alert_id"] == b"alert-005"
        assert b"token" not in b"".join(headers.values())

        # -- phase 2: a slow receiver, kill -9 mid-stream, restart -------------------------
        receiver.delay = 0.3
        phase2 = [alert(100 + i, f"d-{i % 10}") for i in range(40)]
        ids2 = {a["alert_id"] for a in phase2}
        stack.produce([json.dumps(a).encode() for a in phase2], topic=settings.topic("alerts"))
        wait_until(lambda: len(set(receiver.ok()) & ids2) >= 14, 30, "phase 2 progress", logs)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        answered_before_kill = set(receiver.ok())

        settled = [
            json.loads(v) for _, v, _, _ in read_all(settings, settings.topic("webhook_acks"))
        ]
        acked = {e["alert_id"] for e in settled if e["outcome"] == "acked"}
        assert {e["group"] for e in settled} == {group}
        assert want <= acked and 8 <= len(acked & ids2) < len(ids2)
        assert acked <= answered_before_kill  # recorded only after the receiver's 2xx
        assert [e["alert_id"] for e in settled if e["outcome"] == "dead"] == ["alert-005"]
        assert committed(settings, group, settings.topic("alerts")) == dict.fromkeys(
            range(settings.partitions)
        )

        receiver.delay = 0.0
        port = kit.free_port()
        second = start_forwarder(2, port=port)
        everything = want | ids2
        wait_until(lambda: set(receiver.ok()) >= everything, 40, "phase 2 deliveries", logs)

        after_kill = receiver.ok(since=killed_at)
        assert not set(after_kill) & acked, "an acknowledged alert was posted again"
        reposted = {aid for aid, n in receiver.ok().items() if n > 1}
        # only the documented window: received before the kill, not recorded as acknowledged
        window = {
            r["alert_id"]
            for r in receiver.snapshot()
            if r["status"] == 200 and r["start"] < killed_at
        }
        assert reposted <= window - acked
        assert all(n == 1 for n in after_kill.values())
        assert all(r["signed"] for r in receiver.snapshot())
        for customer in {a["customer_id"] for a in phase2}:
            seqs = [r["seq"] for r in receiver.snapshot() if r["customer"] == customer]
            firsts = sorted(set(seqs), key=seqs.index)
            assert firsts == sorted(firsts), f"{customer}: {seqs}"

        # the restart read everything again (nothing was committed) and skipped the settled
        def skipped(why: str) -> float:
            return kit.metric(kit.scrape(port), "churnwatch_webhook_skipped_total", why=why)

        records_acked = sum(1 for a in [*records, *phase2] if a["alert_id"] in acked)
        assert kit.wait_for(lambda: skipped("acked") == records_acked, 10), skipped("acked")
        assert skipped("dead") == 1
        metrics = kit.scrape(port)
        assert kit.metric(metrics, "churnwatch_webhook_dlq_total") == 0
        assert kit.metric(metrics, "churnwatch_webhook_inflight") == 0
        assert kit.metric(metrics, "churnwatch_webhook_latency_seconds_count") >= len(ids2 - acked)

        # a clean stop commits every offset
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, logs()
        per_partition = Counter(
            partition_for(a["customer_id"], settings.partitions) for a in [*records, *phase2]
        )
        assert committed(settings, group, settings.topic("alerts")) == {
            p: per_partition.get(p) or None for p in range(settings.partitions)
        }
        assert len(read_all(settings, settings.topic("webhook_dlq"), idle=1.0)) == 1
        assert SECRET not in logs()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        receiver.close()
