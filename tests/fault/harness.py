"""Fault harness: run workers on the embedded broker, inject faults, compare with replay.

A scenario builds an input (simulated customers whose events carry ids and
per-customer sequence numbers, plus whatever bad input the scenario adds),
produces it to ``customer-events``, runs one or more ``churnwatch worker``
processes (event clock, so the result is deterministic) and injects faults:
``kill -9``, SIGTERM, more workers, a deleted state directory, a frozen broker.
The oracle is :func:`streams.replay.replay` of the same records, sharded as the
worker shards them. Once every partition is caught up, :meth:`FaultRun.verify`
checks:

1. **State**: every partition's customer states, read back from the changelog
   (newest value per key, newest checkpoint's states laid over them), equal the
   oracle's byte for byte; so do the shard clock and the model (labels learned,
   progressive metrics and the scores of fixed probes).
2. **Alerts**: the set of alert ids on ``churn-alerts`` equals the oracle's, and
   every alert record, duplicates included, equals the oracle's alert byte for
   byte apart from ``emitted_at``.
3. **Accounting**, per partition: the ledger of the newest checkpoint (and the
   owner's ``churnwatch_partition_records`` gauge) gives processed + duplicate +
   dead_lettered = records produced to the partition; processed and duplicate
   equal the oracle's counts; dead letters are exactly the records the decoder
   (or the routing, or the engine) rejects, each with its original bytes and
   reason, none missing.
4. **Offsets**: the consumer group's committed offsets never move backwards
   (polled every 0.25 s) and end at the partition's end (lag zero).

Each run leaves a :class:`Result` in :data:`RESULTS` (printed as a table at the end
of the session) whether it passes or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cw_metrics import metric, scrape

from detectors import DecodeError, EngineConfig, decode_event, partition_for
from detectors.model import ShardModel
from detectors.profile import FEATURES
from streams.broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.simulate import SimConfig, generate
from streams.tables import FENCE_PREFIX, decode_checkpoint, is_customer_key
from streams.topics import STATE_TABLE, create_topics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLI = [sys.executable, "-m", "streams.cli"]
RESULTS: list[Result] = []
OUTCOMES = ("processed", "duplicate", "dead_lettered")
PROBES = [([0.0] * len(FEATURES), 0.0), ([0.5 * (i % 5) for i in range(len(FEATURES))], 1.5)]
EMITTED_AT = re.compile(rb'"emitted_at":"[^"]*"')

# ---------------------------------------------------------------------------- input


@dataclass
class Rec:
    """One record to produce; ``offset`` is filled in from the broker's ack."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int = -1


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def customer_events(customers: int = 150, days: int = 365, seed: int = 3) -> list[dict[str, Any]]:
    """Simulated events in time order, each with a unique ``event_id`` and ``seq``: the
    event's number in its customer's history (1, 2, ...), an extra field the decoder ignores.
    """
    events, _ = generate(SimConfig(customers=customers, days=days, seed=seed))
    seq: Counter[str] = Counter()
    for e in events:
        seq[e["customer_id"]] += 1
        e["seq"] = seq[e["customer_id"]]
    return events


def records(events: Iterable[dict[str, Any]], partitions: int) -> list[Rec]:
    """Events as records keyed by customer id on the murmur2 partition, as producers do."""
    return [
        Rec(e["customer_id"].encode(), encode(e), partition_for(e["customer_id"], partitions))
        for e in events
    ]


def raw_record(value: bytes, partition: int, key: bytes | None = None) -> Rec:
    return Rec(key, value, partition)


def duplicated(recs: list[Rec], start: int, length: int, at: int) -> list[Rec]:
    """``recs`` with ``recs[start:start+length]`` delivered a second time at position ``at``."""
    again = [Rec(r.key, r.value, r.partition) for r in recs[start : start + length]]
    return recs[:at] + again + recs[at:]


def shuffled(recs: list[Rec], window: int, late: float, lateness: int, seed: int) -> list[Rec]:
    """Out of order: records shuffled within windows of ``window``; a share ``late`` of them
    moved ``lateness`` positions later (late arrivals)."""
    rng = random.Random(seed)
    out = list(recs)
    for i in range(0, len(out), window):
        chunk = out[i : i + window]
        rng.shuffle(chunk)
        out[i : i + window] = chunk
    moved = sorted(rng.sample(range(len(out)), int(len(out) * late)), reverse=True)
    for i in moved:
        rec = out.pop(i)
        out.insert(min(i + lateness, len(out)), rec)
    return out


