"""Customer value (trailing 12-month net spend) through an order's whole lifecycle."""

from __future__ import annotations

import pytest
from cw_strategies import DAY, T0, ev, feed

from detectors import Shard

pytestmark = pytest.mark.unit


def value_after(*changes: tuple[float, str, float, str], at_day: float = 20) -> float:
    """Feed (day, order id, amount, status) changes of one customer; value at ``at_day``."""
    shard = Shard()
    events = [
        ev("order", "c", T0 + int(day * DAY), f"e{i}", order_id=oid, amount=amount, status=status)
        for i, (day, oid, amount, status) in enumerate(changes)
    ]
    feed(shard, events)
    assessment = shard.assess("c", T0 + int(at_day * DAY))
    assert assessment is not None
    return assessment.profile.value


def test_paid_orders_add_up() -> None:
    assert value_after((0, "a", 100.0, "paid"), (1, "b", 50.0, "paid")) == 150.0


def test_placed_but_unpaid_orders_are_not_spend() -> None:
    assert value_after((0, "a", 100.0, "paid"), (1, "b", 50.0, "placed")) == 100.0


def test_a_cancelled_paid_order_is_taken_back() -> None:
    assert (
        value_after((0, "a", 100.0, "paid"), (1, "b", 50.0, "paid"), (2, "b", 50.0, "cancelled"))
        == 100.0
    )


def test_a_paid_order_paid_again_counts_once() -> None:
    assert value_after((0, "a", 100.0, "paid"), (1, "a", 100.0, "paid")) == 100.0


def test_a_return_then_its_refund_takes_the_value_back_once() -> None:
    """``returned`` and then ``refunded`` are two steps of one return of one order (the
    simulator sends both for most returns): the money goes back once."""
    value = value_after(
        (0, "a", 100.0, "paid"),
        (1, "b", 50.0, "paid"),
        (10, "a", 100.0, "returned"),
        (14, "a", 100.0, "refunded"),
    )
    assert value == 50.0


def test_spend_older_than_twelve_months_drops_out() -> None:
    assert value_after((0, "a", 100.0, "paid"), (200, "b", 40.0, "paid"), at_day=400) == 40.0
