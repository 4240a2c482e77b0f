"""The synthetic customer simulator: contract-valid, deterministic, truth-consistent events."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import pytest

from detectors.events import decode_event
from streams.simulate import (
    CAUSES,
    SEGMENTS,
    TRUTH_DETAIL,
    SimConfig,
    TruthRow,
    generate,
    write_events,
    write_truth,
)

pytestmark = pytest.mark.unit

CFG = SimConfig(customers=600, days=540, seed=7)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def sim() -> tuple[list[dict[str, Any]], list[TruthRow]]:
    return generate(CFG)


@pytest.fixture(scope="module")
def by_customer(sim: tuple[list[dict[str, Any]], list[TruthRow]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for e in sim[0]:
        out[e["customer_id"]].append(e)
    return out


def _files(tmp_path, cfg: SimConfig, tag: str) -> tuple[bytes, bytes]:
    events, truth = generate(cfg)
    ev_path, truth_path = tmp_path / f"{tag}.jsonl", tmp_path / f"{tag}.csv"
    assert write_events(ev_path, events) == len(events)
    assert write_truth(truth_path, truth) == cfg.customers
    return ev_path.read_bytes(), truth_path.read_bytes()


def test_same_config_gives_identical_files_and_another_seed_does_not(tmp_path) -> None:
    cfg = SimConfig(customers=150, days=300, seed=11)
    first, second = _files(tmp_path, cfg, "a"), _files(tmp_path, cfg, "b")
    assert first == second
    other = _files(tmp_path, SimConfig(customers=150, days=300, seed=12), "c")
    assert other[0] != first[0]
    assert other[1] != first[1]


def test_events_are_sorted_unique_and_decode(sim) -> None:
    events, _ = sim
    assert len(events) > 5_000
    keys = [(e["ts"], e["event_id"]) for e in events]
    assert keys == sorted(keys)
    assert len({e["event_id"] for e in events}) == len(events)
    last = date(2024, 1, 1) + timedelta(days=CFG.days - 1)
    for e in events:
        assert TS_RE.match(e["ts"]), e
        assert "2024-01-01" <= e["ts"][:10] <= last.isoformat()
        decoded = decode_event(json.dumps(e).encode())
        assert type(decoded).__name__.lower() == e["event_type"]
        assert decoded.customer_id == e["customer_id"]


def test_all_types_statuses_and_intents_occur(sim) -> None:
    events, _ = sim
    seen = Counter((e["event_type"], e.get("status", e.get("intent"))) for e in events)
    for status in ("placed", "paid", "cancelled", "returned", "refunded"):
        assert seen["order", status] > 0, status
    for status in ("opened", "responded", "resolved", "reopened", "closed"):
        assert seen["ticket", status] > 0, status
    for intent in ("browse", "search", "cart", "checkout", "inquiry"):
        assert seen["visit", intent] > 0, intent
    for e in events:
        if e["event_type"] == "order":
            assert e["amount"] == round(e["amount"], 2) and e["discount"] >= 0


def test_order_and_ticket_lifecycles_are_coherent(sim) -> None:
    events, _ = sim
    orders: dict[str, list[str]] = defaultdict(list)
    tickets: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "order":
            orders[e["order_id"]].append(e["status"])
        elif e["event_type"] == "ticket":
            tickets[e["ticket_id"]].append(e)
    for oid, statuses in orders.items():
        assert statuses[0] in ("placed", "paid"), (oid, statuses)
        assert statuses.count("paid") <= 1, (oid, statuses)
        if "returned" in statuses or "refunded" in statuses:
            assert "paid" in statuses, (oid, statuses)
        if "cancelled" in statuses:
            assert "paid" not in statuses, (oid, statuses)
    for tid, evs in tickets.items():
        assert evs[0]["status"] == "opened", tid
        for e in evs:
            if "satisfaction" in e:
                assert e["status"] in ("resolved", "closed") and 1 <= e["satisfaction"] <= 5
            assert -1 <= e.get("sentiment", 0) <= 1


def test_no_paid_order_after_churn_date(sim, by_customer) -> None:
    _, truth = sim
    churners = [r for r in truth if r.churn_date is not None]
    assert churners
    for r in churners:
        paid = [e["ts"][:10] for e in by_customer[r.customer_id] if e.get("status") == "paid"]
        assert paid, r  # a churner was a customer first
        assert max(paid) <= r.churn_date.isoformat(), r


def test_every_cause_and_non_churners_occur(sim) -> None:
    _, truth = sim
    assert [r.customer_id for r in truth] == sorted({r.customer_id for r in truth})
    causes = Counter(r.cause for r in truth)
    assert set(causes) <= {"", *CAUSES}
    for cause in CAUSES:
        assert causes[cause] >= 3, causes
    assert causes[""] >= CFG.customers // 4
    for r in truth:
        assert (r.cause == "") == (r.churn_date is None), r


def _orders(evs: list[dict]) -> dict[str, list[dict]]:
    """Each order's events (first one first), by order id."""
    out: dict[str, list[dict]] = defaultdict(list)
    for e in evs:
        if e["event_type"] == "order":
            out[e["order_id"]].append(e)
    return out


