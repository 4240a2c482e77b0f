"""Synthetic customers with known churn: events by the "Events in" contract plus ground truth.

Each customer is simulated alone with a child ``random.Random`` drawn from ``Random(seed)``,
so a config always gives byte-identical output (no global random state, no wall clock).

What it models (see shared/DOMAIN.md):

* **Cadence.** A repeat customer's mean gap between orders is log-normal (median ~38 days,
  from about weekly to yearly); each gap is gamma-distributed around it (shape 1.5-4; B2B
  accounts ~10, i.e. regular, weekdays only, larger baskets). A share of customers are
  **one-time buyers**: one order, a few visits, never back; their truth is
  ``churn_date`` = the order's date, cause ``engagement``.
* **Start.** Some customers are already active on day 0 (first order at a random phase of
  their cadence); the others join at a uniform day in the window.
* **Amounts.** A per-customer log-normal basket (median ~40, wide; B2B ~400) with per-order
  noise; a personal propensity to use discounts; ``amount`` is net of ``discount``.
* **Order lifecycle.** Mostly ``paid``; some ``placed`` then ``paid`` (same ``order_id``),
  some ``placed`` never paid, ``placed`` then ``cancelled``, ``paid`` then ``returned``
  (then usually ``refunded``) or ``refunded``.
* **Visits.** A Poisson stream of web/app/store sessions at a personal rate (a few per order,
  more for engaged customers), plus a checkout session just before many orders.
* **Tickets.** opened -> responded -> resolved -> closed; bad service leaves them open or
  unanswered, answers late, gets them reopened; ``satisfaction`` on resolved/closed,
  ``sentiment`` on the customer's messages.
* **Churners.** A share of repeat customers decides to leave on a day in the window (the
  truth ``churn_date``); no order is placed or paid from that day on, only a few tapering
  visits. During a lead of 2-10 weeks before it, the cause shows with a personal strength:

  - service: service/technical/delivery tickets, slow or missing answers, reopened,
    satisfaction 1-2, negative sentiment, calls;
  - price: billing/price tickets (one shortly before the stop), rising discount use,
    falling basket value;
  - product: quality/delivery tickets, returns, refunds, cancelled orders;
  - engagement: visits thinning out, carts and inquiries without orders, placed-but-unpaid
    orders, lengthening gaps;
  - natural: no signal, they just stop.

* **Noise.** Non-churners file occasional tickets that are resolved well (satisfaction 4-5);
  some complainers are served poorly and stay; occasional returns and cancellations;
  vacations (a 1-3 month pause that ends).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

CAUSES = ("service", "price", "product", "engagement", "natural")
"""Truth causes of churn (``""`` for customers who do not churn in the window)."""

DAY = 86_400
HOUR = 3_600

_TICKET_CATEGORIES = (
    ("delivery", "quality", "billing", "technical", "account", "service", "price", "other"),
    (25, 18, 14, 10, 10, 10, 5, 8),
)
_SEVERITIES = (("low", "medium", "high", "critical"), (45, 35, 15, 5))
_BAD_SEVERITIES = (("low", "medium", "high", "critical"), (10, 35, 40, 15))
_INTENTS = (("browse", "search", "cart", "inquiry", "checkout"), (45, 30, 12, 8, 5))
_PAGES = {"browse": 4.0, "search": 5.0, "cart": 6.0, "inquiry": 2.0, "checkout": 7.0}
_SECONDS = {"browse": 150.0, "search": 200.0, "cart": 300.0, "inquiry": 240.0, "checkout": 420.0}


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """What to simulate. Shares are probabilities per customer; cause weights are relative.

    >>> SimConfig(customers=10).days
    540
    """

    customers: int = 500
    days: int = 540
    seed: int = 7
    start: str = "2024-01-01"
    """First day of the window (UTC date, ISO format)."""
    one_time_share: float = 0.3
    """Customers who buy once and never return (truth: churn on that day, ``engagement``)."""
    churn_share: float = 0.3
    """Repeat customers who decide to leave within the window (if it leaves room for it)."""
    active_share: float = 0.6
    """Repeat customers already active on day 0; the rest join during the window."""
    b2b_share: float = 0.05
    """Repeat customers that are B2B accounts: large baskets, regular weekday cadence."""
    vacation_share: float = 0.12
    """Non-churners who pause for 1-3 months and come back."""
    complainer_share: float = 0.08
    """Non-churners who complain often, are served poorly, and stay anyway."""
    service_weight: float = 0.25
    price_weight: float = 0.2
    product_weight: float = 0.2
    engagement_weight: float = 0.25
    natural_weight: float = 0.1
    """Relative weights of the causes among repeat customers who churn."""

    def __post_init__(self) -> None:
        if self.customers < 0 or self.days < 1:
            raise ValueError("customers must be >= 0 and days >= 1")
        date.fromisoformat(self.start)
        shares = (
            self.one_time_share,
            self.churn_share,
            self.active_share,
            self.b2b_share,
            self.vacation_share,
            self.complainer_share,
        )
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("shares must lie in [0, 1]")
        weights = self.cause_weights
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("cause weights must be >= 0 and not all zero")

    @property
    def cause_weights(self) -> tuple[float, ...]:
        """Weights in the order of :data:`CAUSES`."""
        return (
            self.service_weight,
            self.price_weight,
            self.product_weight,
            self.engagement_weight,
            self.natural_weight,
        )


@dataclass(frozen=True, slots=True)
class TruthRow:
    """Ground truth for one customer: the day they decided to leave, and why."""

    customer_id: str
    churn_date: date | None
    cause: str


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


class _Customer:
    """Event builder for one customer; times are integer seconds since the window start."""

    def __init__(self, cid: str, rng: random.Random, end: int, start_weekday: int) -> None:
        self.cid = cid
        self.rng = rng
        self.end = end
        self.start_weekday = start_weekday
        self.out: list[tuple[int, str, dict[str, Any]]] = []
        self.n_orders = 0
        self.n_tickets = 0
        self.b2b = False
        self.hour = _clamp(rng.gauss(18.0, 3.0), 7.0, 22.5)
        self.channel = rng.choices(("web", "app", "store"), (55, 30, 15))[0]

    def emit(self, t: int, etype: str, fields: dict[str, Any]) -> None:
        if 0 <= t < self.end:
            self.out.append((t, etype, fields))

    def at(self, day: float) -> int:
        """A time of day, in this customer's habits, on the given day."""
        d = int(day)
        if self.b2b:
            wd = (self.start_weekday + d) % 7
            if wd >= 5:
                d += 7 - wd
            h = self.rng.uniform(8.0, 17.0)
        else:
            h = _clamp(self.rng.gauss(self.hour, 2.5), 0.0, 23.99)
        return d * DAY + int(h * HOUR)

    # orders ------------------------------------------------------------------------------
    def order(
        self, t: int, amount: float, discount: float, items: int, fate: str, paid_before: int
    ) -> None:
        """One order and its later changes; no ``paid`` event at or after ``paid_before``."""
        rng = self.rng
        self.n_orders += 1
        oid = f"{self.cid}-o{self.n_orders}"
        channel = "portal" if self.b2b else self.channel
        base = {
            "order_id": oid,
            "amount": round(amount, 2),
            "items": items,
            "discount": round(discount, 2),
            "channel": channel,
        }
        if channel in ("web", "app") and rng.random() < 0.6:
            self.visit(t - rng.randint(60, 1800), "checkout", channel)
        if fate == "late_paid":
            delay = (
                int(rng.expovariate(1 / 3600)) + 60
                if rng.random() < 0.8
                else rng.randint(HOUR, 2 * DAY)
            )
            if t + delay >= paid_before:
                fate = "paid"
            else:
                self.emit(t, "order", {**base, "status": "placed"})
                self.emit(t + delay, "order", {**base, "status": "paid"})
                return
        if fate == "unpaid":
            self.emit(t, "order", {**base, "status": "placed"})
        elif fate == "cancelled":
            self.emit(t, "order", {**base, "status": "placed"})
            self.emit(t + rng.randint(600, 2 * DAY), "order", {**base, "status": "cancelled"})
        else:
            self.emit(t, "order", {**base, "status": "paid"})
            if fate == "returned":
                tr = t + rng.randint(3 * DAY, 30 * DAY)
                back = items if rng.random() < 0.6 else rng.randint(1, max(1, items))
                part = {**base, "amount": round(amount * back / max(items, 1), 2)}
                part.update(items=back, discount=0.0)
                self.emit(tr, "order", {**part, "status": "returned"})
                if rng.random() < 0.85:
                    self.emit(
                        tr + rng.randint(DAY, 7 * DAY), "order", {**part, "status": "refunded"}
                    )
            elif fate == "refunded":
                share = 1.0 if rng.random() < 0.7 else rng.uniform(0.1, 0.9)
                part = {**base, "amount": round(amount * share, 2), "discount": 0.0}
                self.emit(
                    t + rng.randint(2 * DAY, 20 * DAY), "order", {**part, "status": "refunded"}
                )

    # visits ------------------------------------------------------------------------------
    def visit(self, t: int, intent: str, channel: str | None = None) -> None:
        rng = self.rng
        if channel is None:
            channel = "web" if self.b2b else self.channel
            if intent == "inquiry" and rng.random() < 0.4:
                channel = "call"
        self.emit(
            t,
            "visit",
            {
                "channel": channel,
                "duration_s": int(_SECONDS[intent] * rng.lognormvariate(0.0, 0.7)),
                "pages": 0 if channel == "call" else 1 + int(rng.expovariate(1 / _PAGES[intent])),
                "intent": intent,
            },
        )

    # tickets -----------------------------------------------------------------------------
    def ticket(self, t: int, category: str, quality: str) -> None:
        """A ticket's lifecycle; quality is ``good``, ``ok`` (mediocre) or ``bad``."""
        if t < 0:
            return
        rng = self.rng
        self.n_tickets += 1
        sev = rng.choices(*(_BAD_SEVERITIES if quality == "bad" else _SEVERITIES))[0]
        base = {"ticket_id": f"{self.cid}-t{self.n_tickets}", "category": category, "severity": sev}
        emit = self.emit

        def survey(lo: int, hi: int) -> dict[str, Any]:
            return {"satisfaction": rng.randint(lo, hi)} if rng.random() < 0.75 else {}

        if quality == "good":
            emit(t, "ticket", {**base, "status": "opened", "sentiment": _s(rng, -0.5, 0.3)})
            t += rng.randint(HOUR // 3, 20 * HOUR)
            emit(t, "ticket", {**base, "status": "responded"})
            t += rng.randint(HOUR, 3 * DAY)
            sat = survey(4, 5)
            emit(t, "ticket", {**base, "status": "resolved", **sat})
            if rng.random() < 0.7:
                emit(t + rng.randint(DAY, 7 * DAY), "ticket", {**base, "status": "closed", **sat})
            return
        if quality == "ok":
            emit(t, "ticket", {**base, "status": "opened", "sentiment": _s(rng, -0.7, 0.0)})
            t += rng.randint(4 * HOUR, 40 * HOUR)
            emit(t, "ticket", {**base, "status": "responded"})
            t += rng.randint(12 * HOUR, 5 * DAY)
            sat = survey(2, 4)
            emit(t, "ticket", {**base, "status": "resolved", **sat})
            if rng.random() < 0.6:
                emit(t + rng.randint(DAY, 7 * DAY), "ticket", {**base, "status": "closed", **sat})
            return
        # bad: unanswered, or late, reopened, unresolved, unhappy
        emit(t, "ticket", {**base, "status": "opened", "sentiment": _s(rng, -1.0, -0.4)})
        if rng.random() < 0.35:
            return  # never answered
        t += rng.randint(50 * HOUR, 200 * HOUR)
        emit(t, "ticket", {**base, "status": "responded"})
        if rng.random() < 0.5:
            t += rng.randint(DAY, 5 * DAY)
            emit(t, "ticket", {**base, "status": "resolved"})
            t += rng.randint(DAY, 4 * DAY)
            emit(t, "ticket", {**base, "status": "reopened", "sentiment": _s(rng, -1.0, -0.5)})
            if rng.random() < 0.4:
                return  # reopened and left
        t += rng.randint(2 * DAY, 10 * DAY)
        sat = survey(1, 2)
        emit(t, "ticket", {**base, "status": "resolved", **sat})
        if rng.random() < 0.5:
            emit(t + rng.randint(DAY, 7 * DAY), "ticket", {**base, "status": "closed", **sat})


def _s(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 2)


def _one_time(c: _Customer, days: int) -> int:
    """A customer who buys once; returns the day of the order."""
    rng = c.rng
    day = rng.uniform(0, days)
    t = c.at(day)
    amount = 40.0 * rng.lognormvariate(0.0, 0.8)
    fate = rng.choices(("paid", "late_paid", "returned"), (77, 20, 3))[0]
    for _ in range(rng.randint(0, 3)):
        c.visit(t - rng.randint(HOUR, 10 * DAY), rng.choice(("browse", "search", "cart")))
    c.order(t, amount, 0.0, max(1, round(amount / 20)), fate, (t // DAY + 1) * DAY)
    after = t
    for k in range(rng.choice((0, 0, 1, 1, 2))):
        after += int(rng.expovariate(1 / (5 * (k + 1) * DAY)))
        c.visit(after, rng.choice(("browse", "search")))
    return t // DAY


def _repeat(c: _Customer, cfg: SimConfig) -> tuple[int | None, str]:
    """A repeat customer's whole history; returns (churn day or None, cause)."""
    rng, days = c.rng, cfg.days
    # --- personal parameters
    if rng.random() < cfg.b2b_share:
        c.b2b = True
        mean_gap = _clamp(14.0 * rng.lognormvariate(0.0, 0.45), 5.0, 60.0)
        shape = rng.uniform(8.0, 14.0)
        basket = 400.0 * rng.lognormvariate(0.0, 0.8)
        mean_items = 5.0 + rng.expovariate(1 / 20)
        noise = 0.25
    else:
        mean_gap = _clamp(38.0 * rng.lognormvariate(0.0, 0.85), 5.0, 400.0)
        shape = rng.uniform(1.5, 4.0)
        basket = 40.0 * rng.lognormvariate(0.0, 0.7)
        mean_items = 1.0 + rng.expovariate(1 / 1.5)
        noise = 0.35
    item_price = basket / mean_items
    disc_p = rng.uniform(0.03, 0.3)
    visits_per_order = _clamp(2.0 * rng.lognormvariate(0.0, 0.6), 0.2, 10.0)
    if rng.random() < cfg.active_share:
        first = rng.uniform(0, min(mean_gap, days - 1))
        vis_from = 0.0
    else:
        first = rng.uniform(0, days)
        vis_from = max(0.0, first - rng.uniform(0, 14))
    # --- churn decision
    cause, churn_day = "", None
    if rng.random() < cfg.churn_share:
        lo = first + max(21.0, min(1.5 * mean_gap, 150.0))
        if days - 1 - lo >= 14:
            churn_day = int(rng.uniform(lo, days - 1))
            cause = rng.choices(CAUSES, cfg.cause_weights)[0]
    lead = rng.uniform(14, 70)
    strength = 0.0 if cause in ("", "natural") else rng.uniform(0.15, 1.0)
    stop = churn_day if churn_day is not None else days
    sig0 = stop - lead
    vac0 = vac1 = -1.0
    complainer = False
    if churn_day is None:
        if rng.random() < cfg.vacation_share:
            vac0 = rng.uniform(first, max(first, days - 30))
            vac1 = vac0 + rng.uniform(30, 90)
        complainer = rng.random() < cfg.complainer_share
    p_ticket = 0.15 if complainer else 0.03

    def intensity(day: float) -> float:
        """How strongly the churn cause shows on this day (0 outside the lead window)."""
        if day < sig0 or strength == 0.0:
            return 0.0
        return strength * (0.5 + 0.5 * min(1.0, (day - sig0) / lead))

    # --- orders
    stop_t = stop * DAY
    day = first
    while day < stop:
        if vac0 <= day < vac1:
            day = vac1 + rng.uniform(0, 3)
            continue
        t = c.at(day)
        if t >= stop_t:
            break
        x = intensity(day)
        amount = basket * rng.lognormvariate(0.0, noise)
        p_disc, max_disc = disc_p, 0.25
        if cause == "price" and x:
            amount *= 1.0 - 0.5 * x
            p_disc += (0.85 - p_disc) * x
            max_disc = 0.25 + 0.15 * x
        discount = 0.0
        if rng.random() < p_disc:
            frac = rng.uniform(0.05, max_disc)
            discount, amount = amount * frac, amount * (1 - frac)
        items = max(1, round(amount / item_price * rng.uniform(0.8, 1.25)))
        weights = [20.0, 1.0, 1.5, 6.0 if complainer else 3.0, 1.0]  # late, unpaid, canc, ret, ref
        if cause == "product":
            weights[2] += 15 * x
            weights[3] += 35 * x
            weights[4] += 10 * x
        elif cause == "engagement":
            weights[1] += 40 * x
        fate = rng.choices(
            ("late_paid", "unpaid", "cancelled", "returned", "refunded", "paid"),
            (*weights, max(0.0, 100.0 - sum(weights))),
        )[0]
        c.order(t, amount, discount, items, fate, stop_t)
        if rng.random() < p_ticket:
            category = rng.choices(*_TICKET_CATEGORIES)[0]
            quality = "good"
            if complainer:
                quality = rng.choices(("good", "ok", "bad"), (3, 5, 2))[0]
            c.ticket(t + rng.randint(DAY // 2, 10 * DAY), category, quality)
        gap = rng.gammavariate(shape, mean_gap / shape)
        if cause == "engagement":
            gap *= 1.0 + 4.0 * x
        day += max(0.5, gap)

    # --- background visits (thinned Poisson process)
    rate = visits_per_order / mean_gap + 1 / 120
    engaged_decay = 1.0 if cause == "engagement" else 0.3
    day = vis_from + rng.expovariate(rate)
    while day < stop:
        keep = 1.0
        if vac0 <= day < vac1:
            keep = 0.05
        elif day >= sig0 and strength:
            keep = 1.0 - engaged_decay * intensity(day)
        if rng.random() < keep:
            if cause == "engagement" and rng.random() < 0.6 * intensity(day):
                intent = rng.choice(("cart", "inquiry", "cart"))
            else:
                intent = rng.choices(*_INTENTS)[0]
            c.visit(c.at(day), intent)
        day += rng.expovariate(rate)

    # --- leading signals and the tapering after the stop
    if churn_day is not None:
        n_sig = int(strength * rng.uniform(1.0, 4.0) + 0.5)
        if cause == "engagement":  # looking without buying
            for _ in range(int(strength * rng.uniform(0.5, 2.0) + 0.5)):
                c.visit(c.at(rng.uniform(max(0.0, sig0), stop)), rng.choice(("cart", "inquiry")))
        if cause in ("service", "product", "price") and n_sig:
            when = sorted(rng.uniform(max(0.0, sig0), stop - 1) for _ in range(n_sig))
            if cause == "price":
                when[-1] = stop - rng.uniform(3, 21)
            for d in when:
                t = c.at(d)
                if cause == "service":
                    cat = rng.choice(("service", "technical", "delivery", "service"))
                    quality = "bad" if rng.random() < 0.5 + 0.5 * strength else "ok"
                    if rng.random() < 0.5:
                        c.visit(
                            t + rng.randint(60, 3600), "inquiry", rng.choice(("call", "service"))
                        )
                elif cause == "price":
                    cat = rng.choice(("billing", "price", "price"))
                    quality = "ok" if rng.random() < 0.7 else "good"
                else:
                    cat = rng.choice(("quality", "delivery", "quality"))
                    quality = "ok" if rng.random() < 0.6 else "bad"
                c.ticket(t, cat, quality)
        t = stop_t
        for k in range(rng.choice((0, 0, 1, 1, 2, 3))):
            t += int(rng.expovariate(1 / (10 * (k + 1) * DAY)))
            c.visit(t, rng.choice(("browse", "search", "browse")))
    return churn_day, cause


def generate(cfg: SimConfig) -> tuple[list[dict[str, Any]], list[TruthRow]]:
    """Simulate ``cfg.customers`` customers; events sorted by (ts, event_id), truth by id.

    >>> events, truth = generate(SimConfig(customers=20, days=90, seed=1))
    >>> len(truth), events[0]["ts"] <= events[-1]["ts"]
    (20, True)
    """
    start = date.fromisoformat(cfg.start)
    end = cfg.days * DAY
    prefixes = [(start + timedelta(days=d)).isoformat() + "T" for d in range(cfg.days)]
    width = max(6, len(str(cfg.customers)))
    master = random.Random(cfg.seed)
    rows: list[tuple[int, str, dict[str, Any]]] = []
    truth: list[TruthRow] = []
    for i in range(cfg.customers):
        cid = f"c{i:0{width}d}"
        rng = random.Random(master.getrandbits(64))
        c = _Customer(cid, rng, end, start.weekday())
        churn_day: int | None
        if rng.random() < cfg.one_time_share:
            churn_day, cause = _one_time(c, cfg.days), "engagement"
        else:
            churn_day, cause = _repeat(c, cfg)
        truth.append(
            TruthRow(cid, None if churn_day is None else start + timedelta(days=churn_day), cause)
        )
        c.out.sort(key=lambda r: r[0])  # stable: equal times keep their causal order
        for k, (t, etype, fields) in enumerate(c.out):
            d, s = divmod(t, DAY)
            h, s = divmod(s, HOUR)
            m, s = divmod(s, 60)
            eid = f"{cid}-{k:05d}"
            ev = {
                "event_id": eid,
                "event_type": etype,
                "customer_id": cid,
                "ts": f"{prefixes[d]}{h:02d}:{m:02d}:{s:02d}Z",
            }
            ev.update(fields)
            rows.append((t, eid, ev))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], truth


def write_events(path: str | os.PathLike[str], events: Iterable[dict[str, Any]]) -> int:
    """Write events as compact JSON lines; returns how many were written."""
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for e in events:
            f.write(encode(e))
            f.write("\n")
            n += 1
    return n


def write_truth(path: str | os.PathLike[str], rows: Iterable[TruthRow]) -> int:
    """Write the truth CSV (``customer_id,churn_date,cause``); returns the number of rows."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("customer_id", "churn_date", "cause"))
        for r in rows:
            w.writerow((r.customer_id, r.churn_date.isoformat() if r.churn_date else "", r.cause))
            n += 1
    return n


__all__ = ["CAUSES", "SimConfig", "TruthRow", "generate", "write_events", "write_truth"]
