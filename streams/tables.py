"""The engine's state in a Faust table, written in atomic checkpoints.

Each partition's customers live in the changelogged ``customer-state`` table,
keyed by customer id. A shard also has state of its own (the model, the
clock) and the worker must know which input records the stored state already
includes. All three must move together, or a crash leaves a model a step ahead
of or behind its customers.

So a partition is written in *checkpoints*, never record by record. After a
batch of records, once its alerts and dead letters are acknowledged, one
changelog message under the partition's checkpoint key carries the model,
the clock, the last applied offset of each input topic and every customer
state the batch changed; then each of those states follows under its own key
(for compaction, which keeps only the newest checkpoint), and only once the
broker has them all is the local store updated. Any prefix of the changelog
is therefore consistent: a restarted worker takes the newest checkpoint, lays
its states over the per-customer values, and skips input records at or below
its offsets. Alerts of a batch whose checkpoint was lost are re-sent with the
same ``alert_id``.

The local store must agree with the changelog, and two things guard that.
:func:`guard_changelog` keeps faust from writing a changelog record into the local
store that is not newer than what the store already holds: faust's recovery keeps the
records that arrive after it has declared itself done (beyond the end offset the broker
reported) and applies them at the start of its *next* recovery, over the states the
worker wrote in between. And each checkpoint carries a *digest* of the partition's
customers (:func:`state_digest`, combined by XOR), which a worker restoring the
partition checks against what its store holds (:meth:`PartitionStore.verify`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import msgspec

from detectors import ChurnwatchError, CustomerState, partition_for

CHECKPOINT_PREFIX = "\x00checkpoint/"
FENCE_PREFIX = "\x00fence/"


DELETED = b""
"""A deleted customer in a checkpoint's states and in the local store's pending writes."""


def checkpoint_key(partition: int) -> str:
    return f"{CHECKPOINT_PREFIX}{partition}"


def fence_key(partition: int) -> str:
    return f"{FENCE_PREFIX}{partition}"


def is_customer_key(key: str) -> bool:
    return not key.startswith("\x00")


class Checkpoint(msgspec.Struct, array_like=True):
    """A partition's consistent state as of ``offsets`` (one changelog message)."""

    version: int
    offsets: list[tuple[str, int]]
    """Per input topic, the offset of the last record the state includes."""
    clock: int
    model: bytes
    states: list[tuple[str, bytes]]
    ledger: dict[str, int] = msgspec.field(default_factory=dict)
    """Input records of the partition's history by outcome (processed, duplicate,
    dead_lettered), as of ``offsets``. Absent in checkpoints of older workers."""
    digest: int | None = None
    """XOR of :func:`state_digest` over every customer of the partition as of ``offsets``
    (``None`` in checkpoints of older workers: not checked)."""


class StateInconsistent(ChurnwatchError):
    """A partition's local store disagrees with its newest checkpoint."""


def state_digest(key: str, raw: bytes) -> int:
    """A customer's contribution to a partition digest (64 bits).

    >>> state_digest("c1", b"x") == state_digest("c1", b"x") != state_digest("c1", b"y")
    True
    """
    h = hashlib.blake2b(key.encode(), digest_size=8)
    h.update(b"\x00")
    h.update(raw)
    return int.from_bytes(h.digest(), "big")


CHECKPOINT_VERSION = 1
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Checkpoint).decode


def encode_checkpoint(ckpt: Checkpoint) -> bytes:
    return _encode(ckpt)


def decode_checkpoint(raw: bytes) -> Checkpoint:
    return _decode(raw)