def _day(e: dict) -> date:
    return date.fromisoformat(e["ts"][:10])


def _order_days(evs: list[dict], paid_only: bool = False) -> list[date]:
    """The day each order was placed (or paid at once); only paid ones if asked."""
    days = []
    for parts in _orders(evs).values():
        if parts[0]["status"] in ("placed", "paid"):
            if not paid_only or any(p["status"] == "paid" for p in parts):
                days.append(_day(parts[0]))
    return sorted(days)


def _unhappy(e: dict) -> bool:
    return e.get("satisfaction", 5) <= 2 or e.get("status") == "reopened"


def _price_ticket(e: dict) -> bool:
    return e.get("status") == "opened" and e.get("category") in ("billing", "price")


def _problem(e: dict) -> bool:
    if e["event_type"] == "order":
        return e["status"] in ("returned", "refunded", "cancelled")
    return e.get("status") == "opened" and e.get("category") in ("quality", "delivery")


def _looking(e: dict) -> bool:
    """Carts and inquiries that do not convert (checkout visits come with an order)."""
    return e.get("intent") in ("cart", "inquiry")


def _visit(e: dict) -> bool:
    return e["event_type"] == "visit"


SIGNALS = {"service": _unhappy, "price": _price_ticket, "product": _problem}


@pytest.fixture(scope="module")
def churny() -> tuple[dict[str, list[dict]], list[TruthRow]]:
    """Mostly churners, no one-time buyers: enough of every cause and strength."""
    cfg = SimConfig(customers=1500, days=400, seed=23, one_time_share=0.0, churn_share=0.75)
    events, truth = generate(cfg)
    by: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by[e["customer_id"]].append(e)
    return by, truth


def _rate(by: dict[str, list[dict]], spans: list[tuple[str, date, date]], pred) -> float:
    """Matching events per customer and 30 days, over (customer, first day, end) spans."""
    hits = days = 0
    for cid, lo, hi in spans:
        hits += sum(1 for e in by[cid] if lo <= _day(e) < hi and pred(e))
        days += (hi - lo).days
    return 30 * hits / max(days, 1)


def test_strong_signals_show_their_cause_and_silent_churn_does_not(churny) -> None:
    by, truth = churny
    end = date(2024, 1, 1) + timedelta(days=400)
    stayers = [(r.customer_id, end - timedelta(days=120), end) for r in truth if not r.churn_date]
    silent = [
        (r.customer_id, r.churn_date - timedelta(days=60), r.churn_date)
        for r in truth
        if r.churn_date and r.signal == 0
    ]
    assert len(stayers) > 100 and len(silent) > 100

    def strong(cause: str) -> list[tuple[str, date, date]]:
        rows = [r for r in truth if r.cause == cause and r.signal >= 0.5 and r.lead_days >= 30]
        assert len(rows) >= 10, cause
        return [
            (r.customer_id, r.churn_date - timedelta(days=r.lead_days), r.churn_date) for r in rows
        ]

    for cause, pred in SIGNALS.items():
        base = _rate(by, stayers, pred)
        assert _rate(by, strong(cause), pred) > 2 * base + 0.2, cause
        assert _rate(by, silent, pred) < 1.5 * base + 0.05, cause
    # engagement: a larger share of the visits are carts and inquiries that do not convert
    looking = {
        name: _rate(by, spans, _looking) / _rate(by, spans, _visit)
        for name, spans in (("strong", strong("engagement")), ("stay", stayers), ("silent", silent))
    }
    assert looking["strong"] > 1.5 * looking["stay"], looking
    assert looking["silent"] < 1.2 * looking["stay"], looking


