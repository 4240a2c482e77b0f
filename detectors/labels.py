"""Delayed labels for the global model: what a training snapshot taken at ``t`` asks.

Two targets (``risk_target`` in the config), each a small policy the shard calls when
events and sweeps come; both hand decided snapshots to ``learn(snapshot, y)``.

* ``churn`` (default), :class:`ChurnLabels`: *does the relationship end within the
  horizon after t?* The churn date is the day after the last order, known once the
  customer has been silent for the confirmation time (:func:`confirm_ms`) or says so (an
  explicit ``churned`` outcome). A snapshot learns 0 once the customer buys after
  ``t + horizon``, 1 when the churn date falls in ``(t, t + horizon]``, and nothing when
  it is at or before ``t``: that customer had already left, and "leaves within the
  horizon" is asked only of customers who have not (as ``churnwatch evaluate`` asks it).
  Silence can be wrong (a sporadic buyer comes back after many usual gaps), so its
  ones are soft: learned with the weight of the share of such customers who stay gone
  (:mod:`detectors.comeback`, learned from the stream), and 0 with the rest. They are
  kept with the state; when the customer buys again they are learned over as 0, and an
  explicit ``churned`` outcome or the expiry makes them whole ones.
  Snapshots are taken at the points of a per-customer time grid, so the model learns
  from customers as they are at any moment, as they are scored.
* ``lapse``, :class:`LapseLabels`: *no purchase within the horizon after t?* 0 on a
  purchase within it, 1 when it passes without one, or an explicit outcome's; learned
  when the horizon ends, in snapshot order. Snapshots are taken at the points of the
  customer's time grid, as for ``churn``. The label horizon is ``EngineConfig.label_days``
  (the horizon, at most 90 days), so labels arrive within a season.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from detectors.cadence import Cadence, p_gone
from detectors.comeback import ComebackRate, group_of
from detectors.config import DAY_MS, EngineConfig
from detectors.state import CustomerState, Snapshot

LABEL_COUNTS = ("0", "1", "relabelled")
"""What the shard counts as ``labels_<kind>``: 0s, 1s (silence's soft ones included), and
learned labels moved later (:data:`Relabel`)."""

Learn = Callable[[Snapshot, float], None]
"""Learn a snapshot with a label in [0, 1] (a fraction: a soft label)."""
Relabel = Callable[[Snapshot, float], None]
"""Move a learned snapshot's label by the given amount (-0.8: from 0.8 to 0)."""
CadenceOf = Callable[[CustomerState], Cadence]
Comeback = Callable[[], ComebackRate]

SNAPSHOT_WINDOW_MS = DAY_MS
"""A ``churn`` snapshot is taken within this time after its grid point, or not at all."""


def snapshot_cell(s: CustomerState, t: int, cfg: EngineConfig) -> int:
    """Which cell of the customer's snapshot grid (``snapshot_interval`` wide) ``t`` is in."""
    return (t - s.first_ts) // cfg.snapshot_interval_ms


def grid_point(s: CustomerState, t: int, cfg: EngineConfig) -> int:
    """The first point of the customer's snapshot grid after ``t``."""
    return s.first_ts + (snapshot_cell(s, t, cfg) + 1) * cfg.snapshot_interval_ms


def on_grid(s: CustomerState, now: int, cfg: EngineConfig) -> bool:
    """``now`` is within ``SNAPSHOT_WINDOW_MS`` after a grid point, past the first cell."""
    cell = snapshot_cell(s, now, cfg)
    return cell >= 1 and now - s.first_ts - cell * cfg.snapshot_interval_ms < SNAPSHOT_WINDOW_MS


def confirm_ms(cfg: EngineConfig, c: Cadence) -> int:
    """Silence after which a customer counts as gone: ``churn_confirm_gaps`` usual gaps,
    at least a horizon, at most the expiry.

    >>> import math
    >>> confirm_ms(EngineConfig(), Cadence(math.log(30), 0.5, 0.1, 5)) // DAY_MS
    120
    """
    ms = max(cfg.horizon_ms, int(cfg.churn_confirm_gaps * c.usual_gap_days * DAY_MS))
    return min(ms, cfg.expire_ms) if cfg.expire_after_days else ms


class ChurnLabels:
    """Snapshots ask whether the relationship ends within the horizon (see the module)."""

    def grid_sweep(self, s: CustomerState, silence_ms: int, c: Cadence) -> bool:
        """A customer not yet counted gone gets a sweep at each grid point (where its
        snapshots are taken)."""
        return silence_ms < confirm_ms(self.cfg, c)

    def __init__(
        self,
        cfg: EngineConfig,
        learn: Learn,
        cadence_of: CadenceOf,
        relabel: Relabel,
        comeback: Comeback,
    ) -> None:
        self.cfg = cfg
        self.learn = learn
        self.cadence_of = cadence_of
        self.relabel = relabel
        self.comeback = comeback

    def snapshot_due(self, s: CustomerState, now: int, c: Cadence) -> bool:
        """Only at a grid point (a sweep comes due there), never in the first cell, and
        not of a customer already counted gone (``c``: the customer's cadence now)."""
        if not on_grid(s, now, self.cfg):
            return False
        return now - (s.last_order_ts or s.first_ts) < confirm_ms(self.cfg, c)

    def before_event(self, s: CustomerState, now: int, last_order: int) -> None:
        """Decide the snapshots of a customer who had been silent for the confirmation
        time (``last_order``: the last order before the event now applied)."""
        self._if_gone(s, now, last_order)

    def on_sweep(self, s: CustomerState, now: int) -> None:
        self._if_gone(s, now, s.last_order_ts)

    def _if_gone(self, s: CustomerState, now: int, last_order: int) -> None:
        last = last_order or s.first_ts
        if not s.snapshots or now - last < self.cfg.horizon_ms:
            return
        c = self.cadence_of(s)
        confirm = confirm_ms(self.cfg, c)
        if now - last >= confirm:
            group = group_of(c.own_gaps)
            share = self.comeback().gone_share(group, p_gone(confirm / DAY_MS, c))
            self.gone(s, last + DAY_MS, share, group)

    def on_purchase(self, s: CustomerState, ts: int) -> None:
        """A purchase (or a retained outcome): snapshots more than a horizon old learn 0;
        those learned as 1 when silence counted the customer gone are learned over as 0
        (the churn date they were given was wrong, and the real one is later)."""
        if s.provisional:
            self.comeback().came_back(s.provisional_group)
            for snap in s.provisional:
                self.relabel(snap, -s.provisional_share)
            s.provisional = ()
        horizon = self.cfg.horizon_ms
        if s.snapshots and s.snapshots[0].ts + horizon < ts:
            keep = []
            for snap in s.snapshots:
                if snap.ts + horizon < ts:
                    self.learn(snap, 0)
                else:
                    keep.append(snap)
            s.snapshots = tuple(keep)

    def on_outcome(self, s: CustomerState, outcome: int, ts: int) -> None:
        if outcome == 1:
            self.gone(s, ts)
        else:
            self.on_purchase(s, ts)

    def gone(self, s: CustomerState, churn_ts: int, share: float = 1.0, group: int = -1) -> None:
        """The relationship ended at ``churn_ts``: every pending snapshot is decided.

        With a ``group`` only silence says so: the ones are learned with the weight
        ``share`` and kept until the customer comes back (and they are learned over) or
        is gone for good (and they are made whole). Without, it is certain.
        """
        if s.provisional:  # ones kept from before take the newer weight
            for snap in s.provisional:
                self.relabel(snap, share - s.provisional_share)
            s.provisional_share = share
            if group < 0:
                s.provisional = ()
        horizon = self.cfg.horizon_ms
        ones = []
        for snap in s.snapshots:
            if churn_ts > snap.ts:
                if churn_ts <= snap.ts + horizon:
                    self.learn(snap, share)
                    ones.append(snap)
                else:
                    self.learn(snap, 0.0)
        s.snapshots = ()
        if group >= 0 and ones:
            if not s.provisional:
                self.comeback().confirmed(group)
                s.provisional_group = group
            s.provisional, s.provisional_share = (*s.provisional, *ones), share

    def on_expire(self, s: CustomerState) -> None:
        self.gone(s, (s.last_order_ts or s.first_ts) + DAY_MS)

    def decide_at(self, s: CustomerState, c: Cadence) -> int:
        """When the pending snapshots are decided if nothing else happens."""
        return (s.last_order_ts or s.first_ts) + confirm_ms(self.cfg, c) + 1


class LapseLabels:
    """Snapshots ask whether the customer buys within the horizon (see the module).

    Labels are learned when a snapshot's horizon ends, never earlier: the model then
    learns in snapshot-time order, and a quick "bought again" (0) cannot outrun the slow
    "horizon passed" (1) and bias it towards whoever bought last.
    """

    def grid_sweep(self, s: CustomerState, silence_ms: int, c: Cadence) -> bool:
        """Every customer still active gets a sweep at each grid point, where its snapshots
        are taken: the model learns from customers at every moment of their silence, as
        they are scored, not only when an event or a cadence checkpoint comes."""
        return True

    def __init__(self, cfg: EngineConfig, learn: Learn) -> None:
        self.cfg = cfg
        self.learn = learn

    def snapshot_due(self, s: CustomerState, now: int, c: Cadence) -> bool:
        """Only at a grid point (a sweep comes due there), never in the first cell."""
        return on_grid(s, now, self.cfg)

    def before_event(self, s: CustomerState, now: int, last_order: int) -> None:
        self._matured(s, now)

    def on_sweep(self, s: CustomerState, now: int) -> None:
        self._matured(s, now)

    def on_purchase(self, s: CustomerState, ts: int) -> None:
        horizon = self.cfg.label_horizon_ms
        s.snapshots = tuple(
            msgspec.structs.replace(snap, label=0)
            if snap.label < 0 and snap.ts < ts <= snap.ts + horizon
            else snap
            for snap in s.snapshots
        )

    def on_outcome(self, s: CustomerState, outcome: int, ts: int) -> None:
        y = 1 if outcome == 1 else 0
        s.snapshots = tuple(
            msgspec.structs.replace(snap, label=y) if snap.label < 0 else snap
            for snap in s.snapshots
        )

    def on_expire(self, s: CustomerState) -> None:
        for snap in s.snapshots:
            self.learn(snap, 1 if snap.label < 0 else snap.label)
        s.snapshots = ()

    def _matured(self, s: CustomerState, now: int) -> None:
        horizon = self.cfg.label_horizon_ms
        if s.snapshots and s.snapshots[0].ts + horizon <= now:
            keep = []
            for snap in s.snapshots:
                if snap.ts + horizon <= now:
                    self.learn(snap, 1 if snap.label < 0 else snap.label)
                else:
                    keep.append(snap)
            s.snapshots = tuple(keep)

    def decide_at(self, s: CustomerState, c: Cadence) -> int:
        """The oldest label matures at the first snapshot-grid point after its horizon."""
        return grid_point(s, s.snapshots[0].ts + self.cfg.label_horizon_ms - 1, self.cfg)


Labels = ChurnLabels | LapseLabels


def labels_for(
    cfg: EngineConfig, learn: Learn, cadence_of: CadenceOf, relabel: Relabel, comeback: Comeback
) -> Labels:
    """The label policy of ``cfg.risk_target``."""
    if cfg.risk_target == "churn":
        return ChurnLabels(cfg, learn, cadence_of, relabel, comeback)
    return LapseLabels(cfg, learn)
