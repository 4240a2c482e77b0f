"""The input event contract and its validating decoder.

Every payload either becomes one of :class:`Order`, :class:`Visit`, :class:`Ticket`,
:class:`Outcome`, :class:`RetentionAction` or raises :class:`DecodeError` with a reason
code from :data:`REASONS`; no other exception escapes :func:`decode_event`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from detectors.errors import DecodeError

REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "bad_type",
    "bad_value",
    "nan_or_inf",
    "duplicate_key",
    "ts_out_of_range",
    "oversize",
    "unknown_event_type",
)
"""Every rejection reason code the decoder can give."""

MAX_EVENT_BYTES = 64 * 1024
TS_MIN_MS = 631_152_000_000  # 1990-01-01T00:00:00Z: epoch seconds read as ms fall before
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=256)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
"""Amounts: non-negative and below 10^12 (larger is a unit or parsing error upstream)."""
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Timestamp = int | Annotated[datetime, msgspec.Meta(tz=True)]


class _Event(msgspec.Struct, tag_field="event_type", kw_only=True):
    event_id: Id
    customer_id: Id
    ts: Timestamp


class Order(_Event, tag="order", kw_only=True):
    """A purchase, or a later change of one (same ``order_id``)."""

    order_id: Id
    amount: NonNegFloat
    currency: Text | None = None
    items: NonNegInt = 0
    discount: NonNegFloat = 0.0
    status: Literal["placed", "paid", "cancelled", "refunded", "returned"] = "paid"
    channel: Text | None = None


class Visit(_Event, tag="visit", kw_only=True):
    """A contact without a purchase: web or app session, store or service visit, call."""

    channel: Literal["web", "app", "store", "service", "call"] = "web"
    duration_s: NonNegFloat = 0.0
    pages: NonNegInt = 0
    intent: Literal["browse", "search", "cart", "checkout", "inquiry"] | None = None
    action: Text | None = None


TicketCategory = Literal[
    "billing", "price", "quality", "delivery", "service", "technical", "account", "other"
]


class Ticket(_Event, tag="ticket", kw_only=True):
    """A support ticket's life: opened, responded, resolved, reopened, closed."""

    ticket_id: Id
    status: Literal["opened", "responded", "resolved", "reopened", "closed"]
    category: (
        Literal[
            "billing", "price", "quality", "delivery", "service", "technical", "account", "other"
        ]
        | None
    ) = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    satisfaction: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    sentiment: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None


class Outcome(_Event, tag="outcome", kw_only=True):
    """A known end or renewal of the relationship (optional ``customer-outcomes`` input)."""

    event_id: Id = ""
    outcome: Literal["churned", "retained"]


class RetentionAction(_Event, tag="action", kw_only=True):
    """What marketing automation did with an alert (optional ``retention-actions`` input).

    Without an ``event_id`` the report's id is ``alert_id/action/status``: a redelivered
    report is dropped as a duplicate while the steps of one action (sent, then delivered
    or failed) stay apart. Send an ``event_id`` to report the same step twice.

    >>> a = decode_event(b'{"event_type":"action","alert_id":"a1","customer_id":"c1",'
    ...                  b'"ts":1704153600000,"action":"targeted_offer","status":"sent"}')
    >>> (type(a).__name__, a.event_id)
    ('RetentionAction', 'a1/targeted_offer/sent')
    """

    event_id: Id = ""
    alert_id: Id
    action: Id
    """The action taken, ideally a playbook action code (others are counted as ``other``)."""
    status: Literal["sent", "delivered", "failed"]


Event = Order | Visit | Ticket | Outcome | RetentionAction

_FLOAT_FIELDS = ("amount", "discount", "duration_s", "sentiment")


def event_type(event: Event) -> str:
    """The ``event_type`` of a decoded event (its tag in the contract).

    >>> event_type(Outcome(customer_id="c1", ts=0, outcome="retained"))
    'outcome'
    """
    return str(type(event).__struct_config__.tag)


def _reject_constant(token: str) -> float:
    raise DecodeError("nan_or_inf", f"non-finite number {token} is not allowed")


def _pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DecodeError("duplicate_key", f"key {dup!r} appears more than once")
    return obj


_json_decoder = json.JSONDecoder(object_pairs_hook=_pairs_to_dict, parse_constant=_reject_constant)