def test_engagement_and_relationship_churners_buy_less_often_before_leaving(churny) -> None:
    by, truth = churny
    window_end = date(2024, 1, 1) + timedelta(days=400)

    def slowdown(rows: list[TruthRow], lead: int = 60) -> float:
        """Orders per day in the last ``lead`` days (before churn), over the rate before."""
        before = before_days = inside = inside_days = 0
        for r in rows:
            days = _order_days(by[r.customer_id])
            end = r.churn_date or window_end
            cut = end - timedelta(days=lead)
            if not days or days[0] >= cut - timedelta(days=60):
                continue  # too little history before the window
            before += sum(1 for d in days if d < cut)
            before_days += (cut - days[0]).days
            inside += sum(1 for d in days if cut <= d < end)
            inside_days += lead
        assert before_days > 0
        return (inside / inside_days) / (before / before_days)

    regular = ("weekly", "biweekly", "monthly", "b2b")
    for cause in ("engagement", "relationship"):
        rows = [
            r
            for r in truth
            if r.cause == cause and r.signal >= 0.5 and r.lead_days >= 60 and r.segment in regular
        ]
        assert len(rows) >= 8, cause
        assert slowdown(rows) < 0.75, cause
    stayers = [r for r in truth if not r.churn_date and r.segment in regular and not r.pauses]
    assert slowdown(stayers) > 0.8


def test_signal_strength_and_lead_follow_the_config(churny) -> None:
    _, truth = churny
    churners = [r for r in truth if r.churn_date]
    for r in truth:
        assert 0.0 <= r.signal <= 1.0 and 0 <= r.lead_days <= 90, r
        if r.cause in ("", "natural"):
            assert r.signal == 0 and r.lead_days == 0, r
        elif r.signal:
            assert r.signal >= 0.1, r
    others = [r for r in churners if r.cause != "natural"]
    silent = sum(1 for r in others if r.signal == 0) / len(others)
    assert abs(silent - 0.25) < 0.06, silent
    leads = [r.lead_days for r in others if r.signal]
    assert min(leads) <= 5 and max(leads) >= 80
    assert sum(1 for r in others if r.signal >= 0.7) > 0.2 * len(others)
    assert sum(1 for r in others if 0 < r.signal < 0.4) > 0.15 * len(others)


def test_one_time_buyers_churn_on_their_only_order(sim, by_customer) -> None:
    _, truth = sim
    one_timers = 0
    for r in truth:
        orders = {e["order_id"] for e in by_customer[r.customer_id] if e["event_type"] == "order"}
        if len(orders) == 1 and r.cause == "engagement":
            paid = [e for e in by_customer[r.customer_id] if e.get("status") == "paid"]
            if paid and paid[0]["ts"][:10] == r.churn_date.isoformat():
                one_timers += 1
    assert one_timers > CFG.customers * CFG.one_time_share * 0.6


def test_truth_csv_format(tmp_path, sim) -> None:
    _, truth = sim
    path = tmp_path / "truth.csv"
    assert write_truth(path, truth) == len(truth)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["customer_id", "churn_date", "cause"]
    assert len(rows) == len(truth) + 1
    for row, r in zip(rows[1:], truth, strict=True):
        assert row == [r.customer_id, r.churn_date.isoformat() if r.churn_date else "", r.cause]


