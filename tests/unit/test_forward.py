"""The forwarder's HTTP side against a local receiver (no Kafka): headers, signature,
retries, Retry-After, rejections, timeouts; its settings and start-up errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from detectors import ConfigError
from streams.broker import free_port
from streams.forward import Forwarder, ForwardMetrics, Result, make_delivery
from streams.settings import Settings, with_webhook
from streams.webhook import verify

pytestmark = pytest.mark.unit

SECRET = "whsec-test-0123456789"  # noqa: S105 - a test key
BODY = b'{"schema_version":1,"alert_id":"a-1","customer_id":"c-1","kind":"opened"}'
Handler = Callable[[web.Request, int], web.Response]


class Receiver:
    """A local HTTP endpoint whose answer to attempt n is ``script(request, n)``."""

    def __init__(self, script: Handler, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.seen: list[tuple[dict[str, str], bytes, float]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((dict(request.headers), body, time.monotonic()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.script(request, len(self.seen))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Receiver], Awaitable[str]]]:
    """Start a :class:`Receiver` on a free local port; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook/{token}", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/hook/t0ken"

    yield start
    for runner in runners:
        await runner.cleanup()


def forwarder(url: str, **webhook: object) -> tuple[Forwarder, ForwardMetrics]:
    settings = Settings(
        webhook={
            "url": url,
            "secret": SECRET,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            **webhook,
        }
    )
    metrics = ForwardMetrics(CollectorRegistry())
    return Forwarder(settings, metrics), metrics


async def deliver(fw: Forwarder, body: bytes = BODY) -> Result:
    delivery = make_delivery(TopicPartition("churn-alerts", 2), 41, b"c-1", body)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=fw.w.timeout_s)) as s:
        fw.session = s
        return await fw.deliver(delivery)


