"""How good could warnings be on a simulated world? An upper bound beside the engine.

Two simulated worlds: a training world and a test world the engine was not tuned on.
The engine replays each (one shard); every ``--step-days`` from day 120 it is asked about
every customer who has bought and, by the truth, not yet churned: its features, rule
score and risk score. Then:

* **learnable**: a gradient-boosted classifier (scikit-learn) learns "churns within the
  horizon" from the training world's *truth* (which the engine never sees) on the same
  features, and scores the test world: ROC AUC, and alerts at equal volumes (a customer
  is alerted when their score first reaches the top share of all scores), judged as
  ``churnwatch evaluate`` judges alerts (precision: churns within the horizon after the
  alert; recall: churners alerted in the horizon before their churn date; lead time);
* **visible**: the test world's churners by the strength and lead of their leading
  signals (the simulator's own record of them): no warning can be early for a churner
  whose events carry no sign, nor 21 days early for one whose signs start later.

Prints figures; asserts nothing. Needs scikit-learn
(``pip install -c constraints.txt -e '.[bench]'``).

    python bench/ceiling_bench.py --train-seed 12 --test-seed 1201
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from detectors import Engine, EngineConfig, decode_event
from evaluation.metrics import roc_auc
from streams.simulate import SimConfig, TruthRow, generate

DAY_MS = 86_400_000
FIRST_DAY = 120
TOP_SHARES = (0.02, 0.05, 0.10, 0.20)
SIGNAL_BANDS = (
    ("none", 0.0, 0.0),
    ("weak (0-0.4)", 0.0, 0.4),
    ("medium (0.4-0.7)", 0.4, 0.7),
    ("strong (0.7-1)", 0.7, 1.01),
)
"""Bands of the simulator's signal strength: (name, above, up to)."""


@dataclass(frozen=True, slots=True)
class Look:
    """The engine's view of one customer at one grid point."""

    ts: int
    customer_id: str
    x: list[float]
    """Features and the rule score."""
    score: float
    label: bool
    """The truth: churns within the horizon after ``ts``."""


@dataclass(frozen=True, slots=True)
class World:
    looks: list[Look]
    churn: dict[str, int | None]
    truth: list[TruthRow]
    first_ts: int
    last_ts: int
    events: int


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def simulate_and_look(seed: int, customers: int, step_days: int, cfg: EngineConfig) -> World:
    """Replay one simulated world, looking at every eligible customer at each grid point."""
    raw, truth = generate(SimConfig(customers=customers, seed=seed))
    churn = {t.customer_id: _ms(t.churn_date) if t.churn_date else None for t in truth}
    engine = Engine(cfg, partitions=1)
    shard = engine.shards[0]
    horizon = cfg.horizon_ms
    looks: list[Look] = []
    first = last = 0
    next_look = 0

    def look(now: int) -> None:
        engine.advance_all(now)
        for key in shard.customers():
            gone = churn.get(key)
            a = shard.assess(key, now)
            if a is None or (gone is not None and gone <= now):
                continue
            if shard.store[key].n_orders == 0:
                continue
            label = gone is not None and gone <= now + horizon
            looks.append(Look(now, key, [*a.features, a.rule_logit], a.score, label))

    for item in raw:
        event = decode_event(json.dumps(item).encode())
        if not first:
            first = event.ts
            next_look = first + FIRST_DAY * DAY_MS
        while event.ts > next_look:
            look(next_look)
            next_look += step_days * DAY_MS
        engine.feed(event)
        last = max(last, event.ts)
    return World(looks, churn, truth, first + FIRST_DAY * DAY_MS, last, len(raw))


def judged(world: World, horizon: int) -> list[Look]:
    """Looks whose label is known by the end of the world."""
    return [k for k in world.looks if k.ts + horizon <= world.last_ts]


def churners(world: World) -> list[str]:
    """Churners in the window who had bought before their churn date (evaluate's rule)."""
    seen_buying = {k.customer_id for k in world.looks}
    return [
        cid
        for cid, t in world.churn.items()
        if t is not None and world.first_ts < t <= world.last_ts and cid in seen_buying
    ]


