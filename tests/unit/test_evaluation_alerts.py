"""Alert quality and the cutoff bookkeeping, on small hand-built cases."""

from __future__ import annotations

import pytest

from evaluation.alert_quality import (
    AlertRecord,
    People,
    alert_quality,
    chance_recall,
    week_start,
    weekly_counts,
)
from evaluation.baselines import History
from evaluation.evaluate import Collection, Truth, evaluate

pytestmark = pytest.mark.unit

D = 86_400_000
H = 30 * D


def _people() -> People:
    return People(
        churn={"a": 200 * D, "b": None, "c": 250 * D, "d": 150 * D, "e": 90 * D, "g": None},
        cause={"a": "service", "b": "", "c": "price", "d": "engagement", "e": "natural", "g": ""},
        first_seen={"a": 0, "b": 50 * D, "c": 5 * D, "d": 140 * D, "e": 0, "f": 0, "g": 280 * D},
        first_purchase={
            "a": 1 * D,
            "b": 51 * D,
            "c": 10 * D,
            "d": 150 * D + 3_600_000,  # a one-time buyer: churn date = the purchase day
            "e": 2 * D,
            "f": 0,
            "g": None,
        },
    )


ALERTS = [
    AlertRecord("a", "opened", 1, 150 * D),
    AlertRecord("a", "escalated", 2, 185 * D),
    AlertRecord("a", "escalated", 3, 195 * D),
    AlertRecord("b", "opened", 2, 120 * D),
    AlertRecord("b", "resolved", 0, 140 * D),
    AlertRecord("b", "opened", 1, 260 * D),
    AlertRecord("c", "opened", 2, 260 * D),
    AlertRecord("c", "deescalated", 1, 270 * D),  # not a raise: never counted
    AlertRecord("e", "opened", 3, 105 * D),
    AlertRecord("f", "opened", 2, 150 * D),  # not in the truth: ignored
    AlertRecord("g", "opened", 1, 290 * D),  # too late to judge precision
    AlertRecord("a", "opened", 2, 50 * D),  # before the window
]


@pytest.fixture(scope="module")
def quality() -> dict:
    return alert_quality(ALERTS, _people(), 100 * D, 300 * D, H)


def test_churners_are_those_who_bought_before_churning_in_the_window(quality: dict) -> None:
    assert quality["churners"] == 2  # a and c; d churned on its only purchase day, e before
    assert quality["churners_not_judged"] == 1  # d


def test_precision_recall_and_lead_time_per_level(quality: dict) -> None:
    lv = quality["levels"]
    high = lv["high"]
    assert high["alerts"] == 3
    assert high["precision"] == pytest.approx(2 / 3, abs=1e-4)  # a (churns 15 days on), c (gone)
    assert high["hits_before_churn"] == pytest.approx(1 / 2, abs=1e-4)
    assert high["recall"] == pytest.approx(1 / 2, abs=1e-4)  # a warned 15 days ahead, c only after
    assert high["caught"] == 1.0
    assert high["lead_times"] == [15.0]
    assert lv["critical"]["precision"] == 1.0
    assert lv["critical"]["lead_times"] == [5.0]
    medium = lv["medium"]
    assert (medium["alerts"], medium["precision_judged"], medium["precision"]) == (3, 2, 0.0)
    assert medium["recall"] == 0.0  # a's medium alert came 50 days before: outside H
    both = lv["high_or_critical"]
    assert (both["alerts"], both["precision"]) == (5, 0.8)
    assert both["lead_time_days"]["median"] == 15.0  # the first high+ alert counts
    anyl = lv["any"]
    assert (anyl["alerts"], anyl["precision_judged"]) == (8, 7)
    assert anyl["precision"] == pytest.approx(4 / 7, abs=1e-4)