def test_events_file_is_compact_json_lines(tmp_path) -> None:
    events, _ = generate(SimConfig(customers=20, days=60, seed=3))
    path = tmp_path / "ev.jsonl"
    assert write_events(path, events) == len(events)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    assert all(", " not in line and ": " not in line for line in lines)


def test_segment_shares_follow_the_config() -> None:
    cfg = SimConfig(
        customers=3000,
        days=60,
        seed=5,
        one_time_share=0.25,
        b2b_share=0.2,
        seasonal_share=0.3,
        weekly_weight=1.0,
        biweekly_weight=0.0,
        monthly_weight=2.0,
        quarterly_weight=1.0,
        yearly_weight=0.0,
    )
    _, truth = generate(cfg)
    seen = Counter(r.segment for r in truth)
    assert set(seen) <= set(SEGMENTS)
    n, repeat = len(truth), len(truth) - seen["one_time"]

    def near(count: int, total: int, p: float) -> bool:
        return abs(count - p * total) <= 4 * (total * p * (1 - p)) ** 0.5 + 1

    assert near(seen["one_time"], n, 0.25), seen
    expected = {"b2b": 0.2, "seasonal": 0.3, "weekly": 0.125, "monthly": 0.25, "quarterly": 0.125}
    for segment, p in expected.items():
        assert near(seen[segment], repeat, p), (segment, seen)
    assert seen["biweekly"] == seen["yearly"] == 0


def test_default_world_has_many_one_time_buyers_and_every_segment(sim) -> None:
    _, truth = sim
    seen = Counter(r.segment for r in truth)
    assert set(seen) == set(SEGMENTS)
    assert 0.33 <= seen["one_time"] / len(truth) <= 0.47, seen


def test_one_time_buyers_have_exactly_one_order(sim, by_customer) -> None:
    _, truth = sim
    one_timers = [r for r in truth if r.segment == "one_time"]
    assert len(one_timers) > 150
    for r in one_timers:
        assert len(_orders(by_customer[r.customer_id])) == 1, r
        assert _order_days(by_customer[r.customer_id]) == [r.churn_date], r
        assert r.cause == "engagement", r


def test_churners_place_no_order_on_or_after_the_churn_date(sim, by_customer) -> None:
    _, truth = sim
    churners = [r for r in truth if r.churn_date and r.segment != "one_time"]
    assert len(churners) > 50
    for r in churners:
        days = _order_days(by_customer[r.customer_id], paid_only=True)
        assert days, r  # a customer first
        assert max(_order_days(by_customer[r.customer_id])) < r.churn_date, r
        paid = [_day(e) for e in by_customer[r.customer_id] if e.get("status") == "paid"]
        assert max(paid) < r.churn_date, r


def test_paused_customers_come_back_and_stay(sim, by_customer) -> None:
    _, truth = sim
    paused = [r for r in truth if r.pauses]
    assert len(paused) > 20
    assert any("long_pause" in r.traits for r in paused)
    assert any("vacation" in r.traits for r in paused)
    for r in paused:
        assert r.churn_date is None and r.cause == "", r
        days = _order_days(by_customer[r.customer_id])
        paid = _order_days(by_customer[r.customer_id], paid_only=True)
        for first, back in r.pauses:
            length = (back - first).days
            assert 13 <= length <= 121, r
            if "long_pause" not in r.traits:
                assert length <= 43, r
            assert any(d < first for d in days), r  # a customer before the pause
            assert not any(first + timedelta(days=3) <= d < back for d in days), r
            assert any(back <= d <= back + timedelta(days=17) for d in paid), r


def _season_share(days: list[date], width: int = 61) -> float:
    """The largest share of the days falling in one ``width``-day stretch of the year."""
    doys = [d.timetuple().tm_yday for d in days]
    return max(sum(1 for y in doys if (y - s) % 365 < width) for s in doys) / len(doys)


