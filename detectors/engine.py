"""The engine: one shard's state, model and clock; events and sweeps in, alerts out.

Drivers (replay, the Faust worker, tests) own the transport. They call
:meth:`Shard.advance` with the clock (event time in replay and backfill, the
wall clock live) and :meth:`Shard.process` with each decoded event, and store
whatever the shard writes to its ``store`` mapping.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, MutableMapping
from typing import NamedTuple

from detectors.alerts import Alert, make_alert, transition
from detectors.cadence import Cadence, p_no_purchase, rhythm_level
from detectors.calibration import logit, sigmoid
from detectors.config import DAY_MS, HOUR_MS, EngineConfig
from detectors.events import Event, RetentionAction
from detectors.ingest import StateUpdater, key_hash, net_value, new_state
from detectors.labels import Labels, labels_for, snapshot_cell
from detectors.ledger import Ledger, treatment_of
from detectors.model import ShardModel
from detectors.partition import partition_for
from detectors.playbook import Playbook
from detectors.profile import Profile, customer_cadence, features, pack, profile, unpack
from detectors.reasons import CADENCE_CODES, Reason, detect, rule_logit
from detectors.schedule import DueIndex
from detectors.state import CustomerState, Snapshot

SWEEP = "sweep"
CHECKPOINT_MIN_LAPSE = 0.2
"""A cadence checkpoint is skipped while the silence alone gives a lapse probability under
this: re-checking a weekly buyer after ten days tells nothing."""


class Assessment(NamedTuple):
    """A customer's risk at one moment."""

    score: float
    reasons: list[Reason]
    features: list[float]
    rule_logit: float
    profile: Profile


