"""Bad input on a real broker: duplicates, disorder, absurd times, poison payloads and an
engine that raises, each checked against replay (the invariants are in harness.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import harness
import pytest

from detectors import partition_for

pytestmark = [pytest.mark.integration]

PARTITIONS = 3
MARKER = "POISON-7f3a"


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    """About 4k events of 100 customers over a year, with ids and sequence numbers."""
    return harness.customer_events(customers=100, days=365, seed=11)


def event(cid: str, ts: str | int, eid: str, etype: str = "visit", **fields: Any) -> bytes:
    body = {"event_id": eid, "event_type": etype, "customer_id": cid, "ts": ts, **fields}
    return json.dumps(body).encode()


def keyed(value: bytes, cid: str) -> harness.Rec:
    return harness.Rec(cid.encode(), value, partition_for(cid, PARTITIONS))


def test_duplicate_delivery(fault_run, events) -> None:
    """A range delivered twice right after itself (dropped: the engine remembers recent
    event ids) and another one again at the very end (some now beyond that memory)."""
    run = fault_run("duplicate delivery of ranges")
    recs = harness.records(events, PARTITIONS)
    recs = harness.duplicated(recs, 1000, 400, 1400)
    recs = harness.duplicated(recs, 2000, 300, len(recs))
    run.start_worker()
    run.produce(recs)

    def dropped(run: harness.FaultRun, oracle: harness.Oracle) -> list[str]:
        n = sum(c["duplicates"] for c in oracle.counts)
        return [] if n >= 300 else [f"only {n} duplicates dropped"]

    run.finish(check=dropped)


def test_out_of_order_and_late_events(fault_run, events) -> None:
    """Records shuffled within windows of 50; 3 % of them arrive 500 records late."""
    run = fault_run("out-of-order and late events")
    recs = harness.shuffled(harness.records(events, PARTITIONS), 50, 0.03, 500, seed=7)
    run.start_worker()
    run.produce(recs)
    run.finish()


def test_far_future_and_far_past_timestamps(fault_run, events) -> None:
    """Valid but absurd times (1990, 2099, epoch ms in 2096) move a partition's event clock
    decades ahead or arrive decades late; times outside 1990-2100 are dead-lettered."""
    run = fault_run("far-future and far-past timestamps")
    recs = harness.records(events, PARTITIONS)
    cids = sorted({e["customer_id"] for e in events})
    odd = [
        (0.3, keyed(event(cids[0], "1990-01-02T00:00:00Z", "past-1"), cids[0])),
        (0.5, keyed(event(cids[1], "2099-06-01T00:00:00Z", "future-1"), cids[1])),
        (
            0.6,
            keyed(
                event(cids[2], 4_000_000_000_000, "future-2", "order", order_id="o1", amount=10.0),
                cids[2],
            ),
        ),
        (0.7, keyed(event(cids[3], "1969-12-31T23:59:59Z", "too-early"), cids[3])),
        (0.8, keyed(event(cids[4], "2100-06-01T00:00:00Z", "too-late"), cids[4])),
    ]
    for share, rec in sorted(odd, key=lambda x: -x[0]):
        recs.insert(int(len(recs) * share), rec)
    run.start_worker()
    run.produce(recs)
    run.finish()


def poison(cid: str) -> list[bytes]:
    """One payload per reject reason, each carrying the marker (in the id where it can)."""
    ts = "2024-06-01T00:00:00Z"
    good = {
        "event_id": f"{MARKER}-e",
        "event_type": "order",
        "customer_id": cid,
        "ts": ts,
        "order_id": f"{MARKER}-o",
        "amount": 12.5,
    }

    def with_(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        f"{MARKER} this is not JSON {{".encode(),
        b"\xff\xfe" + MARKER.encode(),
        json.dumps([MARKER, 1, 2]).encode(),
        json.dumps({k: v for k, v in good.items() if k != "ts"}).encode(),
        with_(amount="12.5"),
        with_(amount=-1),
        with_(items=1.5),
        with_(ts="yesterday"),
        with_(event_type="fax"),
        with_(customer_id=""),
        with_(event_id="x" * 200),
        with_().replace(b'"amount": 12.5', b'"amount": NaN'),
        with_().replace(b'"amount": 12.5', b'"amount": Infinity'),
        with_().replace(b'"ts"', b'"event_id": "dup", "ts"'),
        with_(action=MARKER * 10_000),
        b"",
        b"   ",
    ]


def test_poison_payloads(fault_run, events) -> None:
    """Every kind of bad payload is dead-lettered with its original bytes and a reason,
    the rest flows, and no log line carries a payload or a customer id."""
    run = fault_run("poison payloads")
    recs = harness.records(events, PARTITIONS)
    cid = f"{MARKER}-customer"
    bad = [keyed(value, cid) for value in poison(cid)]
    bad.append(harness.raw_record(f"{MARKER} keyless".encode(), 1))  # no key at all
    misrouted = sorted({e["customer_id"] for e in events})[0]
    wrong = (partition_for(misrouted, PARTITIONS) + 1) % PARTITIONS
    value = event(misrouted, "2024-06-01T00:00:00Z", f"{MARKER}-misrouted")
    bad.append(harness.Rec(misrouted.encode(), value, wrong))
    step = len(recs) // (len(bad) + 1)
    for i, rec in enumerate(reversed(bad)):
        recs.insert(len(recs) - (i + 1) * step, rec)
    run.start_worker()
    run.produce(recs)

    def logs_carry_metadata_only(run: harness.FaultRun, oracle: harness.Oracle) -> list[str]:
        problems = []
        reasons = {harness.expected_outcome(r, PARTITIONS) for r in bad}
        if len(reasons) < 10:
            problems.append(f"only {len(reasons)} kinds of rejects: {sorted(map(str, reasons))}")
        text = run.logs()
        if MARKER in text or misrouted in text:
            problems.append("a worker log carries a payload or a customer id")
        return problems

    run.finish(check=logs_carry_metadata_only)


def test_engine_exception_is_dead_lettered(fault_run, events) -> None:
    """A worker whose engine raises for some customers (a test build: see
    engine_fault_worker.py): their records go to the DLQ as engine_error, every other
    record flows as in replay, and the log names the record but not the customer."""
    cmd = [sys.executable, str(harness.HERE / "engine_fault_worker.py"), "worker"]
    run = fault_run("exception inside the engine", worker_cmd=cmd)
    recs = harness.records(events, PARTITIONS)
    boom = [f"boom-{i}" for i in range(3)]
    for i, cid in enumerate(boom):
        for j, share in enumerate((0.2, 0.45, 0.7)):
            value = event(cid, events[int(len(events) * share)]["ts"], f"{cid}-{j}")
            recs.insert(int(len(recs) * share) + i, keyed(value, cid))
    run.start_worker()
    run.produce(recs)

    def logged(run: harness.FaultRun, oracle: harness.Oracle) -> list[str]:
        text = run.logs()
        problems = []
        if text.count("engine failed on") != 9:
            problems.append(f"{text.count('engine failed on')} engine errors logged, not 9")
        if "boom-" in text:
            problems.append("the log names the customer")
        return problems

    run.finish(engine_fails=lambda cid: cid.startswith("boom"), check=logged)
