"""A simulated retention campaign: the engine's alerts cause events, in a closed loop.

:func:`streams.simulate.generate` writes every customer's history up front; a campaign
needs events that alerts cause. So the simulated events feed the engine in event-time
order, merged with a heap of pending events that the campaign adds as alerts come out,
and a sweep tick every hour moves every shard's clock (as a worker's timer would):

* marketing acts on a **treated** case's ``opened`` or ``escalated`` alert at a level in
  :attr:`CampaignConfig.levels` (every level by default): the alert's first
  recommended action is reported ``sent`` a day later and ``delivered`` (or, for a
  :attr:`~CampaignConfig.failure_share`, ``failed``) a few hours after that;
* the first delivered action of a case works on a known share of the customers who would
  otherwise not come back within the recovery window (no paid order in it in the
  simulated history): :attr:`CampaignConfig.effect` of them place an order within the
  window, at least a day after the delivery. One who had no order left in the history
  then resumes buying at their usual rhythm (median gap and basket of their own orders);
* **control** cases get no action and no extra order.

So the true effect is known: for each opening level, the orders the campaign caused over
the treated cases with a decided outcome. The estimate from the ledger (treated minus
control recovery rate) should land near it. The same configuration gives the same
events, alerts and counts; the events written out replay to the same ledger.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detectors import LEVELS, Alert, Engine
from detectors.config import DAY_MS, HOUR_MS
from detectors.events import validate
from streams.simulate import SimConfig, generate


@dataclass(frozen=True, kw_only=True)
class CampaignConfig:
    """What marketing does with alerts and what it achieves.

    >>> CampaignConfig().effect
    0.3
    """

    sim: SimConfig = field(default_factory=SimConfig)
    effect: float = 0.3
    """Share of treated customers reached by an action who would not have come back within
    the recovery window and now do."""
    levels: tuple[str, ...] = ("medium", "high", "critical")
    """Alert levels marketing acts on."""
    failure_share: float = 0.05
    """Deliveries that fail (no effect)."""
    seed: int = 0
    """Seed of the campaign's own draws (the history's seed is ``sim.seed``)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.effect <= 1.0 or not 0.0 <= self.failure_share <= 1.0:
            raise ValueError("effect and failure_share must lie in [0, 1]")
        if not set(self.levels) <= set(LEVELS[1:]):
            raise ValueError("levels must be among medium, high, critical")


@dataclass
class _Case:
    opened: int
    level: str
    tried: bool = False


@dataclass
class CampaignResult:
    engine: Engine
    events: list[dict[str, Any]]
    """Every event in the order the engine saw it (the simulated history, the actions and
    the orders the campaign caused): replays to the same ledger."""
    alerts: list[Alert]
    caused: Counter[str]
    """Orders the campaign caused, by the level their case opened at."""
    reached: Counter[str]
    """Treated cases whose action was delivered, by opening level."""
    natural: Counter[str]
    """Of those, cases that came back within the window anyway (no effect possible)."""
    end_ms: int = 0
    """The clock at the end: one recovery window after the last event (every case decided)."""

    def known_effect(self) -> dict[str, float]:
        """Per opening level and ``all``: caused recoveries per treated case with a
        decided outcome, the uplift the ledger estimates."""
        treated: Counter[str] = Counter()
        caused: Counter[str] = Counter()
        for shard in self.engine.shards:
            for (arm, level, _, _), n in shard.ledger.counts.cases.items():
                if arm == "treated":
                    treated[level] += n
                    treated["all"] += n
        for level, n in self.caused.items():
            caused[level] += n
            caused["all"] += n
        return {g: caused[g] / n for g, n in treated.items() if n}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _second(ms: float) -> int:
    return int(ms) // 1000 * 1000


