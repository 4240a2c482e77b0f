"""``churnwatch demo``: embedded broker, topics, a worker, the simulator and a live view."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from detectors import Alert, decode_alert
from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.feed import produce, read_topic
from streams.settings import Settings
from streams.simulate import SimConfig, generate
from streams.topics import create_topics

COLOURS = {"critical": "red", "high": "dark_orange", "medium": "yellow", "low": "green"}


@dataclass
class View:
    sent: int = 0
    total: int = 0
    producing: bool = True
    processed: float = 0.0
    rate: float = 0.0
    at_risk: dict[str, float] = field(default_factory=dict)
    value_at_risk: float = 0.0
    alerts: int = 0
    recent: deque[Alert] = field(default_factory=lambda: deque(maxlen=14))
    started: float = field(default_factory=time.monotonic)

    def render(self, title: str) -> Group:
        stats = Table.grid(padding=(0, 3))
        risk = "  ".join(
            f"[{COLOURS[k]}]{k} {int(v)}[/]" for k, v in self.at_risk.items() if k != "low"
        )
        stats.add_row(
            f"sent {self.sent:,}/{self.total:,}",
            f"processed {int(self.processed):,}",
            f"{self.rate:,.0f} events/s",
            f"alerts {self.alerts:,}",
        )
        stats.add_row(f"at risk: {risk or '-'}", f"value at risk {self.value_at_risk:,.0f}", "", "")
        table = Table(expand=True, box=None)
        for col, width in (("as of", 10), ("kind", 11), ("level", 8), ("customer", 8)):
            table.add_column(col, no_wrap=True, min_width=width)
        table.add_column("risk", no_wrap=True, min_width=4)
        table.add_column("value at risk", no_wrap=True, justify="right", min_width=7)
        table.add_column("top reason", no_wrap=True, overflow="ellipsis", ratio=1)
        for a in reversed(self.recent):
            colour = COLOURS.get(a.risk_level, "white")
            table.add_row(
                a.as_of[:10],
                a.kind,
                f"[{colour}]{a.risk_level}[/]",
                a.customer_id,
                f"{a.risk_score:.2f}",
                f"{a.value_at_risk:,.0f}",
                a.reasons[0].message[:60] if a.reasons else "customer is back",
            )
        elapsed = time.monotonic() - self.started
        return Group(Panel(stats, title=f"{title} - {elapsed:.0f}s"), table)


def scrape(port: int) -> dict[str, float]:
    """A few sums from the worker's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own worker
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "churnwatch_events_total":
                out["done"] = out.get("done", 0.0) + s.value
                if s.labels.get("outcome") == "processed":
                    out["processed"] = out.get("processed", 0.0) + s.value
            elif s.name == "churnwatch_customers_at_risk":
                out[f"risk:{s.labels['level']}"] = s.value
            elif s.name == "churnwatch_value_at_risk":
                out["var"] = s.value
    return out


def start_worker(settings: Settings, metrics_port: int, log_path: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHURNWATCH_BROKER": settings.broker,
        "CHURNWATCH_PARTITIONS": str(settings.partitions),
        "CHURNWATCH_APP_ID": settings.app_id,
        "CHURNWATCH_TOPIC_PREFIX": settings.topic_prefix,
        "CHURNWATCH_PRODUCER_BATCH_BYTES": str(settings.producer_batch_bytes),
        "CHURNWATCH_LOG_LEVEL": "info",
    }
    cmd = [sys.executable, "-m", "streams.cli", "worker", "--clock", "event"]
    cmd += ["--metrics-port", str(metrics_port), "--metrics-host", settings.metrics_host]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def run_demo(
    settings: Settings,
    *,
    embedded: bool,
    customers: int,
    days: int,
    seed: int,
    rate: float,
    duration: float | None,
    metrics_port: int | None,
    workdir: str,
    console: Console,
) -> View:
    """Run the whole pipeline until the simulated stream is processed (or ``duration``)."""
    os.makedirs(workdir, exist_ok=True)
    broker = EmbeddedBroker(log=None) if embedded else None
    worker: subprocess.Popen[bytes] | None = None
    view = View()
    try:
        if broker is not None:
            broker.start()
            settings = settings.model_copy(update={"broker": broker.bootstrap})
            console.print(f"embedded broker (tansu) on {broker.bootstrap}")
        asyncio.run(create_topics(settings))
        port = metrics_port or free_port()
        worker = start_worker(settings, port, os.path.join(workdir, "demo-worker.log"))
        if not wait_for_port("127.0.0.1", port, 30):
            raise RuntimeError(f"worker did not start, see {workdir}/demo-worker.log")
        console.print(f"worker metrics on http://127.0.0.1:{port}/metrics")
        events, _ = generate(SimConfig(customers=customers, days=days, seed=seed))
        view.total = len(events)
        asyncio.run(_live(settings, view, events, rate, duration, port, console))
    except KeyboardInterrupt:
        console.print("stopping (Ctrl-C)")
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
    return view


async def _live(
    settings: Settings,
    view: View,
    events: list[dict[str, object]],
    rate: float,
    duration: float | None,
    port: int,
    console: Console,
) -> None:
    import json

    encode = json.JSONEncoder(separators=(",", ":")).encode
    stop = asyncio.Event()
    records = (encode(e).encode() for e in events)

    async def producer() -> None:
        def progress(n: int) -> None:
            view.sent = n

        await produce(settings, records, rate=rate, progress=progress, stop=stop)
        view.producing = False

    async def alerts() -> None:
        async for _, value, _, _ in read_topic(settings, settings.topic("alerts")):
            if value is not None:
                view.alerts += 1
                view.recent.append(decode_alert(value))
            if stop.is_set():
                return

    tasks = [asyncio.create_task(producer()), asyncio.create_task(alerts())]
    last_done, last_t, quiet_since = 0.0, time.monotonic(), None
    title = f"churnwatch demo: {len(events):,} events"
    with Live(view.render(title), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(1.0)
            try:
                m = await asyncio.to_thread(scrape, port)
            except OSError:
                m = {}
            now = time.monotonic()
            done = m.get("done", 0.0)
            view.processed = m.get("processed", 0.0)
            view.rate = (done - last_done) / (now - last_t)
            last_done, last_t = done, now
            view.at_risk = {k[5:]: v for k, v in m.items() if k.startswith("risk:")}
            view.value_at_risk = m.get("var", 0.0)
            live.update(view.render(title))
            finished = not view.producing and done >= view.sent
            quiet_since = (quiet_since or now) if finished else None
            if quiet_since is not None and now - quiet_since > 2.0:
                break
            if duration is not None and now - view.started > duration:
                break
            if any(t.done() and t.exception() for t in tasks):
                break
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["View", "run_demo"]
