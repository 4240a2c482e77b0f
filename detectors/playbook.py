"""The retention playbook: which actions answer which reasons at which level.

Defaults follow the shared DOMAIN page ("typical retention actions by cause").
Users override them with a TOML file of ``[[actions]]`` entries, read by the
command line and handed here as a mapping (this package does no I/O).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from detectors.config import LEVELS
from detectors.errors import ConfigError
from detectors.reasons import CATEGORIES, Reason

Level = Literal["low", "medium", "high", "critical"]


class Play(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One playbook entry: ``action`` over ``channel`` for reasons of ``category``."""

    category: Literal["service", "price", "product", "engagement", "value"]
    action: str
    channel: str
    min_level: Level = "medium"
    codes: tuple[str, ...] = ()
    """Only for these reason codes (empty: any code of the category)."""


class Action(msgspec.Struct, frozen=True):
    """An action recommended in an alert; priority 1 is the most urgent."""

    action: str
    channel: str
    priority: int


DEFAULT_PLAYS: tuple[Play, ...] = (
    Play(category="service", action="fast_track_ticket", channel="support", min_level="medium"),
    Play(category="service", action="service_recovery_call", channel="phone", min_level="high"),
    Play(
        category="service",
        action="escalate_to_senior_agent",
        channel="support",
        min_level="critical",
    ),
    Play(category="service", action="compensation_credit", channel="email", min_level="critical"),
    Play(category="price", action="targeted_offer", channel="email", min_level="medium"),
    Play(
        category="price",
        action="price_match",
        channel="phone",
        min_level="high",
        codes=("price_complaint",),
    ),
    Play(category="price", action="member_tier_upgrade", channel="email", min_level="critical"),
    Play(category="product", action="complaint_follow_up", channel="phone", min_level="medium"),
    Play(category="product", action="replacement_offer", channel="email", min_level="high"),
    Play(
        category="product",
        action="satisfaction_survey",
        channel="email",
        min_level="medium",
        codes=("returns_cancels",),
    ),
    Play(category="engagement", action="we_miss_you_message", channel="email", min_level="medium"),
    Play(
        category="engagement",
        action="service_due_reminder",
        channel="sms",
        min_level="medium",
        codes=("order_overdue",),
    ),
    Play(category="engagement", action="personal_recommendation", channel="app", min_level="high"),
    Play(
        category="engagement", action="loyalty_points_bonus", channel="email", min_level="critical"
    ),
    Play(category="value", action="account_manager_outreach", channel="phone", min_level="high"),
)


class Playbook:
    """Chooses actions for an alert's reasons and level.

    >>> from detectors.reasons import Reason
    >>> pb = Playbook()
    >>> r = [Reason("ticket_unanswered", "service", "...", 0.8)]
    >>> [(a.action, a.priority) for a in pb.actions(r, level=2)]
    [('fast_track_ticket', 2), ('service_recovery_call', 2)]
    """

    def __init__(self, plays: tuple[Play, ...] = DEFAULT_PLAYS) -> None:
        self.plays = plays

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Playbook:
        """Build from ``{"actions": [...]}`` (a parsed TOML file); :class:`ConfigError` if bad."""
        try:
            plays = msgspec.convert(data.get("actions", []), tuple[Play, ...])
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid playbook: {exc}") from None
        if not plays:
            raise ConfigError("the playbook has no [[actions]] entries")
        missing = set(CATEGORIES) - {p.category for p in plays}
        if missing:
            raise ConfigError(f"the playbook has no action for: {', '.join(sorted(missing))}")
        return cls(plays)

    def to_mapping(self) -> dict[str, Any]:
        return {"actions": msgspec.to_builtins(self.plays)}

    def actions(self, reasons: list[Reason], level: int) -> list[Action]:
        """Actions for the reasons (strongest first), at most two categories plus value."""
        priority = max(1, 4 - level)
        chosen: list[Action] = []
        seen_categories: list[str] = []
        for reason in reasons:
            if reason.category in seen_categories:
                continue
            if (
                reason.category != "value"
                and len([c for c in seen_categories if c != "value"]) >= 2
            ):
                continue
            seen_categories.append(reason.category)
            for play in self.plays:
                if (
                    play.category == reason.category
                    and LEVELS.index(play.min_level) <= level
                    and (not play.codes or reason.code in play.codes)
                ):
                    urgency = 1 if reason.category == "value" else priority
                    chosen.append(Action(play.action, play.channel, urgency))
        return chosen