class _Loop:
    """The event-time loop: simulated history merged with the campaign's pending events."""

    def __init__(self, cfg: CampaignConfig, engine: Engine) -> None:
        self.cfg = cfg
        self.engine = engine
        self.window = engine.cfg.recovery_window_ms
        self.rng = random.Random(cfg.seed * 1_000_003 + cfg.sim.seed)
        self.pending: list[tuple[int, int, dict[str, Any]]] = []
        self.seq = 0
        self.cases: dict[str, _Case] = {}
        self.paid: dict[str, list[int]] = {}
        self.amounts: dict[str, list[float]] = {}
        self.injected: Counter[str] = Counter()
        self.out: list[dict[str, Any]] = []
        self.alerts: list[Alert] = []
        self.caused: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()
        self.natural: Counter[str] = Counter()
        self.history_end = 0
        self.end = 0

    def push(self, ts: int, obj: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (ts, self.seq, obj))

    def run(self, history: list[dict[str, Any]]) -> None:
        base = [(_ms(e["ts"]), e) for e in history]
        for ts, e in base:
            if e["event_type"] == "order" and e.get("status", "paid") == "paid":
                self.paid.setdefault(e["customer_id"], []).append(ts)
                self.amounts.setdefault(e["customer_id"], []).append(float(e["amount"]))
        if not base:
            return
        self.history_end = base[-1][0]
        tick = (base[0][0] // HOUR_MS + 1) * HOUR_MS
        i = 0
        while i < len(base) or self.pending:
            if self.pending and (i >= len(base) or self.pending[0][0] < base[i][0]):
                ts, _, obj = heapq.heappop(self.pending)
            else:
                ts, obj = base[i]
                i += 1
            while tick <= ts:
                self.react(self.engine.advance_all(tick))
                tick += HOUR_MS
            self.out.append(obj)
            self.react(self.engine.feed(validate(dict(obj))))
        last = _ms(self.out[-1]["ts"])
        self.react(self.engine.advance_all(last))
        self.end = close_windows(self.engine, last)

    def react(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.alerts.append(alert)
            cid = alert.customer_id
            t = _ms(alert.as_of)
            if alert.kind == "opened":
                self.cases[cid] = _Case(t, alert.risk_level)
            case = self.cases.get(cid)
            if (
                case is None
                or t > self.history_end  # the simulated world has ended
                or alert.treatment != "treated"
                or alert.kind not in ("opened", "escalated")
                or alert.risk_level not in self.cfg.levels
                or not alert.actions
            ):
                continue
            self.act(cid, case, alert, t)

    def act(self, cid: str, case: _Case, alert: Alert, t: int) -> None:
        """Marketing sends the alert's first action; the first delivery may win them back."""
        rng = self.rng
        action = alert.actions[0].action
        sent = _second(t + DAY_MS + rng.uniform(0, 4 * HOUR_MS))
        done = _second(sent + rng.uniform(HOUR_MS, 8 * HOUR_MS))
        failed = rng.random() < self.cfg.failure_share
        for ts, status in ((sent, "sent"), (done, "failed" if failed else "delivered")):
            self.push(
                ts,
                {
                    "event_type": "action",
                    "customer_id": cid,
                    "ts": _iso(ts),
                    "alert_id": alert.alert_id,
                    "action": action,
                    "status": status,
                },
            )
        if failed or case.tried:
            return
        case.tried = True
        self.reached[case.level] += 1
        end = min(case.opened + self.window, self.history_end)
        paid = self.paid.get(cid, [])
        k = bisect.bisect_right(paid, case.opened)
        if k < len(paid) and paid[k] <= end:
            self.natural[case.level] += 1
            return
        earliest = done + DAY_MS
        if end - HOUR_MS <= earliest or rng.random() >= self.cfg.effect:
            return
        back = _second(rng.uniform(earliest, end - HOUR_MS))
        resumes = k >= len(paid)  # no order left in the history: they stay
        gap = self.rhythm(cid)
        self.order(cid, back)
        self.caused[case.level] += 1
        if resumes:
            t_next = back
            while True:
                t_next = _second(t_next + gap * rng.gammavariate(4.0, 0.25))
                if t_next > self.history_end:
                    break
                self.order(cid, t_next)

    def rhythm(self, cid: str) -> float:
        paid = self.paid.get(cid, [])
        gaps = [b - a for a, b in zip(paid, paid[1:], strict=False) if b - a > DAY_MS]
        return max(statistics.median(gaps), 3 * DAY_MS) if gaps else 30.0 * DAY_MS

    def order(self, cid: str, ts: int) -> None:
        self.injected[cid] += 1
        amounts = self.amounts.get(cid) or [50.0]
        amount = round(statistics.median(amounts) * self.rng.lognormvariate(0.0, 0.2), 2)
        oid = f"{cid}-won{self.injected[cid]}"
        self.push(
            ts,
            {
                "event_id": oid,
                "event_type": "order",
                "customer_id": cid,
                "ts": _iso(ts),
                "order_id": oid,
                "amount": amount,
                "items": max(1, math.ceil(amount / 25)),
                "status": "paid",
                "channel": "web",
            },
        )
        bisect.insort(self.paid.setdefault(cid, []), ts)


def close_windows(engine: Engine, last_ms: int) -> int:
    """Decide every case opened by ``last_ms``, the end of a closed history (nobody comes
    back after it): each at the end of its recovery window, evaluating nobody. Returns the
    time by which every window has ended."""
    end = last_ms + engine.cfg.recovery_window_ms + 1
    for shard in engine.shards:
        shard.ledger.settle_until(shard.store, end)
    return end


def run_campaign(
    cfg: CampaignConfig,
    make_engine: Callable[[], Engine],
) -> CampaignResult:
    """Simulate ``cfg.sim``'s customers and the campaign on a fresh engine."""
    history, _ = generate(cfg.sim)
    engine = make_engine()
    loop = _Loop(cfg, engine)
    loop.run(history)
    return CampaignResult(
        engine=engine,
        events=loop.out,
        alerts=loop.alerts,
        caused=loop.caused,
        reached=loop.reached,
        natural=loop.natural,
        end_ms=loop.end,
    )


__all__ = ["CampaignConfig", "CampaignResult", "close_windows", "run_campaign"]
