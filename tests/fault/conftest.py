"""Fault scenarios: a :class:`harness.FaultRun` per test on the session's broker, and the
table of every scenario's result at the end of the session."""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

from streams.broker import EmbeddedBroker  # noqa: E402


@pytest.fixture(scope="session")
def code_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages as they are when the session starts: workers and the oracle run this
    copy, so a source file saved during a long run cannot split them across versions."""
    root = tmp_path_factory.mktemp("code")
    for package in ("detectors", "streams", "evaluation"):
        shutil.copytree(
            harness.ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


@pytest.fixture
def fault_run(
    broker: Any, tmp_path: Path, code_snapshot: Path
) -> Iterator[Callable[..., harness.FaultRun]]:
    """``fault_run(scenario, **options)``: a run on the shared broker (or ``broker=``)."""
    runs: list[harness.FaultRun] = []

    def make(scenario: str, **options: Any) -> harness.FaultRun:
        on = options.pop("broker", broker)
        options.setdefault("code", code_snapshot)
        run = harness.FaultRun(scenario, on, tmp_path / f"run{len(runs)}", **options)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[[], EmbeddedBroker]]:
    """Brokers of the test's own (for scenarios that stop or freeze the broker)."""
    started: list[EmbeddedBroker] = []

    def make() -> EmbeddedBroker:
        b = EmbeddedBroker(log=tmp_path / f"broker{len(started)}.log").start()
        started.append(b)
        return b

    yield make
    for b in started:
        if b.proc is not None:
            b.proc.send_signal(signal.SIGCONT)
        b.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if harness.RESULTS:
        terminalreporter.write_sep("=", "fault scenarios")
        terminalreporter.write_line(harness.table(harness.RESULTS))
