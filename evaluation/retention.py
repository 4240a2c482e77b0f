"""The retention ledger as a report: recovery rate of treated against control cases.

Input: the ledger counters of every shard (:class:`detectors.ledger.LedgerCounts`). A row
compares the alert cases of one group (the level a case opened at, its top reason
category, an action its alerts recommended, or all) whose outcome is decided: the
recovery rate of treated and of control cases with 95 % Wilson intervals, and the
*uplift*, treated minus control, with Newcombe's interval for a difference of two
proportions. Cases still inside their recovery window are counted as open, outside the
rates.

By action, the comparison is by intention: cases whose alerts recommended the action,
treated against control (the control cases were recommended it too, and held out), so
the uplift is what recommending that action achieved, whether or not it was carried out.

The unit is the case. The group is drawn per customer, so a customer with several cases
counts several times with the same group; with many such customers the intervals are a
little too narrow.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from detectors import LEVELS, Engine
from detectors.ledger import ACTION_CODES, LINKS, OUTCOMES, STATUSES, TREATMENTS, LedgerCounts
from detectors.reasons import CATEGORIES
from evaluation.metrics import Interval, rate_difference, wilson

ALL = "all"
LEVEL_ROWS = (*LEVELS[1:], ALL)


def ledger_counts(engine: Engine) -> LedgerCounts:
    """Every shard's ledger counters, added up."""
    total = LedgerCounts()
    for shard in engine.shards:
        total.update(shard.ledger.counts)
    return total


def _num(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 4)


def _estimate(iv: Interval) -> dict[str, float | None]:
    return {"value": _num(iv.value), "low": _num(iv.low), "high": _num(iv.high)}


def _arm(outcomes: Mapping[str, int]) -> dict[str, Any]:
    n = sum(outcomes.get(o, 0) for o in OUTCOMES)
    k = outcomes.get("recovered", 0)
    return {
        "cases": n,
        **{o: outcomes.get(o, 0) for o in OUTCOMES},
        "rate": _estimate(wilson(k, n)),
    }


def _row(name: str, treated: Mapping[str, int], control: Mapping[str, int]) -> dict[str, Any]:
    t, c = _arm(treated), _arm(control)
    uplift = rate_difference(t["recovered"], t["cases"], c["recovered"], c["cases"])
    return {"group": name, "treated": t, "control": c, "uplift": _estimate(uplift)}


def _table(
    cells: Mapping[tuple[str, str, str], int], groups: Iterable[str]
) -> list[dict[str, Any]]:
    """Rows of (group, treatment, outcome) -> cases; groups without a case are left out."""
    by: dict[tuple[str, str], Counter[str]] = {}
    for (group, arm, outcome), n in cells.items():
        by.setdefault((group, arm), Counter())[outcome] += n
    rows = []
    for group in groups:
        treated, control = by.get((group, "treated")), by.get((group, "control"))
        if treated or control:
            rows.append(_row(group, treated or Counter(), control or Counter()))
    return rows


def summarize(
    counts: LedgerCounts, known_effect: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The ledger report (JSON-ready). ``known_effect``: per level row (and ``all``), the
    uplift a simulation put in (shown beside the estimate)."""
    by_level: Counter[tuple[str, str, str]] = Counter()
    by_category: Counter[tuple[str, str, str]] = Counter()
    for (arm, level, category, outcome), n in counts.cases.items():
        by_level[(level, arm, outcome)] += n
        by_level[(ALL, arm, outcome)] += n
        by_category[(category, arm, outcome)] += n
    by_action: Counter[tuple[str, str, str]] = Counter()
    for (action, arm, outcome), n in counts.by_action.items():
        by_action[(action, arm, outcome)] += n
    levels = _table(by_level, LEVEL_ROWS)
    if known_effect is not None:
        for row in levels:
            value = known_effect.get(row["group"])
            row["known_effect"] = None if value is None else round(value, 4)
    decided: Counter[tuple[str, str]] = Counter()
    for (arm, level, _, _), n in counts.cases.items():
        decided[(arm, level)] += n
    opened = {}
    for level in LEVELS[1:]:
        arms = {arm: counts.opened.get((arm, level), 0) for arm in TREATMENTS}
        total = sum(arms.values())
        opened[level] = {
            **arms,
            "open": {arm: arms[arm] - decided.get((arm, level), 0) for arm in TREATMENTS},
            "control_share": round(arms["control"] / total, 4) if total else None,
        }
    actions = {
        code: {status: counts.actions.get((code, status), 0) for status in STATUSES}
        for code in ACTION_CODES
        if any(counts.actions.get((code, status)) for status in STATUSES)
    }
    return {
        "outcomes": list(OUTCOMES),
        "by_level": levels,
        "by_category": _table(by_category, (*CATEGORIES, "none")),
        "by_action": _table(by_action, ACTION_CODES),
        "opened": opened,
        "action_reports": actions,
        "links": {link: counts.links.get(link, 0) for link in LINKS},
    }


def has_cases(summary: Mapping[str, Any]) -> bool:
    return any(v["treated"] + v["control"] for v in summary["opened"].values())
