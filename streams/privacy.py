"""Pseudonymous alerts: customer ids replaced by a keyed hash before they leave the worker.

With ``CHURNWATCH_PSEUDONYMISE_KEY`` set, every alert on ``churn-alerts`` carries
``HMAC-SHA256(key, customer_id)`` (64 hex digits) as ``customer_id`` and as the
Kafka key. The same customer always maps to the same pseudonym, so downstream
systems can still group, de-duplicate and count by customer; only whoever holds
the key (and the customer list) can map a pseudonym back. Two other fields
could reveal the id and are keyed too: ``alert_id`` (derived from the customer
id in the engine) becomes a UUID built from ``HMAC(key, alert_id)``, still the
same for the same transition, and ``trigger``, an event id that producers often
build from the customer id, becomes ``HMAC(key, event_id)`` (``sweep`` stays).

The customer state table, its changelog and the dead-letter topic are internal
and keep the real ids.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import msgspec

from detectors import Alert
from detectors.engine import SWEEP

MIN_KEY_BYTES = 16


def pseudonym(key: bytes, value: str) -> str:
    """``HMAC-SHA256(key, value)`` as 64 lower-case hex digits.

    >>> pseudonym(b"k" * 16, "c000001") == pseudonym(b"k" * 16, "c000001")
    True
    >>> len(pseudonym(b"k" * 16, "c000001"))
    64
    """
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


class Pseudonymiser:
    """Maps an alert to its pseudonymous copy (the key never shows in a repr)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonymisation key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymiser(key=**********)"

    def customer(self, customer_id: str) -> str:
        return pseudonym(self._key, customer_id)

    def __call__(self, alert: Alert) -> Alert:
        digest = hmac.new(self._key, alert.alert_id.encode(), hashlib.sha256).digest()
        trigger = alert.trigger
        return msgspec.structs.replace(
            alert,
            customer_id=self.customer(alert.customer_id),
            alert_id=str(uuid.UUID(bytes=digest[:16], version=5)),
            trigger=trigger if trigger == SWEEP else pseudonym(self._key, trigger),
        )
