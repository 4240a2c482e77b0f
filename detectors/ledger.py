"""The retention ledger: alert cases, control groups, actions taken and outcomes.

A *case* opens with an ``opened`` alert and carries the customer's alerts until the alert
is resolved (or expires). When it opens, a keyed hash of the customer id decides whether
it is in the **control group**: held out with the share ``EngineConfig.control_share``
sets for its opening level, keyed by ``experiment_salt``. The group holds for the whole
case, so an escalation never switches it, and a customer with the same salt and share
always lands in the same group. Reports from the ``retention-actions`` input are linked
to the case by the alert id they answer.

A case's **outcome** is decided once, at the latest ``recovery_window_days`` (N) after it
opened:

* ``recovered``: a paid order, or an explicit ``retained`` outcome, within the N days;
* ``churned``: an explicit ``churned`` outcome within them, or N days pass without a
  purchase and by then the customer has not bought for a whole horizon (the churn label
  the model learns: no purchase within ``horizon_days``);
* ``still_at_risk``: N days pass without a purchase, but the last purchase is less than a
  horizon old (a customer alerted mid-cycle, say for a complaint, who has not come back
  yet nor been gone long enough to count as churned).

The ledger keeps cumulative counters per shard (plain dicts keyed by bounded label
tuples) for the drivers to export; state holds only the small :class:`Case`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

from msgspec.structs import replace

from detectors.config import LEVELS, EngineConfig
from detectors.events import RetentionAction
from detectors.ingest import key_hash
from detectors.playbook import DEFAULT_PLAYS
from detectors.reasons import CATEGORIES
from detectors.schedule import DueIndex
from detectors.state import Case, CustomerState

OUTCOMES = ("recovered", "churned", "still_at_risk")
"""Case outcomes; :attr:`Case.outcome` is the index + 1 (0: not decided yet)."""
RECOVERED, CHURNED, STILL_AT_RISK = 1, 2, 3
TREATMENTS = ("treated", "control")
STATUSES = ("sent", "delivered", "failed")
LINKS = ("linked", "control", "unmatched", "unknown_customer")
"""What became of an action report: linked to the customer's current case, linked to a
control case (the action should not have been taken), not matching the current case's
alerts, or for a customer the shard does not know."""
OTHER = "other"
ACTION_CODES: tuple[str, ...] = (*dict.fromkeys(p.action for p in DEFAULT_PLAYS), OTHER)
"""The action codes counted apart: the built-in playbook's, then ``other`` for the rest.
Append only: a code's position is its bit in :attr:`Case.recommended` and
:attr:`Case.actions`."""
_BIT = {code: 1 << i for i, code in enumerate(ACTION_CODES)}


def action_code(name: str) -> str:
    """The bounded code an action is counted under.

    >>> action_code("targeted_offer"), action_code("free_pony")
    ('targeted_offer', 'other')
    """
    return name if name in _BIT else OTHER


def action_mask(names: Iterable[str]) -> int:
    """Bitmask of action codes.

    >>> mask_codes(action_mask(["price_match", "free_pony", "price_match"]))
    ['price_match', 'other']
    """
    mask = 0
    for name in names:
        mask |= _BIT.get(name, _BIT[OTHER])
    return mask


def mask_codes(mask: int) -> list[str]:
    """The action codes in a bitmask, in catalogue order."""
    return [code for code, bit in _BIT.items() if mask & bit]


def control_draw(customer_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by the customer id and the salt (HMAC-SHA256).

    >>> control_draw("c1", "s") == control_draw("c1", "s") != control_draw("c1", "t")
    True
    """
    digest = hmac.new(salt.encode(), customer_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_control(customer_id: str, salt: str, share: float) -> bool:
    """Whether a case of this customer with this control share is held out.

    Nested in the share: a customer held out at 5 % is held out at 10 % too.

    >>> in_control("c1", "s", 0.0), in_control("c1", "s", 1.0)
    (False, True)
    """
    return share > 0.0 and control_draw(customer_id, salt) < share


def treatment_of(s: CustomerState) -> str:
    """The arm of the customer's current case (``treated`` when there is none)."""
    return TREATMENTS[1] if s.case is not None and s.case.control else TREATMENTS[0]


def _category(code: int) -> str:
    return CATEGORIES[code] if code >= 0 else "none"


@dataclass
class LedgerCounts:
    """Cumulative counters (bounded label tuples), one per exported metric."""

    opened: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(treatment, level): cases opened."""
    cases: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    """(treatment, level, category, outcome): cases with a decided outcome."""
    by_action: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(action, treatment, outcome): decided cases whose alerts recommended the action."""
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(action, status): action reports received (duplicates dropped)."""
    links: Counter[str] = field(default_factory=Counter)
    """link: what became of the action reports (:data:`LINKS`)."""

    def update(self, other: LedgerCounts) -> None:
        self.opened.update(other.opened)
        self.cases.update(other.cases)
        self.by_action.update(other.by_action)
        self.actions.update(other.actions)
        self.links.update(other.links)


class Ledger:
    """One shard's cases: opening, linking actions, deciding outcomes, counting.

    >>> from detectors.ingest import new_state
    >>> ledger = Ledger(EngineConfig())
    >>> s = new_state(0)
    >>> case = ledger.open("c1", s, now=0, level=2, category="service")
    >>> ledger.on_event("c1", s, 10 * 86_400_000, True, 0, 0, 0)
    >>> OUTCOMES[s.case.outcome - 1], dict(ledger.counts.cases)
    ('recovered', {('treated', 'high', 'service', 'recovered'): 1})
    """

    def __init__(self, config: EngineConfig) -> None:
        self.cfg = config
        self.window = config.recovery_window_ms
        self.horizon = config.horizon_ms
        self.due = DueIndex()
        """Customers whose case has no outcome yet, due when its window ends."""
        self.counts = LedgerCounts()

    def restore(self, key: str, s: CustomerState) -> None:
        """Re-schedule the window end of a stored customer's undecided case."""
        c = s.case
        if c is not None and not c.outcome:
            self.due.schedule(key, c.opened_ts + self.window + 1)

    def open(self, key: str, s: CustomerState, now: int, level: int, category: str | None) -> Case:
        """Start a case at ``now``, assigning its group once and for all."""
        if s.case is not None and not s.case.outcome:  # cannot happen: a case ends first
            self.window_end(key, s)
        control = in_control(key, self.cfg.experiment_salt, self.cfg.control_share_at(level))
        code = CATEGORIES.index(category) if category in CATEGORIES else -1
        s.case = Case(now, level, code, control)
        self.counts.opened[(TREATMENTS[control], LEVELS[level])] += 1
        self.due.schedule(key, now + self.window + 1)
        return s.case

    def on_alert(self, s: CustomerState, now: int, alert_id: str, actions: Iterable[str]) -> None:
        """Remember one of the case's alerts (for linking) and, until the case's window
        ends, what it recommended."""
        c = s.case
        if c is None:
            return
        h = key_hash(alert_id)
        alerts = (h,) if not c.alerts else (c.alerts[0], *c.alerts[1:][-2:], h)
        recommended = c.recommended
        if not c.outcome and now <= c.opened_ts + self.window:
            recommended |= action_mask(actions)
        s.case = replace(c, alerts=alerts, recommended=recommended)

    def on_event(
        self,
        key: str,
        s: CustomerState,
        ts: int,
        purchase: bool,
        outcome: int,
        last_order_before: int,
        outcome_before: int,
    ) -> None:
        """Decide the case an event settles: a purchase or an outcome within the window,
        or any event after it (judged by the state before the event)."""
        c = s.case
        if c is None or c.outcome or ts <= c.opened_ts:
            return
        end = c.opened_ts + self.window
        if ts > end:
            self._decide(key, s, c, self._at_end(s, end, last_order_before, outcome_before))
        elif purchase or outcome == 2:
            self._decide(key, s, c, RECOVERED)
        elif outcome == 1:
            self._decide(key, s, c, CHURNED)

    def window_end(self, key: str, s: CustomerState) -> bool:
        """Decide an undecided case whose window has ended; whether there was one."""
        c = s.case
        if c is None or c.outcome:
            return False
        end = c.opened_ts + self.window
        self._decide(key, s, c, self._at_end(s, end, s.last_order_ts, s.outcome))
        return True

    def settle_until(self, store: MutableMapping[str, CustomerState], now: int) -> int:
        """Decide every case whose window ends by ``now`` and evaluate nobody: the end of a
        closed history, after which nobody comes back. Returns how many were decided."""
        n = 0
        while (item := self.due.pop_next(now)) is not None:
            state = store.get(item[1])
            if state is not None and self.window_end(item[1], state):
                store[item[1]] = state
                n += 1
        return n

    def on_action(self, s: CustomerState | None, event: RetentionAction) -> str:
        """Count an action report and link it to the customer's case; returns the link."""
        code = action_code(event.action)
        self.counts.actions[(code, event.status)] += 1
        c = s.case if s is not None else None
        if s is None:
            link = "unknown_customer"
        elif c is None or key_hash(event.alert_id) not in c.alerts:
            link = "unmatched"
        else:
            link = "control" if c.control else "linked"
            taken = c.actions | (_BIT[code] if event.status != "failed" else 0)
            s.case = replace(c, reports=min(c.reports + 1, 255), actions=taken)
        self.counts.links[link] += 1
        return link

    def _at_end(self, s: CustomerState, end: int, last_order: int, outcome: int) -> int:
        if outcome == 1:
            return CHURNED
        return CHURNED if end - (last_order or s.first_ts) >= self.horizon else STILL_AT_RISK

    def _decide(self, key: str, s: CustomerState, c: Case, outcome: int) -> None:
        s.case = replace(c, outcome=outcome)
        arm, result = TREATMENTS[c.control], OUTCOMES[outcome - 1]
        self.counts.cases[(arm, LEVELS[c.level], _category(c.category), result)] += 1
        for code in mask_codes(c.recommended):
            self.counts.by_action[(code, arm, result)] += 1
        self.due.schedule(key, 0)