class BytesStore(MutableMapping[str, CustomerState]):
    """Customer states kept serialised, as a RocksDB-backed table keeps them.

    Memory per customer is the state's byte size; every read decodes.
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> CustomerState:
        return CustomerState.from_bytes(self._data[key])

    def __setitem__(self, key: str, value: CustomerState) -> None:
        self._data[key] = value.to_bytes()

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def raw(self, key: str) -> bytes:
        return self._data[key]


class Shard:
    """The engine for one partition's customers."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        playbook: Playbook | None = None,
        store: MutableMapping[str, CustomerState] | None = None,
        model: ShardModel | None = None,
    ) -> None:
        self.cfg = config or EngineConfig()
        self.playbook = playbook or Playbook()
        self.store: MutableMapping[str, CustomerState] = store if store is not None else {}
        self.model = model or ShardModel(self.cfg)
        self.updater = StateUpdater(self.cfg)
        self.labels = labels_for(
            self.cfg, self._learn, self._cadence, self._relabel, lambda: self.model.comeback
        )
        self.due = DueIndex()
        self.ledger = Ledger(self.cfg)
        """Alert cases, control groups, actions and outcomes (:mod:`detectors.ledger`)."""
        self.clock = 0
        self.counts: Counter[str] = Counter()
        self.open_alerts: dict[str, tuple[int, float]] = {}
        """Customers with an open alert: (level, value at risk), for gauges and reports."""
        self.known = 0
        """Customers the store held when the shard was built."""
        for key, state in self.store.items():
            self.known += 1
            self.due.schedule(key, state.next_due)
            self.ledger.restore(key, state)
            if state.alert_open:
                value = net_value(state, state.last_ts)
                self.open_alerts[key] = (state.level, round(value * state.score, 2))

    # drivers' entry points -----------------------------------------------------

    def advance(self, now: int, limit: int | None = None) -> list[Alert]:
        """Move the clock to ``now`` and re-evaluate every customer due by then.

        Customers come due in time order, each evaluated at its own due time, and
        one that comes due again before ``now`` is evaluated again: a single jump
        of the clock gives the same result as many small ticks. With ``limit``,
        stop after that many customers (:attr:`behind` then says more are due);
        calling again goes on where it stopped, with the same result.
        """
        if now > self.clock:
            self.clock = now
        alerts: list[Alert] = []
        budget = limit if limit is not None else -1
        while budget != 0 and (item := self.due.pop_next(self.clock)) is not None:
            budget -= 1
            due, key = item
            state = self.store.get(key)
            if state is None:
                continue
            when = max(due, state.last_ts)
            self.counts["swept"] += 1
            if self.cfg.expire_after_days and when - state.last_ts >= self.cfg.expire_ms:
                alerts.extend(self._expire(key, state, when))
                continue
            self.labels.on_sweep(state, when)
            alerts.extend(self._evaluate(key, state, when, SWEEP, recovered=False))
            self.store[key] = state
        # alert cases whose recovery window ended (also those opened above): decide them
        while budget != 0 and (ended := self.ledger.due.pop_next(self.clock)) is not None:
            budget -= 1
            state = self.store.get(ended[1])
            if state is not None and self.ledger.window_end(ended[1], state):
                self.store[ended[1]] = state
        return alerts

    def process(self, event: Event) -> list[Alert]:
        """Fold one event into its customer's state and return the alerts it causes."""
        key = event.customer_id
        if isinstance(event, RetentionAction):
            return self._action(key, event)
        state = self.store.get(key)
        ts = event.ts
        assert isinstance(ts, int)  # noqa: S101 - the decoder normalises ts
        if state is None:
            state = new_state(ts)
            self.counts["customers"] += 1
        last_order, outcome_before = state.last_order_ts, state.outcome
        change = self.updater.apply(state, event)
        if change.duplicate:
            self.counts["duplicates"] += 1
            return []
        self.counts["events"] += 1
        now = max(ts, state.last_ts)
        self.labels.before_event(state, now, last_order)
        if change.first_gap is not None:
            self.model.observe_first_gap(change.first_gap)
        if change.purchase:
            self.labels.on_purchase(state, ts)
        if change.outcome:
            self.labels.on_outcome(state, change.outcome, ts)
        if change.purchase:
            self.model.observe_value(net_value(state, now))
            self.model.drift.order_value(getattr(event, "amount", 0.0), ts)
        recovered = change.purchase or change.outcome == 2
        if state.case is not None and not state.case.outcome:
            self.ledger.on_event(
                key, state, ts, change.purchase, change.outcome, last_order, outcome_before
            )
        alerts = self._evaluate(key, state, now, event.event_id, recovered=recovered)
        self.store[key] = state
        return alerts

    def assess(self, key: str, now: int) -> Assessment | None:
        """Score one customer as of ``now`` without changing anything."""
        state = self.store.get(key)
        return None if state is None else self._assess(state, now)

    @property
    def behind(self) -> bool:
        """Customers are due at or before the clock and not yet re-evaluated."""
        first = self.due.next_due()
        ended = self.ledger.due.next_due()
        return 0 < first <= self.clock or 0 < ended <= self.clock

    @property
    def tracked(self) -> int:
        """Customers with state: those restored plus those first seen since."""
        return self.known + self.counts["customers"] - self.counts["expired"]

    def customers(self) -> Iterator[str]:
        return iter(self.store)

    # internals -----------------------------------------------------------------

    def _assess(self, s: CustomerState, now: int) -> Assessment:
        p = profile(s, now, self.cfg, self.model.population())
        reasons = detect(s, p)
        x = features(s, p)
        rl = rule_logit(p, reasons)
        x[-1] = rl
        score = self.model.score(x, rl)
        if p.p_label != p.p_cadence:  # learned over the label horizon, asked over another
            score = sigmoid(logit(score) + logit(p.p_cadence) - logit(p.p_label))
        return Assessment(score, reasons, x, rl, p)

    def _evaluate(
        self, key: str, s: CustomerState, now: int, trigger: str, recovered: bool
    ) -> list[Alert]:
        a = self._assess(s, now)
        self.model.drift.score(a.score, now)
        self._maybe_snapshot(s, now, a)
        s.next_due = next_due(s, now, self.cfg, a.profile.cadence, self.labels)
        self.due.schedule(key, s.next_due)
        s.score = round(a.score, 6)
        evidence = evidence_of(a.reasons, self.cfg)
        floor = rhythm_floor(a, self.cfg)
        kind, level = transition(s, a.score, evidence, now, recovered, self.cfg, floor)
        if kind is None:
            return []
        previous = s.level
        s.level, s.level_ts, s.last_alert_ts = level, now, now
        s.alert_seq += 1
        s.alert_open = kind != "resolved"
        self.counts[f"alerts_{kind}"] += 1
        shown = a.reasons if kind != "resolved" else []
        if kind == "opened":
            self.ledger.open(key, s, now, level, shown[0].category if shown else None)
        alert = make_alert(
            customer_id=key,
            seq=s.alert_seq,
            kind=kind,
            level=level,
            previous=previous,
            score=a.score,
            as_of=now,
            reasons=shown,
            actions=self.playbook.actions(shown, level) if shown else [],
            value=a.profile.value,
            model_version=self.model.version,
            trigger=trigger,
            treatment=treatment_of(s),
            expected_back=a.profile.expected_back,
            act_by=a.profile.act_by,
        )
        self.ledger.on_alert(s, now, alert.alert_id, (x.action for x in alert.actions))
        if s.alert_open:
            self.open_alerts[key] = (level, alert.value_at_risk)
        else:
            self.open_alerts.pop(key, None)
        return [alert]

    def _action(self, key: str, event: RetentionAction) -> list[Alert]:
        """An action report: linked to the customer's case and counted; no evaluation
        (marketing's doing is not the customer's), no new customer."""
        state = self.store.get(key)
        if state is not None and self.cfg.dedupe_window:
            h = key_hash(event.event_id)
            if h in state.recent_events:
                self.counts["duplicates"] += 1
                return []
            state.recent_events = (*state.recent_events, h)[-self.cfg.dedupe_window :]
        self.counts["actions"] += 1
        self.ledger.on_action(state, event)
        if state is not None:
            self.store[key] = state
        return []

    def _expire(self, key: str, s: CustomerState, now: int) -> list[Alert]:
        """A customer silent past ``expire_after_days``: a final churned outcome (pending
        snapshots learn 1), an ``expired`` alert closing an open case, and the state dropped."""
        self.labels.on_expire(s)
        alerts = []
        if s.alert_open:
            s.alert_seq += 1
            value = net_value(s, s.last_ts)
            alerts.append(
                make_alert(
                    customer_id=key,
                    seq=s.alert_seq,
                    kind="expired",
                    level=s.level,
                    previous=s.level,
                    score=s.score,
                    as_of=now,
                    reasons=[],
                    actions=[],
                    value=value,
                    model_version=self.model.version,
                    trigger=SWEEP,
                    treatment=treatment_of(s),
                )
            )
            self.counts["alerts_expired"] += 1
        self.open_alerts.pop(key, None)
        del self.store[key]
        self.counts["expired"] += 1
        return alerts

    def _maybe_snapshot(self, s: CustomerState, now: int, a: Assessment) -> None:
        """A training snapshot, at most one per cell of the customer's grid (when the
        label policy wants one now, see :mod:`detectors.labels`)."""
        cfg = self.cfg
        if s.outcome or len(s.snapshots) >= cfg.max_pending_snapshots:
            return
        if not self.labels.snapshot_due(s, now, a.profile.cadence):
            return
        if s.snapshots and snapshot_cell(s, s.snapshots[-1].ts, cfg) == snapshot_cell(s, now, cfg):
            return
        if a.profile.silence_days > cfg.inactive_after_days:
            return
        s.snapshots = (*s.snapshots, Snapshot(now, pack(a.features), round(a.rule_logit, 6)))

    def _cadence(self, s: CustomerState) -> Cadence:
        return customer_cadence(s, self.cfg, self.model.population())

    def _learn(self, snap: Snapshot, y: float) -> None:
        """Learn a snapshot; a soft label (silence's, :mod:`detectors.comeback`) counts as a 1."""
        self.model.learn(unpack(snap.features), snap.rule_logit, y)
        self.model.drift.label(y, snap.ts)
        self.counts["labels_1" if y > 0 else "labels_0"] += 1

    def _relabel(self, snap: Snapshot, delta: float) -> None:
        if delta:
            self.model.relabel(unpack(snap.features), snap.rule_logit, delta)
            self.counts["labels_relabelled"] += 1


