"""The pure parts of the webhook forwarder (``churnwatch forward``): no I/O, no clocks.

- :func:`sign` / :func:`verify`: the signature scheme, for senders and receivers;
- :func:`backoff_delay`, :func:`parse_retry_after`, :func:`decide`: when to retry;
- :class:`KeyedQueue`: one delivery at a time per customer, a bounded number overall;
- :class:`OffsetTracker`: the offset that may be committed, per partition;
- :class:`SettledLog`: alert ids acknowledged and records dead-lettered, bounded.

Signature scheme: the sender puts the Unix time in seconds in
``X-Churnwatch-Timestamp`` and ``sha256=`` + the hex HMAC-SHA256, keyed with
the shared secret, of ``<timestamp> "." <body bytes>`` in
``X-Churnwatch-Signature``. A receiver recomputes it over the raw body,
compares in constant time and rejects timestamps more than a few minutes
away from its own clock (a replayed request carries an old timestamp).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from email.utils import parsedate_to_datetime
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Churnwatch-Signature"
TIMESTAMP_HEADER = "X-Churnwatch-Timestamp"
ALERT_ID_HEADER = "X-Churnwatch-Alert-Id"
ATTEMPT_HEADER = "X-Churnwatch-Attempt"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Decision = Literal["ack", "retry", "reject"]


def signed_payload(timestamp: int, body: bytes) -> bytes:
    """The bytes the signature covers: the timestamp, a dot, the body.

    >>> signed_payload(1700000000, b'{"a":1}')
    b'1700000000.{"a":1}'
    """
    return str(int(timestamp)).encode("ascii") + b"." + body


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Churnwatch-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds).

    >>> sign(b"s3cret", 1700000000, b"{}")[:7]
    'sha256='
    """
    digest = hmac.new(secret, signed_payload(timestamp, body), hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(
    secret: bytes,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether a received request is authentic and fresh: what a receiver checks.

    ``timestamp`` and ``signature`` are the raw header values (``None`` when
    missing), ``body`` the raw request body (before any JSON parsing), ``now``
    the receiver's Unix time.

    >>> sig = sign(b"s3cret", 1700000000, b"{}")
    >>> verify(b"s3cret", b"{}", "1700000000", sig, now=1700000010)
    True
    >>> verify(b"s3cret", b"{ }", "1700000000", sig, now=1700000010)
    False
    >>> verify(b"s3cret", b"{}", "1700000000", sig, now=1700009999)
    False
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    ts = int(timestamp)
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature.strip())


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...).

    Exponential with "equal jitter": the ceiling ``min(cap, base * 2**(attempt-1))``
    times a factor uniform in [0.5, 1], so retries of many alerts spread out
    and never wait less than half the ceiling.

    >>> backoff_delay(1, 0.5, 60, rng=lambda: 1.0), backoff_delay(3, 0.5, 60, rng=lambda: 0.0)
    (0.5, 1.0)
    >>> backoff_delay(30, 0.5, 60, rng=lambda: 1.0)
    60.0
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    return ceiling * (0.5 + 0.5 * rng())


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (delta seconds or an HTTP date).

    >>> parse_retry_after("7", now=0), parse_retry_after("soon", now=0)
    (7.0, None)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30)
    30.0
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_wait(
    attempt: int,
    retry_after: float | None,
    *,
    base_s: float,
    cap_s: float,
    retry_after_max_s: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """The wait before the next attempt: ``Retry-After`` when the receiver gave one
    (at most ``retry_after_max_s``), else :func:`backoff_delay`.

    >>> retry_wait(1, 12.0, base_s=0.5, cap_s=60, retry_after_max_s=300)
    12.0
    >>> retry_wait(1, 9999.0, base_s=0.5, cap_s=60, retry_after_max_s=300)
    300.0
    """
    if retry_after is not None:
        return float(min(max(retry_after, 0.0), retry_after_max_s))
    return backoff_delay(attempt, base_s, cap_s, rng)


def decide(status: int | None) -> Decision:
    """What an attempt's outcome means: ``status`` is the HTTP status, ``None`` for a
    connection error or timeout.

    2xx acknowledges; 429, 5xx, timeouts and connection errors are retried;
    anything else (other 4xx, redirects, 1xx) is rejected and dead-lettered at once.

    >>> [decide(s) for s in (200, 204, 429, 503, None, 400, 404, 301)]
    ['ack', 'ack', 'retry', 'retry', 'retry', 'reject', 'reject', 'reject']
    """
    if status is None or status == 429 or 500 <= status <= 599:
        return "retry"
    if 200 <= status <= 299:
        return "ack"
    return "reject"


def alert_identity(value: bytes | None) -> tuple[str | None, str | None]:
    """``(alert_id, customer_id)`` of an alert record; ``None`` for what is missing or bad.

    >>> alert_identity(b'{"alert_id":"a1","customer_id":"c1"}')
    ('a1', 'c1')
    >>> alert_identity(b'not json'), alert_identity(b'{"alert_id":7}')
    ((None, None), (None, None))
    >>> alert_identity(json.dumps({"alert_id": "a\\r\\nX-Evil: 1", "customer_id": "c"}).encode())
    (None, 'c')
    """
    try:
        obj = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    aid, cid = obj.get("alert_id"), obj.get("customer_id")
    good_aid = aid if isinstance(aid, str) and _header_safe(aid) else None
    return good_aid, cid if isinstance(cid, str) and cid else None


def _header_safe(text: str) -> bool:
    """Usable as an HTTP header value: 1-256 printable ASCII characters."""
    return 0 < len(text) <= 256 and text.isascii() and text.isprintable()


def url_host(url: str) -> str:
    """The host (and port) of a URL: what may be shown of it. Paths and query strings
    of webhook URLs often carry tokens, and user info carries passwords.

    >>> url_host("https://user:pw@hooks.example.com:8443/T0/B0/XyZ?token=t")
    'hooks.example.com:8443'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


class KeyedQueue(Generic[K, V]):
    """FIFO per key, at most one item per key out at a time, at most ``limit`` out overall.

    ``push`` queues an item, ``take`` hands out the next item that may start
    (``None`` when none may), ``finish(key)`` says the key's item is done.
    Keys become ready in the order their items arrived.

    >>> q = KeyedQueue(limit=2)
    >>> for key, item in [("a", 1), ("a", 2), ("b", 3), ("c", 4)]:
    ...     q.push(key, item)
    >>> q.take(), q.take(), q.take()
    (1, 3, None)
    >>> q.finish("a"); q.take(), q.take()
    (4, None)
    >>> q.finish("c"); q.take()
    2
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._queues: dict[K, deque[V]] = {}
        self._ready: deque[K] = deque()
        self._busy: set[K] = set()

    def push(self, key: K, item: V) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            if key not in self._busy:
                self._ready.append(key)
        queue.append(item)

    def take(self) -> V | None:
        if len(self._busy) >= self.limit or not self._ready:
            return None
        key = self._ready.popleft()
        queue = self._queues[key]
        item = queue.popleft()
        if not queue:
            del self._queues[key]
        self._busy.add(key)
        return item

    def take_all(self) -> Iterator[V]:
        """Every item that may start now."""
        while (item := self.take()) is not None:
            yield item

    def finish(self, key: K) -> None:
        self._busy.discard(key)
        if key in self._queues:
            self._ready.append(key)

    def drop(self, keep: Callable[[V], bool]) -> list[V]:
        """Remove the queued (not started) items for which ``keep`` is false; returns them."""
        dropped: list[V] = []
        for key in list(self._queues):
            queue = self._queues[key]
            kept = deque(item for item in queue if keep(item))
            dropped += [item for item in queue if not keep(item)]
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        self._ready = deque(k for k in self._ready if k in self._queues)
        return dropped

    @property
    def running(self) -> int:
        return len(self._busy)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())