def expected_outcome(
    rec: Rec, partitions: int, engine_fails: Callable[[str], bool] | None = None
) -> str | None:
    """``None`` for a record the engine applies, else the dead-letter reason it must get."""
    try:
        event = decode_event(rec.value)
    except DecodeError as exc:
        return exc.reason
    if partition_for(event.customer_id, partitions) != rec.partition:
        return "wrong_partition"
    if engine_fails is not None and engine_fails(event.customer_id):
        return "engine_error"
    return None


# ---------------------------------------------------------------------------- oracle


@dataclass
class Oracle:
    """What ``churnwatch replay --partitions N`` makes of the same records."""

    alerts: dict[str, bytes]
    """alert id -> the alert's JSON without ``emitted_at``."""
    states: list[dict[str, bytes]]
    clocks: list[int]
    models: list[ShardModel]
    counts: list[Counter[str]]
    rejected: int


def strip_emitted_at(raw: bytes) -> bytes:
    return EMITTED_AT.sub(b'"emitted_at":""', raw)


def run_oracle(
    recs: list[Rec],
    partitions: int,
    path: Path,
    skip: Callable[[Rec], bool],
    engine: dict[str, Any] | None = None,
    code: Path | None = None,
) -> Oracle:
    """Replay the records (each partition's in offset order) from a JSON-lines file, in a
    process running the ``code`` snapshot the workers run (``None``: the working tree).

    ``skip``: records the worker dead-letters for reasons replay cannot see (a wrong
    partition, an engine failure); blank values are left out too (replay skips blank lines).
    """
    ordered = sorted((r for r in recs if not skip(r)), key=lambda r: (r.partition, r.offset))
    with path.open("wb") as fh:
        for r in ordered:
            assert b"\n" not in r.value, "a record with a newline cannot go in the oracle file"
            if r.value.strip():
                fh.write(r.value + b"\n")
    out = path.with_suffix(".pickle")
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    subprocess.run(
        [sys.executable, str(HERE / "oracle_run.py"), str(path), str(partitions)]
        + [json.dumps(engine or {}), str(out)],
        check=True,
        env=env,
        cwd=code or ROOT,
        timeout=600,
    )
    got = pickle.loads(out.read_bytes())  # noqa: S301 - our own file
    assert not got["repeated"], "replay sent an alert id twice"
    cfg = EngineConfig.from_mapping(engine or {})
    return Oracle(
        alerts=got["alerts"],
        states=got["states"],
        clocks=got["clocks"],
        models=[ShardModel.from_bytes(m, cfg) for m in got["models"]],
        counts=[Counter(c) for c in got["counts"]],
        rejected=got["rejected"],
    )


def model_view(model: ShardModel) -> tuple[Any, ...]:
    """What two models must agree on: labels, progressive metrics and scores of probes."""
    metrics = json.dumps(model.metrics(), sort_keys=True, default=str)
    return (model.labels, metrics, [model.score(x, r) for x, r in PROBES])


# ---------------------------------------------------------------------------- results


@dataclass
class Result:
    scenario: str
    events_in: int = 0
    accounted: int = 0
    alerts_expected: int = 0
    alerts_seen: int = 0
    alert_records: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    redelivered: int = 0
    faults: int = 0
    recovery_s: float | None = None
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


COLUMNS = [
    ("scenario", "scenario"),
    ("events in", "events_in"),
    ("accounted", "accounted"),
    ("alerts exp.", "alerts_expected"),
    ("alerts seen", "alerts_seen"),
    ("dup. alerts", "duplicates"),
    ("DLQ", "dead_letters"),
    ("redelivered", "redelivered"),
    ("faults", "faults"),
    ("recovery s", "recovery_s"),
    ("run s", "duration_s"),
    ("result", "ok"),
]


