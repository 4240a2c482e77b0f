"""churnwatch's scoring core: pure, deterministic, no I/O.

Events in (:func:`decode_event`), per-customer state and River estimators,
detectors that explain risk, a global online model learned from delayed
labels, and alerts out. Imports only the standard library, River and msgspec.
"""

from detectors.alerts import Alert, decode_alert, encode_alert
from detectors.config import LEVELS, EngineConfig
from detectors.engine import Assessment, BytesStore, Engine, Shard
from detectors.errors import ChurnwatchError, ConfigError, DecodeError
from detectors.events import (
    REASONS,
    Event,
    Order,
    Outcome,
    RetentionAction,
    Ticket,
    Visit,
    decode_event,
)
from detectors.partition import partition_for
from detectors.playbook import Playbook
from detectors.state import CustomerState

__all__ = [
    "LEVELS",
    "REASONS",
    "Alert",
    "Assessment",
    "BytesStore",
    "ChurnwatchError",
    "ConfigError",
    "CustomerState",
    "DecodeError",
    "Engine",
    "EngineConfig",
    "Event",
    "Order",
    "Outcome",
    "Playbook",
    "RetentionAction",
    "Shard",
    "Ticket",
    "Visit",
    "decode_alert",
    "decode_event",
    "encode_alert",
    "partition_for",
]
