"""One root exception and the few kinds the engine raises."""

from __future__ import annotations


class ChurnwatchError(Exception):
    """Root of every error churnwatch raises on purpose."""


class ConfigError(ChurnwatchError):
    """A setting or playbook entry is invalid."""


class DecodeError(ChurnwatchError):
    """An input record was rejected.

    ``reason`` is a stable code (``not_json``, ``missing_field`` ...) meant for
    metrics labels and dead-letter headers; ``detail`` is a readable sentence.
    The offending payload stays with the caller, never in the message.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
