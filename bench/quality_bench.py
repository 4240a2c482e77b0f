"""Warning quality on simulated customers: ROC AUC at cutoffs, beside a recency-only score.

Prints figures; asserts nothing. The label at a cutoff is "the truth says the customer
churns by cutoff + horizon"; customers need an event before the cutoff to be scored.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from detectors import EngineConfig, Playbook
from evaluation.metrics import roc_auc
from streams.replay import RejectsWriter, make_engine, replay
from streams.simulate import SimConfig, generate, write_events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=101, help="a seed the engine was not tuned on")
    ap.add_argument("--cutoffs", type=int, nargs="+", default=[240, 330, 420], help="days")
    ap.add_argument("--partitions", type=int, default=1)
    args = ap.parse_args()
    cfg = EngineConfig()
    start = date(2024, 1, 1)
    events, truth = generate(SimConfig(customers=args.customers, seed=args.seed))
    churn = {t.customer_id: t.churn_date for t in truth}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write_events(path, events)
        print(f"{args.customers:,} simulated customers, {len(events):,} events, seed {args.seed}")
        print(f"{'cutoff':<12}{'scored':>8}{'churn rate':>12}{'AUC risk':>10}{'AUC recency':>13}")
        for day in args.cutoffs:
            cut_date = start + timedelta(days=day)
            cut = int(
                datetime(cut_date.year, cut_date.month, cut_date.day, tzinfo=UTC).timestamp() * 1000
            )
            engine = make_engine(cfg, Playbook(), args.partitions)
            replay(path, engine, lambda a: None, rejects=RejectsWriter(None), until=cut)
            horizon_end = cut_date + timedelta(days=cfg.horizon_days)
            risk, recency, labels = [], [], []
            for shard in engine.shards:
                for key in shard.customers():
                    a = shard.assess(key, cut)
                    assert a is not None
                    d = churn.get(key)
                    risk.append(a.score)
                    recency.append(a.profile.silence_days)
                    labels.append(d is not None and d <= horizon_end)
            rate = sum(labels) / len(labels)
            print(
                f"{cut_date.isoformat():<12}{len(labels):>8,}{rate:>12.3f}"
                f"{roc_auc(labels, risk):>10.3f}{roc_auc(labels, recency):>13.3f}"
            )


if __name__ == "__main__":
    main()