def test_seasonal_customers_buy_in_their_season_and_are_not_churners_off_season(
    sim, by_customer
) -> None:
    cfg = SimConfig(
        customers=300, days=800, seed=9, one_time_share=0.0, b2b_share=0.0, seasonal_share=1.0
    )
    events, truth = generate(cfg)
    assert {r.segment for r in truth} == {"seasonal"}
    by: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by[e["customer_id"]].append(e)
    shares, long_silences = [], 0
    for r in truth:
        days = _order_days(by[r.customer_id])
        if len(days) >= 2:
            shares.append(_season_share(days))
        if r.churn_date is None and len(days) >= 2:
            long_silences += any((b - a).days > 200 for a, b in zip(days, days[1:], strict=False))
    assert len(shares) > 150
    assert sum(shares) / len(shares) > 0.85
    assert long_silences > 50  # silent most of the year, and not churners
    # the same measure on regular customers is far lower
    monthly = [
        _season_share(days)
        for r in sim[1]
        if r.segment == "monthly" and len(days := _order_days(by_customer[r.customer_id])) >= 2
    ]
    assert len(monthly) > 50
    assert sum(monthly) / len(monthly) < 0.6


def test_complainers_stay_and_keep_ordering_after_their_tickets(sim, by_customer) -> None:
    _, truth = sim
    complainers = [r for r in truth if "complainer" in r.traits]
    assert len(complainers) >= 10
    for r in complainers:
        evs = by_customer[r.customer_id]
        assert r.churn_date is None, r
        tickets: dict[str, list[dict]] = defaultdict(list)
        for e in evs:
            if e["event_type"] == "ticket":
                tickets[e["ticket_id"]].append(e)
        assert len(tickets) >= 2, r

        def bad(parts: list[dict]) -> bool:
            answered = any(p["status"] != "opened" for p in parts)
            return not answered or any(_unhappy(p) for p in parts)

        assert any(bad(parts) for parts in tickets.values()), r
        last_ticket = max(parts[0]["ts"] for parts in tickets.values())
        assert any(e.get("status") == "paid" and e["ts"] > last_ticket for e in evs), r


def test_b2b_accounts_order_on_weekdays_with_larger_baskets(sim, by_customer) -> None:
    _, truth = sim
    b2b = [r for r in truth if r.segment == "b2b"]
    assert len(b2b) >= 10
    amounts: dict[bool, list[float]] = {True: [], False: []}
    channels = set()
    for r in truth:
        if r.segment == "one_time":
            continue
        for parts in _orders(by_customer[r.customer_id]).values():
            if r.segment == "b2b":
                assert _day(parts[0]).weekday() < 5, (r, parts[0])
                channels.add(parts[0]["channel"])
            amounts[r.segment == "b2b"].append(parts[0]["amount"])
    median = {k: sorted(v)[len(v) // 2] for k, v in amounts.items()}
    assert median[True] > 3 * median[False], median
    assert len(channels) >= 2


def test_truth_detail_columns(tmp_path, sim) -> None:
    _, truth = sim
    path = tmp_path / "truth.csv"
    assert write_truth(path, truth, detail=True) == len(truth)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["customer_id", "churn_date", "cause", *TRUTH_DETAIL]
    for row, r in zip(rows, truth, strict=True):
        assert row["customer_id"] == r.customer_id and row["segment"] == r.segment
        assert float(row["signal"]) == r.signal and int(row["lead_days"]) == r.lead_days
        pauses = [p.split("/") for p in row["pauses"].split(";") if p]
        assert [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in pauses] == list(r.pauses)
        assert tuple(t for t in row["traits"].split(";") if t) == r.traits


@pytest.mark.parametrize(
    "bad",
    [
        {"customers": -1},
        {"days": 0},
        {"one_time_share": 1.5},
        {"natural_weight": -0.1},
        {"b2b_share": 0.6, "seasonal_share": 0.5},
        {"weekly_weight": -1.0},
        {"silent_share": -0.2},
        {"max_lead_days": 400},
        {
            "weekly_weight": 0.0,
            "biweekly_weight": 0.0,
            "monthly_weight": 0.0,
            "quarterly_weight": 0.0,
            "yearly_weight": 0.0,
        },
    ],
)
def test_invalid_config_is_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**bad)