def table(results: list[Result]) -> str:
    """The scenarios as a Markdown table."""

    def cell(r: Result, attr: str) -> str:
        v = getattr(r, attr)
        if attr == "ok":
            return "pass" if v else "FAIL"
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    rows = [[h for h, _ in COLUMNS]] + [[cell(r, a) for _, a in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        for p in r.problems[:5]:
            lines.append(f"  {r.scenario}: {p}")
    return "\n".join(lines)


def record_result(result: Result) -> None:
    RESULTS.append(result)
    path = os.environ.get("CHURNWATCH_FAULT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(result)) + "\n")


# ---------------------------------------------------------------------------- the run


class Loop:
    """An asyncio loop in a thread, for clients that live across a scenario."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    last_scrape: str = ""
    alive: bool = True
    slot: str = ""


class FaultRun:
    """One scenario: its own topics, consumer group, data directory and workers."""

    def __init__(
        self,
        scenario: str,
        broker: EmbeddedBroker,
        tmp: Path,
        *,
        partitions: int = 3,
        store: str = "memory://",
        env: dict[str, str] | None = None,
        worker_cmd: list[str] | None = None,
        code: Path | None = None,
    ) -> None:
        """``code``: a copy of the packages for workers and oracle (``None``: the tree)."""
        tag = uuid.uuid4().hex[:10]
        tmp.mkdir(parents=True, exist_ok=True)
        self.result = Result(scenario)
        self.broker = broker
        self.tmp = tmp
        self.partitions = partitions
        self.data_dir = tmp / "data"
        self.settings = Settings(
            broker=broker.bootstrap,
            app_id=f"cw-{tag}",
            topic_prefix=f"t-{tag}-",
            partitions=partitions,
        )
        self.env = {
            **os.environ,
            "CHURNWATCH_BROKER": broker.bootstrap,
            "CHURNWATCH_APP_ID": self.settings.app_id,
            "CHURNWATCH_TOPIC_PREFIX": self.settings.topic_prefix,
            "CHURNWATCH_PARTITIONS": str(partitions),
            "CHURNWATCH_DATA_DIR": str(self.data_dir),
            "CHURNWATCH_STORE": store,
            "CHURNWATCH_CLOCK": "event",
            "CHURNWATCH_LOG_LEVEL": "info",
            "CHURNWATCH_SESSION_TIMEOUT_S": "6",
            **({"PYTHONPATH": str(code)} if code else {}),
            **(env or {}),
        }
        self.code = code
        self.worker_cmd = worker_cmd or [*CLI, "worker"]
        self.workers: list[Worker] = []
        self.recs: list[Rec] = []
        self.topic = self.settings.topic("events")
        self.history: list[tuple[float, dict[int, int]]] = []
        self.faults: list[float] = []
        self.started = time.monotonic()
        self.marks: list[tuple[str, float]] = []
        self._loop = Loop()
        self._producing: Any = None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        asyncio.run(create_topics(self.settings))
        self._poller.start()

    # workers ---------------------------------------------------------------------

    def start_worker(self, slot: str = "", **env: str) -> Worker:
        """A worker process; ``slot`` names its own data directory (two RocksDB workers on
        one machine need one each, as two containers have their own volumes)."""
        port = free_port()
        name = f"w{len(self.workers)}"
        log = self.tmp / f"{name}.log"
        data = {"CHURNWATCH_DATA_DIR": str(self.data_dir / slot)} if slot else {}
        proc = subprocess.Popen(
            [*self.worker_cmd, "--metrics-port", str(port)],
            env={**self.env, **data, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.code or ROOT,
            start_new_session=True,
        )
        worker = Worker(name, proc, port, log, slot=slot)
        self.workers.append(worker)
        self.mark(f"start {name}")
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive and w.proc.poll() is None]

    def mark(self, label: str) -> None:
        """A point of the run's timeline (written to ``timeline.json`` at the end)."""
        self.marks.append((label, round(time.monotonic() - self.started, 2)))

    def fault(self) -> None:
        self.faults.append(time.monotonic())
        self.result.faults += 1
        self.mark("fault")

    def kill(self, worker: Worker) -> None:
        """``kill -9``: no revocation, no flush, no commit."""
        self.fault()
        worker.proc.kill()
        worker.proc.wait(10)
        worker.alive = False

    def terminate(self, worker: Worker, timeout: float = 30) -> int:
        """SIGTERM and wait: a graceful stop (partitions revoked, offsets committed)."""
        self.fault()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(timeout)
        finally:
            worker.alive = False
        return code

    def delete_state(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart_dead(self) -> list[Worker]:
        """Start a replacement for every worker that exited by itself (a supervisor's job)."""
        started = []
        for w in self.workers:
            if w.alive and w.proc.poll() is not None:
                w.alive = False
                self.mark(f"{w.name} exited with {w.proc.returncode}")
                started.append(self.start_worker(w.slot))
        return started

    # input ----------------------------------------------------------------------

    def produce(self, recs: list[Rec], rate: float = 0.0, wait: bool = True) -> None:
        """Send ``recs`` in order to their partitions (``rate`` records/s, 0: at once)."""
        self.recs.extend(recs)
        fut = self._loop.submit(self._produce(recs, rate))
        self._producing = fut
        if wait:
            fut.result(300)

    def wait_produced(self, timeout: float = 300) -> None:
        if self._producing is not None:
            self._producing.result(timeout)

    async def _produce(self, recs: list[Rec], rate: float) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            started = time.monotonic()
            pending: list[tuple[Rec, Any]] = []
            for i, rec in enumerate(recs):
                fut = await producer.send(
                    self.topic, rec.value, key=rec.key, partition=rec.partition
                )
                pending.append((rec, fut))
                if rate > 0:
                    ahead = (i + 1) / rate - (time.monotonic() - started)
                    if ahead > 0.01:
                        await asyncio.sleep(ahead)
                if len(pending) >= 500:
                    await self._settle(pending)
            await self._settle(pending)
        finally:
            await producer.stop()

    @staticmethod
    async def _settle(pending: list[tuple[Rec, Any]]) -> None:
        for rec, fut in pending:
            rec.offset = (await fut).offset
        pending.clear()

    def ends(self) -> dict[int, int]:
        """Records produced per partition (the true end offsets: offsets start at 0)."""
        ends = dict.fromkeys(range(self.partitions), 0)
        for r in self.recs:
            assert r.offset >= 0, "a record was not acknowledged"
            ends[r.partition] = max(ends[r.partition], r.offset + 1)
        counts = Counter(r.partition for r in self.recs)
        assert ends == {p: counts[p] for p in ends}, "offsets are not dense"
        return ends

    # observation -----------------------------------------------------------------

    def _poll(self) -> None:
        async def committed_loop() -> None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.broker.bootstrap,
                group_id=self.settings.app_id,
                enable_auto_commit=False,
            )
            await consumer.start()
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            last_scrape = 0.0
            try:
                while not self._stop.is_set():
                    try:
                        got = {}
                        for tp in tps:
                            off = await consumer.committed(tp)
                            if off is not None:
                                got[tp.partition] = off
                        self.history.append((time.monotonic(), got))
                    except Exception:  # noqa: BLE001, S110 - the broker may be frozen
                        pass
                    if time.monotonic() - last_scrape > 1.0:
                        last_scrape = time.monotonic()
                        await asyncio.to_thread(self.scrape_all)
                    await asyncio.sleep(0.25)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 5)

        asyncio.run(committed_loop())

    def scrape_all(self) -> None:
        for w in self.live():
            with contextlib.suppress(OSError):
                w.last_scrape = scrape(w.port)

    def committed(self) -> dict[int, int]:
        return dict(self.history[-1][1]) if self.history else {}

    def wait_committed(self, share: float, timeout: float = 90) -> None:
        """Until the group has committed ``share`` of what was produced so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            produced = sum(1 for r in self.recs if r.offset >= 0) or len(self.recs)
            if sum(self.committed().values()) >= share * max(produced, 1):
                return
            time.sleep(0.1)
        raise AssertionError(f"the workers did not commit {share:.0%} in {timeout}s")

    def wait_caught_up(self, timeout: float = 120) -> bool:
        """Until the committed offsets are the partitions' ends (lag zero)."""
        self.wait_produced()
        ends = self.ends()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.committed() == ends:
                return True
            self.restart_dead()
            time.sleep(0.2)
        return False

    def recovery(self) -> float | None:
        """The longest time from a fault until the group committed progress again (faults
        that found nothing left to process do not count)."""
        total = len(self.recs)
        worst = None
        for t0 in self.faults:
            before = [h for t, h in self.history if t <= t0]
            base = sum(before[-1].values()) if before else 0
            if base >= total:
                continue
            after = next((t for t, h in self.history if t > t0 and sum(h.values()) > base), None)
            if after is not None:
                worst = max(worst or 0.0, after - t0)
        return worst

    # verification ----------------------------------------------------------------

    def finish(
        self,
        *,
        engine_fails: Callable[[str], bool] | None = None,
        engine: dict[str, Any] | None = None,
        timeout: float = 120,
        check: Callable[[FaultRun, Oracle], list[str]] | None = None,
    ) -> Result:
        """Wait until caught up, compare with the oracle, record and return the result;
        raises ``AssertionError`` listing every broken invariant."""
        res = self.result
        problems = ["harness error"]
        try:
            problems = self._verify(engine_fails, engine, timeout, check)
        except Exception as exc:
            problems = [f"harness error: {type(exc).__name__}: {exc}"]
            raise
        finally:
            res.duration_s = time.monotonic() - self.started
            res.recovery_s = self.recovery()
            res.problems = problems
            record_result(res)
            history = [(round(t - self.started, 2), h) for t, h in self.history]
            timeline = {"marks": self.marks, "committed": history}
            (self.tmp / "timeline.json").write_text(json.dumps(timeline))
        assert not problems, "\n".join(problems)
        return res

    def _verify(
        self,
        engine_fails: Callable[[str], bool] | None,
        engine: dict[str, Any] | None,
        timeout: float,
        check: Callable[[FaultRun, Oracle], list[str]] | None,
    ) -> list[str]:
        res = self.result
        problems: list[str] = []
        self.mark("produced")
        caught_up = self.wait_caught_up(timeout)
        self.mark("caught up" if caught_up else "not caught up")
        ends = self.ends()
        res.events_in = len(self.recs)
        if not caught_up:
            problems.append(
                f"not caught up in {timeout}s: committed {self.committed()}, end {ends}"
            )
        reasons = {
            (r.partition, r.offset): expected_outcome(r, self.partitions, engine_fails)
            for r in self.recs
        }

        def skip(r: Rec) -> bool:
            return reasons[(r.partition, r.offset)] in ("wrong_partition", "engine_error")

        oracle = run_oracle(
            self.recs, self.partitions, self.tmp / "oracle.jsonl", skip, engine, self.code
        )
        decode_rejects = sum(
            1
            for r in self.recs
            if r.value.strip() and reasons[(r.partition, r.offset)] not in (None, *SKIPPED)
        )
        if oracle.rejected != decode_rejects:
            problems.append(f"replay rejected {oracle.rejected}, expected {decode_rejects}")
        res.alerts_expected = len(oracle.alerts)
        want_dead = {k: v for k, v in reasons.items() if v is not None}
        self.mark("oracle")
        logs, alerts, dead = self._read_outputs(oracle, want_dead, ends)
        self.mark("outputs read")

        # 1. state, clock and model per partition
        for p in range(self.partitions):
            view = logs.get(p)
            if view is None or view.checkpoint is None:
                if ends[p]:
                    problems.append(f"partition {p}: no checkpoint in the changelog")
                continue
            want = oracle.states[p]
            if view.states != want:
                diff = {
                    k for k in set(view.states) | set(want) if view.states.get(k) != want.get(k)
                }
                problems.append(
                    f"partition {p}: {len(diff)} customer states differ from replay "
                    f"(e.g. {sorted(diff)[:3]})"
                )
            if view.checkpoint.clock != oracle.clocks[p]:
                problems.append(
                    f"partition {p}: clock {view.checkpoint.clock} != replay {oracle.clocks[p]}"
                )
            model = ShardModel.from_bytes(
                view.checkpoint.model, EngineConfig.from_mapping(engine or {})
            )
            if model_view(model) != model_view(oracle.models[p]):
                problems.append(f"partition {p}: the model differs from replay's")

        # 2. alerts: same ids; every record (duplicates too) equal to replay's but emitted_at
        ids = Counter()
        for raw in alerts:
            alert = json.loads(raw)
            aid = alert["alert_id"]
            ids[aid] += 1
            want_raw = oracle.alerts.get(aid)
            if want_raw is not None and strip_emitted_at(raw) != want_raw:
                problems.append(f"alert {aid} differs from replay's (beyond emitted_at)")
        res.alert_records = len(alerts)
        res.alerts_seen = len(ids)
        res.duplicates = len(alerts) - len(ids)
        missing = set(oracle.alerts) - set(ids)
        extra = set(ids) - set(oracle.alerts)
        if missing or extra:
            problems.append(f"alert ids: {len(missing)} missing, {len(extra)} not in replay")

        # 3. dead letters and the ledger
        by_offset = {(r.partition, r.offset): r for r in self.recs}
        seen_dead: dict[tuple[int, int], str] = {}
        for key, value, headers in dead:
            h = {k: v.decode() for k, v in headers.items()}
            at = (int(h["churnwatch.partition"]), int(h["churnwatch.offset"]))
            rec = by_offset.get(at)
            if rec is None or h["churnwatch.topic"] != self.topic:
                problems.append(f"dead letter for an unknown record {h}")
                continue
            if (value or b"") != rec.value or key != rec.key:
                problems.append(f"dead letter at {at} does not carry the original bytes")
            if seen_dead.setdefault(at, h["churnwatch.reason"]) != h["churnwatch.reason"]:
                problems.append(f"dead letters at {at} disagree on the reason")
        res.dead_letters = len(seen_dead)
        if seen_dead != want_dead:
            wrong = {
                k for k in set(seen_dead) | set(want_dead) if seen_dead.get(k) != want_dead.get(k)
            }
            problems.append(
                f"dead letters: {len(wrong)} differ, e.g. "
                + ", ".join(
                    f"{k}: {seen_dead.get(k)} != {want_dead.get(k)}" for k in sorted(wrong)[:3]
                )
            )
        ledger_total = 0
        gauges = self._ledger_gauges(logs)
        for p in range(self.partitions):
            view = logs.get(p)
            ledger = Counter(view.checkpoint.ledger) if view and view.checkpoint else Counter()
            ledger_total += sum(ledger[o] for o in OUTCOMES)
            want_ledger = {
                "processed": oracle.counts[p]["events"],
                "duplicate": oracle.counts[p]["duplicates"],
                "dead_lettered": sum(1 for (q, _), v in want_dead.items() if q == p),
            }
            if sum(ledger[o] for o in OUTCOMES) != ends[p]:
                problems.append(
                    f"partition {p}: consumed {ends[p]} != processed + dead-lettered + "
                    f"duplicates {dict(ledger)}"
                )
            if {o: ledger[o] for o in OUTCOMES} != want_ledger:
                problems.append(f"partition {p}: ledger {dict(ledger)} != expected {want_ledger}")
            # the owner shows a partition's gauge once it has loaded it (its first record)
            if p in gauges and gauges[p] != {o: ledger[o] for o in OUTCOMES}:
                problems.append(
                    f"partition {p}: /metrics ledger {gauges.get(p)} != changelog {dict(ledger)}"
                )
        res.accounted = ledger_total
        res.redelivered = int(
            sum(
                metric(w.last_scrape, "churnwatch_records_total", outcome="redelivered")
                for w in self.workers
            )
        )

        # 4. committed offsets: forward only, and at the end
        last: dict[int, int] = {}
        for _, h in self.history:
            for p, off in h.items():
                if off < last.get(p, -1):
                    problems.append(f"partition {p}: committed offset went back {last[p]} -> {off}")
                last[p] = off
        if self.committed() != ends:
            problems.append(f"lag not zero: committed {self.committed()}, end {ends}")
        if check is not None:
            problems.extend(check(self, oracle))
        return problems

    def _ledger_gauges(self, logs: dict[int, ChangelogView]) -> dict[int, dict[str, int]]:
        """Each partition's ledger as its owner's /metrics shows it (waits for the 2 s timer)."""
        want = {
            p: {o: Counter(v.checkpoint.ledger)[o] for o in OUTCOMES}
            for p, v in logs.items()
            if v.checkpoint is not None
        }
        got: dict[int, dict[str, int]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.scrape_all()
            got = {}
            for w in self.live():
                for p, outcome, value in partition_ledgers(w.last_scrape):
                    got.setdefault(p, {})[outcome] = int(value)
            if all(got.get(p) == v for p, v in want.items()):
                break
            time.sleep(0.5)
        return got

    def _read_outputs(
        self, oracle: Oracle, want_dead: dict[tuple[int, int], str], ends: dict[int, int]
    ) -> tuple[dict[int, ChangelogView], list[bytes], list[tuple[Any, ...]]]:
        changelog = self.settings.changelog(STATE_TABLE)
        alerts_topic, dlq = self.settings.topic("alerts"), self.settings.topic("dlq")

        def done(got: dict[str, list[Any]]) -> bool:
            views = changelog_views(got[changelog])
            full = all(
                (v := views.get(p)) is not None
                and v.checkpoint is not None
                and sum(Counter(v.checkpoint.ledger)[o] for o in OUTCOMES) >= n
                for p, n in ends.items()
                if n
            )
            seen_ids = {json.loads(m.value)["alert_id"] for m in got[alerts_topic]}
            seen_dead = {
                (int(m.headers["churnwatch.partition"]), int(m.headers["churnwatch.offset"]))
                for m in got[dlq]
            }
            return full and set(oracle.alerts) <= seen_ids and set(want_dead) <= seen_dead

        got = self._loop.run(
            read_topics(self.broker.bootstrap, [changelog, alerts_topic, dlq], done), 120
        )
        views = changelog_views(got[changelog])
        alerts = [m.value for m in got[alerts_topic]]
        dead = [(m.key, m.value, m.headers) for m in got[dlq]]
        return views, alerts, dead

    def logs(self) -> str:
        return "".join(w.log.read_text(errors="replace") for w in self.workers if w.log.exists())

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(15)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(5)
        self._stop.set()
        self._poller.join(10)
        self._loop.close()


SKIPPED = ("wrong_partition", "engine_error")


# ---------------------------------------------------------------------------- reading


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@dataclass
class ChangelogView:
    """A partition's changelog folded as a restoring worker folds it."""

    states: dict[str, bytes] = field(default_factory=dict)
    checkpoint: Any = None
    fences: int = 0


def changelog_views(messages: list[Message]) -> dict[int, ChangelogView]:
    """Newest value per customer key; a checkpoint's states count as written when the
    checkpoint is (they may be newer than their own keys); tombstones and ``b""`` delete."""
    views: dict[int, ChangelogView] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        view = views.setdefault(m.partition, ChangelogView())
        key = (m.key or b"").decode()
        if key.startswith(FENCE_PREFIX):
            view.fences += 1
        elif not is_customer_key(key):
            ckpt = decode_checkpoint(m.value or b"")
            view.checkpoint = ckpt
            for k, v in ckpt.states:
                _put(view.states, k, v)
        else:
            _put(view.states, key, m.value)
    return views


def _put(states: dict[str, bytes], key: str, value: bytes | None) -> None:
    if value:
        states[key] = value
    else:
        states.pop(key, None)


async def read_topics(
    bootstrap: str,
    topics: list[str],
    done: Callable[[dict[str, list[Message]]], bool],
    idle: float = 1.5,
    patience: float = 20.0,
) -> dict[str, list[Message]]:
    """Every record of ``topics`` from the start: until ``idle`` seconds pass without one
    once ``done(got)`` holds, or ``patience`` seconds pass without one regardless."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    got: dict[str, list[Message]] = {t: [] for t in topics}
    try:
        tps = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(t) or set()
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        quiet_since = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=250)
            n = 0
            for tp, msgs in batch.items():
                for m in msgs:
                    n += 1
                    headers = {k: v for k, v in (m.headers or ())}
                    got[tp.topic].append(Message(tp.partition, m.offset, m.key, m.value, headers))
            if n:
                quiet_since = time.monotonic()
                continue
            quiet = time.monotonic() - quiet_since
            if quiet > patience or (quiet > idle and done(got)):
                return got
    finally:
        await consumer.stop()


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


def partition_ledgers(text: str) -> Iterable[tuple[int, str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "churnwatch_partition_records":
                yield int(s.labels["partition"]), s.labels["outcome"], s.value
