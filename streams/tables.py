"""The engine's state in Faust tables: a per-partition store adapter and model checkpoints.

Faust writes a table's changelog to the partition of the record being
processed, so a shard only ever writes keys of its own partition, from
inside the stream. Writes are buffered per record and flushed after the
record's alerts are acknowledged: a crash between the two re-sends the same
alerts (same ``alert_id``) instead of losing them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, MutableMapping
from typing import Any

from detectors import CustomerState, EngineConfig, partition_for
from detectors.model import ShardModel


def split_value(raw: bytes) -> tuple[tuple[int, ...], bytes]:
    """A table value: ``u8 k, k x i64`` applied-offset guards, then the state bytes.

    >>> split_value(join_value((5, -1), b"state"))
    ((5, -1), b'state')
    """
    k = raw[0]
    end = 1 + 8 * k
    return struct.unpack(f">{k}q", raw[1:end]), raw[end:]


def join_value(guards: tuple[int, ...], state: bytes) -> bytes:
    return struct.pack(f">B{len(guards)}q", len(guards), *guards) + state


class TableStore(MutableMapping[str, CustomerState]):
    """One partition's customers in the changelogged ``customer-state`` table.

    Values are ``CustomerState.to_bytes()`` behind a small header: per input
    topic, the offset of the last record applied to the customer. After a
    crash, records up to that offset are redeliveries and are skipped, however
    many there are (the engine's event-id window only covers the last few).
    """

    def __init__(
        self, table: MutableMapping[str, bytes], partition: int, partitions: int, sources: int = 1
    ) -> None:
        self.table = table
        self.partition = partition
        self.partitions = partitions
        self.sources = sources
        self.pending: dict[str, CustomerState] = {}
        self.guards: dict[str, tuple[int, ...]] = {}

    def _read(self, key: str) -> tuple[tuple[int, ...], bytes] | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        guards, state = split_value(raw)
        self.guards[key] = guards
        return guards, state

    def __getitem__(self, key: str) -> CustomerState:
        state = self.pending.get(key)
        if state is not None:
            return state
        found = self._read(key)
        if found is None:
            raise KeyError(key)
        return CustomerState.from_bytes(found[1])

    def applied(self, key: str, source: int) -> int:
        """Offset of the last record of input ``source`` applied to ``key`` (-1: none)."""
        guards = self.guards.get(key)
        if guards is None:
            found = self._read(key)
            guards = found[0] if found else ()
        return guards[source] if source < len(guards) else -1

    def mark(self, key: str, source: int, offset: int) -> None:
        """Record that the record at ``offset`` of ``source`` is applied (written on flush)."""
        guards = list(self.guards.get(key) or ())
        guards += [-1] * (self.sources - len(guards))
        guards[source] = offset
        self.guards[key] = tuple(guards)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: CustomerState) -> None:
        self.pending[key] = value

    def __delitem__(self, key: str) -> None:
        self.pending.pop(key, None)
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        """Keys of this partition (the table may also hold other partitions' keys)."""
        n, p = self.partitions, self.partition
        for key in list(self.table.keys()):
            if key not in self.pending and (n == 1 or partition_for(key, n) == p):
                yield key
        yield from list(self.pending)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        """Write the buffered states to the table (inside the stream); returns how many."""
        n = len(self.pending)
        for key, state in self.pending.items():
            guards = self.guards.get(key)
            if guards is None:
                guards = self._read(key)[0] if key in self.table else ()  # type: ignore[index]
            self.table[key] = join_value(guards or (-1,) * self.sources, state.to_bytes())
        self.pending.clear()
        self.guards.clear()
        return n

    def discard(self) -> None:
        """Forget buffered writes (the record that made them was dead-lettered)."""
        self.pending.clear()
        self.guards.clear()


def model_key(partition: int) -> str:
    return str(partition)


def load_model(table: MutableMapping[str, bytes], partition: int, cfg: EngineConfig) -> ShardModel:
    """The partition's last model checkpoint, or a fresh model."""
    raw = table.get(model_key(partition))
    return ShardModel.from_bytes(raw, cfg) if raw else ShardModel(cfg)