class LocalStore:
    """Explicit-partition access to a Faust table's local data (memory or RocksDB).

    Faust's own table API picks the partition from the current event; a
    checkpoint is written for a partition after its batch, so we address the
    partition ourselves.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.store = table.data
        self.rocks = hasattr(self.store, "_db_for_partition")
        self._applied: dict[int, int] = {}

    def applied_offset(self, partition: int) -> int | None:
        """The changelog offset up to which the store holds the changelog (``None``:
        unknown): RocksDB's persisted offset, or what this process wrote and applied."""
        if self.rocks:
            offset: int | None = self.store.persisted_offset(self._tp(partition))
            return offset
        return self._applied.get(partition)

    def applied(self, partition: int, offset: int) -> None:
        """Faust applied changelog records up to ``offset`` (RocksDB records it itself)."""
        if not self.rocks:
            self._applied[partition] = max(offset, self._applied.get(partition, -1))

    def get(self, partition: int, key: str) -> bytes | None:
        if self.rocks:
            value: bytes | None = self.store._db_for_partition(partition).get(key.encode())
            return value
        return self.store.data.get(key)  # type: ignore[no-any-return]

    def put_many(self, partition: int, items: list[tuple[str, bytes]], offset: int | None) -> None:
        """Write ``items``, then record that the changelog is applied up to ``offset``."""
        if self.rocks:
            db = self.store._db_for_partition(partition)
            index = self.store._key_index
            for key, value in items:
                raw = key.encode()
                if value == DELETED:
                    db.delete(raw)
                    index.pop(raw, None)
                else:
                    db.put(raw, value)
                    index[raw] = partition
            if offset is not None:
                self.store.set_persisted_offset(self._tp(partition), offset)
        else:
            data = self.store.data
            for key, value in items:
                if value == DELETED:
                    data.pop(key, None)
                else:
                    data[key] = value
            if offset is not None:
                self.applied(partition, offset)

    def items(self, partition: int, partitions: int) -> Iterator[tuple[str, bytes]]:
        """Customer keys and values of one partition (a full scan)."""
        for key in self.keys(partition, partitions):
            raw = self.get(partition, key)
            if raw:
                yield key, raw

    def wipe(self, partition: int, partitions: int) -> None:
        """Forget one partition: every key and the applied offset, so that the next
        recovery reads the partition's whole changelog."""
        if self.rocks:
            db = self.store._db_for_partition(partition)
            index = self.store._key_index
            for raw in list(db.keys()):
                db.delete(raw)
                index.pop(raw, None)
            return
        data = self.store.data
        for key in list(data):
            if is_customer_key(key):
                mine = partitions == 1 or partition_for(key, partitions) == partition
            else:  # the partition's checkpoint and fence
                mine = key.endswith(f"/{partition}")
            if mine:
                del data[key]
        self._applied.pop(partition, None)

    def keys(self, partition: int, partitions: int) -> Iterator[str]:
        """Customer keys of one partition (a full scan: only when a partition is assigned)."""
        if self.rocks:
            db = self.store._db_for_partition(partition)
            for raw in self.store._visible_keys(db):
                key = raw.decode()
                if is_customer_key(key):
                    yield key
            return
        for key in list(self.store.data):
            if is_customer_key(key) and (
                partitions == 1 or partition_for(key, partitions) == partition
            ):
                yield key

    def _tp(self, partition: int) -> Any:
        from faust.types import TP

        return TP(self.table.changelog_topic.get_topic_name(), partition)


