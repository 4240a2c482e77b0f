"""Engine benchmarks: cost per event and per sweep, state size, replay throughput and memory.

Prints figures; asserts nothing. Run with ``make bench`` (or ``python bench/engine_bench.py
--events 1000000``). The 1M-customer memory run uses a compact synthetic stream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from detectors import BytesStore, Engine, EngineConfig, decode_event
from streams.simulate import SimConfig, generate, write_events


def simulated_file(workdir: Path, target_events: int, seed: int) -> tuple[Path, int]:
    customers = max(200, int(target_events / 48))
    events, _ = generate(SimConfig(customers=customers, seed=seed))
    path = workdir / f"sim-{len(events)}.jsonl"
    write_events(path, events)
    return path, len(events)


def engine_costs(
    path: Path, partitions: int, store: type = BytesStore, risk_target: str = "churn"
) -> None:
    lines = path.read_bytes().splitlines()
    t0 = time.perf_counter()
    events = [decode_event(line) for line in lines]
    decode_s = time.perf_counter() - t0

    cfg = EngineConfig(risk_target=risk_target)  # type: ignore[arg-type]
    engine = Engine(cfg, partitions=partitions, store_factory=store)
    sweep_s = 0.0
    process_s = 0.0
    perf = time.perf_counter
    per_event: list[float] = []
    decode_each = decode_s / len(lines)
    for event in events:
        shard = engine.shard_of(event.customer_id)
        a = perf()
        shard.advance(event.ts)  # type: ignore[arg-type]
        b = perf()
        shard.process(event)
        c = perf()
        process_s += c - b
        sweep_s += b - a
        per_event.append(c - b + decode_each)
    per_event.sort()
    counts = engine.counts()
    n = len(events)
    swept = counts["swept"]
    sizes = sorted(
        len(shard.store.raw(k))  # type: ignore[attr-defined]
        for shard in engine.shards
        for k in shard.store
    )
    print(f"events                         {n:,} ({counts['customers']:,} customers)")
    print(f"decode                         {decode_s / n * 1e6:6.1f} us/event")
    print(f"process (update+score+alerts)  {process_s / n * 1e6:6.1f} us/event (mean)")
    print(
        f"decode + process per event     median {per_event[n // 2] * 1e6:.1f} us, "
        f"p90 {per_event[int(n * 0.9)] * 1e6:.1f} us  (target median <= 30)"
    )
    print(f"decode + process               {(decode_s + process_s) / n * 1e6:6.1f} us/event (mean)")
    print(
        f"sweep                          {sweep_s / max(swept, 1) * 1e6:6.1f} us/swept customer"
        f" ({swept:,} sweeps, {swept / n:.2f} per event)"
    )
    print(
        f"all engine work                {(decode_s + process_s + sweep_s) / n * 1e6:6.1f} us/event"
    )
    print(
        f"state bytes/customer           median {statistics.median(sizes):.0f}, "
        f"p90 {sizes[int(len(sizes) * 0.9)]}, max {sizes[-1]}  (target median <= 1024)"
    )


def replay_throughput(path: Path, n: int, partitions: int, risk_target: str = "churn") -> None:
    out = path.with_suffix(".alerts.jsonl")
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "replay",
            str(path),
            "--alerts-out",
            str(out),
            "--partitions",
            str(partitions),
            "--risk-target",
            risk_target,
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    dt = time.perf_counter() - t0
    print(
        f"replay throughput              {n / dt:,.0f} events/s over {n:,} events"
        "  (target >= 25,000)"
    )


def many_customers_file(workdir: Path, customers: int) -> Path:
    """Two orders per customer, time-sorted: the memory case of a huge customer base."""
    path = workdir / f"customers-{customers}.jsonl"
    start = 1_704_067_200_000
    step = 180 * 86_400_000 // customers
    with path.open("w") as fh:
        for round_ in range(2):
            for i in range(customers):
                ts = start + round_ * 200 * 86_400_000 + i * step
                fh.write(
                    json.dumps(
                        {
                            "event_id": f"e{round_}-{i}",
                            "event_type": "order",
                            "customer_id": f"c{i}",
                            "ts": ts,
                            "order_id": f"o{round_}-{i}",
                            "amount": 10 + i % 90,
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
    return path


def replay_memory(path: Path, customers: int, partitions: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "replay",
        str(path),
        "--alerts-out",
        "/dev/null",
        "--partitions",
        str(partitions),
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    rss = next(
        (
            line.split(":")[1].strip()
            for line in proc.stderr.splitlines()
            if "Maximum resident set size" in line
        ),
        "?",
    )
    rss_mb = int(rss) / 1024 if rss.isdigit() else float("nan")
    print(
        f"replay peak RSS                {rss_mb:,.0f} MB with {customers:,} customers "
        f"({2 * customers:,} events in {dt:.0f} s)  (target <= 2048)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=1_000_000, help="for the memory run")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--risk-target", choices=("churn", "lapse"), default="churn")
    args = ap.parse_args()
    print(f"risk target {args.risk_target}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path, n = simulated_file(work, args.events, args.seed)
        engine_costs(path, args.partitions, risk_target=args.risk_target)
        replay_throughput(path, n, args.partitions, args.risk_target)
        if args.customers:
            replay_memory(
                many_customers_file(work, args.customers), args.customers, args.partitions
            )


if __name__ == "__main__":
    main()