def _classify(exc: msgspec.ValidationError) -> DecodeError:
    msg = str(exc)
    if msg.startswith("Object missing required field"):
        return DecodeError("missing_field", msg)
    if "event_type" in msg and msg.startswith("Invalid value"):
        return DecodeError("unknown_event_type", msg)
    if msg.startswith("Expected `") and "`, got `" in msg:
        return DecodeError("bad_type", msg)
    return DecodeError("bad_value", msg)


def parse_json(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Parse one JSON object strictly: size limit, UTF-8, no duplicate keys, no NaN.

    >>> parse_json(b'{"a": 1}')
    {'a': 1}
    >>> parse_json(b'{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    detectors.errors.DecodeError: duplicate_key: key 'a' appears more than once
    """
    size = len(raw) if isinstance(raw, bytes | bytearray) else len(raw.encode("utf-8", "replace"))
    if size > max_bytes:
        raise DecodeError("oversize", f"{size} bytes exceeds the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        obj = _json_decoder.decode(text)
    except DecodeError:
        raise
    except UnicodeDecodeError as exc:
        raise DecodeError("not_json", f"payload is not UTF-8 ({exc.reason})") from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError("not_json", f"payload is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise DecodeError("not_object", f"payload is a JSON {type(obj).__name__}, not an object")
    return obj


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _to_millis(ts: int | datetime) -> int:
    if isinstance(ts, datetime):
        return (ts - _EPOCH) // _MS
    return ts


class _Stamp(msgspec.Struct):
    ts: Timestamp


_STAMP = msgspec.json.Decoder(_Stamp)


def event_time(raw: bytes) -> int | None:
    """The event time of one raw event in epoch ms, reading nothing else; ``None`` if it
    has no ``ts`` that decodes. For putting files in order: :func:`decode_event` still
    judges every line.

    >>> event_time(b'{"ts":"2024-01-02T00:00:00Z","x":[1]}'), event_time(b'{"ts":7}')
    (1704153600000, 7)
    >>> event_time(b'not json'), event_time(b'{"ts":"yesterday"}')
    (None, None)
    """
    try:
        return _to_millis(_STAMP.decode(raw).ts)
    except msgspec.DecodeError:
        return None


def validate(obj: dict[str, Any], default_type: str | None = None) -> Event:
    """Turn a parsed JSON object into a typed event, or raise :class:`DecodeError`.

    ``default_type`` fills a missing ``event_type`` (a per-type topic).
    """
    if default_type is not None and "event_type" not in obj:
        obj = {**obj, "event_type": default_type}
    for name in _FLOAT_FIELDS:
        value = obj.get(name)
        if type(value) is float and not math.isfinite(value):
            raise DecodeError("nan_or_inf", f"field {name!r} is not a finite number")
    try:
        event: Event = msgspec.convert(obj, Event, strict=True)
    except msgspec.ValidationError as exc:
        raise _classify(exc) from None
    ms = _to_millis(event.ts)
    if not TS_MIN_MS <= ms < TS_MAX_MS:
        raise DecodeError(
            "ts_out_of_range",
            f"ts {event.ts!r} is outside 1990-01-01..2100-01-01 (integer ts is epoch milliseconds)",
        )
    event.ts = ms
    if isinstance(event, RetentionAction) and not event.event_id:
        event.event_id = f"{event.alert_id}/{event.action}/{event.status}"
    return event


def decode_event(
    raw: bytes | str, default_type: str | None = None, max_bytes: int = MAX_EVENT_BYTES
) -> Event:
    """Decode one message value into an event; raises only :class:`DecodeError`.

    >>> e = decode_event(b'{"event_id":"e1","event_type":"order","customer_id":"c1",'
    ...                  b'"ts":"2024-01-02T00:00:00Z","order_id":"o1","amount":12.5}')
    >>> (type(e).__name__, e.ts, e.amount, e.status)
    ('Order', 1704153600000, 12.5, 'paid')
    >>> decode_event(b'{"event_type":"fax"}')
    Traceback (most recent call last):
    ...
    detectors.errors.DecodeError: unknown_event_type: Invalid value 'fax' - at `$.event_type`
    """
    try:
        return validate(parse_json(raw, max_bytes), default_type)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: only DecodeError escapes
        raise DecodeError("bad_value", f"{type(exc).__name__}: {exc}") from None
