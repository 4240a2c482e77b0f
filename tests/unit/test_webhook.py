"""The webhook forwarder's pure parts: signature, backoff, retry decisions, per-customer
ordering, the commit watermark and the bounded record of settled deliveries."""

from __future__ import annotations

import doctest
import hashlib
import hmac
import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streams.webhook as webhook
from streams.webhook import (
    KeyedQueue,
    OffsetTracker,
    SettledLog,
    alert_identity,
    backoff_delay,
    decide,
    parse_retry_after,
    retry_wait,
    sign,
    url_host,
    verify,
)

pytestmark = pytest.mark.unit

secrets = st.binary(min_size=1, max_size=64)
bodies = st.binary(max_size=2048)
timestamps = st.integers(min_value=0, max_value=4_102_444_800)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(webhook)
    assert result.attempted >= 10 and result.failed == 0


@given(secrets, timestamps, bodies)
def test_signature_is_hmac_sha256_of_timestamp_dot_body(
    secret: bytes, ts: int, body: bytes
) -> None:
    expected = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign(secret, ts, body) == "sha256=" + expected
    assert verify(secret, body, str(ts), "sha256=" + expected, now=ts)


@given(secrets, timestamps, bodies, st.data())
def test_verification_rejects_any_change(secret: bytes, ts: int, body: bytes, data) -> None:
    sig = sign(secret, ts, body)
    other_body = data.draw(bodies.filter(lambda b: b != body))
    other_secret = data.draw(secrets.filter(lambda s: s != secret))
    assert not verify(secret, other_body, str(ts), sig, now=ts)
    assert not verify(other_secret, body, str(ts), sig, now=ts)
    assert not verify(secret, body, str(ts + 1), sig, now=ts)  # the timestamp is signed
    assert not verify(secret, body, str(ts), sig.upper(), now=ts)
    assert not verify(secret, body, None, sig, now=ts)
    assert not verify(secret, body, str(ts), None, now=ts)
    assert not verify(secret, body, "-1", sig, now=ts)


def test_the_readme_verification_snippet_accepts_what_we_sign() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    snippet = next(b for b in blocks if "def verify(" in b and "compare_digest" in b)
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    readme_verify = namespace["verify"]
    assert callable(readme_verify)
    now = int(time.time())
    body = b'{"alert_id":"a1"}'
    sig = sign(b"k3y", now, body)
    assert readme_verify(b"k3y", body, str(now), sig)
    assert not readme_verify(b"k3y", body + b" ", str(now), sig)
    assert not readme_verify(b"other", body, str(now), sig)
    assert not readme_verify(b"k3y", body, str(now - 301), sign(b"k3y", now - 301, body))


def test_verification_rejects_stale_and_future_timestamps() -> None:
    sig = sign(b"k", 1_000_000, b"{}")
    assert verify(b"k", b"{}", "1000000", sig, now=1_000_300)
    assert not verify(b"k", b"{}", "1000000", sig, now=1_000_301)
    assert not verify(b"k", b"{}", "1000000", sig, now=999_699)
    assert verify(b"k", b"{}", "1000000", sig, now=1_000_600, tolerance_s=600)


@given(
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0.001, max_value=10),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_half_and_full_ceiling(
    attempt: int, base: float, cap: float, u: float
) -> None:
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    delay = backoff_delay(attempt, base, cap, rng=lambda: u)
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_backoff_grows_exponentially_then_caps_and_jitters() -> None:
    top = [backoff_delay(n, 0.5, 60, rng=lambda: 1.0) for n in range(1, 10)]
    assert top == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    rng = random.Random(1)
    spread = {round(backoff_delay(4, 0.5, 60, rng=rng.random), 6) for _ in range(100)}
    assert len(spread) > 50 and min(spread) >= 2.0 and max(spread) <= 4.0


def test_retry_after_wins_over_backoff_up_to_a_cap() -> None:
    assert parse_retry_after("3", now=0) == 3.0
    assert parse_retry_after(" 120 ", now=0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("-1", now=0) is None
    assert parse_retry_after("", now=0) is None
    assert parse_retry_after(None, now=0) is None
    kw = {"base_s": 0.5, "cap_s": 60.0, "retry_after_max_s": 30.0, "rng": lambda: 1.0}
    assert retry_wait(1, 5.0, **kw) == 5.0
    assert retry_wait(1, 500.0, **kw) == 30.0
    assert retry_wait(3, None, **kw) == 2.0


@pytest.mark.parametrize(
    ("status", "decision"),
    [
        (200, "ack"),
        (201, "ack"),
        (204, "ack"),
        (299, "ack"),
        (None, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (599, "retry"),
        (400, "reject"),
        (401, "reject"),
        (404, "reject"),
        (409, "reject"),
        (422, "reject"),
        (301, "reject"),
        (100, "reject"),
    ],
)
def test_which_outcomes_are_retried(status: int | None, decision: str) -> None:
    assert decide(status) == decision


def test_alert_identity_and_url_host() -> None:
    assert alert_identity(b'{"alert_id":"a","customer_id":"c","x":[1]}') == ("a", "c")
    assert alert_identity(b'{"alert_id":"","customer_id":"c"}') == (None, "c")
    assert alert_identity(b"[1]") == (None, None)
    assert alert_identity(b"\xff\xfe") == (None, None)
    assert alert_identity(None) == (None, None)
    assert url_host("http://127.0.0.1:8080/hook?sig=abc") == "127.0.0.1:8080"
    assert url_host("https://hooks.example.com/secret/path") == "hooks.example.com"


# -- per-customer ordering ---------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from("abcde")),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=10)),
    ),
    max_size=80,
)


