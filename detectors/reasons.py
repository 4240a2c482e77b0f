"""The detectors: field knowledge (shared DOMAIN page) turned into coded, explained reasons.

Each detector reads a :class:`~detectors.profile.Profile` and the state and
returns a :class:`Reason` or nothing. A reason's ``weight`` is its push on the
log-odds of churn in the rule score; the cadence reason's weight is how far
the silence has moved the customer's own churn odds. Messages quote the
customer's own numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec

from detectors.calibration import logit
from detectors.profile import Profile
from detectors.state import ORDER_SHORT_DAYS, CustomerState

CATEGORIES = ("service", "price", "product", "engagement", "value")


class Reason(msgspec.Struct, frozen=True, array_like=False):
    """One explained cause of risk."""

    code: str
    category: str
    message: str
    weight: float


Detector = Callable[[CustomerState, Profile], Reason | None]


def _r(code: str, category: str, message: str, weight: float) -> Reason:
    return Reason(code, category, message, round(weight, 3))


def _days(d: float) -> str:
    return f"{d:.0f} day" + ("" if round(d) == 1 else "s")


# engagement -----------------------------------------------------------------


def overdue_order(s: CustomerState, p: Profile) -> Reason | None:
    """Silent for longer than the customer's own rhythm (the core churn signal).

    The weight is how far the silence moved the odds of no purchase within the horizon,
    or the odds that the customer has left (``gone_push``), whichever is more: for a
    customer whose usual gap is longer than the horizon only the second moves. A customer
    with a rhythm of their own is overdue only when their own gaps make the silence rare."""
    if p.rhythm and not p.rhythm_rare:  # within the customer's own range of gaps
        return None
    weight = max(logit(p.p_cadence) - logit(p.p_cadence_fresh), p.gone_push)
    if p.overdue < 1.5 or weight <= 0.05:
        return None
    gap = p.cadence.usual_gap_days
    if s.n_orders == 0:
        return _r(
            "no_first_order",
            "engagement",
            f"first seen {_days(p.silence_days)} ago and never ordered; "
            f"customers usually order within {_days(gap)}",
            weight,
        )
    if s.n_orders == 1:
        return _r(
            "no_second_order",
            "engagement",
            f"one order {_days(p.silence_days)} ago and none since; "
            f"customers usually return within {_days(gap)}",
            weight,
        )
    return _r(
        "order_overdue",
        "engagement",
        f"no order for {_days(p.silence_days)}; usually every {_days(gap)} "
        f"({p.overdue:.1f}x the usual gap)",
        weight,
    )


def visits_thinning(s: CustomerState, p: Profile) -> Reason | None:
    """Visits have thinned out against the customer's long-run rate."""
    if s.n_visits < 4 or p.visit_ratio >= 0.4:
        return None
    return _r(
        "visits_declining",
        "engagement",
        f"visits down to {p.visit_ratio:.0%} of the usual rate; "
        f"last visit {_days(p.visit_silence_days)} ago",
        0.4,
    )


def browsing_without_buying(s: CustomerState, p: Profile) -> Reason | None:
    """Visits, carts and inquiries since the last order, but no order."""
    carts, asks, visits = s.carts_since_order, s.inquiries_since_order, s.visits_since_order
    if carts >= 2 or asks >= 2:
        parts = [f"{carts} abandoned cart" + ("s" * (carts != 1))] if carts else []
        if asks:
            parts.append(f"{asks} unanswered inquir" + ("ies" if asks != 1 else "y"))
        return _r(
            "not_converting",
            "engagement",
            f"{' and '.join(parts)} since the last order, {_days(p.silence_days)} ago",
            0.3 + 0.1 * min(carts + asks, 5),
        )
    if visits >= 6 and p.overdue >= 1.0:
        return _r(
            "browsing_not_buying",
            "engagement",
            f"{visits} visits without an order since the last one, {_days(p.silence_days)} ago",
            0.3,
        )
    return None


def spend_halved(s: CustomerState, p: Profile) -> Reason | None:
    """Partial defection: a customer still buying on rhythm spends half as much per month
    as usual (fewer orders, smaller baskets, or both): money lost before any silence."""
    if s.n_orders < 4 or p.overdue >= 1.5 or p.tenure_days < 2 * ORDER_SHORT_DAYS:
        return None
    # orders per month from the trend of the recent gaps against the usual ones (a
    # decayed order count would also fall with an ordinary silence)
    orders = math.exp(-max(min(s.gap_trend, 3.0), -3.0))
    basket = 1.0 + p.spend_change
    per_month = orders * basket
    if per_month > 0.5:
        return None
    return _r(
        "spend_halved",
        "engagement",
        f"spending {per_month:.0%} of their usual per month while still buying "
        f"(orders at {orders:.0%}, baskets at {basket:.0%} of usual)",
        0.6,
    )


def unpaid_order(s: CustomerState, p: Profile) -> Reason | None:
    """Orders placed and never paid."""
    if not p.unpaid_overdue:
        return None
    n = p.unpaid_overdue
    return _r(
        "order_unpaid",
        "engagement",
        f"{n} order" + ("s" * (n != 1)) + " placed and still unpaid",
        0.5,
    )


# service --------------------------------------------------------------------


def unanswered_ticket(s: CustomerState, p: Profile) -> Reason | None:
    """A complaint left without a first response past the SLA."""
    if not p.unanswered:
        return None
    return _r(
        "ticket_unanswered",
        "service",
        f"{p.unanswered} ticket" + ("s" * (p.unanswered != 1)) + " without a response; "
        f"oldest open {_days(p.oldest_open_days)}",
        0.8,
    )


