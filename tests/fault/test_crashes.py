"""Worker crashes, restarts, rebalances and a frozen broker, each checked against replay
(the invariants are in harness.py)."""

from __future__ import annotations

import json
import random
import signal
import time

import harness
import pytest

pytestmark = [pytest.mark.integration]

PARTITIONS = 3


@pytest.fixture(scope="module")
def events() -> list[dict]:
    """About 6k events of 150 customers over a year, with ids and sequence numbers."""
    return harness.customer_events(customers=150, days=365, seed=3)


def no_duplicate_alerts(run: harness.FaultRun, oracle: harness.Oracle) -> list[str]:
    res = run.result
    return [f"{res.duplicates} duplicate alerts"] if res.duplicates else []


def test_kill9_mid_burst(fault_run, events) -> None:
    run = fault_run("kill -9 mid-burst, restart", store="rocksdb://")
    worker = run.start_worker()
    run.produce(harness.records(events, PARTITIONS), rate=1500, wait=False)
    run.wait_committed(0.3)
    run.kill(worker)
    run.start_worker()
    run.finish()


def test_burst_of_kills(fault_run, events) -> None:
    """Five kill -9 0.1-1 s apart, each worker restarted at once: the first dies mid-burst,
    the others while starting, restoring or joining the group."""
    run = fault_run("5 kills 0.1-1 s apart")
    rng = random.Random(5)
    worker = run.start_worker()
    run.produce(harness.records(events, PARTITIONS), rate=1000, wait=False)
    run.wait_committed(0.2)
    for _ in range(5):
        run.kill(worker)
        worker = run.start_worker()
        time.sleep(rng.uniform(0.1, 1.0))
    run.finish()


def test_graceful_restart_sends_no_duplicate(fault_run, events) -> None:
    """SIGTERM mid-burst: the worker finishes its batch, checkpoints and commits; the
    restarted one goes on where it stopped, so not one alert is sent twice."""
    run = fault_run("graceful restart (SIGTERM)", store="rocksdb://")
    worker = run.start_worker()
    run.produce(harness.records(events, PARTITIONS), rate=1500, wait=False)
    run.wait_committed(0.3)
    assert run.terminate(worker) == 0, run.logs()[-3000:]
    run.start_worker()
    run.finish(check=no_duplicate_alerts)


def test_scale_one_two_one(fault_run, events) -> None:
    """A second worker joins mid-stream (partitions move to it and are restored from the
    changelog) and leaves again (they move back)."""
    run = fault_run("scale 1 -> 2 -> 1 workers")
    first = run.start_worker()
    run.produce(harness.records(events, PARTITIONS), rate=700, wait=False)
    run.wait_committed(0.15)
    second = run.start_worker()
    run.fault()
    assert harness.wait_for(lambda: owned(second) > 0, 60), "the second worker got no partition"
    run.wait_committed(0.6)
    assert run.terminate(second) == 0
    assert harness.wait_for(lambda: owned(first) == PARTITIONS, 60)
    run.finish(check=no_duplicate_alerts)


def owned(worker: harness.Worker) -> int:
    try:
        text = harness.scrape(worker.port)
    except OSError:
        return 0
    return int(harness.metric(text, "churnwatch_partitions_assigned"))


def test_restart_with_state_directory_deleted(fault_run, events) -> None:
    """RocksDB state gone between two runs: the worker restores every partition from the
    changelog and goes on exactly where the last checkpoint left off."""
    run = fault_run("restart, local state deleted", store="rocksdb://")
    recs = harness.records(events, PARTITIONS)
    half = len(recs) // 2
    worker = run.start_worker()
    run.produce(recs[:half], rate=2000)
    run.wait_committed(0.5)
    assert run.terminate(worker) == 0
    assert any(run.data_dir.iterdir()), "the worker kept no local state"
    run.delete_state()
    run.start_worker()
    run.produce(recs[half:], rate=2000)
    run.finish(check=no_duplicate_alerts)


def test_silent_customer_swept_across_a_rebalance(fault_run, events) -> None:
    """Customers silent since before a rebalance come due after it: the partition's new
    owner sweeps them (small checkpoints: a sweep seals many times) with replay's alerts."""
    run = fault_run(
        "silent customers swept across rebalance", env={"CHURNWATCH_CHECKPOINT_BYTES": "1024"}
    )
    recs = harness.records(events, PARTITIONS)
    cut = int(len(recs) * 0.6)
    run.start_worker()
    run.produce(recs[:cut], rate=2000)
    run.wait_committed(0.9)
    second = run.start_worker()
    run.fault()
    run.produce(recs[cut:], rate=600, wait=False)
    assert harness.wait_for(lambda: owned(second) > 0, 60)
    split = json.loads(recs[cut].value)["ts"]

    def swept_after_split(run: harness.FaultRun, oracle: harness.Oracle) -> list[str]:
        last_seen: dict[str, str] = {}
        for rec in recs[:cut]:
            e = json.loads(rec.value)
            last_seen[e["customer_id"]] = e["ts"]
        active = {json.loads(r.value)["customer_id"] for r in recs[cut:]}
        swept = [
            a
            for a in map(json.loads, oracle.alerts.values())
            if a["trigger"] == "sweep"
            and a["as_of"] > split
            and a["customer_id"] in last_seen
            and a["customer_id"] not in active
        ]
        return [] if swept else ["no customer silent since before the rebalance was swept"]

    run.finish(check=swept_after_split)


def test_broker_frozen_under_load(broker_factory, fault_run, events) -> None:
    """The broker stops answering for 12 s (SIGSTOP, longer than the 6 s session timeout)
    in the middle of a burst, then resumes. A worker that gives up is restarted, as a
    supervisor would. (A real restart of the embedded broker would lose every topic: it
    keeps data in memory only; Apache Kafka keeps it on disk.)"""
    own = broker_factory()
    run = fault_run("broker frozen 12 s under load", broker=own)
    run.start_worker()
    run.produce(harness.records(events, PARTITIONS), rate=800, wait=False)
    run.wait_committed(0.2)
    run.fault()
    own.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(12)
    finally:
        own.proc.send_signal(signal.SIGCONT)
    run.finish(timeout=180)