class OffsetTracker:
    """Offsets of one partition received and done; :attr:`committable` is the offset to
    commit: one past the end of the contiguous done prefix.

    Offsets must be added in increasing order (gaps are fine: compaction, markers).

    >>> t = OffsetTracker()
    >>> for o in (10, 11, 13):
    ...     t.add(o)
    >>> t.done(11); t.committable is None
    True
    >>> t.done(10); t.committable
    12
    >>> t.done(13); t.committable, t.pending
    (14, 0)
    """

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self.committable: int | None = None

    def add(self, offset: int) -> None:
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} is not after {self._order[-1]}")
        if self.committable is not None and offset < self.committable:
            raise ValueError(f"offset {offset} is below the committable {self.committable}")
        self._order.append(offset)

    def done(self, offset: int) -> None:
        if not self._order or offset < self._order[0]:
            return  # already behind the watermark (or never added): nothing to do
        self._done.add(offset)
        while self._order and self._order[0] in self._done:
            first = self._order.popleft()
            self._done.discard(first)
            self.committable = first + 1

    @property
    def pending(self) -> int:
        """Offsets received and not yet behind the watermark."""
        return len(self._order)


class SettledLog:
    """What the forwarder has settled, bounded by age and count: alert ids acknowledged by
    the receiver, and the positions (topic, partition, offset) of records dead-lettered.

    An acknowledged id is never posted again, whichever record carries it. A
    dead-lettered record is not retried when it is read again (after a restart
    before its offset was committed), but a new copy of that alert is.
    Entries older than ``max_age_ms`` go, and the oldest beyond ``max_ids``.

    >>> log = SettledLog(max_age_ms=1000, max_ids=10)
    >>> log.ack("a1", at_ms=5000); log.dead(("alerts", 0, 7), at_ms=5000)
    >>> "a1" in log, log.is_dead(("alerts", 0, 7)), log.is_dead(("alerts", 0, 8))
    (True, True, False)
    >>> log.prune(now_ms=6500); "a1" in log
    False
    """

    def __init__(self, max_age_ms: int, max_ids: int) -> None:
        self.max_age_ms = max_age_ms
        self.max_ids = max_ids
        self._acked: OrderedDict[str, int] = OrderedDict()
        self._dead: OrderedDict[tuple[str, int, int], int] = OrderedDict()

    def ack(self, alert_id: str, at_ms: int) -> None:
        if alert_id not in self._acked:
            self._acked[alert_id] = at_ms
            _trim(self._acked, self.max_ids)

    def dead(self, position: tuple[str, int, int], at_ms: int) -> None:
        if position not in self._dead:
            self._dead[position] = at_ms
            _trim(self._dead, self.max_ids)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._acked

    def is_dead(self, position: tuple[str, int, int]) -> bool:
        return position in self._dead

    def prune(self, now_ms: int) -> None:
        """Forget entries older than ``max_age_ms`` (oldest first, as recorded)."""
        oldest = now_ms - self.max_age_ms
        for entries in (self._acked, self._dead):
            while entries and next(iter(entries.values())) < oldest:
                entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._acked) + len(self._dead)


def _trim(entries: OrderedDict[K, int], limit: int) -> None:
    while len(entries) > limit:
        entries.popitem(last=False)