def next_due(s: CustomerState, now: int, cfg: EngineConfig, c: Cadence, labels: Labels) -> int:
    """When the customer next needs a look if nothing else happens (0: never).

    Also moves ``s.checkpoint`` past the cadence checkpoints already reached.

    Cadence checkpoints at multiples of the usual gap; the next training snapshot
    and the end of the oldest one's horizon; a look every ``max_sweep_interval_days``
    while tickets or payments are pending; ticket and payment deadlines.
    """
    cands: list[int] = []
    base = s.last_order_ts or s.first_ts
    silence = now - base
    active = s.outcome != 1 and silence < cfg.inactive_after_days * DAY_MS
    interval = cfg.snapshot_interval_ms
    if s.snapshots:
        cands.append(labels.decide_at(s, c))
    if (s.snapshots or labels.grid_sweep(s, silence, c)) and active and not s.outcome:
        if len(s.snapshots) < cfg.max_pending_snapshots:
            cands.append(s.first_ts + (snapshot_cell(s, now, cfg) + 1) * interval)
    if active:
        gap = c.usual_gap_days * DAY_MS
        soonest = now + int(cfg.min_sweep_interval_days * DAY_MS)
        worth = CHECKPOINT_MIN_LAPSE
        ratios = cfg.overdue_ladder
        rhythm = c.own_gaps >= cfg.rhythm_min_gaps
        floors = (cfg.overdue_medium, cfg.overdue_high)
        # each rung of the ladder once per silence: a rung is spent when the sweep scheduled
        # for it comes (however the usual gap drifted since) or when the silence passes it
        rung = s.checkpoint + (1 if s.checkpoint_ts and now >= s.checkpoint_ts else 0)
        while rung < len(ratios) and base + ratios[rung] * gap <= now:
            rung += 1
        s.checkpoint, s.checkpoint_ts = rung, 0
        for i in range(rung, len(ratios)):
            r = ratios[i]
            if (
                r == ratios[-1]
                or (rhythm and r in floors)
                or p_no_purchase(r * c.usual_gap_days, cfg.horizon_days, c) >= worth
            ):
                t = max(base + math.ceil(r * gap) + 1, soonest)
                s.checkpoint, s.checkpoint_ts = i, t
                cands.append(t)
                break
        if silence < cfg.horizon_ms * 2 and (s.open_tickets or s.unpaid):
            cands.append(now + int(cfg.max_sweep_interval_days * DAY_MS))
        sla = int(cfg.response_sla_hours * HOUR_MS)
        for ticket in s.open_tickets:
            if not ticket.responded_ts and ticket.opened_ts + sla > now:
                cands.append(ticket.opened_ts + sla + 1)
        unpaid_after = int(cfg.unpaid_after_days * DAY_MS)
        for _, ts in s.unpaid:
            if ts + unpaid_after > now:
                cands.append(ts + unpaid_after + 1)
    if cfg.expire_after_days:
        cands.append(s.last_ts + cfg.expire_ms)
    later = [t for t in cands if t > now]
    return min(later) if later else 0


