"""Putting an events file in time order loses nothing, orders by event time, keeps ties
and unreadable lines where they were, and merges runs as one sort would."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.events import event_time
from streams.ordering import in_time_order, late_lines, sort_by_time

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


line_kinds = st.one_of(
    st.tuples(st.just("int"), st.integers(0, 20)),
    st.tuples(st.just("iso"), st.integers(0, 20)),
    st.tuples(st.just("garbage"), st.sampled_from([b"not json", b'{"ts":"soon"}', b"[1,2]"])),
    st.tuples(st.just("blank"), st.just(b"  ")),
)


def _lines(kinds: list[tuple[str, object]]) -> list[bytes]:
    """Numbered lines (``n`` in each event), times a second apart per step, many ties."""
    out = []
    for n, (kind, arg) in enumerate(kinds):
        if kind in ("int", "iso"):
            ms = T0 + 1000 * int(arg)  # type: ignore[call-overload]
            ts: object = ms if kind == "int" else _iso(ms)
            out.append(json.dumps({"n": n, "event_type": "visit", "ts": ts}).encode())
        else:
            out.append(arg)  # type: ignore[arg-type]
    return out


def _sorted(lines: list[bytes], run_lines: int) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_bytes(b"".join(line + b"\n" for line in lines))
        sort_by_time(src, dst, run_lines=run_lines)
        assert late_lines(dst) == 0
        return dst.read_bytes().splitlines()


@given(st.lists(line_kinds, max_size=40), st.integers(1, 5))
def test_sorting_loses_nothing_and_orders_by_time(kinds: list, run_lines: int) -> None:
    lines = _lines(kinds)
    out = _sorted(lines, run_lines)
    assert Counter(out) == Counter(line for line in lines if line.strip())
    times = [t for line in out if (t := event_time(line)) is not None]
    assert times == sorted(times)
    # ties keep their order: the line numbers of equal times rise
    seen: dict[int, int] = {}
    for line in out:
        t = event_time(line)
        if t is None:
            continue
        n = json.loads(line)["n"]
        assert n > seen.get(t, -1)
        seen[t] = n


@given(st.lists(line_kinds, max_size=40), st.integers(1, 5))
def test_runs_merge_as_one_sort(kinds: list, run_lines: int) -> None:
    lines = _lines(kinds)
    assert _sorted(lines, run_lines) == _sorted(lines, 10_000)


@given(st.lists(line_kinds, min_size=1, max_size=40))
def test_an_unreadable_line_stays_after_the_line_before_it(kinds: list) -> None:
    lines = _lines(kinds)
    out = _sorted(lines, 3)
    kept = [line for line in lines if line.strip()]
    for i, line in enumerate(kept):
        if i and event_time(line) is None and kept.count(line) == 1:
            before = kept[i - 1]
            if kept.count(before) == 1:
                assert out.index(before) < out.index(line)


@given(st.lists(line_kinds, max_size=40))
def test_late_lines_counts_what_is_out_of_order(kinds: list) -> None:
    lines = _lines(kinds)
    times = [t for line in lines if (t := event_time(line.strip())) is not None]
    newest, late = None, 0
    for t in times:
        if newest is not None and t < newest:
            late += 1
        else:
            newest = t
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_bytes(b"".join(line + b"\n" for line in lines))
        assert late_lines(src) == late
        with in_time_order(src) as (path, count):
            assert count == late
            assert (path == src) == (late == 0)
            assert late_lines(path) == 0
