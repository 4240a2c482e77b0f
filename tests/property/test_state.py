"""Per-customer state: exact byte round trip, independent copies, read-only scoring, bounded
size, versioning, and recovery from stored state."""

from __future__ import annotations

import copy

import msgspec
import pytest
from cw_strategies import DAY, T0, feed, histories, long_stream, touch_everything
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import BytesStore, CustomerState, EngineConfig, Event, Shard
from detectors.alerts import encode_alert
from detectors.model import ShardModel
from detectors.profile import FEATURES
from detectors.state import STATE_VERSION, OpenTicket

pytestmark = pytest.mark.unit

MAX_STATE_BYTES = 2048


def assert_round_trip(state: CustomerState) -> None:
    data = state.to_bytes()
    back = CustomerState.from_bytes(data)
    assert back == state
    assert back.to_bytes() == data


@settings(max_examples=150, deadline=None)
@given(histories())
def test_state_round_trips_exactly_after_every_event(events: list[Event]) -> None:
    shard = Shard()
    for event in events:
        feed(shard, [event])
        assert_round_trip(shard.store[event.customer_id])


@settings(max_examples=100, deadline=None)
@given(histories(customer_id="a"), histories(customer_id="b"))
def test_serialised_store_and_plain_dict_give_the_same_alerts_and_bytes(
    first: list[Event], second: list[Event]
) -> None:
    """A state kept as bytes (as a RocksDB table keeps it) loses nothing: every change is
    written back, none is made in place only."""
    events = sorted(first + second, key=lambda e: e.ts)
    plain, stored = Shard(), Shard(store=BytesStore())
    for event in events:
        a = [encode_alert(x) for x in feed(plain, [event])]
        b = [encode_alert(x) for x in feed(stored, [event])]
        assert a == b
    for key in plain.store:
        assert stored.store[key].to_bytes() == plain.store[key].to_bytes()


@settings(max_examples=150, deadline=None)
@given(histories(max_events=30), st.data())
def test_a_copy_is_independent_of_the_original(events: list[Event], data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(events)))
    shard = Shard()
    feed(shard, events[:cut])
    key = events[0].customer_id
    original = shard.store[key]
    frozen = original.to_bytes()
    shallow = copy.copy(original)
    replaced = msgspec.structs.replace(original)
    # further processing changes the original in place (dict store) ...
    feed(shard, events[cut:])
    feed(shard, touch_everything(key, int(events[-1].ts)))
    shard.advance(int(events[-1].ts) + 400 * DAY)
    # ... and never a copy
    assert shallow.to_bytes() == frozen
    assert replaced.to_bytes() == frozen
    # and changing a copy never changes the original
    before = shard.store[key].to_bytes()
    shallow.level = 3
    shallow.open_tickets = (*shallow.open_tickets, OpenTicket(key=1, opened_ts=T0))
    shallow.snapshots = ()
    replaced.value_buckets = (1.0, 2.0)
    assert shard.store[key].to_bytes() == before


@settings(max_examples=150, deadline=None)
@given(histories(), st.lists(st.integers(-30 * DAY, 800 * DAY), min_size=1, max_size=5))
def test_assess_changes_neither_state_nor_schedule_nor_model(
    events: list[Event], offsets: list[int]
) -> None:
    shard = Shard()
    feed(shard, events)
    key = events[0].customer_id
    before = shard.store[key].to_bytes()
    due = shard.due.due_at(key)
    probe = [0.1 * i for i in range(len(FEATURES))]
    model_before = (shard.model.metrics(), shard.model.score(probe, 0.3))
    for offset in offsets:
        assessment = shard.assess(key, int(events[-1].ts) + offset)
        assert assessment is not None
        assert shard.store[key].to_bytes() == before
    assert shard.due.due_at(key) == due
    assert (shard.model.metrics(), shard.model.score(probe, 0.3)) == model_before
    assert shard.assess("nobody", T0) is None


def test_state_stays_bounded_over_a_long_busy_stream() -> None:
    events = long_stream("busy", 2000, seed=5)
    shard = Shard(store=BytesStore())
    largest = 0
    for event in events:
        feed(shard, [event])
        largest = max(largest, len(shard.store.raw("busy")))  # type: ignore[attr-defined]
    state = shard.store["busy"]
    assert state.n_tickets >= 400  # the stream really was busy
    assert len(state.open_tickets) <= shard.cfg.max_open_tickets
    assert len(state.recent_events) <= shard.cfg.dedupe_window
    assert len(state.snapshots) <= shard.cfg.max_pending_snapshots
    assert len(state.value_buckets) <= 12
    assert largest < MAX_STATE_BYTES, f"state grew to {largest} bytes"


@pytest.mark.parametrize("version", [0, STATE_VERSION + 1, 99])
def test_other_state_versions_are_rejected(version: int) -> None:
    data = CustomerState(v=version, first_ts=T0, last_ts=T0).to_bytes()
    with pytest.raises(ValueError, match="version"):
        CustomerState.from_bytes(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x93\x01\x02", b"not msgpack at all"])
def test_garbage_state_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises((ValueError, msgspec.DecodeError)):
        CustomerState.from_bytes(data)


def test_truncated_state_bytes_are_rejected() -> None:
    shard = Shard()
    feed(shard, long_stream("t", 50, seed=1))
    data = shard.store["t"].to_bytes()
    with pytest.raises((ValueError, msgspec.DecodeError)):
        CustomerState.from_bytes(data[: len(data) // 2])


@settings(max_examples=60, deadline=None)
@given(
    histories(customer_id="a"),
    histories(customer_id="b"),
    histories(customer_id="c"),
    st.data(),
)
def test_restart_from_stored_state_and_model_gives_the_same_alerts(
    a: list[Event], b: list[Event], c: list[Event], data: st.DataObject
) -> None:
    """Abort after any event, rebuild the shard from its table and model checkpoint, resume:
    the alerts are those of a run that never stopped."""
    events = sorted(a + b + c, key=lambda e: e.ts)
    cut = data.draw(st.integers(0, len(events)))
    cfg = EngineConfig()
    straight = Shard(cfg, store=BytesStore())
    expected = [encode_alert(x) for x in feed(straight, events)]

    first = Shard(cfg, store=BytesStore())
    got = [encode_alert(x) for x in feed(first, events[:cut])]
    table = {key: first.store.raw(key) for key in first.store}  # type: ignore[attr-defined]
    checkpoint = first.model.to_bytes()
    del first

    restored = BytesStore()
    for key, raw in table.items():
        restored[key] = CustomerState.from_bytes(raw)
    second = Shard(cfg, store=restored, model=ShardModel.from_bytes(checkpoint, cfg))
    got += [encode_alert(x) for x in feed(second, events[cut:])]
    assert got == expected
