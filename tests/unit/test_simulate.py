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
from streams.simulate import CAUSES, SimConfig, TruthRow, generate, write_events, write_truth

pytestmark = pytest.mark.unit

CFG = SimConfig(customers=400, days=540, seed=7)
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


def _window(evs: list[dict], end: date, days: int = 70) -> list[dict]:
    lo, hi = (end - timedelta(days=days)).isoformat(), end.isoformat()
    return [e for e in evs if lo <= e["ts"][:10] < hi]


def test_churn_causes_leave_their_signals(sim, by_customer) -> None:
    """The 10 weeks before churn show the cause far more than a window of a non-churner."""
    _, truth = sim
    per_cause: dict[str, list[list[dict]]] = defaultdict(list)
    for r in truth:
        end = r.churn_date or date(2024, 1, 1) + timedelta(days=CFG.days - 1)
        per_cause[r.cause].append(_window(by_customer[r.customer_id], end))

    def rate(cause: str, pred) -> float:
        windows = per_cause[cause]
        return sum(1 for w in windows for e in w if pred(e)) / len(windows)

    def unhappy(e: dict) -> bool:
        return e.get("satisfaction", 5) <= 2 or e.get("status") == "reopened"

    def price_ticket(e: dict) -> bool:
        return e.get("status") == "opened" and e.get("category") in ("billing", "price")

    def problem(e: dict) -> bool:
        return e["event_type"] == "order" and e["status"] in ("returned", "refunded", "cancelled")

    assert rate("service", unhappy) > 5 * rate("", unhappy) + 0.2
    assert rate("price", price_ticket) > 5 * rate("", price_ticket) + 0.2
    assert rate("product", problem) > 2 * rate("", problem)
    assert rate("natural", unhappy) == 0


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


@pytest.mark.parametrize(
    "bad",
    [{"customers": -1}, {"days": 0}, {"one_time_share": 1.5}, {"natural_weight": -0.1}],
)
def test_invalid_config_is_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**bad)
