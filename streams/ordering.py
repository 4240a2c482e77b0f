"""Events files in time order, for the commands that judge at points in time.

``evaluate`` scores every customer at each cutoff as the replay passes it, and
``report`` replays up to the last event: both need the file in event-time order.
Exports are often grouped by customer or by table instead. :func:`in_time_order`
hands such a file over as a time-sorted copy (a stable external merge sort, so
memory stays bounded) and says how many lines were out of order.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from detectors.events import event_time

SORT_RUN_LINES = 500_000
"""Lines sorted in memory at a time; longer files are merged from sorted runs."""
_KEY = 32
"""Bytes of the sort key written before each line of a run: time, then line number."""


def late_lines(path: Path) -> int:
    """Lines whose event time is before that of an earlier line (0: the file is in order).

    Lines without a readable time are not counted (the decoder rejects them later).
    """
    late = 0
    newest: int | None = None
    with path.open("rb") as fh:
        for line in fh:
            ts = event_time(line.strip())
            if ts is None:
                continue
            if newest is not None and ts < newest:
                late += 1
            else:
                newest = ts
    return late


def _keyed(path: Path) -> Iterator[bytes]:
    """Every non-blank line, prefixed with a fixed-width key that sorts as (time, line).

    A line without a readable time takes the time of the line before it, so it stays
    next to that line.
    """
    ts = 0
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            read = event_time(raw.strip())
            ts = ts if read is None else max(read, 0)
            yield b"%020d%012d" % (ts, n) + raw + b"\n"


def sort_by_time(path: Path, out: Path, run_lines: int = SORT_RUN_LINES) -> None:
    """Write the lines of ``path`` to ``out`` in event-time order; lines with equal times
    keep their order. Blank lines are dropped."""
    with tempfile.TemporaryDirectory() as tmp, out.open("wb") as dst:
        runs: list[IO[bytes]] = []
        try:
            chunk: list[bytes] = []
            for keyed in _keyed(path):
                chunk.append(keyed)
                if len(chunk) >= run_lines:
                    runs.append(_spill(sorted(chunk), Path(tmp) / f"run{len(runs)}"))
                    chunk = []
            chunk.sort()
            merged = heapq.merge(chunk, *runs) if runs else iter(chunk)
            for keyed in merged:
                dst.write(keyed[_KEY:])
        finally:
            for run in runs:
                run.close()


def _spill(lines: list[bytes], path: Path) -> IO[bytes]:
    with path.open("wb") as fh:
        fh.writelines(lines)
    return path.open("rb")


@contextmanager
def in_time_order(path: Path) -> Iterator[tuple[Path, int]]:
    """``(path, 0)`` if the file is in event-time order, else ``(copy, late)``: a sorted
    copy in a temporary directory (removed afterwards) and the number of late lines."""
    late = late_lines(path)
    if not late:
        yield path, 0
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        sort_by_time(path, copy)
        yield copy, late
