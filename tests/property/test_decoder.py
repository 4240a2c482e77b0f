"""The input decoder: every payload becomes an event or a DecodeError with a known reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors import REASONS, DecodeError, Order, Outcome, Ticket, Visit, decode_event
from detectors.events import MAX_EVENT_BYTES, TS_MAX_MS, TS_MIN_MS

pytestmark = pytest.mark.unit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TYPES = {"order": Order, "visit": Visit, "ticket": Ticket, "outcome": Outcome}
REQUIRED = {
    "order": ("order_id", "amount"),
    "visit": (),
    "ticket": ("ticket_id", "status"),
    "outcome": ("outcome",),
}
COMMON = ("event_id", "event_type", "customer_id", "ts")
STRING_FIELDS = ("event_id", "customer_id", "order_id", "ticket_id", "currency", "action")
FLOAT_FIELDS = ("amount", "discount", "duration_s", "sentiment")
INT_FIELDS = ("items", "pages", "satisfaction")


def epoch_ms(dt: datetime) -> int:
    """Exact epoch milliseconds by integer arithmetic (no float rounding)."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


def rfc3339(ms: int, offset_minutes: int = 0, millis: bool = True) -> str:
    tz = timezone(timedelta(minutes=offset_minutes))
    dt = (EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    return dt.isoformat(timespec="milliseconds" if millis else "seconds")


def decode(obj: Any) -> Any:
    return decode_event(json.dumps(obj).encode())


def reason_of(raw: bytes | str) -> str | None:
    """None if ``raw`` decodes; else the DecodeError's reason (any other exception propagates)."""
    try:
        decode_event(raw)
    except DecodeError as err:
        return err.reason
    return None


# strategies ----------------------------------------------------------------------------

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
ms_in_range = st.integers(TS_MIN_MS, TS_MAX_MS - 1)
offsets = st.integers(-14 * 60, 14 * 60)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[Any, int]:
    """A contract-valid ``ts`` (whole-second RFC 3339 with an offset, or epoch ms) and its ms."""
    ms = draw(ms_in_range)
    if draw(st.booleans()):
        return ms, ms
    ms -= ms % 1000
    return rfc3339(ms, draw(offsets), millis=False), ms


def _opt(draw: st.DrawFn, obj: dict[str, Any], key: str, strategy: st.SearchStrategy) -> None:
    if draw(st.booleans()):
        obj[key] = draw(strategy)


money = st.floats(0, 1e7, allow_nan=False) | st.integers(0, 10**7)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], str, int]:
    """A valid event as a JSON object, its type and its epoch ms."""
    kind = draw(st.sampled_from(sorted(TYPES)))
    ts, ms = draw(timestamps())
    obj: dict[str, Any] = {
        "event_id": draw(ids),
        "event_type": kind,
        "customer_id": draw(ids),
        "ts": ts,
    }
    if kind == "order":
        obj["order_id"] = draw(ids)
        obj["amount"] = draw(money)
        _opt(draw, obj, "currency", st.sampled_from(["EUR", "USD", "CHF"]))
        _opt(draw, obj, "items", st.integers(0, 1000))
        _opt(draw, obj, "discount", money)
        _opt(
            draw,
            obj,
            "status",
            st.sampled_from(["placed", "paid", "cancelled", "refunded", "returned"]),
        )
        _opt(draw, obj, "channel", st.sampled_from(["web", "app", "store", "portal"]))
    elif kind == "visit":
        _opt(draw, obj, "channel", st.sampled_from(["web", "app", "store", "service", "call"]))
        _opt(draw, obj, "duration_s", money)
        _opt(draw, obj, "pages", st.integers(0, 500))
        _opt(
            draw,
            obj,
            "intent",
            st.sampled_from(["browse", "search", "cart", "checkout", "inquiry"]),
        )
        _opt(draw, obj, "action", st.text(max_size=30))
    elif kind == "ticket":
        obj["ticket_id"] = draw(ids)
        obj["status"] = draw(
            st.sampled_from(["opened", "responded", "resolved", "reopened", "closed"])
        )
        _opt(
            draw,
            obj,
            "category",
            st.sampled_from(
                [
                    "billing",
                    "price",
                    "quality",
                    "delivery",
                    "service",
                    "technical",
                    "account",
                    "other",
                ]
            ),
        )
        _opt(draw, obj, "severity", st.sampled_from(["low", "medium", "high", "critical"]))
        _opt(draw, obj, "satisfaction", st.integers(1, 5))
        _opt(draw, obj, "sentiment", st.floats(-1, 1, allow_nan=False))
    else:
        obj["outcome"] = draw(st.sampled_from(["churned", "retained"]))
    if draw(st.booleans()):
        obj["x_unknown_extra"] = draw(finite_json_values)
    return obj, kind, ms


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()  # NaN and infinities become the NaN / Infinity tokens
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=15,
)
finite_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
field_names = st.sampled_from(
    [*COMMON, *REQUIRED["order"], *REQUIRED["ticket"], "outcome", *FLOAT_FIELDS, *INT_FIELDS]
    + ["status", "channel", "intent", "category", "severity", "currency", "action"]
)
json_ish_objects = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=12)
event_type_values = (
    st.sampled_from(["order", "visit", "ticket", "outcome", "fax", ""]) | json_values
)


