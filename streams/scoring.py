"""Every customer's risk as of a moment: the engine's batch answer (``churnwatch score``)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

from detectors import LEVELS, Engine
from detectors.alerts import rfc3339

HEADER = (
    "customer_id",
    "risk_score",
    "risk_level",
    "customer_value",
    "value_at_risk",
    "days_since_last_order",
    "usual_gap_days",
    "orders",
    "alert_open",
    "reasons",
    "expected_back",
    "act_by",
)


def score_rows(engine: Engine, as_of: int) -> Iterator[tuple[object, ...]]:
    """One row per customer (highest risk first, then id), assessed at ``as_of``."""
    rows = []
    for shard in engine.shards:
        for key in shard.customers():
            state = shard.store[key]
            a = shard.assess(key, as_of)
            assert a is not None  # noqa: S101
            level = engine.cfg.level_of(a.score, state.level)
            rows.append(
                (
                    key,
                    round(a.score, 4),
                    LEVELS[level],
                    round(a.profile.value, 2),
                    round(a.profile.value * a.score, 2),
                    round(a.profile.silence_days, 1),
                    round(a.profile.cadence.usual_gap_days, 1),
                    state.n_orders,
                    int(state.alert_open),
                    ";".join(r.code for r in a.reasons),
                    rfc3339(a.profile.expected_back)[:10],
                    rfc3339(a.profile.act_by)[:10],
                )
            )
    rows.sort(key=lambda r: (-float(r[1]), str(r[0])))  # type: ignore[arg-type]
    yield from rows


def write_scores(engine: Engine, as_of: int, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    n = 0
    for row in score_rows(engine, as_of):
        writer.writerow(row)
        n += 1
    return n