def alerts_at(
    world: World, people: list[str], scores: list[float], share: float, horizon: int
) -> str:
    """Precision, recall and median lead of alerts at the top ``share`` of scores."""
    threshold = float(np.quantile(scores, 1.0 - share))
    by_customer: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for k, s in zip(world.looks, scores, strict=True):
        by_customer[k.customer_id].append((k.ts, s))
    raised: dict[str, list[int]] = defaultdict(list)
    hits = judgeable = 0
    for cid, seq in by_customer.items():
        above = False
        for ts, s in sorted(seq):
            if s >= threshold and not above:
                raised[cid].append(ts)
                if ts + horizon <= world.last_ts:
                    judgeable += 1
                    gone = world.churn[cid]
                    hits += gone is not None and gone <= ts + horizon
            above = s >= threshold
    leads = []
    for cid in people:
        t = world.churn[cid]
        assert t is not None
        early = [ts for ts in raised.get(cid, []) if t - horizon <= ts < t]
        if early:
            leads.append((t - early[0]) / DAY_MS)
    precision = hits / judgeable if judgeable else float("nan")
    recall = len(leads) / len(people) if people else float("nan")
    lead = statistics.median(leads) if leads else float("nan")
    return f"{precision:5.2f} /{recall:5.2f} /{lead:4.0f} d"


def visibility(world: World, churned: list[str]) -> None:
    """The test world's churners by how visible, and how early, their signals were."""
    truth = {t.customer_id: t for t in world.truth}
    people = [truth[c] for c in churned]
    n = len(people)
    print(f"\nchurners in the test window who had bought: {n:,}; their leading signals:")
    print(f"{'signal strength':<18}{'churners':>9}{'share':>7}{'of them lead >= 21 d':>22}")
    for name, lo, hi in SIGNAL_BANDS:
        members = [t for t in people if (t.signal == 0 if hi == 0 else lo < t.signal <= hi)]
        long_lead = sum(1 for t in members if t.signal and t.lead_days >= 21)
        print(f"{name:<18}{len(members):>9,}{len(members) / n:>7.0%}{long_lead:>22,}")
    signalled = [t for t in people if t.signal]
    early = [t for t in signalled if t.lead_days >= 21]
    print(
        f"the highest recall an early warning can reach: {len(signalled) / n:.2f} "
        f"(any signal before the churn date), {len(early) / n:.2f} (signals from 21 days before)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--train-seed", type=int, default=12)
    ap.add_argument("--test-seed", type=int, default=1201, help="a seed not tuned on")
    ap.add_argument("--step-days", type=int, default=14)
    args = ap.parse_args()
    cfg = EngineConfig()
    horizon = cfg.horizon_ms
    train = simulate_and_look(args.train_seed, args.customers, args.step_days, cfg)
    test = simulate_and_look(args.test_seed, args.customers, args.step_days, cfg)
    fit = judged(train, horizon)
    gbm = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    gbm.fit(np.array([k.x for k in fit]), np.array([k.label for k in fit]))
    learned = gbm.predict_proba(np.array([k.x for k in test.looks]))[:, 1].tolist()
    engine = [k.score for k in test.looks]

    print(
        f"train world seed {args.train_seed}, test world seed {args.test_seed}: "
        f"{args.customers:,} customers each ({train.events:,} and {test.events:,} events)"
    )
    known = [i for i, k in enumerate(test.looks) if k.ts + horizon <= test.last_ts]
    labels = [test.looks[i].label for i in known]
    print(
        f"looks every {args.step_days} days from day {FIRST_DAY} at customers who have bought: "
        f"{len(known):,} judged, {sum(labels) / len(labels):.1%} churn within "
        f"{cfg.horizon_days:.0f} days"
    )
    print(f"\n{'ROC AUC':<44}{roc_auc(labels, [engine[i] for i in known]):.3f}  engine risk score")
    print(
        f"{'':<44}{roc_auc(labels, [learned[i] for i in known]):.3f}  "
        "gradient boosting taught by the training world's truth"
    )
    print("\nalerts at equal volume: precision / recall / median lead")
    print(f"{'top share of scores':<22}{'engine':>22}{'taught by truth':>22}")
    people = churners(test)
    for share in TOP_SHARES:
        print(
            f"{share:<22.0%}{alerts_at(test, people, engine, share, horizon):>22}"
            f"{alerts_at(test, people, learned, share, horizon):>22}"
        )
    visibility(test, people)


if __name__ == "__main__":
    main()