def severe_unresolved(s: CustomerState, p: Profile) -> Reason | None:
    """A high or critical severity ticket still unresolved."""
    if not p.unresolved_severe:
        return None
    return _r(
        "severe_ticket_open",
        "service",
        f"{p.unresolved_severe} high-severity ticket"
        + ("s" * (p.unresolved_severe != 1))
        + f" unresolved; oldest open {_days(p.oldest_open_days)}",
        0.7,
    )


def reopened_tickets(s: CustomerState, p: Profile) -> Reason | None:
    """Tickets reopened: the fix did not hold."""
    if p.reopened < 0.8:
        return None
    return _r("ticket_reopened", "service", "a resolved ticket was reopened recently", 0.4)


def low_satisfaction(s: CustomerState, p: Profile) -> Reason | None:
    """Low satisfaction scores or negative sentiment on support contacts."""
    if s.satisfaction and s.satisfaction <= 2.5:
        return _r(
            "low_satisfaction",
            "service",
            f"satisfaction {s.last_satisfaction}/5 on the last ticket "
            f"(average {s.satisfaction:.1f})",
            0.7,
        )
    if s.n_sentiment and s.sentiment <= -0.4:
        return _r(
            "negative_sentiment",
            "service",
            f"support contacts read negative (sentiment {s.sentiment:+.1f})",
            0.4,
        )
    return None


def repeat_complaints(s: CustomerState, p: Profile) -> Reason | None:
    """Several service complaints in a short time."""
    if p.complaints_service < 1.8:
        return None
    return _r(
        "repeat_complaints",
        "service",
        f"{p.complaints_service:.0f} service complaints in recent weeks",
        0.5,
    )


# price ----------------------------------------------------------------------


def price_complaint(s: CustomerState, p: Profile) -> Reason | None:
    """Price or billing complaints: a competitor's offer often follows."""
    if p.complaints_price < 0.3:
        return None
    return _r("price_complaint", "price", "complained about price or billing recently", 0.6)


def discount_reliance(s: CustomerState, p: Profile) -> Reason | None:
    """Buying mostly when discounted."""
    if s.n_orders < 3 or s.discount_share < 0.6:
        return None
    return _r(
        "discount_reliant",
        "price",
        f"{s.discount_share:.0%} of recent orders used a discount",
        0.3,
    )


def basket_falling(s: CustomerState, p: Profile) -> Reason | None:
    """Basket value falling against the customer's own baseline."""
    if p.spend_fell or p.spend_change <= -0.35:
        return _r(
            "basket_declining",
            "price",
            f"recent baskets {abs(p.spend_change):.0%} below the usual value"
            if p.spend_change < 0
            else "basket value shifted down",
            0.4,
        )
    return None


# product --------------------------------------------------------------------


def quality_complaint(s: CustomerState, p: Profile) -> Reason | None:
    """Quality or delivery complaints."""
    if p.complaints_product < 0.4:
        return None
    return _r("quality_complaint", "product", "complained about quality or delivery", 0.6)


def returns_and_cancels(s: CustomerState, p: Profile) -> Reason | None:
    """Returns, refunds and cancelled orders."""
    n = p.returns + p.cancels
    if n < 0.7:
        return None
    what = []
    if p.returns >= 0.5:
        what.append("returned or refunded")
    if p.cancels >= 0.5:
        what.append("cancelled")
    return _r(
        "returns_cancels",
        "product",
        f"orders {' and '.join(what) or 'returned'} recently ({n:.0f} in recent weeks)",
        0.3 + 0.15 * min(n, 4.0),
    )


# value ----------------------------------------------------------------------


def high_value(s: CustomerState, p: Profile) -> Reason | None:
    """A top customer: not a cause of risk but of priority (weight 0)."""
    if not p.high_value:
        return None
    return _r(
        "high_value",
        "value",
        f"top customer: {p.value:,.0f} spent in the last 12 months",
        0.0,
    )


DETECTORS: tuple[Detector, ...] = (
    overdue_order,
    visits_thinning,
    browsing_without_buying,
    spend_halved,
    unpaid_order,
    unanswered_ticket,
    severe_unresolved,
    reopened_tickets,
    low_satisfaction,
    repeat_complaints,
    price_complaint,
    discount_reliance,
    basket_falling,
    quality_complaint,
    returns_and_cancels,
    high_value,
)
"""Every detector, in a fixed order (ties in weight keep this order)."""

MAX_SIGNAL_PUSH = 3.0
"""Cap on the total log-odds push of non-cadence reasons."""


def detect(s: CustomerState, p: Profile) -> list[Reason]:
    """All reasons that apply, strongest first."""
    found = [r for d in DETECTORS if (r := d(s, p)) is not None]
    found.sort(key=lambda r: -r.weight)
    return found


def rule_logit(p: Profile, reasons: list[Reason]) -> float:
    """Rule score on the log-odds scale: the target's prior probability (``p_prior``)
    pushed by the reasons other than silence.

    For ``lapse`` the prior already is the silence (the cadence probability). For
    ``churn`` silence says more of customers already gone than of those about to go, so
    it raises the alarm level a score allows (the evidence) but not the score; the model
    learns what silence says of the customers still buying.
    """
    push = sum(r.weight for r in reasons if r.code not in CADENCE_CODES)
    return logit(p.p_prior) + min(push, MAX_SIGNAL_PUSH)


CADENCE_CODES = frozenset({"order_overdue", "no_second_order", "no_first_order"})
