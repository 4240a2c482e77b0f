"""Stream benchmark on the embedded broker: prints figures, asserts nothing.

1. throughput: one ``churnwatch worker --clock event`` (decode, engine, state table,
   changelog, alerts) vs a bare aiokafka consume -> json -> produce loop;
2. produce-to-alert latency at a steady rate (from the worker's
   ``churnwatch_event_to_alert_seconds`` histogram), with the consumer fetch
   wait patched to 50 ms and with Faust's stock 1500 ms;
3. the worker's RSS.

    .venv/bin/python bench/stream_bench.py [--customers 400] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.feed import produce
from streams.live import scrape
from streams.settings import Settings
from streams.simulate import SimConfig, generate
from streams.topics import create_topics


async def bare_loop(bootstrap: str, records: list[bytes]) -> float:
    """Events/s of consume -> json.loads -> json.dumps -> produce on one partition."""
    src, dst = f"bare-in-{time.time_ns()}", f"bare-out-{time.time_ns()}"
    s = Settings(broker=bootstrap, partitions=1)
    await produce(s, records, topic=src)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    tp = TopicPartition(src, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    n, started = 0, time.perf_counter()
    while n < len(records):
        batch = await consumer.getmany(timeout_ms=500, max_records=1000)
        for msgs in batch.values():
            for m in msgs:
                obj = json.loads(m.value)
                await producer.send(dst, json.dumps(obj).encode(), key=m.key)
                n += 1
    await producer.flush()
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return n / elapsed


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_worker(s: Settings, port: int, fetch_wait_ms: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHURNWATCH_BROKER": s.broker,
        "CHURNWATCH_PARTITIONS": str(s.partitions),
        "CHURNWATCH_APP_ID": s.app_id,
        "CHURNWATCH_TOPIC_PREFIX": s.topic_prefix,
        "CHURNWATCH_FETCH_WAIT_MS": str(fetch_wait_ms),
        **{k: v for k, v in os.environ.items() if k.startswith("CHURNWATCH_")},
    }
    cmd = [sys.executable, "-m", "streams.cli", "worker", "--clock", "event"]
    cmd += ["--metrics-port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def histogram(port: int, name: str) -> list[tuple[float, float]]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310
        text = r.read().decode()
    out = []
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == name + "_bucket":
                out.append((float(smp.labels["le"]), smp.value))
    return sorted(out)


def run_worker_case(
    bootstrap: str, records: list[bytes], rate: float, fetch_wait_ms: int
) -> dict[str, float]:
    tag = str(time.time_ns())
    s = Settings(broker=bootstrap, partitions=1, app_id=f"bench-{tag}", topic_prefix=f"b{tag}-")
    asyncio.run(create_topics(s))
    port = free_port()
    proc = start_worker(s, port, fetch_wait_ms)
    try:
        wait_for_port("127.0.0.1", port, 30)
        result: dict[str, float] = {}
        if rate == 0:  # throughput: everything at once, time the processing
            asyncio.run(produce(s, records))
            started = None
            while True:
                m = scrape(port)
                done = m.get("done", 0.0)
                if done and started is None:
                    started, first = time.perf_counter(), done
                if done >= len(records):
                    break
                time.sleep(0.2)
            result["events_per_s"] = (len(records) - first) / (time.perf_counter() - started)
        else:  # latency at a steady rate
            warm = 50  # wait for the group join before timing anything
            asyncio.run(produce(s, records[:warm]))
            while scrape(port).get("done", 0.0) < warm:
                time.sleep(0.2)
            before = histogram(port, "churnwatch_event_to_alert_seconds")
            asyncio.run(produce(s, records[warm:], rate=rate))
            time.sleep(3)
            after = histogram(port, "churnwatch_event_to_alert_seconds")
            old = dict(before)
            h = [(b, c - old.get(b, 0.0)) for b, c in after]
            result["alerts"] = h[-1][1] if h else 0
            result["p50_s"] = quantile(h, 0.5) if h else float("nan")
            result["p99_s"] = quantile(h, 0.99) if h else float("nan")
        result["rss_mb"] = rss_mb(proc.pid)
        return result
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=400)
    ap.add_argument("--rate", type=float, default=2000.0)
    args = ap.parse_args()
    events, _ = generate(SimConfig(customers=args.customers, days=540, seed=5))
    records = [json.dumps(e, separators=(",", ":")).encode() for e in events]
    print(f"{len(records):,} simulated events, {args.customers} customers")
    with EmbeddedBroker() as broker:
        bare = asyncio.run(bare_loop(broker.bootstrap, records))
        print(f"bare aiokafka consume->json->produce: {bare:,.0f} events/s")
        w = run_worker_case(broker.bootstrap, records, 0, 50)
        print(
            f"churnwatch worker (full work, 1 partition): {w['events_per_s']:,.0f} events/s "
            f"= {w['events_per_s'] / bare:.0%} of the bare loop, RSS {w['rss_mb']:.0f} MB"
        )
        # a fresh, short stream for latency (tansu slows as topics fill)
        short = records[: int(args.rate * 20)]
        for wait in (50, 1500):
            lat = run_worker_case(broker.bootstrap, short, args.rate, wait)
            print(
                f"latency at {args.rate:.0f} ev/s, fetch wait {wait} ms: "
                f"p50 <= {lat['p50_s']}s p99 <= {lat['p99_s']}s over {lat['alerts']:.0f} alerts "
                f"(histogram bucket bounds), RSS {lat['rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
