"""Fold one event into a customer's state. Pure: no scoring, no alerts, no I/O."""

from __future__ import annotations

import math
import zlib
from typing import NamedTuple

from detectors.config import DAY_MS, HOUR_MS, EngineConfig
from detectors.estimators import RunningVar, SpendDrift, decay
from detectors.events import Event, Order, Outcome, Ticket, Visit
from detectors.state import ORDER_LONG_DAYS, ORDER_SHORT_DAYS, CustomerState, OpenTicket

MONTH_MS = 30 * DAY_MS
VALUE_MONTHS = 12
SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}
COMPLAINT_GROUP = {
    "service": "service",
    "technical": "service",
    "account": "service",
    "other": "service",
    "billing": "price",
    "price": "price",
    "quality": "product",
    "delivery": "product",
}
OCCASION_MS = 12 * HOUR_MS
"""Orders closer than this are one purchase occasion: they add no gap to the cadence."""
EW_ALPHA = 0.3
GOOD_SATISFACTION = 4
"""Weight of the newest value in exponentially weighted customer averages."""


def key_hash(text: str) -> int:
    """A stable 32-bit hash for ids kept in state.

    >>> key_hash("o-1") == key_hash("o-1"), key_hash("o-1") == key_hash("o-2")
    (True, False)
    """
    return zlib.crc32(text.encode())


def new_state(ts: int) -> CustomerState:
    """The state of a customer first seen at ``ts``."""
    return CustomerState(first_ts=ts, last_ts=ts, signals_ts=ts, level_ts=ts)


class Change(NamedTuple):
    """What an event did, for the engine to act on."""

    duplicate: bool = False
    purchase: bool = False
    first_gap: float | None = None
    """Log-days of a customer's first gap between orders, for the population prior."""
    outcome: int = 0


def net_value(state: CustomerState, now: int) -> float:
    """Trailing 12-month net spend as of ``now``.

    >>> s = new_state(0)
    >>> add_value(s, 0, 50.0); add_value(s, 5 * MONTH_MS, 20.0)
    >>> net_value(s, 6 * MONTH_MS), net_value(s, 13 * MONTH_MS)
    (70.0, 20.0)
    """
    shift = now // MONTH_MS - state.value_month
    if shift < 0:
        shift = 0
    kept = state.value_buckets[: max(VALUE_MONTHS - shift, 0)]
    return max(float(sum(kept)), 0.0)


def add_value(state: CustomerState, ts: int, amount: float) -> None:
    """Add (or with a negative amount, take back) spend in the month of ``ts``."""
    month = ts // MONTH_MS
    buckets = list(state.value_buckets)
    if month > state.value_month or not buckets:
        shift = month - state.value_month if buckets else 0
        buckets = ([0.0] * min(shift, VALUE_MONTHS) + buckets)[:VALUE_MONTHS]
        if not buckets:
            buckets = [0.0]
        state.value_month = month
    offset = state.value_month - month
    if offset < VALUE_MONTHS:
        while len(buckets) <= offset:
            buckets.append(0.0)
        buckets[offset] = round(buckets[offset] + amount, 2)
    state.value_buckets = tuple(buckets)


