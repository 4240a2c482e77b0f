"""Per-customer state: one compact, versioned value with an exact byte round trip.

The same object lives in replay's dict, in a Faust table and in tests. It holds
plain numbers only: the state of the customer's River estimators (see
:mod:`detectors.estimators`), decayed signal counters, open tickets, pending
training snapshots and the alert lifecycle. Times are epoch milliseconds;
0 means "never".
"""

from __future__ import annotations

import msgspec

STATE_VERSION = 1
ORDER_SHORT_DAYS = 45.0
ORDER_LONG_DAYS = 180.0


class OpenTicket(msgspec.Struct, array_like=True, gc=False):
    """A ticket not yet resolved: id hash, opened, first response (0: none), severity 0..3."""

    key: int
    opened_ts: int
    responded_ts: int = 0
    severity: int = 1
    category: str = "other"
    reopened: bool = False


class Snapshot(msgspec.Struct, array_like=True, gc=False):
    """Features taken at ``ts`` (float16, packed), learned when the horizon has passed.

    ``label`` is -1 until known: 0 once the customer buys within the horizon, or an
    explicit outcome's. A snapshot still unlabelled when its horizon ends is a 1.
    """

    ts: int
    features: bytes
    rule_logit: float
    label: int = -1


class Case(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An alert case in the retention ledger: from ``opened`` to its outcome (frozen: a
    change replaces it, so a copy of the state never shares a change).

    ``level`` is the level the case opened at (the stratum whose control share decided
    ``control``); ``category`` indexes :data:`detectors.reasons.CATEGORIES` (-1: none).
    ``outcome`` is 0 while undecided, then 1 recovered, 2 churned, 3 still at risk.
    ``recommended`` and ``actions`` are bitmasks over :data:`detectors.ledger.ACTION_CODES`:
    the actions the case's alerts recommended and those reported sent or delivered.
    ``alerts`` holds hashes of the case's alert ids (the opening one and the last three),
    to link action reports to the case.
    """

    opened_ts: int
    level: int
    category: int = -1
    control: bool = False
    outcome: int = 0
    recommended: int = 0
    actions: int = 0
    reports: int = 0
    alerts: tuple[int, ...] = ()


class CustomerState(msgspec.Struct, array_like=True, kw_only=True):
    """Everything the engine keeps about one customer.

    >>> s = CustomerState(first_ts=1, last_ts=1)
    >>> CustomerState.from_bytes(s.to_bytes()) == s
    True
    """

    v: int = STATE_VERSION
    first_ts: int
    last_ts: int
    last_order_ts: int = 0
    first_order_ts: int = 0
    last_visit_ts: int = 0
    n_orders: int = 0
    n_visits: int = 0
    n_tickets: int = 0

    # River running statistics, stored as (n, mean, M2) and loaded into shared estimators
    order_gap: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """log(days) between orders: the personal purchase cadence."""
    visit_gap: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """log(days) between visits: the personal visit cadence."""
    spend: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """log(1 + amount) of paid orders: the spend baseline."""
    spend_recent: float = 0.0
    """Exponentially weighted log(1 + amount) of recent orders."""
    spend_drift: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    """Page-Hinkley state on spend: n, mean, sum_inc, sum_dec, min_inc, max_dec."""
    spend_drift_ts: int = 0
    """When the drift detector last fired (basket value shift down)."""
    discount_share: float = 0.0
    """Exponentially weighted share of orders bought with a discount."""

    # trailing 12-month net spend in monthly buckets (30-day months since epoch)
    value_month: int = 0
    value_buckets: tuple[float, ...] = ()

    # decayed signal counters, all decayed to ``signals_ts``
    signals_ts: int = 0
    visits_short: float = 0.0
    visits_long: float = 0.0
    complaints_service: float = 0.0
    complaints_price: float = 0.0
    complaints_product: float = 0.0
    returns: float = 0.0
    cancels: float = 0.0
    reopened: float = 0.0

    # since the last order
    visits_since_order: int = 0
    carts_since_order: int = 0
    inquiries_since_order: int = 0

    # service
    open_tickets: tuple[OpenTicket, ...] = ()
    response_hours: float = 0.0
    """Exponentially weighted hours to first response."""
    satisfaction: float = 0.0
    """Exponentially weighted satisfaction 1..5 (0: never rated)."""
    last_satisfaction: int = 0
    sentiment: float = 0.0
    n_sentiment: int = 0

    # orders placed and not yet paid: (order id hash, placed ts)
    unpaid: tuple[tuple[int, int], ...] = ()
    recent_orders: tuple[int, ...] = ()
    """Hashes of recent order ids, to count each order once."""
    returned_orders: tuple[int, ...] = ()
    """Hashes of orders already returned or refunded."""
    recent_events: tuple[int, ...] = ()
    """Hashes of recent event ids, to drop redeliveries."""

    # learning and alerting
    snapshots: tuple[Snapshot, ...] = ()
    outcome: int = 0
    """Explicit outcome: 0 none, 1 churned, 2 retained."""
    level: int = 0
    level_ts: int = 0
    last_alert_ts: int = 0
    alert_seq: int = 0
    alert_open: bool = False
    score: float = 0.0
    next_due: int = 0
    checkpoint: int = 0
    """The cadence checkpoint (rung of ``sweep_overdue_ratios``) the silence is at."""
    checkpoint_ts: int = 0
    """When that checkpoint's sweep was scheduled (0: none)."""

    # the retention ledger (detectors.ledger): the current or last alert case
    case: Case | None = None

    # purchase rhythm lately (added to version 1 at the end, so older states decode)
    orders_short: float = 0.0
    """Paid orders, decayed with ``ORDER_SHORT_DAYS``' half-life to ``signals_ts``."""
    orders_long: float = 0.0
    """Paid orders, decayed with ``ORDER_LONG_DAYS``' half-life to ``signals_ts``."""
    gap_trend: float = 0.0
    """Exponentially weighted log of each gap over the usual gap before it (> 0: gaps
    lengthening)."""

    # ``churn`` target (added to version 1 at the end, so older states decode)
    provisional: tuple[Snapshot, ...] = ()
    """Snapshots learned as (soft) ones when silence counted the customer gone; learned
    over as 0 if the customer comes back (see :mod:`detectors.labels`)."""
    provisional_share: float = 1.0
    """The weight they were learned as 1 with, the rest as 0 (:mod:`detectors.comeback`)."""
    provisional_group: int = 0
    """The customer's group when silence counted them gone (:mod:`detectors.comeback`)."""

    def to_bytes(self) -> bytes:
        """Serialise compactly (MessagePack array)."""
        return _encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """Inverse of :meth:`to_bytes`; rejects other state versions."""
        state = _decoder.decode(data)
        if state.v != STATE_VERSION:
            raise ValueError(f"customer state version {state.v} is not {STATE_VERSION}")
        return state


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)
