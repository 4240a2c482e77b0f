"""State at scale: one worker on the RocksDB store with many customers; prints figures.

Produces two orders for each of ``--customers`` customers (ids spread over the
partitions, event time over a year) to ``customer-events`` on the embedded
broker, runs ``churnwatch worker --store rocksdb:// --clock event`` until all
are processed, then reports the worker's RSS (now and peak), the RocksDB
directory size per customer and the serialised state size per customer.

    .venv/bin/python bench/state_bench.py [--customers 1000000] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rocksdict import Options, Rdict

from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.feed import produce
from streams.live import scrape
from streams.settings import Settings
from streams.topics import create_topics

DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01


def events(customers: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(customers):
        first = START_MS + rng.randrange(365 * DAY_MS)
        for k, ts in enumerate((first, first + rng.randrange(7, 90) * DAY_MS)):
            out.append(
                (
                    ts,
                    json.dumps(
                        {
                            "event_type": "order",
                            "event_id": f"o{i}-{k}",
                            "order_id": f"o{i}-{k}",
                            "customer_id": f"c{i:08d}",
                            "ts": ts,
                            "amount": round(rng.uniform(10, 200), 2),
                            "items": rng.randint(1, 5),
                        },
                        separators=(",", ":"),
                    ).encode(),
                )
            )
    out.sort(key=lambda r: r[0])
    return [r[1] for r in out]


def scrape_or_zero(port: int) -> float:
    try:
        return scrape(port).get("done", 0.0)
    except OSError:  # the worker is gone: the caller checks and prints its log
        return 0.0


def proc_status(pid: int) -> dict[str, float]:
    figures = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                figures[key] = int(rest.split()[0]) / 1024
    return figures


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def state_sizes(data_dir: Path, sample: int = 20000) -> list[int]:
    """Serialised customer state sizes read back from the worker's RocksDB files."""
    sizes: list[int] = []
    for db_dir in sorted(data_dir.rglob("*.db")):
        opts = Options(raw_mode=True)
        db = Rdict(str(db_dir), options=opts)
        for key, value in db.items():
            if isinstance(key, bytes) and not key.startswith((b"\x00", b"__faust")):
                sizes.append(len(value))
                if len(sizes) >= sample:
                    break
        db.close()
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds")
    args = ap.parse_args()
    records = events(args.customers, args.seed)
    print(f"{len(records):,} events for {args.customers:,} customers")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        tag = str(time.time_ns())
        s = Settings(
            broker=broker.bootstrap,
            partitions=args.partitions,
            app_id=f"state-{tag}",
            topic_prefix=f"s{tag}-",
        )
        asyncio.run(create_topics(s))
        port = free_port()
        data_dir = Path(tmp) / "data"
        env = {
            **os.environ,
            "CHURNWATCH_BROKER": s.broker,
            "CHURNWATCH_PARTITIONS": str(s.partitions),
            "CHURNWATCH_APP_ID": s.app_id,
            "CHURNWATCH_TOPIC_PREFIX": s.topic_prefix,
            "CHURNWATCH_STORE": "rocksdb://",
            "CHURNWATCH_DATA_DIR": str(data_dir),
        }
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--clock", "event"]
        cmd += ["--metrics-port", str(port)]
        log = (Path(tmp) / "worker.log").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            wait_for_port("127.0.0.1", port, 60)
            started = time.perf_counter()
            asyncio.run(produce(s, records))
            print(f"produced in {time.perf_counter() - started:.0f}s")
            last = 0.0
            while (done := scrape_or_zero(port)) < len(records):
                if proc.poll() is not None or time.perf_counter() - started > args.timeout:
                    tail = (Path(tmp) / "worker.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"worker stopped at {done:,.0f} events:\n{tail}")
                if time.perf_counter() - last > 30:
                    print(f"  processed {done:,.0f}  {proc_status(proc.pid)}", flush=True)
                    last = time.perf_counter()
                time.sleep(1)
            elapsed = time.perf_counter() - started
            status = proc_status(proc.pid)
            print(f"processed {len(records):,} events in {elapsed:.0f}s")
            print(
                f"worker RSS {status['VmRSS']:.0f} MB, peak {status['VmHWM']:.0f} MB "
                f"with {args.customers:,} customers"
            )
            print(
                f"RocksDB directory {du_mb(data_dir):.0f} MB "
                f"= {du_mb(data_dir) * 2**20 / args.customers:.0f} B per customer"
            )
        finally:
            proc.terminate()
            proc.wait(60)
        sizes = state_sizes(data_dir)
        if sizes:
            print(
                f"serialised state per customer (sample {len(sizes):,}): "
                f"median {statistics.median(sizes):.0f} B, max {max(sizes)} B"
            )


if __name__ == "__main__":
    main()