@given(st.integers(min_value=1, max_value=4), ops)
def test_keyed_queue_one_per_key_in_order_within_the_limit(limit: int, script) -> None:
    q: KeyedQueue[str, tuple[str, int]] = KeyedQueue(limit)
    pushed: dict[str, list[int]] = {}
    started: dict[str, list[int]] = {}
    running: list[tuple[str, int]] = []
    n = 0

    def start_all() -> None:
        for key, seq in q.take_all():
            assert all(k != key for k, _ in running), "two items of one key at once"
            running.append((key, seq))
            started.setdefault(key, []).append(seq)
        assert len(running) == q.running <= limit
        # nothing that may start is left waiting
        waiting = {k for k in pushed if len(started.get(k, [])) < len(pushed[k])}
        if len(running) < limit:
            assert waiting <= {k for k, _ in running}

    for op, arg in script:
        if op == "push":
            pushed.setdefault(arg, []).append(n)
            q.push(arg, (arg, n))
            n += 1
        elif running:
            key, _ = running.pop(arg % len(running))
            q.finish(key)
        start_all()
    while running:
        key, _ = running.pop(0)
        q.finish(key)
        start_all()
    assert started == pushed  # every item started, each key's items in push order
    assert q.queued == 0


def test_keyed_queue_drop_removes_only_queued_items() -> None:
    q: KeyedQueue[str, int] = KeyedQueue(limit=1)
    for key, item in [("a", 1), ("a", 2), ("b", 3), ("b", 4)]:
        q.push(key, item)
    assert q.take() == 1
    assert q.drop(lambda item: item % 2 == 1) == [2, 4]
    assert q.take() is None  # the limit: "a" is still running
    q.finish("a")
    assert list(q.take_all()) == [3]
    q.finish("b")
    assert q.take() is None and q.queued == 0


# -- the commit watermark ----------------------------------------------------------------


@st.composite
def offsets_and_order(draw) -> tuple[list[int], list[int]]:
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    start = draw(st.integers(min_value=0, max_value=1000))
    offsets = [start + sum(gaps[: i + 1]) for i in range(len(gaps))]
    order = draw(st.permutations(offsets))
    return offsets, list(order)


@given(offsets_and_order(), st.integers(min_value=0, max_value=60))
def test_watermark_only_covers_a_contiguous_done_prefix(case, received: int) -> None:
    offsets, order = case
    t = OffsetTracker()
    for o in offsets:
        t.add(o)
    done: set[int] = set()
    previous = None
    for o in order:
        t.done(o)
        done.add(o)
        prefix = 0
        while prefix < len(offsets) and offsets[prefix] in done:
            prefix += 1
        expected = offsets[prefix - 1] + 1 if prefix else None
        assert t.committable == expected
        if t.committable is not None:
            assert all(x in done for x in offsets if x < t.committable)  # nothing skipped
            assert previous is None or t.committable >= previous  # never moves back
        previous = t.committable
        assert t.pending == len(offsets) - prefix
    assert t.committable == offsets[-1] + 1


def test_watermark_with_records_arriving_while_others_finish() -> None:
    t = OffsetTracker()
    t.add(5)
    t.done(5)
    assert t.committable == 6
    t.add(6)
    t.add(9)
    t.done(9)
    assert t.committable == 6
    t.done(6)
    assert t.committable == 10
    with pytest.raises(ValueError, match="offset 9"):
        t.add(9)
    t.done(3)  # behind the watermark: ignored
    assert t.committable == 10


# -- the settled record ------------------------------------------------------------------


def test_settled_log_is_bounded_by_count_and_age() -> None:
    log = SettledLog(max_age_ms=10_000, max_ids=3)
    for i in range(5):
        log.ack(f"a{i}", at_ms=1000 * i)
    assert [f"a{i}" in log for i in range(5)] == [False, False, True, True, True]
    log.ack("a2", at_ms=99_999)  # already known: keeps its first time
    log.dead(("t", 0, 1), at_ms=3000)
    log.dead(("t", 0, 2), at_ms=20_000)
    log.prune(now_ms=13_500)
    assert "a2" not in log and "a3" not in log and "a4" in log
    assert not log.is_dead(("t", 0, 1)) and log.is_dead(("t", 0, 2))
    assert len(log) == 2
