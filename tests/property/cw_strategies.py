"""Event builders and hypothesis strategies shared by the property and unit tests.

Importable as ``cw_strategies`` (``tests/conftest.py`` puts this folder on ``sys.path``).
Every event goes through the real decoder, so tests see what the drivers see.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from detectors import Alert, Event, Shard, decode_event

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def ev(event_type: str, customer_id: str, ts: int, event_id: str, **fields: Any) -> Event:
    """One event through the decoder (``ts`` in epoch ms)."""
    obj = {
        "event_id": event_id,
        "event_type": event_type,
        "customer_id": customer_id,
        "ts": ts,
        **fields,
    }
    return decode_event(json.dumps(obj).encode())


def feed(shard: Shard, events: Iterable[Event]) -> list[Alert]:
    """What ``Engine.feed`` does for one shard: sweep up to the event, then apply it."""
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(shard.advance(int(event.ts)))
        alerts.extend(shard.process(event))
    return alerts


ORDER_STATUSES = ("paid", "paid", "paid", "placed", "cancelled", "refunded", "returned")
TICKET_STATUSES = ("opened", "opened", "responded", "resolved", "reopened", "closed")
CATEGORIES = ("billing", "price", "quality", "delivery", "service", "technical", "account")
INTENTS = ("browse", "search", "cart", "checkout", "inquiry")


@st.composite
def histories(
    draw: st.DrawFn, customer_id: str = "c1", max_events: int = 40, outcomes: bool = True
) -> list[Event]:
    """A time-ordered history of one customer: orders and their changes, visits, tickets,
    the odd explicit outcome, and redelivered duplicates."""
    n = draw(st.integers(1, max_events))
    t = T0 + draw(st.integers(0, 30 * DAY))
    events: list[Event] = []
    kinds = ["order", "order", "visit", "visit", "ticket"] + (["outcome"] if outcomes else [])
    for i in range(n):
        t += draw(
            st.one_of(st.integers(0, 6 * HOUR), st.integers(0, 45 * DAY), st.just(0)),
        )
        if events and draw(st.integers(0, 9)) == 0:  # a redelivery of an earlier event
            events.append(draw(st.sampled_from(events)))
            continue
        kind = draw(st.sampled_from(kinds))
        eid = f"{customer_id}-e{i}"
        if kind == "order":
            amount = draw(st.floats(0, 5000, allow_nan=False) | st.sampled_from([0, 19.99, 250]))
            events.append(
                ev(
                    "order",
                    customer_id,
                    t,
                    eid,
                    order_id=f"o{draw(st.integers(0, 6))}",
                    amount=amount,
                    discount=draw(st.sampled_from([0.0, 0.0, 5.0])),
                    items=draw(st.integers(0, 5)),
                    status=draw(st.sampled_from(ORDER_STATUSES)),
                )
            )
        elif kind == "visit":
            events.append(
                ev(
                    "visit",
                    customer_id,
                    t,
                    eid,
                    intent=draw(st.sampled_from(INTENTS)),
                    pages=draw(st.integers(0, 20)),
                )
            )
        elif kind == "ticket":
            fields: dict[str, Any] = {
                "ticket_id": f"t{draw(st.integers(0, 4))}",
                "status": draw(st.sampled_from(TICKET_STATUSES)),
                "category": draw(st.sampled_from(CATEGORIES)),
                "severity": draw(st.sampled_from(["low", "medium", "high", "critical"])),
            }
            if draw(st.booleans()):
                fields["satisfaction"] = draw(st.integers(1, 5))
            if draw(st.booleans()):
                fields["sentiment"] = draw(st.floats(-1, 1, allow_nan=False))
            events.append(ev("ticket", customer_id, t, eid, **fields))
        else:
            events.append(
                ev(
                    "outcome",
                    customer_id,
                    t,
                    eid,
                    outcome=draw(st.sampled_from(["churned", "retained"])),
                )
            )
    return events


def touch_everything(customer_id: str, t: int) -> list[Event]:
    """Events that act on every ticket and order id :func:`histories` uses, so every update
    path (respond, resolve, reopen, pay, cancel, refund) runs on whatever is open."""
    out: list[Event] = []
    for k in range(5):
        for status in ("responded", "resolved", "reopened"):
            t += HOUR
            out.append(
                ev(
                    "ticket",
                    customer_id,
                    t,
                    f"{customer_id}-z{len(out)}",
                    ticket_id=f"t{k}",
                    status=status,
                    satisfaction=2,
                    sentiment=-0.5,
                )
            )
    for k in range(7):
        for status in ("paid", "returned", "refunded", "cancelled"):
            t += HOUR
            out.append(
                ev(
                    "order",
                    customer_id,
                    t,
                    f"{customer_id}-z{len(out)}",
                    order_id=f"o{k}",
                    amount=10.0,
                    status=status,
                )
            )
    out.append(ev("visit", customer_id, t + HOUR, f"{customer_id}-z{len(out)}", intent="cart"))
    return out


def long_stream(customer_id: str, n: int, seed: int) -> list[Event]:
    """A long, busy, seeded history: many tickets never resolved, orders placed and never
    paid, returns, visits; used to check that state stays bounded."""
    rng = random.Random(seed)
    t = T0
    out: list[Event] = []
    for i in range(n):
        t += rng.randint(1, 3 * DAY)
        eid = f"{customer_id}-e{i}"
        r = rng.random()
        if r < 0.25:
            out.append(
                ev(
                    "ticket",
                    customer_id,
                    t,
                    eid,
                    ticket_id=f"t{i}",
                    status="opened",
                    category=rng.choice(CATEGORIES),
                    severity=rng.choice(["low", "medium", "high", "critical"]),
                    satisfaction=rng.randint(1, 5),
                    sentiment=round(rng.uniform(-1, 1), 2),
                )
            )
        elif r < 0.45:
            out.append(
                ev("order", customer_id, t, eid, order_id=f"p{i}", amount=50.0, status="placed")
            )
        elif r < 0.65:
            out.append(
                ev(
                    "order",
                    customer_id,
                    t,
                    eid,
                    order_id=f"o{i}",
                    amount=round(rng.uniform(5, 500), 2),
                    discount=rng.choice([0.0, 3.0]),
                )
            )
        elif r < 0.72:
            out.append(
                ev(
                    "order",
                    customer_id,
                    t,
                    eid,
                    order_id=f"o{rng.randint(0, i)}",
                    amount=20.0,
                    status=rng.choice(["returned", "refunded", "cancelled"]),
                )
            )
        else:
            out.append(ev("visit", customer_id, t, eid, intent=rng.choice(INTENTS), pages=3))
    return out
