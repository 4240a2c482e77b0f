"""Golden streams: seeded, hand-built customer histories and the exact alerts they produce.

Run ``python tests/data/golden/regenerate.py`` to rewrite every ``<name>.events.jsonl`` and
``<name>.expected.json`` here. Read each expected file before committing it: the goldens pin
the engine's behaviour only if a person checked that the alerts make domain sense.

The replay here is the one ``tests/unit/test_golden.py`` runs: the pure engine
(``EngineConfig(risk_target="lapse")``: every silence past the customer's rhythm alarms,
which is what these scenarios pin; one partition), the event-time clock, and a sweep
timer that ticks at every UTC midnight between events and on to the scenario's end, as a
worker's timer would.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors import Alert, Engine, EngineConfig, decode_event

HERE = Path(__file__).resolve().parent
DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def iso(ms: int) -> str:
    """Whole-second RFC 3339 UTC time (what the golden files carry).

    >>> iso(START_MS)
    '2024-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Stream:
    """One customer's hand-built history; ``day`` is days since 2024-01-01 (whole seconds)."""

    def __init__(self, customer_id: str, seed: int) -> None:
        self.cid = customer_id
        self.rng = random.Random(seed)
        self.events: list[tuple[int, int, dict[str, Any]]] = []
        self.n_orders = 0
        self.n_tickets = 0

    def at(self, day: float) -> int:
        return START_MS + round(day * 86_400) * 1000

    def emit(self, day: float, event_type: str, **fields: Any) -> int:
        ts = self.at(day)
        n = len(self.events) + 1
        event = {
            "event_id": f"{self.cid}-e{n:04d}",
            "event_type": event_type,
            "customer_id": self.cid,
            "ts": iso(ts),
            **fields,
        }
        self.events.append((ts, n, event))
        return ts

    def order(
        self,
        day: float,
        amount: float,
        status: str = "paid",
        order_id: str | None = None,
        discount: float = 0.0,
    ) -> str:
        if order_id is None:
            self.n_orders += 1
            order_id = f"{self.cid}-o{self.n_orders}"
        self.emit(
            day,
            "order",
            order_id=order_id,
            amount=round(amount, 2),
            items=max(1, round(amount / 25)),
            discount=round(discount, 2),
            status=status,
        )
        return order_id

    def visit(self, day: float, intent: str = "browse", channel: str = "web") -> None:
        self.emit(day, "visit", channel=channel, intent=intent, pages=4, duration_s=180)

    def ticket(self, day: float, status: str, ticket_id: str | None = None, **kw: Any) -> str:
        if ticket_id is None:
            self.n_tickets += 1
            ticket_id = f"{self.cid}-t{self.n_tickets}"
        self.emit(day, "ticket", ticket_id=ticket_id, status=status, **kw)
        return ticket_id

    def regular(self, first: float, n: int, gap: float = 30.0, basket: float = 60.0) -> float:
        """``n`` paid orders about ``gap`` days apart with a visit or two; returns the last day."""
        day = first
        for i in range(n):
            if i:
                day += gap * self.rng.uniform(0.9, 1.1)
            t = day + self.rng.uniform(0.35, 0.8)
            for _ in range(self.rng.randint(1, 2)):
                self.visit(t - self.rng.uniform(2.0, 12.0), self.rng.choice(("browse", "search")))
            self.order(t, basket * self.rng.lognormvariate(0.0, 0.12))
            last = t
        return last

    def sorted_events(self) -> list[dict[str, Any]]:
        return [e for _, _, e in sorted(self.events, key=lambda r: (r[0], r[1]))]


# scenarios -------------------------------------------------------------------------------
# each returns the events and the end of the replay (epoch ms)

Scenario = tuple[list[dict[str, Any]], int]


def silent_monthly() -> Scenario:
    """A regular monthly customer who goes silent for good: sweeps must raise the alarm."""
    s = Stream("g-silent", 101)
    last = s.regular(3, 12, gap=30.0)
    return s.sorted_events(), s.at(last + 200)


