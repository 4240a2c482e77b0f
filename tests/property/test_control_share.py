"""Control groups: for any salt and share, the held-out share of many customers is what the
binomial distribution allows, and the groups are nested in the share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.ledger import in_control

pytestmark = pytest.mark.unit

N = 3000


@settings(max_examples=40, deadline=None)
@given(
    salt=st.text(min_size=1, max_size=40),
    share=st.floats(0.01, 0.99),
    prefix=st.sampled_from(["c", "cust-", "", "B2B/"]),
)
def test_held_out_share_is_within_binomial_bounds(salt: str, share: float, prefix: str) -> None:
    held = sum(in_control(f"{prefix}{i}", salt, share) for i in range(N))
    sd = math.sqrt(N * share * (1.0 - share))
    # 5 standard deviations: a fair hash fails this about once in 1.7 million draws
    assert abs(held - N * share) <= 5.0 * sd + 1.0


@settings(max_examples=40, deadline=None)
@given(
    salt=st.text(min_size=1, max_size=40),
    low=st.floats(0.0, 1.0),
    high=st.floats(0.0, 1.0),
    ids=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50),
)
def test_groups_are_stable_and_nested_in_the_share(
    salt: str, low: float, high: float, ids: list[str]
) -> None:
    low, high = min(low, high), max(low, high)
    for cid in ids:
        first = in_control(cid, salt, low)
        assert in_control(cid, salt, low) == first
        if first:
            assert in_control(cid, salt, high)
