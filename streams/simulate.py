"""Synthetic customers with known churn: events by the "Events in" contract plus ground truth.

Each customer is simulated alone with a child ``random.Random`` drawn from ``Random(seed)``,
so a config always gives byte-identical output (no global random state, no wall clock).
The world is meant to be varied and fair, not easy: many customers look alarming and stay,
many churners give no warning at all. What it models (see shared/DOMAIN.md):

* **Segments.** A share of customers (``one_time_share``, default 40 %) are **one-time
  buyers**: one order, a few visits, never back; their truth is ``churn_date`` = the order's
  date, cause ``engagement``. The repeat customers are B2B accounts (``b2b_share``),
  seasonal buyers (``seasonal_share``) and regular consumers whose cadence class is drawn
  by ``weekly_weight`` .. ``yearly_weight``:

  ========== ===================== ===================== ==============================
  segment    usual gap (clamped)   regularity (gamma k)  basket (median)
  ========== ===================== ===================== ==============================
  weekly     ~7 d (4-10)           3-8                   ~55, a dozen items (groceries)
  biweekly   ~14 d (10-21)         2.5-6                 ~70, about ten items
  monthly    ~30 d (18-50)         2-5                   ~45, a few items
  quarterly  ~90 d (55-150)        1.5-4                 ~80
  yearly     ~365 d (270-450)      5-12                  ~250 (e.g. a yearly service)
  seasonal   one season a year     1-4 orders in season  ~90
  b2b        per buyer ~21 d       4-10 per buyer        ~300 per buyer, many items
  ========== ===================== ===================== ==============================

  Every customer's usual gap and order value also drift slowly (about 10 % a year, up or
  down). **Seasonal** buyers order only in a 3-7 week season around the same date
  each year (Christmas, Black Friday, summer, spring, back to school or any other date),
  browse a little in the weeks before it and are nearly silent the rest of the year; an
  occasional stray order falls off-season. Being silent off-season is not churn.
  **B2B** accounts have 1-8 buyers, each with a regular cadence of their own, ordering on
  weekdays in office hours through a portal, EDI or by phone; the account's order value
  drifts (about +-30 % a year).
* **Start.** ``active_share`` of repeat customers are already active on day 0 (first order
  at a random phase of their cadence); the others join on a uniform day of the window
  (seasonal ones in one of the seasons in the window).
* **Amounts.** Per-order log-normal noise around the basket; a personal propensity to use
  discounts (most 2-20 % of orders, "deal seekers" 40-80 %); ``amount`` is net of
  ``discount``.
* **Order lifecycle.** Mostly ``paid``; some ``placed`` then ``paid`` (same ``order_id``),
  some ``placed`` never paid, ``placed`` then ``cancelled``, ``paid`` then ``returned``
  (then usually ``refunded``) or ``refunded``.
* **Visits.** A Poisson stream of web/app/store sessions at a personal rate (0.2-10 per
  order), plus a checkout session just before many web/app orders; calls for inquiries.
* **Tickets.** opened -> responded -> resolved -> closed when served well; bad service leaves
  them unanswered, answers late, gets them reopened or left open; ``satisfaction`` on
  resolved/closed, ``sentiment`` on the customer's messages. Stayers file an occasional
  ticket (about 3 % of orders), mostly served well.
* **Pauses that end** (stayers of the weekly to quarterly and B2B segments only):
  ``vacation_share`` take one or two vacations of 2-6 weeks, ``long_pause_share`` one
  pause of 2-4 months; no orders and almost no visits meanwhile, then the customer resumes
  as before (the first order within two weeks of the pause's end). Truth: not churned.
* **Complainers who stay** (``complainer_share`` of stayers with at least three orders):
  2-6 tickets, at least one of them served badly (unanswered, reopened, satisfaction 1-2),
  more returns, and they keep ordering after every complaint.
* **Churners.** ``churn_share`` of repeat customers decide to leave on a day in the window
  (the truth ``churn_date``, at least a few weeks after their first order); no new order is
  placed from that day on (refunds and returns of earlier orders may still follow), only a
  few tapering visits. The cause is drawn by the cause weights (:data:`CAUSES`;
  ``relationship`` is three times as likely for B2B accounts). ``natural`` churners (moved
  away, changed business) give no signal at all: they just stop. Of the others,
  ``silent_share`` (default 25 %) give no signal either (most unhappy customers never
  complain); the rest show their cause with a strength drawn uniformly from 0.1 (barely
  visible) to 1.0 (plain), starting a lead drawn uniformly from 0 to ``max_lead_days`` (90)
  days before the decision and growing towards it (30 % of the strength at its start):

  - service: service/technical/delivery/account tickets (up to ~4), most served badly
    (unanswered, late, reopened, satisfaction 1-2, negative sentiment), calls to support;
  - price: billing/price tickets, discount use rising towards 85 % of orders, baskets
    shrinking by up to half (fewer and cheaper items: downgrades), comparison searches;
    40 % of price churners instead leave for a competitor's offer: one price complaint
    2-21 days before a sudden stop;
  - product: quality/delivery tickets, returns, refunds and cancelled orders;
  - engagement: visits thinning out, gaps lengthening (up to 4x), carts and inquiries
    that do not convert, orders placed but never paid (failed payments);
  - relationship: slow decay, gaps lengthening (up to 3x), baskets shrinking, visits
    thinning; in a B2B account the buyers drop off one by one before the last one stops;
  - a third of service, price and product churners also buy less often (gaps up to 2x).

The truth row also carries (not in the default CSV; ``write_truth(..., detail=True)``)
each customer's segment, signal strength and lead, pauses and traits (``complainer``,
``deal_seeker``, ``vacation``, ``long_pause``), for measuring where warnings go wrong.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

CAUSES = ("service", "price", "product", "engagement", "natural", "relationship")
"""Truth causes of churn (``""`` for customers who do not churn in the window)."""

SEGMENTS = ("one_time", "weekly", "biweekly", "monthly", "quarterly", "yearly", "seasonal", "b2b")
"""Customer segments, as in :attr:`TruthRow.segment`."""

REGULAR = ("weekly", "biweekly", "monthly", "quarterly", "yearly")
"""The regular consumer cadence classes, in the order of :attr:`SimConfig.cadence_weights`."""

DAY = 86_400
HOUR = 3_600

_TICKET_CATEGORIES = (
    ("delivery", "quality", "billing", "technical", "account", "service", "price", "other"),
    (25, 18, 14, 10, 10, 10, 5, 8),
)
_SEVERITIES = (("low", "medium", "high", "critical"), (45, 35, 15, 5))
_BAD_SEVERITIES = (("low", "medium", "high", "critical"), (10, 35, 40, 15))
_INTENTS = (("browse", "search", "cart", "inquiry", "checkout"), (45, 75, 87, 95, 100))
"""Visit intents and their cumulative weights (the hot path: ``cum_weights`` saves time)."""
_PAGES = {"browse": 4.0, "search": 5.0, "cart": 6.0, "inquiry": 2.0, "checkout": 7.0}
_SECONDS = {"browse": 150.0, "search": 200.0, "cart": 300.0, "inquiry": 240.0, "checkout": 420.0}

# segment: median gap, its log-sd, clamp lo/hi, gamma shape lo/hi, basket median and log-sd,
# median items per order
_CADENCES: dict[str, tuple[float, float, float, float, float, float, float, float, float]] = {
    "weekly": (7.0, 0.2, 4.0, 10.0, 3.0, 8.0, 55.0, 0.5, 12.0),
    "biweekly": (14.0, 0.2, 10.0, 21.0, 2.5, 6.0, 70.0, 0.5, 10.0),
    "monthly": (30.0, 0.3, 18.0, 50.0, 2.0, 5.0, 45.0, 0.7, 2.5),
    "quarterly": (90.0, 0.25, 55.0, 150.0, 1.5, 4.0, 80.0, 0.8, 2.0),
    "yearly": (365.0, 0.12, 270.0, 450.0, 5.0, 12.0, 250.0, 0.8, 2.0),
}
_PAUSABLE = frozenset(("weekly", "biweekly", "monthly", "quarterly", "b2b"))
# season centres as day of the year: Christmas, Black Friday, summer, spring, back to school
_SEASONS = ((350, 330, 185, 105, 240, -1), (30, 15, 20, 15, 10, 10))


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """What to simulate. Shares are probabilities per customer; weights are relative.

    >>> SimConfig(customers=10).days
    540
    """

    customers: int = 500
    days: int = 540
    seed: int = 7
    start: str = "2024-01-01"
    """First day of the window (UTC date, ISO format)."""
    one_time_share: float = 0.4
    """Customers who buy once and never return (truth: churn on that day, ``engagement``)."""
    churn_share: float = 0.3
    """Repeat customers who decide to leave within the window (if it leaves room for it)."""
    active_share: float = 0.6
    """Repeat customers already active on day 0; the rest join during the window."""
    b2b_share: float = 0.06
    """Repeat customers that are B2B accounts: several buyers, weekdays, larger orders."""
    seasonal_share: float = 0.1
    """Repeat customers who buy only in one season of the year."""
    weekly_weight: float = 0.15
    biweekly_weight: float = 0.15
    monthly_weight: float = 0.35
    quarterly_weight: float = 0.25
    yearly_weight: float = 0.1
    """Relative weights of the cadence classes among the other repeat customers."""
    vacation_share: float = 0.25
    """Stayers (weekly to quarterly, B2B) who take one or two 2-6 week vacations."""
    long_pause_share: float = 0.06
    """Stayers (weekly to quarterly, B2B) who pause for 2-4 months and come back."""
    complainer_share: float = 0.08
    """Stayers who complain often, are sometimes served badly, and stay anyway."""
    silent_share: float = 0.25
    """Churners (other than ``natural``) whose cause leaves no signal in the events."""
    max_lead_days: float = 90.0
    """Signals start a uniform 0..max_lead_days before the churn decision."""
    service_weight: float = 0.22
    price_weight: float = 0.2
    product_weight: float = 0.18
    engagement_weight: float = 0.2
    natural_weight: float = 0.1
    relationship_weight: float = 0.1
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
            self.seasonal_share,
            self.vacation_share,
            self.long_pause_share,
            self.complainer_share,
            self.silent_share,
        )
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("shares must lie in [0, 1]")
        if self.b2b_share + self.seasonal_share > 1.0:
            raise ValueError("b2b_share + seasonal_share must not exceed 1")
        weights = self.cause_weights
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("cause weights must be >= 0 and not all zero")
        cadence = self.cadence_weights
        if min(cadence) < 0 or sum(cadence) <= 0:
            raise ValueError("cadence weights must be >= 0 and not all zero")
        if not 0.0 <= self.max_lead_days <= 365.0:
            raise ValueError("max_lead_days must lie in [0, 365]")

    @property
    def cause_weights(self) -> tuple[float, ...]:
        """Weights in the order of :data:`CAUSES`."""
        return (
            self.service_weight,
            self.price_weight,
            self.product_weight,
            self.engagement_weight,
            self.natural_weight,
            self.relationship_weight,
        )

    @property
    def cadence_weights(self) -> tuple[float, ...]:
        """Weights in the order of :data:`REGULAR`."""
        return (
            self.weekly_weight,
            self.biweekly_weight,
            self.monthly_weight,
            self.quarterly_weight,
            self.yearly_weight,
        )


@dataclass(frozen=True, slots=True)
class TruthRow:
    """Ground truth for one customer: the day they decided to leave, and why.

    The fields after ``cause`` describe the simulated customer (not in the default CSV):
    ``signal`` is the strength (0..1) of the cause's leading signals and ``lead_days`` how
    many days before ``churn_date`` they start (both 0 when the churn gives no warning);
    ``pauses`` are (first day, day of return) of pauses that ended.
    """

    customer_id: str
    churn_date: date | None
    cause: str
    segment: str = ""
    signal: float = 0.0
    lead_days: int = 0
    pauses: tuple[tuple[date, date], ...] = ()
    traits: tuple[str, ...] = ()


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
        self,
        t: int,
        amount: float,
        discount: float,
        items: int,
        fate: str,
        paid_before: int,
        channel: str | None = None,
    ) -> bool:
        """One order and its later changes; no ``paid`` event at or after ``paid_before``.

        Returns whether the order ends up paid (and so counts as a purchase).
        """
        rng = self.rng
        self.n_orders += 1
        oid = f"{self.cid}-o{self.n_orders}"
        channel = channel or ("portal" if self.b2b else self.channel)
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
                return True
        if fate == "unpaid":
            self.emit(t, "order", {**base, "status": "placed"})
            return False
        if fate == "cancelled":
            self.emit(t, "order", {**base, "status": "placed"})
            self.emit(t + rng.randint(600, 2 * DAY), "order", {**base, "status": "cancelled"})
            return False
        self.emit(t, "order", {**base, "status": "paid"})
        if fate == "returned":
            tr = t + rng.randint(3 * DAY, 30 * DAY)
            back = items if rng.random() < 0.6 else rng.randint(1, max(1, items))
            part = {**base, "amount": round(amount * back / max(items, 1), 2)}
            part.update(items=back, discount=0.0)
            self.emit(tr, "order", {**part, "status": "returned"})
            if rng.random() < 0.85:
                self.emit(tr + rng.randint(DAY, 7 * DAY), "order", {**part, "status": "refunded"})
        elif fate == "refunded":
            share = 1.0 if rng.random() < 0.7 else rng.uniform(0.1, 0.9)
            part = {**base, "amount": round(amount * share, 2), "discount": 0.0}
            self.emit(t + rng.randint(2 * DAY, 20 * DAY), "order", {**part, "status": "refunded"})
        return True

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


def _s(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 2)


_FATES = ("late_paid", "unpaid", "cancelled", "returned", "refunded", "paid")


@dataclass(slots=True)
class _Buyer:
    """One ordering habit: a consumer, or one buyer of a B2B account."""

    gap: float
    shape: float
    basket: float
    unit: float
    channel: str | None
    first: float = 0.0


@dataclass(slots=True)
class _Fate:
    """What was decided for a repeat customer (the truth row's raw material)."""

    churn_day: int | None
    cause: str
    strength: float
    lead: float
    pauses: list[tuple[float, float]]
    traits: list[str]


def _segment(rng: random.Random, cfg: SimConfig) -> str:
    if rng.random() < cfg.one_time_share:
        return "one_time"
    r = rng.random()
    if r < cfg.b2b_share:
        return "b2b"
    if r < cfg.b2b_share + cfg.seasonal_share:
        return "seasonal"
    return rng.choices(REGULAR, cfg.cadence_weights)[0]


def _one_time(c: _Customer, days: int) -> int:
    """A customer who buys once; returns the day of the order."""
    rng = c.rng
    day = rng.uniform(0, days)
    t = c.at(day)
    amount = 40.0 * rng.lognormvariate(0.0, 0.8)
    fate = rng.choices(("paid", "late_paid", "returned", "refunded"), (75, 20, 3, 2))[0]
    for _ in range(rng.randint(0, 3)):
        c.visit(t - rng.randint(HOUR, 10 * DAY), rng.choice(("browse", "search", "cart")))
    c.order(t, amount, 0.0, max(1, round(amount / 20)), fate, (t // DAY + 1) * DAY)
    if rng.random() < 0.05:
        category = rng.choice(("delivery", "delivery", "quality", "account"))
        c.ticket(t + rng.randint(DAY, 12 * DAY), category, rng.choice(("good", "ok", "bad")))
    after = t
    for k in range(rng.choice((0, 0, 1, 1, 2))):
        after += int(rng.expovariate(1 / (5 * (k + 1) * DAY)))
        c.visit(after, rng.choice(("browse", "search")))
    return t // DAY


def _buyers(rng: random.Random, segment: str) -> tuple[list[_Buyer], float, float]:
    """The customer's ordering habits, per-order value noise and yearly value trend."""
    if segment == "b2b":
        buyers = []
        for _ in range(min(8, 1 + int(rng.expovariate(1 / 1.5)))):
            gap = _clamp(21.0 * rng.lognormvariate(0.0, 0.5), 5.0, 60.0)
            basket = 300.0 * rng.lognormvariate(0.0, 0.6)
            unit = basket / (8.0 + rng.expovariate(1 / 12))
            channel = rng.choice(("portal", "portal", "edi", "phone"))
            buyers.append(_Buyer(gap, rng.uniform(4.0, 10.0), basket, unit, channel))
        return buyers, 0.25, rng.gauss(0.0, 0.3)
    if segment == "seasonal":
        basket = 90.0 * rng.lognormvariate(0.0, 0.8)
        unit = basket / (1.0 + rng.expovariate(1 / 1.5))
        return [_Buyer(365.0, 1.0, basket, unit, None)], 0.35, rng.gauss(0.0, 0.1)
    med, sd, lo, hi, k0, k1, bmed, bsd, items = _CADENCES[segment]
    gap = _clamp(med * rng.lognormvariate(0.0, sd), lo, hi)
    basket = bmed * rng.lognormvariate(0.0, bsd)
    unit = basket / max(1.0, items * rng.lognormvariate(0.0, 0.3))
    return [_Buyer(gap, rng.uniform(k0, k1), basket, unit, None)], 0.35, rng.gauss(0.0, 0.1)


def _seasons(rng: random.Random, days: int, doy0: int) -> tuple[list[tuple[float, float]], float]:
    """A seasonal buyer's seasons overlapping the window (first, last day) and their width."""
    centre = float(rng.choices(*_SEASONS)[0])
    if centre < 0:
        centre = rng.uniform(0.0, 365.0)
    half = rng.uniform(10.0, 25.0)
    seasons = []
    for year in range(-1, days // 365 + 2):
        mid = centre - doy0 + 365.0 * year + rng.gauss(0.0, 4.0)
        if mid + half > 0 and mid - half < days:
            seasons.append((mid - half, mid + half))
    return seasons, half


def _pauses(
    rng: random.Random, cfg: SimConfig, first: float, gap: float
) -> tuple[list[tuple[float, float]], list[str]]:
    """Pauses that end (vacations, long pauses) for a stayer; none that would not fit."""
    wanted = []
    if rng.random() < cfg.long_pause_share:
        wanted.append(("long_pause", rng.uniform(60.0, 120.0)))
    if rng.random() < cfg.vacation_share:
        wanted += [("vacation", rng.uniform(14.0, 42.0)) for _ in range(rng.choice((1, 1, 2)))]
    earliest = first + _clamp(gap, 14.0, 60.0)  # some history before the first pause
    latest_end = cfg.days - 20.0  # room to come back
    pauses: list[tuple[float, float]] = []
    traits: list[str] = []
    for name, length in wanted:
        if latest_end - length <= earliest:
            continue
        for _ in range(8):
            p0 = rng.uniform(earliest, latest_end - length)
            p1 = p0 + length
            if all(p1 + 21 < q0 or p0 > q1 + 21 for q0, q1 in pauses):
                pauses.append((p0, p1))
                if name not in traits:
                    traits.append(name)
                break
    pauses.sort()
    return pauses, traits


def _repeat(c: _Customer, cfg: SimConfig, segment: str, doy0: int) -> _Fate:
    """A repeat customer's whole history."""
    rng, days = c.rng, cfg.days
    b2b = c.b2b = segment == "b2b"
    seasonal = segment == "seasonal"
    buyers, noise, value_trend = _buyers(rng, segment)
    gap_trend = rng.gauss(0.0, 0.1)  # log-change of the usual gap per year
    account_gap = 1.0 / sum(1.0 / b.gap for b in buyers)
    deal_seeker = rng.random() < 0.15
    disc_p = rng.uniform(0.4, 0.8) if deal_seeker else rng.uniform(0.02, 0.2)
    visits_per_order = _clamp(2.0 * rng.lognormvariate(0.0, 0.6), 0.2, 10.0)
    active = rng.random() < cfg.active_share
    traits = ["deal_seeker"] if deal_seeker else []

    # --- when they would buy, before churn and pauses cut in
    seasons: list[tuple[float, float]] = []
    season_days: list[float] = []
    half = 0.0
    if seasonal:
        seasons, half = _seasons(rng, days, doy0)
        for lo, hi in seasons:
            n = rng.choices((1, 2, 3, 4), (35, 35, 20, 10))[0]
            season_days += [rng.uniform(lo, hi) for _ in range(n)]
        for year in range(days // 365 + 1):
            if rng.random() < 0.15:  # a stray order off-season
                season_days.append(rng.uniform(365.0 * year, 365.0 * (year + 1)))
        later = [lo for lo, _ in seasons if lo >= 0]
        join = rng.choice(later) if later and not active else 0.0
        season_days = sorted(d for d in season_days if join <= d < days)
        if not season_days:
            return _Fate(None, "", 0.0, 0.0, [], traits)
        first = season_days[0]
    else:
        join = 0.0 if active else rng.uniform(0.0, max(0.0, days - 3.0))
        for k, b in enumerate(buyers):
            if active:
                b.first = rng.uniform(0.0, min(b.gap, days - 1.0))
            else:
                b.first = join + (rng.uniform(0.0, 30.0) if k else 0.0)
        first = min(b.first for b in buyers)

    # --- the churn decision, its cause, and how (and how early) it shows
    churn_day: int | None = None
    cause = ""
    if rng.random() < cfg.churn_share:
        tenure = 30.0 if seasonal else max(21.0, min(1.5 * account_gap, 150.0))
        if b2b:
            tenure = max(tenure, 60.0)
        lo = first + tenure
        if days - 1 - lo >= 14:
            churn_day = int(rng.uniform(lo, days - 1))
            weights = list(cfg.cause_weights)
            if b2b:
                weights[CAUSES.index("relationship")] *= 3.0
            cause = rng.choices(CAUSES, weights)[0]
    strength = lead = 0.0
    competitor = False
    if cause and cause != "natural" and rng.random() >= cfg.silent_share:
        strength = rng.uniform(0.1, 1.0)
        lead = rng.uniform(0.0, cfg.max_lead_days)
        if cause == "price" and rng.random() < 0.4:
            competitor = True
            lead = min(cfg.max_lead_days, rng.uniform(2.0, 21.0))
    stop = churn_day if churn_day is not None else days
    sig0 = stop - lead
    freq_k, visit_k, shrink = 0.0, 0.1, 0.0
    if strength and not competitor:
        if cause == "engagement":
            freq_k, visit_k = 3.0, 0.9
        elif cause == "relationship":
            freq_k, visit_k, shrink = 2.0, 0.7, 0.35
        else:
            if rng.random() < 1 / 3:
                freq_k, visit_k = 1.0, 0.4
            if cause == "price":
                shrink = 0.5

    def intensity(day: float) -> float:
        """How strongly the churn cause shows on this day (0 outside the lead window)."""
        if day < sig0 or not strength:
            return 0.0
        return strength * (0.3 + 0.7 * min(1.0, (day - sig0) / lead)) if lead else strength

    pauses: list[tuple[float, float]] = []
    if churn_day is None and segment in _PAUSABLE:
        pauses, more = _pauses(rng, cfg, first, account_gap)
        traits += more

    # --- the order schedule: (day, buyer, must be paid)
    sched: list[tuple[float, int, bool]] = []
    if seasonal:
        sched = [(d, 0, False) for d in season_days if d < stop]
    else:
        for k, b in enumerate(buyers):
            b_stop = float(stop)
            if b2b and cause == "relationship" and strength and k < len(buyers) - 1:
                b_stop = sig0 + rng.uniform(0.0, lead)  # buyers drop off one by one
            day, resumed = b.first, False
            for p0, p1 in pauses:
                if p0 <= day < p1:
                    day, resumed = p1 + rng.uniform(0.5, 7.0), True
            while day < b_stop:
                sched.append((day, k, resumed))
                gap = rng.gammavariate(b.shape, b.gap / b.shape)
                gap *= math.exp(gap_trend * day / 365.0)
                if freq_k:
                    gap *= 1.0 + freq_k * intensity(day)
                nxt, resumed = day + max(0.5, gap), False
                for p0, p1 in pauses:
                    if day < p0 <= nxt:  # the pause ends; they resume as before
                        back = min(max(2.0, 0.5 * b.gap), 14.0)
                        nxt, resumed = p1 + rng.uniform(0.5, back), True
                day = nxt
        sched.sort()

    # --- orders
    stop_t = stop * DAY
    complainer = churn_day is None and rng.random() < cfg.complainer_share
    w_ret0 = 6.0 if complainer else 3.0
    placed: list[tuple[int, bool]] = []
    for day, k, must_pay in sched:
        t = c.at(day)
        if t >= stop_t or t >= c.end:
            continue
        b = buyers[k]
        x = intensity(day)
        trend = math.exp(value_trend * day / 365.0)
        amount = b.basket * trend * rng.lognormvariate(0.0, noise)
        unit = b.unit * trend
        if shrink and x:  # downgrades: fewer and cheaper items
            amount *= 1.0 - shrink * x
            unit *= 1.0 - 0.5 * shrink * x
        items = max(1, round(amount / unit * rng.uniform(0.8, 1.25)))
        p_disc, max_disc = disc_p, 0.25
        if cause == "price" and x and not competitor:
            p_disc += (0.85 - p_disc) * x
            max_disc = 0.25 + 0.15 * x
        discount = 0.0
        if rng.random() < p_disc:
            frac = rng.uniform(0.05, max_disc)
            discount, amount = amount * frac, amount * (1 - frac)
        if must_pay or not placed:
            fate = "late_paid" if rng.random() < 0.2 else "paid"
        else:
            w_late, w_unpaid, w_canc, w_ret, w_ref = 20.0, 1.0, 1.5, w_ret0, 1.0
            if x and cause == "product":
                w_canc, w_ret, w_ref = w_canc + 15 * x, w_ret + 35 * x, w_ref + 10 * x
            elif x and cause == "engagement":
                w_unpaid += 40 * x  # placed, never paid
            rest = max(0.0, 100.0 - w_late - w_unpaid - w_canc - w_ret - w_ref)
            fate = rng.choices(_FATES, (w_late, w_unpaid, w_canc, w_ret, w_ref, rest))[0]
        placed.append((t, c.order(t, amount, discount, items, fate, stop_t, b.channel)))
        if not complainer and rng.random() < 0.03:
            category = rng.choices(*_TICKET_CATEGORIES)[0]
            quality = "good" if rng.random() < 0.8 else "ok"
            c.ticket(t + rng.randint(DAY // 2, 10 * DAY), category, quality)
    placed.sort()

    # --- complainers who stay: tickets between orders, each followed by a paid order
    if complainer:
        spots = [
            k
            for k in range(len(placed) - 1)
            if placed[k + 1][1] and placed[k + 1][0] - placed[k][0] > HOUR
        ]
        if len(placed) >= 3 and spots:
            traits.append("complainer")
            n = rng.randint(2, 6)
            bad = rng.randrange(n)
            for j, k in enumerate(sorted(rng.choice(spots) for _ in range(n))):
                t0, t1 = placed[k][0], placed[k + 1][0]
                t = t0 + int((t1 - t0) * rng.uniform(0.05, 0.7))
                quality = "bad" if j == bad else rng.choices(("good", "ok", "bad"), (3, 4, 3))[0]
                c.ticket(t, rng.choices(*_TICKET_CATEGORIES)[0], quality)

    # --- visits: a thinned Poisson stream
    base = peak = sum(visits_per_order / b.gap for b in buyers) + 1 / 120
    if seasonal:  # browsing in the three weeks before and during the season, little else
        base, peak = 1 / 90, visits_per_order * 2.2 / (2 * half + 21)
    rmax = max(base, peak)
    vis_from = 0.0 if active else max(0.0, first - rng.uniform(0, 14))
    day = vis_from + rng.expovariate(rmax)
    while day < stop:
        keep = 1.0
        if seasonal and not any(lo - 21 <= day <= hi for lo, hi in seasons):
            keep = base / rmax
        for p0, p1 in pauses:
            if p0 <= day < p1:
                keep *= 0.05
        x = intensity(day)
        if x:
            keep *= 1.0 - visit_k * x
        if rng.random() < keep:
            if x and cause == "engagement" and rng.random() < 0.6 * x:
                intent = rng.choice(("cart", "inquiry", "cart"))
            elif x and cause == "price" and not competitor and rng.random() < 0.4 * x:
                intent = "search"  # comparing prices
            else:
                intent = rng.choices(_INTENTS[0], cum_weights=_INTENTS[1])[0]
            c.visit(c.at(day), intent)
        day += rng.expovariate(rmax)

    # --- leading signals outside the order stream, and the tapering after the stop
    if churn_day is not None:
        lo = max(sig0, first)
        if strength and lo < stop:
            _signals(c, cause, strength, competitor, lo, stop)
        t = stop_t
        for k in range(rng.choice((0, 0, 1, 1, 2, 3))):
            t += int(rng.expovariate(1 / (10 * (k + 1) * DAY)))
            c.visit(t, rng.choice(("browse", "search", "browse")))
    return _Fate(churn_day, cause, strength, lead, pauses, traits)


def _signals(
    c: _Customer, cause: str, strength: float, competitor: bool, lo: float, hi: float
) -> None:
    """Tickets and contacts that announce a churn between days ``lo`` and ``hi``."""
    rng = c.rng
    if cause == "service":
        for _ in range(round(strength * rng.uniform(1.0, 4.0))):
            t = c.at(rng.uniform(lo, hi))
            category = rng.choice(("service", "technical", "delivery", "account", "service"))
            c.ticket(t, category, "bad" if rng.random() < 0.5 + 0.5 * strength else "ok")
            if rng.random() < 0.5:
                c.visit(t + rng.randint(60, 3600), "inquiry", rng.choice(("call", "service")))
    elif cause == "price":
        if competitor:  # one price complaint, then a sudden stop
            quality = "ok" if rng.random() < 0.6 else "good"
            c.ticket(c.at(lo), rng.choice(("price", "price", "billing")), quality)
            return
        for _ in range(round(strength * rng.uniform(0.5, 2.5))):
            quality = "ok" if rng.random() < 0.7 else "good"
            c.ticket(c.at(rng.uniform(lo, hi)), rng.choice(("billing", "price", "price")), quality)
    elif cause == "product":
        for _ in range(round(strength * rng.uniform(1.0, 3.0))):
            quality = "ok" if rng.random() < 0.6 else "bad"
            c.ticket(
                c.at(rng.uniform(lo, hi)), rng.choice(("quality", "delivery", "quality")), quality
            )
    elif cause == "engagement":  # looking without buying
        for _ in range(round(strength * rng.uniform(1.0, 5.0))):
            c.visit(c.at(rng.uniform(lo, hi)), rng.choice(("cart", "inquiry", "cart")))


def generate(cfg: SimConfig) -> tuple[list[dict[str, Any]], list[TruthRow]]:
    """Simulate ``cfg.customers`` customers; events sorted by (ts, event_id), truth by id.

    >>> events, truth = generate(SimConfig(customers=20, days=90, seed=1))
    >>> len(truth), events[0]["ts"] <= events[-1]["ts"]
    (20, True)
    """
    start = date.fromisoformat(cfg.start)
    doy0 = start.timetuple().tm_yday - 1
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
        segment = _segment(rng, cfg)
        if segment == "one_time":
            day = _one_time(c, cfg.days)
            truth.append(TruthRow(cid, start + timedelta(days=day), "engagement", segment))
        else:
            f = _repeat(c, cfg, segment, doy0)
            truth.append(
                TruthRow(
                    cid,
                    None if f.churn_day is None else start + timedelta(days=f.churn_day),
                    f.cause,
                    segment,
                    round(f.strength, 3),
                    round(f.lead) if f.strength else 0,
                    tuple(
                        (start + timedelta(days=int(p0)), start + timedelta(days=int(p1)))
                        for p0, p1 in f.pauses
                    ),
                    tuple(f.traits),
                )
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


TRUTH_DETAIL = ("segment", "signal", "lead_days", "pauses", "traits")
"""The extra truth CSV columns of ``write_truth(..., detail=True)``."""


def write_truth(
    path: str | os.PathLike[str], rows: Iterable[TruthRow], *, detail: bool = False
) -> int:
    """Write the truth CSV (``customer_id,churn_date,cause``); returns the number of rows.

    ``detail`` adds the columns of :data:`TRUTH_DETAIL`: pauses as ``first/return`` date
    pairs and traits, each list joined by ``;``.
    """
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("customer_id", "churn_date", "cause", *(TRUTH_DETAIL if detail else ())))
        for r in rows:
            row: list[Any] = [
                r.customer_id,
                r.churn_date.isoformat() if r.churn_date else "",
                r.cause,
            ]
            if detail:
                pauses = ";".join(f"{a.isoformat()}/{b.isoformat()}" for a, b in r.pauses)
                row += [r.segment, r.signal, r.lead_days, pauses, ";".join(r.traits)]
            w.writerow(row)
            n += 1
    return n


__all__ = [
    "CAUSES",
    "REGULAR",
    "SEGMENTS",
    "TRUTH_DETAIL",
    "SimConfig",
    "TruthRow",
    "generate",
    "write_events",
    "write_truth",
]