class StateUpdater:
    """Applies events to states with shared River estimators (one per shard)."""

    def __init__(self, config: EngineConfig) -> None:
        self.cfg = config
        self._var = RunningVar()
        self._drift = SpendDrift()
        self._half_life = config.signal_half_life_days * DAY_MS
        self._sla = config.response_sla_hours * HOUR_MS
        self._short = config.visit_short_days * DAY_MS
        self._long = config.visit_long_days * DAY_MS

    def decay_to(self, s: CustomerState, now: int) -> None:
        """Decay every signal counter to ``now``."""
        dt = now - s.signals_ts
        if dt <= 0:
            return
        s.visits_short = decay(s.visits_short, dt, self._short)
        s.visits_long = decay(s.visits_long, dt, self._long)
        s.orders_short = decay(s.orders_short, dt, ORDER_SHORT_DAYS * DAY_MS)
        s.orders_long = decay(s.orders_long, dt, ORDER_LONG_DAYS * DAY_MS)
        f = decay(1.0, dt, self._half_life)
        if f < 1.0:
            s.complaints_service *= f
            s.complaints_price *= f
            s.complaints_product *= f
            s.returns *= f
            s.cancels *= f
            s.reopened *= f
        s.signals_ts = now

    def apply(self, s: CustomerState, event: Event) -> Change:
        """Fold ``event`` into ``s`` in place and say what it changed."""
        if self.cfg.dedupe_window and event.event_id:
            h = key_hash(event.event_id)
            if h in s.recent_events:
                return Change(duplicate=True)
            s.recent_events = (*s.recent_events, h)[-self.cfg.dedupe_window :]
        ts = event.ts
        assert isinstance(ts, int)  # noqa: S101 - the decoder normalises ts
        self.decay_to(s, ts)
        if ts > s.last_ts:
            s.last_ts = ts
        if isinstance(event, Order):
            return self._order(s, event, ts)
        if isinstance(event, Visit):
            self._visit(s, event, ts)
        elif isinstance(event, Ticket):
            self._ticket(s, event, ts)
        elif isinstance(event, Outcome):
            s.outcome = 1 if event.outcome == "churned" else 2
            return Change(outcome=s.outcome)
        return Change()

    def _order(self, s: CustomerState, e: Order, ts: int) -> Change:
        key = key_hash(e.order_id)
        status = e.status
        if status == "placed":
            if key not in s.recent_orders and all(k != key for k, _ in s.unpaid):
                s.unpaid = (*s.unpaid, (key, ts))[-4:]
            return Change()
        if status == "cancelled":
            s.unpaid = tuple(u for u in s.unpaid if u[0] != key)
            s.cancels += 1.0
            if key in s.recent_orders:
                add_value(s, ts, -e.amount)
            return Change()
        if status in ("refunded", "returned"):
            if key in s.returned_orders:  # a return and its refund take the value back once
                return Change()
            s.returned_orders = (*s.returned_orders, key)[-8:]
            s.returns += 1.0
            add_value(s, ts, -e.amount)
            return Change()
        # paid
        s.unpaid = tuple(u for u in s.unpaid if u[0] != key)
        if key in s.recent_orders:
            return Change()
        s.recent_orders = (*s.recent_orders, key)[-8:]
        first_gap = None
        if s.last_order_ts and ts - s.last_order_ts >= OCCASION_MS:
            gap = math.log((ts - s.last_order_ts) / DAY_MS)
            if s.order_gap[0] == 0:
                first_gap = gap
            else:
                s.gap_trend += EW_ALPHA * (gap - s.order_gap[1] - s.gap_trend)
            s.order_gap = self._var.update(s.order_gap, gap)
        if not s.first_order_ts:
            s.first_order_ts = ts
        s.n_orders += 1
        s.orders_short += 1.0
        s.orders_long += 1.0
        s.last_order_ts = max(s.last_order_ts, ts)
        x = math.log1p(e.amount)
        s.spend = self._var.update(s.spend, x)
        s.spend_recent = x if s.n_orders == 1 else s.spend_recent + EW_ALPHA * (x - s.spend_recent)
        s.spend_drift, fell = self._drift.update(s.spend_drift, x)
        if fell:
            s.spend_drift_ts = ts
        used_discount = 1.0 if e.discount > 0 else 0.0
        s.discount_share += (used_discount - s.discount_share) * (
            1.0 if s.n_orders == 1 else EW_ALPHA
        )
        add_value(s, ts, e.amount)
        s.visits_since_order = s.carts_since_order = s.inquiries_since_order = 0
        s.checkpoint = s.checkpoint_ts = 0
        return Change(purchase=True, first_gap=first_gap)

    def _visit(self, s: CustomerState, e: Visit, ts: int) -> None:
        if s.last_visit_ts and ts > s.last_visit_ts + HOUR_MS:
            gap = math.log((ts - s.last_visit_ts) / DAY_MS)
            s.visit_gap = self._var.update(s.visit_gap, gap)
        s.last_visit_ts = max(s.last_visit_ts, ts)
        s.n_visits += 1
        s.visits_short += 1.0
        s.visits_long += 1.0
        s.visits_since_order += 1
        if e.intent in ("cart", "checkout"):
            s.carts_since_order += 1
        elif e.intent == "inquiry":
            s.inquiries_since_order += 1

    def _recovered(self, t: OpenTicket, e: Ticket) -> bool:
        """Service recovery (shared DOMAIN page): a complaint answered within the SLA, never
        reopened, and resolved with good satisfaction (4 or 5) leaves no lasting risk."""
        answered = t.responded_ts and t.responded_ts - t.opened_ts <= self._sla
        good = e.satisfaction is not None and e.satisfaction >= GOOD_SATISFACTION
        return bool(answered and good and not t.reopened)

    def _forget_complaint(self, s: CustomerState, t: OpenTicket, ts: int) -> None:
        """Take a recovered complaint's count out again, as much of it as is left."""
        left = decay(1.0, ts - t.opened_ts, self._half_life)
        group = COMPLAINT_GROUP.get(t.category, "service")
        if group == "service":
            s.complaints_service = max(s.complaints_service - left, 0.0)
        elif group == "price":
            s.complaints_price = max(s.complaints_price - left, 0.0)
        else:
            s.complaints_product = max(s.complaints_product - left, 0.0)

    def _ticket(self, s: CustomerState, e: Ticket, ts: int) -> None:
        key = key_hash(e.ticket_id)
        found = next((t for t in s.open_tickets if t.key == key), None)
        status = e.status
        if status in ("opened", "reopened"):
            if status == "opened":
                s.n_tickets += 1
                group = COMPLAINT_GROUP[e.category or "other"]
                if group == "service":
                    s.complaints_service += 1.0
                elif group == "price":
                    s.complaints_price += 1.0
                else:
                    s.complaints_product += 1.0
            else:
                s.reopened += 1.0
            if found is None and len(s.open_tickets) < self.cfg.max_open_tickets:
                s.open_tickets = (
                    *s.open_tickets,
                    OpenTicket(
                        key=key,
                        opened_ts=ts,
                        severity=SEVERITY[e.severity or "medium"],
                        category=e.category or "other",
                        reopened=status == "reopened",
                    ),
                )
        elif status == "responded":
            if found is not None and not found.responded_ts:
                hours = max((ts - found.opened_ts) / HOUR_MS, 0.0)
                s.response_hours += (hours - s.response_hours) * (
                    1.0 if s.response_hours == 0.0 else EW_ALPHA
                )
                s.open_tickets = tuple(
                    OpenTicket(t.key, t.opened_ts, ts, t.severity, t.category, t.reopened)
                    if t is found
                    else t
                    for t in s.open_tickets
                )
        elif found is not None:  # resolved or closed
            s.open_tickets = tuple(t for t in s.open_tickets if t is not found)
            if self._recovered(found, e):
                self._forget_complaint(s, found, ts)
        if e.satisfaction is not None:
            first = s.satisfaction == 0.0
            s.satisfaction += (e.satisfaction - s.satisfaction) * (1.0 if first else EW_ALPHA)
            s.last_satisfaction = e.satisfaction
        if e.sentiment is not None:
            s.n_sentiment += 1
            s.sentiment += (e.sentiment - s.sentiment) * (1.0 if s.n_sentiment == 1 else EW_ALPHA)
