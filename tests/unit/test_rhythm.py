"""A regular who simply stops is warned against their own rhythm, with default settings.

The field rule (shared DOMAIN page): a customer who usually returns every so often is at
risk after twice that gap. Checked over cadences from weekly to yearly, in a population of
other customers who keep buying, with the sweeps a clock makes (no event of the silent
customer comes after the last order).
"""

from __future__ import annotations

import random
import re
from datetime import datetime

import pytest
from cw_strategies import DAY, T0, ev
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import Alert, Engine, EngineConfig

pytestmark = pytest.mark.unit

LEVEL = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _history(gaps: list[float], key: str, start: float, rng: random.Random) -> list[tuple]:
    days, out = start, []
    for i, gap in enumerate(gaps):
        out.append((days, key, i, round(rng.uniform(20, 80), 2)))
        days += gap
    return out


def _replay(orders: list[tuple], end_day: float) -> list[Alert]:
    """The engine with default settings, one event at a time and a daily clock tick."""
    engine = Engine(EngineConfig())
    alerts: list[Alert] = []
    for day, key, i, amount in sorted(orders):
        t = T0 + int(day * DAY)
        alerts += engine.feed(
            ev("order", key, t, f"{key}-{i}", order_id=f"{key}-o{i}", amount=amount)
        )
    last = max(day for day, *_ in orders)
    for d in range(int(last) + 1, int(end_day) + 1):
        alerts += engine.advance_all(T0 + d * DAY)
    return alerts


def _population(days: float, rng: random.Random) -> list[tuple]:
    """Forty customers of mixed rhythms who keep buying to the end."""
    out: list[tuple] = []
    for k in range(40):
        gap = rng.choice([7, 14, 30, 30, 60, 90])
        n = int(days / gap) + 1
        out += _history([gap * rng.uniform(0.6, 1.5) for _ in range(n)], f"p{k}", 0, rng)
    return [o for o in out if o[0] <= days]


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _first(alerts: list[Alert], key: str, level: str) -> Alert | None:
    return next(
        (a for a in alerts if a.customer_id == key and LEVEL[a.risk_level] >= LEVEL[level]),
        None,
    )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(gap=st.sampled_from([7.0, 10.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 182.0, 365.0]))
def test_a_regular_who_stops_is_medium_by_twice_and_high_by_three_times_the_gap(
    gap: float,
) -> None:
    rng = random.Random(int(gap))
    n = max(6, min(12, int(720 / gap)))
    regular = _history([gap * rng.uniform(0.92, 1.08) for _ in range(n)], "regular", 0, rng)
    last = max(day for day, *_ in regular)
    end = last + 4 * gap
    alerts = _replay(regular + _population(end, rng), end)
    stop = T0 + int(last * DAY)
    mine = [a for a in alerts if a.customer_id == "regular" and _ms(a.as_of) > stop]
    medium, high = _first(mine, "regular", "medium"), _first(mine, "regular", "high")
    assert medium is not None, [a.risk_level for a in mine]
    if gap > 200:  # a yearly buyer: three years of silence is past inactive_after_days
        high = medium
    assert high is not None, [a.risk_level for a in mine]
    assert medium.kind == "opened"
    since = lambda a: (_ms(a.as_of) - (T0 + int(last * DAY))) / DAY  # noqa: E731
    quoted = float(re.search(r"usually every (\d+) day", medium.reasons[0].message)[1])
    assert quoted == pytest.approx(gap, rel=0.25), "the usual gap is the customer's own"
    # opened at the first daily tick past twice the usual gap, escalated past three times
    assert since(medium) <= 2.0 * quoted + 1.5, (since(medium), quoted)
    assert since(high) <= 3.0 * quoted + 1.5, (since(high), quoted)
    # when, not only whether: expected back after one usual gap, act by three
    assert medium.expected_back is not None and medium.act_by is not None
    back, act_by = ((_ms(t) - stop) / DAY for t in (medium.expected_back, medium.act_by))
    assert back == pytest.approx(quoted, abs=1) and act_by == pytest.approx(3 * quoted, abs=2)
    reason = medium.reasons[0]
    assert reason.code == "order_overdue" and "usually every" in reason.message


def test_a_seasonal_buyer_is_judged_against_their_own_long_gaps() -> None:
    """Three orders two weeks apart each December, for four years: the median gap is two
    weeks, but once their history holds the long gaps too, a silence of many of those is
    their usual year and raises nothing."""
    rng = random.Random(4)
    seasonal: list[tuple] = []
    for year in range(4):
        for k in range(3):
            day = 340 + 365 * year + 14 * k + rng.uniform(-2, 2)
            seasonal.append((day, "seasonal", len(seasonal), 50.0))
    last = max(day for day, *_ in seasonal)
    alerts = _replay(seasonal + _population(last + 200, rng), last + 200)
    third_season = T0 + (340 + 2 * 365 - 5) * DAY
    late = [
        a
        for a in alerts
        if a.customer_id == "seasonal" and a.kind != "resolved" and _ms(a.as_of) > third_season
    ]
    assert not late, [(a.as_of, a.risk_level, a.reasons) for a in late]
    assert any(a.customer_id == "seasonal" for a in alerts), "a first year looks like a lapse"
