"""Due-time index: which customers must be re-evaluated, without scanning them all.

A binary heap of ``(due, customer)`` with lazy deletion: (re)scheduling is
O(log n), popping the earliest due customer is O(log n), and a sweep touches
only the customers that came due, earliest first and ties broken by id, so a
sweep is deterministic whatever the hash seed. Stale heap entries are dropped
when popped, and the heap is rebuilt when they outnumber the live ones.
"""

from __future__ import annotations

import heapq


class DueIndex:
    """Customers by the time they are next due.

    >>> idx = DueIndex()
    >>> for key, due in (("a", 5), ("b", 2), ("c", 9)):
    ...     idx.schedule(key, due)
    >>> idx.schedule("a", 3)
    >>> idx.pop_due(4), len(idx), idx.next_due()
    (['b', 'a'], 1, 9)
    """

    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def due_at(self, key: str) -> int:
        return self._due.get(key, 0)

    def schedule(self, key: str, due: int) -> None:
        """(Re)schedule ``key`` at ``due``; ``due <= 0`` unschedules it."""
        if self._due.get(key) == due:
            return
        if due <= 0:
            self._due.pop(key, None)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(d, k) for k, d in self._due.items()]
            heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    def pop_next(self, now: int) -> tuple[int, str] | None:
        """Remove and return the earliest ``(due, key)`` if it is due at or before ``now``."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        due, key = heapq.heappop(self._heap)
        del self._due[key]
        return due, key

    def pop_due(self, now: int) -> list[str]:
        """Remove and return every key due at or before ``now``, earliest first."""
        out = []
        while (item := self.pop_next(now)) is not None:
            out.append(item[1])
        return out

    def next_due(self) -> int:
        """Earliest due time, 0 when empty."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else 0