def posts(metrics: ForwardMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "churnwatch_webhook_posts_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_retries_503_then_acknowledges_a_signed_request(serve) -> None:
    receiver = Receiver(lambda r, n: web.Response(status=503 if n <= 2 else 204))
    fw, metrics = forwarder(await serve(receiver))
    result = await deliver(fw)
    assert result == Result("ack", 204, 3)
    assert (posts(metrics, "ok"), posts(metrics, "retry"), posts(metrics, "rejected")) == (1, 2, 0)
    assert metrics.registry.get_sample_value("churnwatch_webhook_latency_seconds_count") == 3
    for n, (headers, body, _) in enumerate(receiver.seen, start=1):
        assert body == BODY
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Churnwatch-Alert-Id"] == "a-1"
        assert headers["X-Churnwatch-Attempt"] == str(n)
        assert headers["X-Churnwatch-Signature"].startswith("sha256=")
        assert verify(
            SECRET.encode(),
            body,
            headers["X-Churnwatch-Timestamp"],
            headers["X-Churnwatch-Signature"],
            now=time.time(),
        )
        assert not verify(
            b"another-secret",
            body,
            headers["X-Churnwatch-Timestamp"],
            headers["X-Churnwatch-Signature"],
            now=time.time(),
        )


async def test_retry_after_is_respected(serve) -> None:
    def script(request: web.Request, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=200)

    receiver = Receiver(script)
    fw, _ = forwarder(await serve(receiver))
    assert (await deliver(fw)).outcome == "ack"
    gap = receiver.seen[1][2] - receiver.seen[0][2]
    assert 0.95 <= gap < 3, gap  # the backoff alone would wait at most 0.05 s


async def test_other_4xx_is_rejected_at_once(serve) -> None:
    receiver = Receiver(lambda r, n: web.Response(status=400, text="bad alert"))
    fw, metrics = forwarder(await serve(receiver))
    assert await deliver(fw) == Result("rejected", 400, 1)
    assert len(receiver.seen) == 1 and posts(metrics, "rejected") == 1


async def test_redirects_are_not_followed(serve) -> None:
    receiver = Receiver(lambda r, n: web.Response(status=302, headers={"Location": "/x"}))
    fw, _ = forwarder(await serve(receiver))
    assert await deliver(fw) == Result("rejected", 302, 1)


async def test_retries_run_out(serve) -> None:
    receiver = Receiver(lambda r, n: web.Response(status=500))
    fw, _ = forwarder(await serve(receiver), max_retries=2)
    assert await deliver(fw) == Result("retries_exhausted", 500, 3)
    assert len(receiver.seen) == 3


async def test_timeouts_are_retried_then_dead(serve) -> None:
    receiver = Receiver(lambda r, n: web.Response(status=200), delay=1.0)
    fw, _ = forwarder(await serve(receiver), max_retries=1, timeout_s=0.2)
    assert await deliver(fw) == Result("retries_exhausted", None, 2, "timeout")


async def test_connection_errors_name_no_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook/secret-path-token"
    fw, _ = forwarder(url, max_retries=1)
    result = await deliver(fw)
    assert (result.outcome, result.status, result.attempts) == ("retries_exhausted", None, 2)
    assert result.error.startswith("connection error") and "secret-path-token" not in result.error
    assert fw.host == url.split("/")[2]


def test_records_without_an_alert_id_or_key() -> None:
    tp = TopicPartition("churn-alerts", 1)
    d = make_delivery(tp, 7, None, b'{"alert_id":"a9","customer_id":"c9"}')
    assert (d.alert_id, d.customer) == ("a9", "c9")
    d = make_delivery(tp, 8, b"c5", b"not json")
    assert (d.alert_id, d.customer) == (None, "c5")
    d = make_delivery(tp, 9, None, None)
    assert (d.alert_id, d.customer, d.value) == (None, "#1/9", b"")


def test_url_and_secret_are_required() -> None:
    registry = ForwardMetrics(CollectorRegistry())
    with pytest.raises(ConfigError, match="no webhook URL"):
        Forwarder(Settings(webhook={"secret": SECRET}), registry)
    with pytest.raises(ConfigError, match="no signing secret"):
        Forwarder(Settings(webhook={"url": "https://example.com/h"}), registry)
    with pytest.raises(ConfigError, match="http:// or https://"):
        Forwarder(Settings(webhook={"url": "ftp://example.com", "secret": SECRET}), registry)


def test_secret_from_a_named_variable_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", SECRET)
    s = with_webhook(Settings(), "HOOK_KEY", url="https://h.example/x", max_retries=3)
    assert s.webhook.secret is not None and s.webhook.secret.get_secret_value() == SECRET
    assert (s.webhook.url, s.webhook.max_retries, s.webhook.timeout_s) == (
        "https://h.example/x",
        3,
        10.0,
    )
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    monkeypatch.delenv("HOOK_KEY")
    with pytest.raises(ConfigError, match="HOOK_KEY is not set"):
        with_webhook(Settings(), "HOOK_KEY")
    with pytest.raises(ConfigError, match="concurrency"):
        with_webhook(Settings(), concurrency=0)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import load_settings

    monkeypatch.setenv("CHURNWATCH_WEBHOOK__SECRET", SECRET)
    monkeypatch.setenv("CHURNWATCH_WEBHOOK__URL", "https://h.example/x")
    monkeypatch.setenv("CHURNWATCH_TOPICS__WEBHOOK_DLQ", "hook-dead")
    s = with_webhook(load_settings(None), None, concurrency=3)
    assert s.webhook.secret is not None and s.webhook.secret.get_secret_value() == SECRET
    assert (s.webhook.url, s.webhook.concurrency) == ("https://h.example/x", 3)
    assert s.topic("webhook_dlq") == "hook-dead"
    assert s.topic("webhook_acks") == "churnwatch-webhook-acks"


def test_acks_topic_is_compacted_and_bounded() -> None:
    from streams.topics import topic_specs

    s = Settings(webhook={"dedupe_days": 2})
    specs = {spec.name: spec for spec in topic_specs(s)}
    acks = specs["churnwatch-webhook-acks"].new_topic()
    assert acks.topic_configs == {"cleanup.policy": "compact,delete", "retention.ms": "172800000"}
    assert specs["churnwatch-webhook-dlq"].new_topic().topic_configs == {}


def test_command_refuses_to_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env["CHURNWATCH_BROKER"] = f"127.0.0.1:{free_port()}"
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "forward", "--url", "http://127.0.0.1:9/h"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "no signing secret" in out.stderr
