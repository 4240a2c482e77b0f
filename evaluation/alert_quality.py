"""How good the alerts are, judged against ground truth.

Definitions (times are epoch ms; ``H`` is the horizon; the window runs from the first
cutoff to the last event):

* an alert *at* a level is one that opens or escalates a case to that level (``opened`` or
  ``escalated`` with that ``risk_level``); each counts once;
* **precision**: share of the window's alerts, among those raised at least ``H`` before the
  window's end, whose customer churns no later than ``H`` after the alert (a customer who
  already left when alerted counts as a hit: the alert is right that they are gone);
  ``hits_before_churn`` is the share of those hits raised before the churn date;
* **churners** are customers whose churn date falls in the window and who bought before it
  (a one-time buyer whose churn date is the day of their only purchase cannot be warned);
* **recall**: share of churners with an alert in the ``H`` before their churn date;
  ``caught`` also counts alerts up to ``H`` after it (late, but in time for a win-back);
  ``recall_by_chance`` is the recall alerts would have if churners were alerted like
  stayers: for each churner, the share of stayers first seen before the churn date with
  such an alert in the same ``H`` days, averaged over churners;
* **lead time**: days from a churner's first such alert to the churn date;
* **alerts per 1,000 per week**: alerts over active customer-weeks, ``active`` meaning seen
  (first event at or before the moment) and not churned (before the churn date); the stayer
  rate counts alerts on, and weeks of, customers who never churn;
* **resolved**: share of alerts followed later by a ``resolved`` alert for the customer.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from evaluation.metrics import quartiles

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
LEVELS = ("low", "medium", "high", "critical")
LEVEL_SETS: dict[str, tuple[int, ...]] = {
    "medium": (1,),
    "high": (2,),
    "critical": (3,),
    "high_or_critical": (2, 3),
    "any": (1, 2, 3),
}
RAISING = ("opened", "escalated")


class AlertRecord(NamedTuple):
    """The parts of an alert the evaluation needs."""

    customer_id: str
    kind: str
    level: int
    """Index into :data:`LEVELS` of ``risk_level``."""
    ts: int
    """``as_of`` in epoch ms."""


@dataclass(frozen=True)
class People:
    """Ground truth and first sight of every customer being judged."""

    churn: Mapping[str, int | None]
    """Churn time (epoch ms) or ``None`` for customers who stay; only these are judged."""
    cause: Mapping[str, str]
    first_seen: Mapping[str, int]
    first_purchase: Mapping[str, int | None]


def _summary(values: Sequence[float]) -> dict[str, Any]:
    q1, median, q3 = quartiles(values)
    return {"n": len(values), "median": _num(median), "q1": _num(q1), "q3": _num(q3)}


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 4)


def _ratio(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def active_weeks(people: People, start: int, end: int, stayers_only: bool) -> float:
    """Customer-weeks active within [start, end]: from first sight to churn (or the end)."""
    total = 0
    for cid, first in people.first_seen.items():
        if cid not in people.churn:
            continue
        churn = people.churn[cid]
        if stayers_only and churn is not None:
            continue
        stop = end if churn is None else min(churn, end)
        total += max(0, stop - max(first, start))
    return total / WEEK_MS


def alert_quality(
    alerts: Iterable[AlertRecord],
    people: People,
    window_start: int,
    window_end: int,
    horizon_ms: int,
) -> dict[str, Any]:
    """Precision, recall, lead time, volume and resolution per level set, and per cause."""
    judged = [a for a in alerts if a.customer_id in people.churn]
    resolved: dict[str, list[int]] = defaultdict(list)
    raised: dict[str, list[AlertRecord]] = defaultdict(list)
    for a in sorted(judged, key=lambda a: a.ts):
        if a.kind == "resolved":
            resolved[a.customer_id].append(a.ts)
        elif a.kind in RAISING:
            raised[a.customer_id].append(a)
    churners = sorted(
        cid
        for cid, t in people.churn.items()
        if t is not None
        and window_start < t <= window_end
        and (first := people.first_purchase.get(cid)) is not None
        and first < t
    )
    weeks_all = active_weeks(people, window_start, window_end, stayers_only=False)
    weeks_stay = active_weeks(people, window_start, window_end, stayers_only=True)
    levels: dict[str, Any] = {}
    warned_by_set: dict[str, dict[str, float]] = {}
    for name, members in LEVEL_SETS.items():
        in_window = [
            a
            for cid, items in raised.items()
            for a in items
            if a.level in members and window_start <= a.ts <= window_end
        ]
        judgeable = [a for a in in_window if a.ts + horizon_ms <= window_end]
        hits = [a for a in judgeable if _churned_by(people.churn[a.customer_id], a.ts + horizon_ms)]
        early = [a for a in hits if (people.churn[a.customer_id] or 0) > a.ts]
        on_stayers = sum(1 for a in in_window if people.churn[a.customer_id] is None)
        later_resolved = sum(
            1
            for a in in_window
            if bisect.bisect_right(resolved.get(a.customer_id, []), a.ts)
            < len(resolved.get(a.customer_id, []))
        )
        warned: dict[str, float] = {}
        caught = 0
        for cid in churners:
            t = people.churn[cid]
            assert t is not None  # noqa: S101 - churners have a churn time
            times = [a.ts for a in raised.get(cid, []) if a.level in members]
            before = [ts for ts in times if t - horizon_ms <= ts < t]
            if before:
                warned[cid] = (t - before[0]) / DAY_MS
            if any(t - horizon_ms <= ts <= t + horizon_ms for ts in times):
                caught += 1
        warned_by_set[name] = warned
        stayer_alerts = {
            cid: [a.ts for a in items if a.level in members]
            for cid, items in raised.items()
            if people.churn[cid] is None
        }
        chance = chance_recall(
            [people.churn[cid] or 0 for cid in churners],
            stayer_alerts,
            [
                t
                for cid, t in people.first_seen.items()
                if cid in people.churn and people.churn[cid] is None
            ],
            horizon_ms,
        )
        levels[name] = {
            "alerts": len(in_window),
            "precision": _ratio(len(hits), len(judgeable)),
            "precision_judged": len(judgeable),
            "hits_before_churn": _ratio(len(early), len(hits)),
            "recall": _ratio(len(warned), len(churners)),
            "recall_by_chance": _num(chance),
            "caught": _ratio(caught, len(churners)),
            "lead_time_days": _summary(list(warned.values())),
            "lead_times": sorted(round(v, 2) for v in warned.values()),
            "per_1000_per_week": _num(1000 * len(in_window) / weeks_all) if weeks_all else None,
            "stayers_per_1000_per_week": (
                _num(1000 * on_stayers / weeks_stay) if weeks_stay else None
            ),
            "resolved_share": _ratio(later_resolved, len(in_window)),
        }
    by_cause: dict[str, Any] = {}
    causes = sorted({people.cause.get(cid, "") or "unknown" for cid in churners})
    for cause in causes:
        members_of = [cid for cid in churners if (people.cause.get(cid, "") or "unknown") == cause]
        entry: dict[str, Any] = {"churners": len(members_of)}
        for name in ("any", "high_or_critical"):
            warned = warned_by_set[name]
            leads = [warned[cid] for cid in members_of if cid in warned]
            entry[name] = {
                "recall": _ratio(len(leads), len(members_of)),
                "lead_time_days": _summary(leads),
            }
        by_cause[cause] = entry
    return {
        "window": {"start": iso_date(window_start), "end": iso_date(window_end)},
        "churners": len(churners),
        "churners_not_judged": sum(
            1
            for cid, t in people.churn.items()
            if t is not None and window_start < t <= window_end and cid not in churners
        ),
        "active_customer_weeks": round(weeks_all, 1),
        "stayer_customer_weeks": round(weeks_stay, 1),
        "levels": levels,
        "by_cause": by_cause,
    }


def chance_recall(
    times: Sequence[int],
    stayer_alerts: Mapping[str, Sequence[int]],
    stayers_first_seen: Sequence[int],
    horizon_ms: int,
) -> float:
    """Mean over ``times`` of the share of stayers seen before t with an alert in [t - H, t).

    A stayer with an alert at ``a`` counts for every t in (a, a + H]; each stayer's such
    intervals are merged, so a count is of stayers, not alerts.

    >>> chance_recall([10, 100], {"s1": [5], "s2": []}, [0, 0], 20)
    0.25
    """
    if not times:
        return math.nan
    starts, ends = [], []
    for ts in stayer_alerts.values():
        merged: list[list[int]] = []
        for a in sorted(ts):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = a + horizon_ms
            else:
                merged.append([a, a + horizon_ms])
        for lo, hi in merged:
            starts.append(lo)
            ends.append(hi)
    s, e = np.sort(np.asarray(starts)), np.sort(np.asarray(ends))
    seen = np.sort(np.asarray(stayers_first_seen))
    t = np.asarray(times)
    covered = np.searchsorted(s, t, side="left") - np.searchsorted(e, t, side="left")
    eligible = np.searchsorted(seen, t, side="left")
    shares = np.where(eligible > 0, covered / np.maximum(eligible, 1), np.nan)
    return float(np.nanmean(shares)) if np.isfinite(shares).any() else math.nan


def _churned_by(churn: int | None, deadline: int) -> bool:
    return churn is not None and churn <= deadline


def week_start(ms: int) -> int:
    """The Monday 00:00 UTC at or before ``ms``.

    >>> week_start(1704412800000) == 1704067200000  # Fri 2024-01-05 -> Mon 2024-01-01
    True
    """
    day = ms // DAY_MS
    return (day - (day + 3) % 7) * DAY_MS  # 1970-01-01 was a Thursday


def weekly_counts(alerts: Iterable[AlertRecord], start: int, end: int) -> list[dict[str, Any]]:
    """Alerts raised per week at each level, and resolutions, from ``start`` to ``end``."""
    counts: dict[int, dict[str, int]] = {}
    first, last = week_start(start), week_start(end)
    for week in range(first, last + 1, WEEK_MS):
        counts[week] = {"medium": 0, "high": 0, "critical": 0, "resolved": 0}
    for a in alerts:
        week = week_start(a.ts)
        if week not in counts:
            continue
        if a.kind in RAISING and a.level >= 1:
            counts[week][LEVELS[a.level]] += 1
        elif a.kind == "resolved":
            counts[week]["resolved"] += 1
    return [{"week": iso_date(w), **c} for w, c in sorted(counts.items())]


def iso_date(ms: int) -> str:
    """The UTC date of ``ms``.

    >>> iso_date(1704067200000)
    '2024-01-01'
    """
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).date().isoformat()