def test_alert_volume_over_active_customer_weeks(quality: dict) -> None:
    # active days in the window: a 100, b 200, c 150, d 10, e 0, g 20 (f is not in the truth)
    assert quality["active_customer_weeks"] == pytest.approx(480 / 7, abs=0.05)
    assert quality["stayer_customer_weeks"] == pytest.approx(220 / 7, abs=0.05)
    anyl = quality["levels"]["any"]
    assert anyl["per_1000_per_week"] == pytest.approx(1000 * 8 / (480 / 7), abs=1e-3)
    assert anyl["stayers_per_1000_per_week"] == pytest.approx(1000 * 3 / (220 / 7), abs=1e-3)


def test_resolved_share_and_causes(quality: dict) -> None:
    assert quality["levels"]["high"]["resolved_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert quality["levels"]["any"]["resolved_share"] == pytest.approx(1 / 8, abs=1e-4)
    causes = quality["by_cause"]
    assert set(causes) == {"price", "service"}
    assert causes["service"]["high_or_critical"]["recall"] == 1.0
    assert causes["service"]["high_or_critical"]["lead_time_days"]["median"] == 15.0
    assert causes["price"]["any"]["recall"] == 0.0


def test_weekly_counts_start_on_mondays() -> None:
    monday = week_start(1_704_412_800_000)  # Friday 2024-01-05
    rows = weekly_counts(
        [
            AlertRecord("a", "opened", 1, monday + D),
            AlertRecord("a", "escalated", 3, monday + 8 * D),
            AlertRecord("a", "resolved", 0, monday + 9 * D),
        ],
        monday,
        monday + 10 * D,
    )
    assert [r["week"] for r in rows] == ["2024-01-01", "2024-01-08"]
    assert rows[0] == {"week": "2024-01-01", "medium": 1, "high": 0, "critical": 0, "resolved": 0}
    assert (rows[1]["critical"], rows[1]["resolved"]) == (1, 1)


def test_cutoff_judges_customers_not_yet_churned_with_the_horizon_label() -> None:
    cut = 100 * D
    risk = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.95, "e": 0.99, "x": 0.2}
    histories = {k: History(0, [10 * D, 40 * D]) for k in risk}
    truth = Truth(
        churn={"a": 120 * D, "b": None, "c": 250 * D, "d": 100 * D, "e": 90 * D},
        cause={"a": "price", "b": "", "c": "service", "d": "natural", "e": "natural"},
    )
    collection = Collection(
        cutoffs=[cut],
        risk=[risk],
        histories=histories,
        alerts=[],
        first_ts=0,
        last_ts=300 * D,
    )
    report = evaluate(collection, truth, horizon_days=90, draws=20, seed=1)
    (entry,) = report["ranking"]
    # d churned on the cutoff day and e before it: out; x is not in the truth: out
    assert (entry["customers"], entry["churners"]) == (3, 1)
    assert entry["scores"]["churnwatch"]["roc_auc"]["value"] == 1.0
    assert entry["labels_complete"] is True
    assert report["data"]["customers_not_in_truth"] == 1
    assert set(entry["scores"]) == {"churnwatch", "recency", "relative_recency", "bgnbd"}


def test_chance_recall_counts_stayers_not_alerts() -> None:
    stayer_alerts = {"s1": [100, 110], "s2": [300], "s3": []}
    seen = [0, 0, 500]
    # t=105 and 115: s1 of s1, s2 (s1's two alerts count once); t=305: s2; t=600: none of 3
    got = chance_recall([105, 115, 305, 600], stayer_alerts, seen, 20)
    assert got == pytest.approx((0.5 + 0.5 + 0.5 + 0.0) / 4)
    assert chance_recall([50], {"s": [10]}, [0], 20) == 0.0  # the alert's horizon has passed


def test_recall_by_chance_in_the_report(quality: dict) -> None:
    # b's high alert on day 120 is not within 30 days before day 200 or 250
    assert quality["levels"]["high"]["recall_by_chance"] == 0.0