@st.composite
def event_shaped_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that look like events: right keys, arbitrary JSON values."""
    obj = draw(json_ish_objects)
    if draw(st.booleans()):
        obj["event_type"] = draw(event_type_values)
    return obj


def assert_contract(raw: bytes | str) -> None:
    try:
        event = decode_event(raw)
    except DecodeError as err:
        assert err.reason in REASONS, err.reason
        assert err.detail
        return
    assert isinstance(event, Order | Visit | Ticket | Outcome)
    assert isinstance(event.ts, int) and not isinstance(event.ts, bool)
    assert TS_MIN_MS <= event.ts < TS_MAX_MS


# properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"[" * 5000)
@example(b'{"a":' * 3000 + b"1" + b"}" * 3000)
def test_any_bytes_decode_or_raise_a_known_reason(raw: bytes) -> None:
    assert_contract(raw)


@settings(max_examples=300, deadline=None)
@given(json_values | event_shaped_objects())
def test_any_json_value_decodes_or_raises_a_known_reason(value: Any) -> None:
    assert_contract(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(valid_events())
def test_valid_events_decode_to_their_type_and_epoch_ms(case: tuple[dict, str, int]) -> None:
    obj, kind, ms = case
    event = decode(obj)
    assert type(event) is TYPES[kind]
    assert event.ts == ms
    assert (event.event_id, event.customer_id) == (obj["event_id"], obj["customer_id"])
    if kind == "order":
        assert event.amount == obj["amount"]
        assert event.status == obj.get("status", "paid")


@settings(max_examples=200, deadline=None)
@given(valid_events(), st.data())
def test_bytes_level_corruption_of_valid_events_never_escapes(
    case: tuple[dict, str, int], data: st.DataObject
) -> None:
    raw = bytearray(json.dumps(case[0]).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and raw:
            del raw[i]
        elif op == "truncate":
            del raw[i:]
    assert_contract(bytes(raw))


MUTATIONS = (
    "drop_required",
    "wrong_type",
    "nan_token",
    "duplicate_key",
    "huge_float",
    "huge_int_ts",
    "negative_ts",
    "seconds_ts",
    "negative_number",
    "oversize",
    "unknown_type",
    "not_object",
)


def _retype(value_kind: str, data: st.DataObject) -> Any:
    """A JSON value of a type the field never accepts."""
    if value_kind == "str":
        return data.draw(st.sampled_from([1, 2.5, True, [], {"a": 1}]))
    if value_kind == "float":
        return data.draw(st.sampled_from(["12", True, False, [], {"v": 1}]))
    if value_kind == "int":
        return data.draw(st.sampled_from(["3", 2.5, True, [], {"n": 3}]))
    return data.draw(st.sampled_from([True, False, 2.5, [], {"t": 1}]))  # ts


def _mutate(obj: dict[str, Any], kind: str, how: str, data: st.DataObject) -> tuple[bytes, str]:
    """Apply one mutation; return the payload and the reason it must be rejected with."""
    obj = dict(obj)
    if how == "drop_required":
        common = [f for f in COMMON if not (kind == "outcome" and f == "event_id")]
        obj.pop(data.draw(st.sampled_from([*common, *REQUIRED[kind]])))
        return json.dumps(obj).encode(), "missing_field"
    if how == "wrong_type":
        choices = [(f, "str") for f in ("event_id", "customer_id")] + [("ts", "ts")]
        choices += [(f, "str") for f in STRING_FIELDS[2:] if f in obj]
        choices += [(f, "float") for f in FLOAT_FIELDS if f in obj]
        choices += [(f, "int") for f in INT_FIELDS if f in obj]
        name, value_kind = data.draw(st.sampled_from(choices))
        obj[name] = _retype(value_kind, data)
        return json.dumps(obj).encode(), "bad_type"
    if how == "nan_token":
        token = data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        name = data.draw(st.sampled_from([f for f in obj if f != "event_type"]))
        obj[name] = "__TOKEN__"
        return json.dumps(obj).encode().replace(b'"__TOKEN__"', token.encode()), "nan_or_inf"
    if how == "duplicate_key":
        name = data.draw(st.sampled_from(sorted(obj)))
        first = json.dumps({name: obj[name]}).encode()[1:-1]  # '"name": value'
        return b"{" + first + b", " + json.dumps(obj).encode()[1:], "duplicate_key"
    if how == "huge_float":
        name = {"order": "amount", "visit": "duration_s", "ticket": "sentiment"}.get(kind)
        if name is None:
            return _mutate(obj, kind, "negative_ts", data)
        obj[name] = "__HUGE__"
        return json.dumps(obj).encode().replace(b'"__HUGE__"', b"1e400"), "nan_or_inf"
    if how == "huge_int_ts":
        obj["ts"] = data.draw(st.integers(TS_MAX_MS, 10**30))
        return json.dumps(obj).encode(), "ts_out_of_range"
    if how == "negative_ts":
        obj["ts"] = data.draw(st.integers(-(10**20), -1))
        return json.dumps(obj).encode(), "ts_out_of_range"
    if how == "seconds_ts":
        obj["ts"] = data.draw(ms_in_range) // 1000  # epoch seconds sent where ms are due
        return json.dumps(obj).encode(), "ts_out_of_range"
    if how == "negative_number":
        name = {"order": "amount", "visit": "pages", "ticket": "satisfaction"}.get(kind)
        if name is None:
            return _mutate(obj, kind, "unknown_type", data)
        obj[name] = -data.draw(st.integers(1, 10**6))
        return json.dumps(obj).encode(), "bad_value"
    if how == "oversize":
        obj["x_padding"] = "p" * MAX_EVENT_BYTES
        return json.dumps(obj).encode(), "oversize"
    if how == "unknown_type":
        obj["event_type"] = data.draw(st.sampled_from(["fax", "Order", "purchase", "orders"]))
        return json.dumps(obj).encode(), "unknown_event_type"
    return json.dumps([obj]).encode(), "not_object"


@settings(max_examples=300, deadline=None)
@given(valid_events(), st.sampled_from(MUTATIONS), st.data())
def test_mutated_events_are_rejected_with_the_right_reason(
    case: tuple[dict, str, int], how: str, data: st.DataObject
) -> None:
    obj, kind, _ = case
    raw, expected = _mutate(obj, kind, how, data)
    assert reason_of(raw) == expected


@settings(max_examples=200, deadline=None)
@given(ms_in_range, offsets)
@example(1_079_919_129_416, 0)  # 2004-03-22T01:32:09.416Z
@example(2_193_528_273_693, 120)  # 2039-07-06T03:24:33.693+02:00
def test_rfc3339_with_milliseconds_and_offsets_gives_exact_epoch_ms(ms: int, offset: int) -> None:
    ts = rfc3339(ms, offset)
    event = decode({"event_id": "e", "event_type": "visit", "customer_id": "c", "ts": ts})
    assert event.ts == ms, f"{ts} decoded to {event.ts}, expected {ms}"


# explicit cases for every reason code ----------------------------------------------------

ORDER = {
    "event_id": "e1",
    "event_type": "order",
    "customer_id": "c1",
    "ts": "2024-01-02T00:00:00Z",
    "order_id": "o1",
    "amount": 12.5,
}


def _j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


REASON_CASES = [
    ("not_json", b"not json at all"),
    ("not_json", b'{"event_id": "e1",'),
    ("not_json", b"\xc3\x28"),  # not UTF-8
    ("not_json", b""),
    ("not_object", b"[1, 2, 3]"),
    ("not_object", b'"order"'),
    ("not_object", b"42"),
    ("not_object", b"null"),
    ("missing_field", _j({k: v for k, v in ORDER.items() if k != "customer_id"})),
    ("missing_field", _j({k: v for k, v in ORDER.items() if k != "amount"})),
    ("missing_field", _j({k: v for k, v in ORDER.items() if k != "event_type"})),
    ("bad_type", _j({**ORDER, "amount": "12.5"})),
    ("bad_type", _j({**ORDER, "customer_id": 17})),
    ("bad_type", _j({**ORDER, "items": 1.5})),
    ("bad_type", _j({**ORDER, "ts": [2024, 1, 2]})),
    ("bad_value", _j({**ORDER, "amount": -1})),
    ("bad_value", _j({**ORDER, "status": "shipped"})),
    ("bad_value", _j({**ORDER, "customer_id": ""})),
    ("bad_value", _j({**ORDER, "customer_id": "x" * 129})),
    ("bad_value", _j({**ORDER, "ts": "next tuesday"})),
    (
        "bad_value",
        _j(
            {"event_id": "e", "event_type": "ticket", "customer_id": "c", "ts": 1704153600000}
            | {"ticket_id": "t", "status": "opened", "satisfaction": 6}
        ),
    ),
    ("nan_or_inf", b'{"event_id":"e1","event_type":"order","amount":NaN}'),
    ("nan_or_inf", _j(ORDER).replace(b"12.5", b"Infinity")),
    ("nan_or_inf", _j(ORDER).replace(b"12.5", b"-Infinity")),
    ("nan_or_inf", _j(ORDER).replace(b"12.5", b"1e999")),
    ("duplicate_key", b'{"event_id":"e1","event_id":"e2"}'),
    ("duplicate_key", _j(ORDER).replace(b'{"event_id"', b'{"amount": 1, "event_id"')),
    ("ts_out_of_range", _j({**ORDER, "ts": 1704153600})),  # seconds, not ms
    ("ts_out_of_range", _j({**ORDER, "ts": -1})),
    ("ts_out_of_range", _j({**ORDER, "ts": "1969-12-31T23:59:59Z"})),
    ("ts_out_of_range", _j({**ORDER, "ts": "2200-01-01T00:00:00+01:00"})),
    ("ts_out_of_range", _j({**ORDER, "ts": 10**25})),
    ("oversize", _j({**ORDER, "note": "n" * MAX_EVENT_BYTES})),
    ("oversize", b" " * (MAX_EVENT_BYTES + 1)),
    ("unknown_event_type", _j({**ORDER, "event_type": "fax"})),
    ("unknown_event_type", _j({**ORDER, "event_type": "ORDER"})),
]


@pytest.mark.parametrize(("reason", "raw"), REASON_CASES)
def test_each_reason_code(reason: str, raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(raw)
    assert info.value.reason == reason
    assert str(info.value).startswith(reason)


def test_every_reason_code_has_an_explicit_case() -> None:
    assert {r for r, _ in REASON_CASES} == set(REASONS)


def test_oversize_limit_counts_utf8_bytes_of_a_text_payload() -> None:
    text = json.dumps({**ORDER, "note": "é" * (MAX_EVENT_BYTES // 2 + 10)}, ensure_ascii=False)
    assert len(text) <= MAX_EVENT_BYTES < len(text.encode())
    assert reason_of(text) == "oversize"


def test_payload_exactly_at_the_limit_is_not_oversize() -> None:
    raw = _j(ORDER)
    raw = raw[:-1] + b', "pad": "' + b"p" * (MAX_EVENT_BYTES - len(raw) - 11) + b'"}'
    assert len(raw) == MAX_EVENT_BYTES
    assert isinstance(decode_event(raw), Order)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-01-02T00:00:00Z", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-01-02T02:00:00+02:00", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-01-01T19:00:00-05:00", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-01-02T05:30:00+05:30", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-03-05T14:34:56.789+02:00", datetime(2024, 3, 5, 12, 34, 56, 789000, tzinfo=UTC)),
        ("2024-06-30T23:59:59.001Z", datetime(2024, 6, 30, 23, 59, 59, 1000, tzinfo=UTC)),
    ],
)
def test_rfc3339_offsets_give_utc_epoch_ms(ts: str, expected: datetime) -> None:
    assert decode({**ORDER, "ts": ts}).ts == epoch_ms(expected)


def test_integer_ts_is_epoch_milliseconds() -> None:
    assert decode({**ORDER, "ts": 1_704_153_600_123}).ts == 1_704_153_600_123


@pytest.mark.parametrize(
    "ts", ["2024-01-02T00:00:00", "2024-01-02T00:00:00.500", "2024-01-02 00:00:00"]
)
def test_naive_timestamps_are_rejected(ts: str) -> None:
    assert reason_of(_j({**ORDER, "ts": ts})) in {"bad_value", "bad_type"}


def test_unknown_extra_fields_are_ignored() -> None:
    extra = {**ORDER, "coupon": {"code": "X", "tags": [1, 2]}, "shop": None, "score": 1.5}
    assert decode(extra) == decode(ORDER)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", True),
        ("discount", False),
        ("items", True),
        ("ts", True),
    ],
)
def test_bool_is_not_accepted_as_a_number(field: str, value: bool) -> None:
    assert reason_of(_j({**ORDER, field: value})) == "bad_type"


@pytest.mark.parametrize(
    ("field", "value"),
    [("satisfaction", True), ("sentiment", False), ("pages", True), ("duration_s", True)],
)
def test_bool_is_not_accepted_as_a_number_in_tickets_and_visits(field: str, value: bool) -> None:
    kind = "visit" if field in ("pages", "duration_s") else "ticket"
    obj = {"event_id": "e", "event_type": kind, "customer_id": "c", "ts": 1_704_153_600_000}
    if kind == "ticket":
        obj |= {"ticket_id": "t", "status": "opened"}
    assert reason_of(_j({**obj, field: value})) == "bad_type"


def test_integer_amount_is_accepted_as_a_number() -> None:
    assert decode({**ORDER, "amount": 12}).amount == 12.0


def test_defaults_follow_the_contract() -> None:
    order = decode(ORDER)
    assert (order.status, order.items, order.discount) == ("paid", 0, 0.0)
    visit = decode({"event_id": "v", "event_type": "visit", "customer_id": "c", "ts": ORDER["ts"]})
    assert visit.channel == "web"


def test_per_type_topic_fills_a_missing_event_type() -> None:
    no_type = {k: v for k, v in ORDER.items() if k != "event_type"}
    assert isinstance(decode_event(_j(no_type), default_type="order"), Order)
    # an explicit type wins over the topic's default
    assert isinstance(decode_event(_j(ORDER), default_type="visit"), Order)


def test_outcome_records_need_no_event_id() -> None:
    raw = _j({"customer_id": "c1", "ts": "2024-05-01T00:00:00Z", "outcome": "churned"})
    event = decode_event(raw, default_type="outcome")
    assert isinstance(event, Outcome)
    assert (event.customer_id, event.outcome) == ("c1", "churned")


def test_text_and_bytes_payloads_decode_alike() -> None:
    text = json.dumps(ORDER)
    assert decode_event(text) == decode_event(text.encode())
