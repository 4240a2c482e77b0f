"""Due-time index: which customers must be re-evaluated, without scanning them all.

A timer wheel of hourly buckets: scheduling, rescheduling and popping cost
O(1) per customer, and a sweep touches only the buckets that came due.
Popped customers come out sorted by (due time, customer id), so a sweep is
deterministic whatever the hash seed.
"""

from __future__ import annotations

import heapq

from detectors.config import HOUR_MS


class DueIndex:
    """Customers by the time they are next due.

    >>> idx = DueIndex()
    >>> for key, hour in (("a", 5), ("b", 2), ("c", 9)):
    ...     idx.schedule(key, hour * HOUR_MS)
    >>> idx.schedule("a", 3 * HOUR_MS)
    >>> idx.pop_due(4 * HOUR_MS), len(idx)
    (['b', 'a'], 1)
    """

    def __init__(self, bucket_ms: int = HOUR_MS) -> None:
        self.bucket_ms = bucket_ms
        self._due: dict[str, int] = {}
        self._buckets: dict[int, set[str]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return len(self._due)

    def due_at(self, key: str) -> int:
        return self._due.get(key, 0)

    def schedule(self, key: str, due: int) -> None:
        """(Re)schedule ``key`` at ``due``; ``due <= 0`` unschedules it."""
        old = self._due.get(key)
        if old == due:
            return
        if old is not None:
            bucket = self._buckets.get(old // self.bucket_ms)
            if bucket is not None:
                bucket.discard(key)
        if due <= 0:
            self._due.pop(key, None)
            return
        self._due[key] = due
        b = due // self.bucket_ms
        bucket = self._buckets.get(b)
        if bucket is None:
            self._buckets[b] = bucket = set()
            heapq.heappush(self._heap, b)
        bucket.add(key)

    def pop_due(self, now: int) -> list[str]:
        """Remove and return every key due at or before ``now``, earliest first."""
        out: list[tuple[int, str]] = []
        last = now // self.bucket_ms
        while self._heap and self._heap[0] <= last:
            b = self._heap[0]
            bucket = self._buckets[b]
            if b < last:
                heapq.heappop(self._heap)
                del self._buckets[b]
                out.extend((self._due.pop(k), k) for k in bucket)
            else:
                ready = [k for k in bucket if self._due[k] <= now]
                for k in ready:
                    bucket.discard(k)
                    out.append((self._due.pop(k), k))
                if not bucket:
                    heapq.heappop(self._heap)
                    del self._buckets[b]
                break
        out.sort()
        return [k for _, k in out]

    def next_due(self) -> int:
        """Earliest due time, 0 when empty."""
        while self._heap:
            bucket = self._buckets[self._heap[0]]
            if bucket:
                return min(self._due[k] for k in bucket)
            del self._buckets[heapq.heappop(self._heap)]
        return 0