SILENCE_CODES = CADENCE_CODES | {"visits_declining", "browsing_not_buying"}
"""Silence and what comes with it: visits thin out and browsing stops buying when a
customer goes quiet, so these say no more than the silence does."""


def evidence_of(reasons: list[Reason], cfg: EngineConfig) -> float:
    """The reasons' total log-odds push, the evidence a level needs
    (:meth:`EngineConfig.evidence_level`).

    Silence alone (:data:`SILENCE_CODES`), without a leading signal worth a medium,
    supports medium at most: a customer who only went quiet is a win-back case, and
    high and critical are kept for leading signals and for regulars past their own
    rhythm (:func:`rhythm_floor`), so the volume stays one a team can work.

    >>> from detectors.reasons import Reason
    >>> quiet = Reason("order_overdue", "engagement", "", 3.0)
    >>> ticket = Reason("ticket_unanswered", "service", "", 0.8)
    >>> cfg = EngineConfig()
    >>> cfg.evidence_level(evidence_of([quiet], cfg))
    1
    >>> cfg.evidence_level(evidence_of([quiet, ticket], cfg))
    3
    """
    signals = sum(r.weight for r in reasons if r.weight > 0 and r.code not in SILENCE_CODES)
    silence = sum(r.weight for r in reasons if r.weight > 0 and r.code in SILENCE_CODES)
    if signals < cfg.evidence_medium:
        return min(signals + silence, cfg.evidence_medium)
    return signals + silence


def rhythm_floor(a: Assessment, cfg: EngineConfig) -> int:
    """The least level the customer's own rhythm asks for (0: none); only with the silence
    reason shown, so the alert says why.

    A regular silent past ``overdue_medium`` usual gaps is at medium, past ``overdue_high``
    at high (:func:`~detectors.cadence.rhythm_level`).
    """
    if not any(r.code in CADENCE_CODES for r in a.reasons):
        return 0
    p = a.profile
    return rhythm_level(
        p.silence_days,
        p.cadence.usual_gap_days,
        p.rhythm_rare,
        (cfg.overdue_medium, cfg.overdue_high),
    )


class Engine:
    """Shards the customers by Kafka's partitioner, exactly as the topics do."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        playbook: Playbook | None = None,
        partitions: int = 1,
        store_factory: type[MutableMapping[str, CustomerState]] | None = None,
    ) -> None:
        self.cfg = config or EngineConfig()
        self.partitions = partitions
        make = store_factory or dict
        self.shards = [Shard(self.cfg, playbook, store=make()) for _ in range(partitions)]

    def shard_of(self, customer_id: str) -> Shard:
        if self.partitions == 1:
            return self.shards[0]
        return self.shards[partition_for(customer_id, self.partitions)]

    def feed(self, event: Event) -> list[Alert]:
        """Event-time clock: sweep the event's shard up to the event, then apply it."""
        shard = self.shard_of(event.customer_id)
        ts = event.ts
        assert isinstance(ts, int)  # noqa: S101
        alerts = shard.advance(ts)
        alerts.extend(shard.process(event))
        return alerts

    def advance_all(self, now: int) -> list[Alert]:
        alerts: list[Alert] = []
        for shard in self.shards:
            alerts.extend(shard.advance(now))
        return alerts

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for shard in self.shards:
            total.update(shard.counts)
        return total
