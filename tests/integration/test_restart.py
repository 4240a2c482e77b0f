"""Abort and resume: kill -9 a worker mid-stream, restart it, lose nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_kill9_and_restart_loses_nothing(stack, events_file: Path, kit, store: str) -> None:
    expected = kit.replay_alerts(events_file, partitions=3)
    lines = events_file.read_bytes().splitlines()
    half = len(lines) // 2
    stack.create_topics()
    worker = stack.start_worker("--clock", "event", CHURNWATCH_STORE=store)
    stack.produce(lines[:half])
    first = stack.alerts(10, timeout=90)
    assert len(first) >= 10, "the first worker produced no alerts"
    stack.produce(lines[half:])
    time.sleep(0.5)  # mid-stream: the second half is being processed
    worker.kill()  # SIGKILL: no revocation, no flush, no commit
    worker.wait(10)

    stack.start_worker("--clock", "event", CHURNWATCH_STORE=store)
    want = {a["alert_id"] for a in expected}
    seen: set[str] = set()

    def complete(got: list[tuple[object, ...]]) -> bool:
        seen.add(json.loads(got[-1][1])["alert_id"])
        return want <= seen

    got = stack.collect("alerts", complete, timeout=120)
    alerts = [json.loads(r[1]) for r in got]
    unique = {a["alert_id"]: a for a in alerts}
    (stack.tmp / "got.json").write_text(json.dumps(alerts))
    (stack.tmp / "expected.json").write_text(json.dumps(expected))
    assert set(unique) == want, (
        f"missing {len(want - set(unique))}, extra {len(set(unique) - want)}"
    )
    assert kit.comparable(list(unique.values())) == kit.comparable(expected)
    # every alert sent before the crash is among the final ones, with the same content
    for a in first:
        assert kit.comparable([unique[a["alert_id"]]]) == kit.comparable([a])