def service_unanswered() -> Scenario:
    """A complaint handled so-so, then a high-severity one nobody answers, mid-cycle."""
    s = Stream("g-service", 102)
    last = s.regular(2, 8, gap=30.0)
    tid = s.ticket(last + 1.2, "opened", category="technical", severity="medium", sentiment=-0.5)
    s.ticket(last + 1.5, "responded", tid)
    s.ticket(last + 2.5, "resolved", tid, satisfaction=3)
    s.ticket(last + 4.4, "opened", category="service", severity="high", sentiment=-0.7)
    return s.sorted_events(), s.at(last + 24)


def low_satisfaction() -> Scenario:
    """Tickets answered and closed but the customer is unhappy each time, then stops buying."""
    s = Stream("g-unhappy", 103)
    last = s.regular(5, 9, gap=30.0)
    for k, (sat, sent) in enumerate(((2, -0.5), (1, -0.8))):
        day = last - 20 + 12 * k
        tid = s.ticket(day, "opened", category="service", severity="medium", sentiment=sent)
        s.ticket(day + 0.2, "responded", tid)
        s.ticket(day + 1.5, "resolved", tid, satisfaction=sat)
    return s.sorted_events(), s.at(last + 120)


def price_pressure() -> Scenario:
    """Baskets fall and lean on discounts, then a price complaint and a sudden stop."""
    s = Stream("g-price", 104)
    day = s.regular(4, 7, gap=28.0, basket=120.0)
    for _ in range(3):
        day += 28 * s.rng.uniform(0.9, 1.1)
        amount = 38.0 * s.rng.lognormvariate(0.0, 0.1)
        s.order(day, amount, discount=round(amount * 0.2, 2))
    tid = s.ticket(day + 16, "opened", category="price", severity="medium", sentiment=-0.3)
    s.ticket(day + 16.3, "responded", tid)
    s.ticket(day + 18, "resolved", tid, satisfaction=3)
    return s.sorted_events(), s.at(day + 120)


def returns_and_cancels() -> Scenario:
    """Returned, refunded and cancelled orders and a quality complaint."""
    s = Stream("g-returns", 105)
    last = s.regular(6, 7, gap=30.0)
    day = last + 30
    o1 = s.order(day, 80.0)
    s.order(day + 6, 80.0, status="returned", order_id=o1)
    s.order(day + 9, 80.0, status="refunded", order_id=o1)
    tid = s.ticket(day + 6.2, "opened", category="quality", severity="medium")
    s.ticket(day + 6.5, "responded", tid)
    s.ticket(day + 8, "resolved", tid, satisfaction=3)
    o2 = s.order(day + 25, 70.0, status="placed")
    s.order(day + 25.4, 70.0, status="cancelled", order_id=o2)
    o3 = s.order(day + 31, 65.0)
    s.order(day + 40, 65.0, status="returned", order_id=o3)
    return s.sorted_events(), s.at(day + 31 + 90)


def carts_without_orders() -> Scenario:
    """Keeps visiting, filling carts and asking, and never orders again."""
    s = Stream("g-browser", 106)
    last = s.regular(3, 8, gap=30.0)
    for k, intent in enumerate(("cart", "browse", "inquiry", "cart", "search", "cart", "inquiry")):
        s.visit(last + 6 + 5 * k + s.rng.uniform(0.3, 0.7), intent)
    return s.sorted_events(), s.at(last + 60)


def placed_not_paid() -> Scenario:
    """Places two orders and pays neither."""
    s = Stream("g-unpaid", 107)
    last = s.regular(2, 8, gap=30.0)
    s.order(last + 29.5, 64.0, status="placed")
    s.order(last + 33.6, 58.0, status="placed")
    return s.sorted_events(), s.at(last + 90)


