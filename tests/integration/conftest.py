"""A per-test stack on the session's broker (tests/conftest.py): uuid topics, group, workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cw_metrics import metric, scrape

from streams.broker import EmbeddedBroker, free_port
from streams.feed import produce, read_topic
from streams.replay import RejectsWriter, make_engine, replay
from streams.settings import Settings
from streams.simulate import SimConfig, generate, write_events
from streams.topics import create_topics

CLI = [sys.executable, "-m", "streams.cli"]


@pytest.fixture(scope="session")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated history (about 4k events), shared by the tests."""
    path = tmp_path_factory.mktemp("data") / "events.jsonl"
    events, _ = generate(SimConfig(customers=150, days=365, seed=3))
    write_events(path, events)
    return path


def replay_alerts(
    path: Path, partitions: int, engine: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """What ``churnwatch replay --partitions N`` emits for ``path`` (engine settings optional)."""
    settings = Settings(partitions=partitions, engine=engine or {})
    engine = make_engine(settings.engine_config(), settings.playbook(), partitions)
    out: list[dict[str, Any]] = []
    replay(path, engine, lambda a: out.append(json.loads(_enc(a))), rejects=RejectsWriter(None))
    return out


def _enc(alert: Any) -> bytes:
    from detectors import encode_alert

    return encode_alert(alert)


def comparable(alerts: list[dict[str, Any]]) -> list[str]:
    """Alerts without ``emitted_at``, as sorted canonical JSON."""
    return sorted(
        json.dumps({k: v for k, v in a.items() if k != "emitted_at"}, sort_keys=True)
        for a in alerts
    )


class Stack:
    """One test's deployment on the shared broker: unique topics, app id and workers."""

    def __init__(self, broker: EmbeddedBroker, tmp: Path, partitions: int = 3) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.env = {
            **os.environ,
            "CHURNWATCH_BROKER": broker.bootstrap,
            "CHURNWATCH_APP_ID": f"cw-{tag}",
            "CHURNWATCH_TOPIC_PREFIX": f"t-{tag}-",
            "CHURNWATCH_PARTITIONS": str(partitions),
            "CHURNWATCH_DATA_DIR": str(tmp / "data"),
            "CHURNWATCH_LOG_LEVEL": "info",
        }
        self.settings = Settings(
            broker=broker.bootstrap,
            app_id=f"cw-{tag}",
            topic_prefix=f"t-{tag}-",
            partitions=partitions,
        )
        self.workers: list[subprocess.Popen[bytes]] = []

    def create_topics(self) -> dict[str, str]:
        return asyncio.run(create_topics(self.settings))

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_worker(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [*CLI, "worker", *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def produce(self, records: list[bytes], topic: str | None = None) -> int:
        return asyncio.run(produce(self.settings, records, topic=topic))

    def collect(
        self,
        role: str,
        done: Callable[[list[tuple[Any, ...]]], bool],
        timeout: float = 90,
    ) -> list[tuple[Any, ...]]:
        """Read ``role``'s topic from the start until ``done(records)`` or ``timeout``."""
        got: list[tuple[Any, ...]] = []

        async def run() -> None:
            deadline = time.monotonic() + timeout
            async for rec in read_topic(
                self.settings, self.settings.topic(role), idle_timeout=timeout
            ):
                got.append(rec)
                if done(got) or time.monotonic() > deadline:
                    return

        try:
            asyncio.run(asyncio.wait_for(run(), timeout))
        except TimeoutError:
            pass
        return got

    def alerts(self, want: int, timeout: float = 90) -> list[dict[str, Any]]:
        recs = self.collect("alerts", lambda got: len(got) >= want, timeout)
        return [json.loads(r[1]) for r in recs]

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def stack(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(broker, tmp_path)
    yield s
    s.stop()


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(every)
    return False


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """Helpers for the tests (modules are imported with importlib: no conftest imports)."""
    return SimpleNamespace(
        replay_alerts=replay_alerts,
        comparable=comparable,
        scrape=scrape,
        metric=metric,
        wait_for=wait_for,
        free_port=free_port,
    )
