"""Drive the engine over a JSON-lines file: the batch twin of the Faust worker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from detectors import (
    Alert,
    BytesStore,
    ChurnwatchError,
    DecodeError,
    Engine,
    EngineConfig,
    Event,
    Playbook,
    decode_event,
    encode_alert,
)


class RejectedLine(ChurnwatchError):
    """A bad input line under ``--strict``."""


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)


class RejectsWriter:
    """Bad lines with their line number and reason, as JSON lines."""

    def __init__(self, fh: IO[str] | None) -> None:
        self.fh = fh

    def write(self, lineno: int, err: DecodeError, raw: bytes) -> None:
        if self.fh is None:
            return
        record = {
            "line": lineno,
            "reason": err.reason,
            "detail": err.detail,
            "raw": raw.decode("utf-8", "backslashreplace"),
        }
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_events(
    path: Path,
    stats: ReplayStats,
    rejects: RejectsWriter,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Event]:
    """Decode every line of ``path``; bad ones go to ``rejects`` (or raise under ``strict``)."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if progress is not None:
                progress(len(line))
            stats.lines += 1
            raw = line.strip()
            if not raw:
                continue
            try:
                event = decode_event(raw)
            except DecodeError as err:
                if strict:
                    raise RejectedLine(f"{path}:{lineno}: {err}") from None
                stats.rejected[err.reason] += 1
                rejects.write(lineno, err, raw)
                continue
            stats.events += 1
            yield event


def make_engine(
    config: EngineConfig, playbook: Playbook, partitions: int, compact: bool = True
) -> Engine:
    """An engine whose shards keep state serialised (as the worker's table store does)."""
    return Engine(config, playbook, partitions, store_factory=BytesStore if compact else dict)


def progress_bar(path: Path, enabled: bool) -> tuple[Progress | None, Callable[[int], None] | None]:
    if not enabled:
        return None, None
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = bar.add_task(path.name, total=path.stat().st_size)
    return bar, lambda n: bar.advance(task, n)


def replay(
    path: Path,
    engine: Engine,
    on_alert: Callable[[Alert], None],
    *,
    rejects: RejectsWriter,
    strict: bool = False,
    until: int | None = None,
    show_progress: bool = False,
) -> ReplayStats:
    """Feed every event of ``path`` to ``engine`` in file order on the event-time clock.

    With ``until`` (epoch ms), events after it are not read and every shard's
    clock is then moved to it, so silent customers get their sweeps.
    """
    stats = ReplayStats()
    bar, advance = progress_bar(path, show_progress)

    def emit(alerts: list[Alert]) -> None:
        for alert in alerts:
            stats.alerts[alert.kind] += 1
            stats.levels[alert.risk_level] += 1
            on_alert(alert)

    try:
        if bar is not None:
            bar.start()
        for event in read_events(path, stats, rejects, strict, advance):
            if until is not None and event.ts > until:  # type: ignore[operator]
                stats.events -= 1
                continue
            emit(engine.feed(event))
        if until is not None:
            emit(engine.advance_all(until))
    finally:
        if bar is not None:
            bar.stop()
    return stats


def alert_line(alert: Alert) -> bytes:
    return encode_alert(alert) + b"\n"