def recovers() -> Scenario:
    """Goes silent long enough to be alerted, then comes back and buys monthly again."""
    s = Stream("g-recover", 108)
    last = s.regular(3, 10, gap=30.0)
    back = last + 110.5
    s.visit(back - 0.1, "checkout")
    s.order(back, 70.0)
    s.regular(back + 30, 3, gap=30.0)
    return s.sorted_events(), s.at(back + 100)


def one_time_buyer() -> Scenario:
    """One order, two visits, never back."""
    s = Stream("g-onetime", 109)
    s.visit(20.4, "search")
    s.visit(21.6, "cart")
    s.order(21.65, 45.0)
    s.visit(33.2, "browse")
    return s.sorted_events(), s.at(21.65 + 300)


def healthy() -> Scenario:
    """A steady monthly customer with a well-served ticket: must get no alert at all."""
    s = Stream("g-healthy", 110)
    last = s.regular(1, 14, gap=30.0)
    tid = s.ticket(last - 50, "opened", category="delivery", severity="low", sentiment=0.1)
    s.ticket(last - 49.8, "responded", tid)
    s.ticket(last - 49, "resolved", tid, satisfaction=5)
    s.ticket(last - 46, "closed", tid, satisfaction=5)
    return s.sorted_events(), s.at(last + 25)


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "silent_monthly": silent_monthly,
    "service_unanswered": service_unanswered,
    "low_satisfaction": low_satisfaction,
    "price_pressure": price_pressure,
    "returns_and_cancels": returns_and_cancels,
    "carts_without_orders": carts_without_orders,
    "placed_not_paid": placed_not_paid,
    "recovers": recovers,
    "one_time_buyer": one_time_buyer,
    "healthy": healthy,
}


# the replay -------------------------------------------------------------------------------


def replay(lines: Iterable[bytes], end_ms: int) -> list[Alert]:
    """Feed events in order; sweep at every UTC midnight between them and up to ``end_ms``."""
    engine = Engine(EngineConfig(risk_target="lapse"), partitions=1)
    alerts: list[Alert] = []
    tick = None
    for line in lines:
        if not line.strip():
            continue
        event = decode_event(line)
        ts = int(event.ts)
        if tick is None:
            tick = (ts // DAY_MS + 1) * DAY_MS
        while tick <= ts:
            alerts.extend(engine.advance_all(tick))
            tick += DAY_MS
        alerts.extend(engine.feed(event))
    while tick is not None and tick <= end_ms:
        alerts.extend(engine.advance_all(tick))
        tick += DAY_MS
    return alerts


def summary(alert: Alert) -> dict[str, Any]:
    """The parts of an alert a golden file pins."""
    return {
        "kind": alert.kind,
        "risk_level": alert.risk_level,
        "previous_level": alert.previous_level,
        "as_of": alert.as_of,
        "reasons": [r.code for r in alert.reasons],
        "trigger": alert.trigger,
        "treatment": alert.treatment,
    }


def events_path(name: str) -> Path:
    return HERE / f"{name}.events.jsonl"


def expected_path(name: str) -> Path:
    return HERE / f"{name}.expected.json"


def render(name: str, description: str, end_ms: int, alerts: list[Alert]) -> str:
    """The expected file: metadata, then one alert summary per line (easy to read and diff)."""
    head = {"scenario": name, "description": description, "end": iso(end_ms)}
    lines = [json.dumps(summary(a)) for a in alerts]
    body = ",\n    ".join(lines)
    alerts_text = f"[\n    {body}\n  ]" if lines else "[]"
    return json.dumps(head, indent=2)[:-2] + f',\n  "alerts": {alerts_text}\n}}\n'


def main() -> int:
    for name, build in SCENARIOS.items():
        events, end_ms = build()
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        events_path(name).write_text(text, encoding="utf-8")
        alerts = replay(text.encode().splitlines(), end_ms)
        doc = (build.__doc__ or "").strip()
        expected_path(name).write_text(render(name, doc, end_ms, alerts), encoding="utf-8")
        print(f"{name}: {len(events)} events, {len(alerts)} alerts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