class PartitionStore(MutableMapping[str, CustomerState]):
    """One partition's customers (the engine's ``store``): the local values, and the
    states changed since the last checkpoint, serialised on write so that a record the
    engine fails on leaves no half-changed state behind."""

    def __init__(self, local: LocalStore, partition: int, partitions: int) -> None:
        self.local = local
        self.partition = partition
        self.partitions = partitions
        self.dirty: dict[str, bytes] = {}
        self.dirty_bytes = 0
        self.digest = 0
        """XOR of :func:`state_digest` over the partition's customers as they are now
        (kept up to date by every write; computed in full by :meth:`verify`)."""

    def _current(self, key: str) -> bytes | None:
        raw = self.dirty[key] if key in self.dirty else self.local.get(self.partition, key)
        return raw or None

    def __getitem__(self, key: str) -> CustomerState:
        raw = self.dirty.get(key)
        if raw is None:
            raw = self.local.get(self.partition, key)
        if not raw:  # absent, or deleted since the last checkpoint (b"")
            raise KeyError(key)
        return CustomerState.from_bytes(raw)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: CustomerState) -> None:
        raw = value.to_bytes()
        before = self._current(key)
        if before is not None:
            self.digest ^= state_digest(key, before)
        self.digest ^= state_digest(key, raw)
        old = self.dirty.get(key)
        self.dirty_bytes += len(raw) + len(key) - (len(old) + len(key) if old else 0)
        self.dirty[key] = raw

    def __delitem__(self, key: str) -> None:
        """Expire a customer: ``b""`` marks the deletion until the next checkpoint, which
        writes a tombstone (compaction then drops the key from the changelog)."""
        before = self._current(key)
        if before is None:
            raise KeyError(key)
        self.digest ^= state_digest(key, before)
        old = self.dirty.get(key)
        self.dirty_bytes += len(key) - (len(old) + len(key) if old else 0)
        self.dirty[key] = DELETED

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        dirty = self.dirty
        for key in self.local.keys(self.partition, self.partitions):
            if dirty.get(key) != DELETED:
                yield key
        for key, raw in list(dirty.items()):
            if raw and self.local.get(self.partition, key) is None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def take_dirty(self) -> list[tuple[str, bytes]]:
        """The states changed since the last checkpoint, cleared."""
        items = list(self.dirty.items())
        self.dirty.clear()
        self.dirty_bytes = 0
        return items

    def restore(self, states: list[tuple[str, bytes]]) -> None:
        """Mark a checkpoint's states as changed (they are written again at the next one)."""
        for key, raw in states:
            self.dirty[key] = raw
            self.dirty_bytes += len(key) + len(raw)

    def verify(self, want: int | None) -> int:
        """Compute the digest of the partition as the store and the pending states hold it;
        raise :class:`StateInconsistent` if it is not ``want`` (``None``: not checked)."""
        digest = 0
        dirty = self.dirty
        for key, raw in self.local.items(self.partition, self.partitions):
            if key not in dirty:
                digest ^= state_digest(key, raw)
        for key, raw in dirty.items():
            if raw:
                digest ^= state_digest(key, raw)
        self.digest = digest
        if want is not None and digest != want:
            raise StateInconsistent(
                f"partition {self.partition}: the local store does not match the newest "
                f"checkpoint (digest {digest:016x}, checkpoint {want:016x})"
            )
        return digest


def guard_changelog(
    table: Any, local: LocalStore, on_stale: Callable[[Counter[int]], None]
) -> None:
    """Make ``table`` drop changelog records that are not newer than its local store.

    A record at or below the store's applied offset is already in the store, or was
    overwritten since by a newer one: faust applies such records only when its recovery
    held them over from an earlier round (see the module doc), and writing them would put
    old customer states back. ``on_stale`` gets the count dropped per partition.
    """
    apply = table.apply_changelog_batch

    def apply_fresh(batch: Iterable[Any]) -> None:
        fresh = []
        stale: Counter[int] = Counter()
        limits: dict[int, int | None] = {}
        newest: dict[int, int] = {}
        for event in batch:
            message = event.message
            partition, offset = message.partition, message.offset
            if partition not in limits:
                limits[partition] = local.applied_offset(partition)
            limit = limits[partition]
            if limit is not None and offset <= limit:
                stale[partition] += 1
                continue
            fresh.append(event)
            newest[partition] = max(offset, newest.get(partition, -1))
        if stale:
            on_stale(stale)
        if fresh:
            apply(fresh)
            for partition, offset in newest.items():
                local.applied(partition, offset)

    table.apply_changelog_batch = apply_fresh


__all__ = [
    "CHECKPOINT_VERSION",
    "DELETED",
    "Checkpoint",
    "LocalStore",
    "PartitionStore",
    "StateInconsistent",
    "checkpoint_key",
    "decode_checkpoint",
    "encode_checkpoint",
    "fence_key",
    "guard_changelog",
    "is_customer_key",
    "state_digest",
]
