"""The long run (``make soak``): workers killed, stopped, scaled and restarted at random
for ``CHURNWATCH_SOAK_MINUTES`` (30) while events arrive at ``CHURNWATCH_SOAK_RATE`` (200)
per second, then every invariant of harness.py against replay of the whole stream."""

from __future__ import annotations

import os
import random
import time

import harness
import pytest

pytestmark = [pytest.mark.fault]

PARTITIONS = 3
SLOTS = ("a", "b")


def test_soak_faults_at_load(fault_run) -> None:
    minutes = float(os.environ.get("CHURNWATCH_SOAK_MINUTES", "30"))
    rate = float(os.environ.get("CHURNWATCH_SOAK_RATE", "200"))
    seed = int(os.environ.get("CHURNWATCH_SOAK_SEED", "1"))
    rng = random.Random(seed)
    want = int(minutes * 60 * rate)
    events = harness.customer_events(customers=max(150, want // 35), days=365, seed=seed)
    events = events[:want]
    run = fault_run(f"soak: {minutes:g} min of faults at {rate:g}/s", store="rocksdb://")
    workers = {"a": run.start_worker("a")}
    run.produce(harness.records(events, PARTITIONS), rate=rate, wait=False)
    deadline = time.monotonic() + minutes * 60
    actions: dict[str, int] = {}
    while time.monotonic() < deadline and not run._producing.done():
        time.sleep(rng.uniform(5, 20))
        run.restart_dead()
        for w in run.workers:
            if w.alive and w.proc.poll() is None:
                workers[w.slot] = w
        live = [s for s in SLOTS if s in workers and workers[s].proc.poll() is None]
        action = rng.choice(["kill", "kill", "burst", "term", "scale"])
        actions[action] = actions.get(action, 0) + 1
        slot = rng.choice(live)
        if action == "kill":
            run.kill(workers[slot])
            workers[slot] = run.start_worker(slot)
        elif action == "burst":
            for _ in range(3):
                run.kill(workers[slot])
                workers[slot] = run.start_worker(slot)
                time.sleep(rng.uniform(0.1, 1.0))
        elif action == "term":
            run.terminate(workers[slot])
            workers[slot] = run.start_worker(slot)
        elif len(live) == 1:  # scale out
            other = "b" if slot == "a" else "a"
            workers[other] = run.start_worker(other)
            run.fault()
        else:  # scale in
            run.terminate(workers[slot])
            del workers[slot]
    run.mark(f"actions {actions}")
    run.finish(timeout=900)
